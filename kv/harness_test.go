package kv

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// harness applies commands written in redis-cli syntax to a Store, one entry
// each, with a test clock.
type harness struct {
	t     testing.TB
	s     *Store
	idx   pb.Index
	now   int64
	seq   uint64
	dedup bool // give each command a (Session, Seq)
}

const t0 = 1_700_000_000_000 // a plausible Unix ms

func newHarness(t testing.TB) *harness {
	t.Helper()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, s: s, now: t0}
}

// applyCmd encodes c, applies it as the next entry and returns its result.
func (h *harness) applyCmd(c Command) Result {
	h.t.Helper()
	data, err := c.Encode()
	if err != nil {
		h.t.Fatalf("encode %+v: %v", c, err)
	}
	h.idx++
	res, err := h.s.Apply([]pb.Entry{{Index: h.idx, Term: 1, Data: data}})
	if err != nil {
		h.t.Fatalf("apply %+v: %v", c, err)
	}
	return res[0].(Result)
}

// do runs one line: a write (applied), a read (at h.now), or "ADVANCE ms".
// It returns the reply as redis-cli would print it.
func (h *harness) do(line string) string {
	h.t.Helper()
	args := strings.Fields(line)
	for i, a := range args {
		if a == "''" {
			args[i] = ""
		}
	}
	name := strings.ToUpper(args[0])
	b := func(i int) []byte { return []byte(args[i]) }
	bs := func(from int) [][]byte {
		var out [][]byte
		for _, a := range args[from:] {
			out = append(out, []byte(a))
		}
		return out
	}
	num := func(i int) int64 {
		n, err := strconv.ParseInt(args[i], 10, 64)
		if err != nil {
			h.t.Fatalf("%q: %v", line, err)
		}
		return n
	}
	intReply := func(n int64) string { return Int(n).String() }
	switch name {
	case "ADVANCE":
		h.now += num(1)
		return "OK"
	case "GET":
		v, ok := h.s.Get(b(1), h.now)
		if !ok {
			return Nil().String()
		}
		return Bulk(v).String()
	case "MGET":
		var parts []string
		for _, v := range h.s.MGet(bs(1), h.now) {
			if v == nil {
				parts = append(parts, "(nil)")
			} else {
				parts = append(parts, strconv.Quote(string(v)))
			}
		}
		return strings.Join(parts, " ")
	case "TTL":
		return intReply(h.s.TTL(b(1), h.now))
	case "PTTL":
		return intReply(h.s.PTTL(b(1), h.now))
	case "EXISTS":
		return intReply(h.s.Exists(bs(1), h.now))
	case "STRLEN":
		return intReply(h.s.Strlen(b(1), h.now))
	case "TYPE":
		return h.s.Type(b(1), h.now)
	case "DBSIZE":
		return intReply(h.s.DBSize())
	case "KEYS":
		keys := h.s.Keys(b(1), h.now)
		slices.Sort(keys)
		return strings.Join(keys, " ")
	}
	c := Command{Now: h.now}
	if h.dedup {
		h.seq++
		c.Session, c.Seq = 7, h.seq
	}
	switch name {
	case "SET":
		c.Op, c.Key, c.Value = OpSet, b(1), b(2)
		for i := 3; i < len(args); i++ {
			switch f := strings.ToUpper(args[i]); f {
			case "NX":
				c.Flags |= FlagNX
			case "XX":
				c.Flags |= FlagXX
			case "GET":
				c.Flags |= FlagGet
			case "KEEPTTL":
				c.Flags |= FlagKeepTTL
			case "EX", "PX", "EXAT", "PXAT":
				c.Flags |= map[string]Flag{"EX": FlagEX, "PX": FlagPX, "EXAT": FlagEXAT, "PXAT": FlagPXAT}[f]
				i++
				c.Int = num(i)
			default:
				h.t.Fatalf("%q: unknown SET flag %s", line, f)
			}
		}
	case "SETNX":
		c.Op, c.Key, c.Value = OpSetNX, b(1), b(2)
	case "GETSET":
		c.Op, c.Key, c.Value = OpGetSet, b(1), b(2)
	case "GETDEL":
		c.Op, c.Key = OpGetDel, b(1)
	case "DEL":
		c.Op, c.Keys = OpDel, bs(1)
	case "UNLINK":
		c.Op, c.Keys = OpUnlink, bs(1)
	case "APPEND":
		c.Op, c.Key, c.Value = OpAppend, b(1), b(2)
	case "INCR":
		c.Op, c.Key, c.Int = OpIncrBy, b(1), 1
	case "INCRBY":
		c.Op, c.Key, c.Int = OpIncrBy, b(1), num(2)
	case "DECR":
		c.Op, c.Key, c.Int = OpDecrBy, b(1), 1
	case "DECRBY":
		c.Op, c.Key, c.Int = OpDecrBy, b(1), num(2)
	case "MSET":
		c.Op = OpMSet
		for i := 1; i+1 < len(args); i += 2 {
			c.Keys = append(c.Keys, b(i))
			c.Values = append(c.Values, b(i+1))
		}
	case "EXPIRE", "PEXPIRE":
		c.Op, c.Key, c.Int = OpExpire, b(1), num(2)
		if name == "PEXPIRE" {
			c.Op = OpPExpire
		}
		for _, f := range args[3:] {
			c.Flags |= map[string]Flag{"NX": FlagNX, "XX": FlagXX, "GT": FlagGT, "LT": FlagLT}[strings.ToUpper(f)]
		}
	case "PERSIST":
		c.Op, c.Key = OpPersist, b(1)
	case "FLUSHDB", "FLUSHALL":
		c.Op = OpFlush
	case "SWEEP":
		c.Op, c.Keys = OpExpireSweep, bs(1)
	default:
		h.t.Fatalf("%q: unknown command", line)
	}
	return h.applyCmd(c).String()
}

// run runs a script of "command -> want" lines, failing on the first mismatch.
func (h *harness) run(script []string) {
	h.t.Helper()
	for i, line := range script {
		cmd, want, ok := strings.Cut(line, "->")
		if !ok { // a step whose reply is not checked (ADVANCE)
			h.do(strings.TrimSpace(line))
			continue
		}
		cmd, want = strings.TrimSpace(cmd), strings.TrimSpace(want)
		if got := h.do(cmd); got != want {
			h.t.Fatalf("line %d: %s\n got: %s\nwant: %s", i, cmd, got, want)
		}
	}
}

// dump renders the whole logical state (keys, values, deadlines, clock,
// dedup) for comparisons between stores, and checks the store's counters.
func (h *harness) dump() string { return dumpStore(h.t, h.s) }

func dumpStore(t testing.TB, s *Store) string {
	t.Helper()
	return dumpStoreDedup(t, s, true)
}

// dumpStoreDedup is dumpStore, optionally without the dedup table.
func dumpStoreDedup(t testing.TB, s *Store, dedup bool) string {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var lines []string
	var keys int
	var bytes int64
	ttl := 0
	forEachVisible(s.layers, func(k string, it item) bool {
		lines = append(lines, fmt.Sprintf("%q=%q exp=%d", k, it.val, it.exp))
		keys++
		bytes += int64(len(k) + len(it.val))
		if it.exp > 0 {
			ttl++
			if s.ttl[k] != it.exp {
				t.Errorf("ttl index for %q: %d, item says %d", k, s.ttl[k], it.exp)
			}
		}
		return true
	})
	indexed := map[string]bool{}
	for _, bk := range s.scan.buckets {
		for _, e := range bk {
			if e.h != keyHash(e.k) || s.scan.bucket(e.h) != s.scan.bucket(keyHash(e.k)) {
				t.Errorf("scan index: %q in the wrong place", e.k)
			}
			indexed[e.k] = true
		}
	}
	if len(indexed) != keys || s.scan.n != keys {
		t.Errorf("scan index holds %d keys (n=%d), keyspace %d", len(indexed), s.scan.n, keys)
	}
	if keys != s.keys || bytes != s.bytes || ttl != len(s.ttl) {
		t.Errorf("counters: keys %d bytes %d ttl %d; counted %d %d %d", s.keys, s.bytes, len(s.ttl), keys, bytes, ttl)
	}
	slices.Sort(lines)
	lines = append(lines, fmt.Sprintf("now=%d applied=%d", s.lastNow, s.Applied()))
	for pos := s.dedup.head; dedup && pos < s.dedup.tail; pos++ {
		r := s.dedup.rec(pos)
		lines = append(lines, fmt.Sprintf("dedup %d/%d at %d: %s", r.session, r.seq, r.at, r.res))
	}
	var floors []string
	for sess, f := range s.dedup.floors {
		if f.at > s.lastNow-s.window { // stale floors are inert
			floors = append(floors, fmt.Sprintf("floor %d: %d at %d", sess, f.seq, f.at))
		}
	}
	slices.Sort(floors)
	return strings.Join(append(lines, floors...), "\n")
}
