package kv

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestRedisSemantics checks each command against Redis 7's documented and
// observed behaviour (redis.io/commands/<name>, and the 7.0 sources named in
// exec.go). Every case starts from an empty store at t0.
func TestRedisSemantics(t *testing.T) {
	cases := []struct {
		name   string
		script []string
	}{
		{"set and get", []string{
			"GET k -> (nil)",
			"SET k v -> OK",
			"GET k -> \"v\"",
			"SET k '' -> OK", // empty values are values
			"GET k -> \"\"",
			"MGET k nope -> \"\" (nil)", // an empty value is not a missing key
			"EXISTS k -> (integer) 1",
			"TYPE k -> string",
			"TYPE nope -> none",
		}},
		{"set NX/XX", []string{
			"SET k v XX -> (nil)",
			"GET k -> (nil)",
			"SET k v NX -> OK",
			"SET k w NX -> (nil)",
			"GET k -> \"v\"",
			"SET k w XX -> OK",
			"GET k -> \"w\"",
			"SET k w NX XX -> (error) ERR syntax error",
		}},
		{"set GET (7.0: combinable with NX)", []string{
			"SET k v GET -> (nil)",
			"SET k w GET -> \"v\"",
			"SET k x NX GET -> \"w\"", // NX fails, GET still returns the old value
			"GET k -> \"w\"",
			"SET n x XX GET -> (nil)",
			"EXISTS n -> (integer) 0",
		}},
		{"set expiry options", []string{
			"SET k v EX 10 -> OK",
			"TTL k -> (integer) 10",
			"PTTL k -> (integer) 10000",
			"SET k v PX 1500 -> OK",
			"PTTL k -> (integer) 1500",
			"TTL k -> (integer) 2", // rounded: (1500+500)/1000
			"SET k v EXAT 1700000100 -> OK",
			"PTTL k -> (integer) 100000",
			"SET k v PXAT 1700000000250 -> OK",
			"PTTL k -> (integer) 250",
			"SET k v -> OK", // a plain SET discards the TTL
			"TTL k -> (integer) -1",
			"TTL nope -> (integer) -2",
			"PTTL nope -> (integer) -2",
		}},
		{"set invalid expire", []string{
			"SET k v EX 0 -> (error) ERR invalid expire time in 'set' command",
			"SET k v PX -5 -> (error) ERR invalid expire time in 'set' command",
			"SET k v EX 9223372036854776 -> (error) ERR invalid expire time in 'set' command",    // *1000 overflows
			"SET k v PX 9223372036854775807 -> (error) ERR invalid expire time in 'set' command", // +now overflows
			"SET k v EXAT 0 -> (error) ERR invalid expire time in 'set' command",
			"SET k v EX 10 PX 10 -> (error) ERR syntax error",
			"SET k v EX 10 KEEPTTL -> (error) ERR syntax error",
			"EXISTS k -> (integer) 0",
		}},
		{"set KEEPTTL", []string{
			"SET k v EX 100 -> OK",
			"ADVANCE 1000",
			"SET k w KEEPTTL -> OK",
			"TTL k -> (integer) 99",
			"GET k -> \"w\"",
			"SET n w KEEPTTL -> OK",
			"TTL n -> (integer) -1",
		}},
		{"set with a past absolute deadline deletes", []string{
			"SET k v -> OK",
			"SET k w PXAT 1 -> OK",
			"EXISTS k -> (integer) 0",
			"DBSIZE -> (integer) 0",
			"SET k w EXAT 1 GET -> (nil)",
		}},
		{"expiry hides, then writes remove", []string{
			"SET k v PX 100 -> OK",
			"ADVANCE 99",
			"GET k -> \"v\"",
			"ADVANCE 1",
			"GET k -> (nil)",           // deadline <= now: gone
			"DBSIZE -> (integer) 1",    // as Redis, DBSIZE counts it until removed
			"SETNX k x -> (integer) 1", // the write sees no key, and removes it first
			"GET k -> \"x\"",
			"TTL k -> (integer) -1",
			"DBSIZE -> (integer) 1",
		}},
		{"setnx getset getdel", []string{
			"SETNX k v -> (integer) 1",
			"SETNX k w -> (integer) 0",
			"GETSET k w -> \"v\"",
			"GETSET n w -> (nil)",
			"GET n -> \"w\"",
			"SET t v EX 50 -> OK",
			"GETSET t w -> \"v\"",
			"TTL t -> (integer) -1", // GETSET discards the TTL
			"GETDEL k -> \"w\"",
			"GETDEL k -> (nil)",
			"EXISTS k -> (integer) 0",
		}},
		{"del unlink exists", []string{
			"MSET a 1 b 2 c 3 -> OK",
			"EXISTS a a b nope -> (integer) 3", // repeats count
			"DEL a nope a -> (integer) 1",
			"UNLINK b c -> (integer) 2",
			"DBSIZE -> (integer) 0",
		}},
		{"append keeps TTL", []string{
			"APPEND k ab -> (integer) 2",
			"APPEND k cd -> (integer) 4",
			"GET k -> \"abcd\"",
			"STRLEN k -> (integer) 4",
			"STRLEN nope -> (integer) 0",
			"EXPIRE k 100 -> (integer) 1",
			"APPEND k e -> (integer) 5",
			"TTL k -> (integer) 100",
		}},
		{"incr family", []string{
			"INCR n -> (integer) 1",
			"INCRBY n 41 -> (integer) 42",
			"DECR n -> (integer) 41",
			"DECRBY n 50 -> (integer) -9",
			"INCRBY n -1 -> (integer) -10",
			"GET n -> \"-10\"",
			"SET s abc -> OK",
			"INCR s -> (error) ERR value is not an integer or out of range",
			"SET s 1.5 -> OK",
			"INCR s -> (error) ERR value is not an integer or out of range",
			"SET s 01 -> OK",
			"INCR s -> (error) ERR value is not an integer or out of range",
			"SET s -0 -> OK",
			"INCR s -> (error) ERR value is not an integer or out of range",
			"SET s 9223372036854775807 -> OK",
			"INCR s -> (error) ERR increment or decrement would overflow",
			"GET s -> \"9223372036854775807\"",
			"SET s -9223372036854775808 -> OK",
			"DECR s -> (error) ERR increment or decrement would overflow",
			"INCRBY s 9223372036854775807 -> (integer) -1",
			"DECRBY s -9223372036854775808 -> (error) ERR decrement would overflow",
			"SET s 92233720368547758070 -> OK",
			"INCR s -> (error) ERR value is not an integer or out of range",
		}},
		{"incr keeps TTL", []string{
			"SET n 5 EX 100 -> OK",
			"INCR n -> (integer) 6",
			"TTL n -> (integer) 100",
		}},
		{"mset", []string{
			"SET a x EX 10 -> OK",
			"MSET a 1 b 2 a 3 -> OK", // later pairs win
			"MGET a b c -> \"3\" \"2\" (nil)",
			"TTL a -> (integer) -1",
		}},
		{"expire basics", []string{
			"EXPIRE nope 10 -> (integer) 0",
			"SET k v -> OK",
			"EXPIRE k 10 -> (integer) 1",
			"TTL k -> (integer) 10",
			"PEXPIRE k 2500 -> (integer) 1",
			"PTTL k -> (integer) 2500",
			"PERSIST k -> (integer) 1",
			"PERSIST k -> (integer) 0",
			"PERSIST nope -> (integer) 0",
			"TTL k -> (integer) -1",
		}},
		{"expire non-positive deletes (and answers 1)", []string{
			"SET k v -> OK",
			"EXPIRE k 0 -> (integer) 1",
			"EXISTS k -> (integer) 0",
			"SET k v -> OK",
			"PEXPIRE k -100 -> (integer) 1",
			"EXISTS k -> (integer) 0",
			"DBSIZE -> (integer) 0",
		}},
		{"expire overflow", []string{
			"SET k v -> OK",
			"EXPIRE k 9223372036854776 -> (error) ERR invalid expire time in 'expire' command",
			"EXPIRE k -9223372036854776 -> (error) ERR invalid expire time in 'expire' command",
			"PEXPIRE k 9223372036854775807 -> (error) ERR invalid expire time in 'pexpire' command",
			"TTL k -> (integer) -1",
		}},
		{"expire NX XX GT LT (7.0)", []string{
			"SET k v -> OK",
			"EXPIRE k 100 XX -> (integer) 0", // no TTL yet
			"EXPIRE k 100 GT -> (integer) 0", // no TTL counts as infinite
			"EXPIRE k 100 LT -> (integer) 1",
			"EXPIRE k 50 NX -> (integer) 0",
			"EXPIRE k 200 GT -> (integer) 1",
			"EXPIRE k 150 GT -> (integer) 0",
			"EXPIRE k 150 LT -> (integer) 1",
			"EXPIRE k 150 XX -> (integer) 1",
			"TTL k -> (integer) 150",
			"EXPIRE k 10 NX XX -> (error) ERR NX and XX, GT or LT options at the same time are not compatible",
			"EXPIRE k 10 GT LT -> (error) ERR GT and LT options at the same time are not compatible",
			"EXPIRE k 10 XX GT -> (integer) 0",
		}},
		{"flush", []string{
			"MSET a 1 b 2 -> OK",
			"SET c 3 EX 10 -> OK",
			"FLUSHALL -> OK",
			"DBSIZE -> (integer) 0",
			"KEYS * -> ",
			"GET a -> (nil)",
		}},
		{"keys patterns", []string{
			"MSET hello 1 hallo 2 hxllo 3 hllo 4 heeeello 5 h[llo 6 -> OK",
			"KEYS h?llo -> h[llo hallo hello hxllo",
			"KEYS h*llo -> h[llo hallo heeeello hello hllo hxllo",
			"KEYS h[ae]llo -> hallo hello",
			"KEYS h[^e]llo -> h[llo hallo hxllo",
			"KEYS h[a-b]llo -> hallo",
			"KEYS h\\[llo -> h[llo",
			"KEYS nothing* -> ",
		}},
		{"expire sweep", []string{
			"SET a 1 PX 100 -> OK",
			"SET b 2 PX 300 -> OK",
			"SET c 3 -> OK",
			"ADVANCE 200",
			"SWEEP a b c nope -> (integer) 1", // only a is due; b has time left, c no TTL
			"DBSIZE -> (integer) 2",
			"ADVANCE 100",
			"SWEEP b -> (integer) 1",
			"SWEEP b -> (integer) 0",
			"KEYS * -> c",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.run(tc.script)
			h.dump() // checks the counters
		})
	}
}

// TestParseInt checks Redis's string2ll rules, which decide what INCR
// accepts.
func TestParseInt(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1": 1, "-1": -1, "42": 42, "9223372036854775807": 1<<63 - 1,
		"-9223372036854775808": -1 << 63,
	}
	for s, want := range good {
		if got, ok := parseInt([]byte(s)); !ok || got != want {
			t.Errorf("parseInt(%q) = %d, %v; want %d", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "-", "-0", "+1", " 1", "1 ", "01", "1.0", "1e3", "9223372036854775808",
		"-9223372036854775809", "18446744073709551616", "99999999999999999999", "000000000000000000001", "0x10"} {
		if got, ok := parseInt([]byte(s)); ok {
			t.Errorf("parseInt(%q) = %d, ok; want rejected", s, got)
		}
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
		{"a*", "abc", true},
		{"*c", "abc", true},
		{"*b*", "abc", true},
		{"a*c", "ac", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a[bc]d", "acd", true},
		{"a[^bc]d", "acd", false},
		{"a[^bc]d", "axd", true},
		{"a[z-x]d", "ayd", true}, // reversed ranges work, as in Redis
		{"a[\\]]d", "a]d", true},
		{"a\\*", "a*", true},
		{"a\\*", "ab", false},
		{"a[b", "ab", true}, // unterminated class ends at the pattern's end
		{"a[", "a", false},
		{"**a", "ba", true},
		{"*a*b*c*", "xaxbxc", true},
		{"*a*b*c*", "xaxcxb", false},
		{"\xff?", "\xff\xfe", true}, // bytes, not runes
		{"?", "é", false},           // two bytes
	}
	for _, tc := range cases {
		if got := Match(tc.pat, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
	// An abusive pattern must not take exponential time (Redis CVE-2022-36021).
	long := make([]byte, 0, 60)
	for range 30 {
		long = append(long, 'a', '*')
	}
	if Match(string(long)+"b", string(make([]byte, 200))) {
		t.Error("abusive pattern matched")
	}
}

// TestMatchAgainstRegexp compares Match with the equivalent regular
// expression on random well-formed patterns and strings (a naive model of
// glob matching).
func TestMatchAgainstRegexp(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	atoms := []struct{ glob, re string }{
		{"a", "a"}, {"b", "b"}, {"*", ".*"}, {"?", "."}, {"[ab]", "[ab]"},
		{"[^a]", "[^a]"}, {"[a-c]", "[a-c]"}, {"\\*", `\*`}, {"\\a", "a"},
	}
	for range 20000 {
		var glob, re strings.Builder
		for range r.IntN(6) {
			a := atoms[r.IntN(len(atoms))]
			glob.WriteString(a.glob)
			re.WriteString(a.re)
		}
		rx := regexp.MustCompile(`(?s)^` + re.String() + `$`)
		var s []byte
		for range r.IntN(6) {
			s = append(s, "abc*"[r.IntN(4)])
		}
		if got, want := Match(glob.String(), string(s)), rx.Match(s); got != want {
			t.Fatalf("Match(%q, %q) = %v; regexp %s says %v", glob.String(), s, got, rx, want)
		}
	}
}
