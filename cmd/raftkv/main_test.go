package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/tidwall/redcon"

	"github.com/raftkv/raftkv/internal/proctest"
)

// runCLI runs the CLI in-process and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// fakeRESP is a map-backed RESP server standing in for a cluster member.
type fakeRESP struct {
	addr string
	mu   sync.Mutex
	data map[string]string
}

func newFakeRESP(t *testing.T) *fakeRESP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRESP{addr: ln.Addr().String(), data: map[string]string{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = redcon.Serve(ln, f.handle, nil, nil)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return f
}

func (f *fakeRESP) handle(conn redcon.Conn, cmd redcon.Command) {
	f.mu.Lock()
	defer f.mu.Unlock()
	args := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		args[i] = string(a)
	}
	switch strings.ToUpper(args[0]) {
	case "GET":
		if v, ok := f.data[args[1]]; ok {
			conn.WriteBulkString(v)
		} else {
			conn.WriteNull()
		}
	case "SET":
		f.data[args[1]] = args[2]
		if len(args) == 5 {
			f.data["ttl:"+args[1]] = args[3] + " " + args[4]
		}
		conn.WriteString("OK")
	case "DEL":
		n := 0
		for _, k := range args[1:] {
			if _, ok := f.data[k]; ok {
				delete(f.data, k)
				n++
			}
		}
		conn.WriteInt(n)
	case "INCRBY", "INCR":
		by := int64(1)
		if len(args) == 3 {
			by, _ = strconv.ParseInt(args[2], 10, 64)
		}
		n, err := strconv.ParseInt(f.data[args[1]], 10, 64)
		if err != nil && f.data[args[1]] != "" {
			conn.WriteError("ERR value is not an integer or out of range")
			return
		}
		n += by
		f.data[args[1]] = strconv.FormatInt(n, 10)
		conn.WriteInt64(n)
	case "KEYS":
		conn.WriteArray(len(f.data))
		for k := range f.data {
			conn.WriteBulkString(k)
		}
	case "PING":
		conn.WriteString("PONG")
	default:
		conn.WriteError("ERR unknown command '" + args[0] + "'")
	}
}

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"get", "--bogus", "k"}, "unknown flag: --bogus"},
		{"missing argument", []string{"get"}, "want 1 argument(s) KEY, got 0"},
		{"unknown command", []string{"nope"}, `unknown command "nope"`},
		{"bad duration", []string{"set", "k", "v", "--ttl", "soon"}, "invalid argument"},
		{"negative ttl", []string{"set", "k", "v", "--ttl", "-1s"}, "--ttl must be >= 0"},
		{"bad member id", []string{"members", "remove", "zero"}, `member id "zero"`},
		{"members without subcommand", []string{"members"}, "missing subcommand"},
		{"bad endpoint", []string{"get", "k", "--endpoints", "nohost"}, `endpoint "nohost"`},
		{"bench bad values", []string{"bench", "--clients", "0", "--pipeline", "0"}, "--clients must be >= 1 (got 0); --pipeline must be >= 1"},
		{"dev bad base port", []string{"dev", "--base-port", "65000"}, "--base-port must be"},
		{"dev kept data on random ports", []string{"dev", "--base-port", "0", "--data-dir", "x"}, "--data-dir needs fixed ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, "", tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q, want one line containing %q", errOut, tc.want)
			}
		})
	}
}

func TestEveryCommandHasHelpWithExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			if sub.Example == "" {
				t.Errorf("%q has no example", sub.CommandPath())
			}
			_, errOut, code := runCLI(t, "", append(strings.Fields(sub.CommandPath())[1:], "--help")...)
			if code != 0 || errOut != "" {
				t.Errorf("%s --help: exit %d, stderr %q", sub.CommandPath(), code, errOut)
			}
			walk(sub)
		}
	}
	walk(newRootCmd())
}

func TestUnreachableClusterExit1WithOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"get", "k", "--endpoints", proctest.RefusedAddr(t)},
		{"set", "k", "v", "--endpoints", proctest.RefusedAddr(t) + "," + proctest.RefusedAddr(t)},
		{"status", "--http-endpoints", proctest.RefusedAddr(t) + "," + proctest.RefusedAddr(t)},
		{"members", "list", "--http-endpoints", proctest.RefusedAddr(t)},
		{"snapshot", "--http-endpoints", proctest.RefusedAddr(t)},
		{"bench", "--duration", "200ms", "--clients", "2", "--endpoints", proctest.RefusedAddr(t)},
	} {
		t.Run(args[0], func(t *testing.T) {
			_, errOut, code := runCLI(t, "", args...)
			if code != exitError {
				t.Errorf("exit code %d, want %d", code, exitError)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "connection refused") {
				t.Errorf("stderr %q, want one line saying connection refused", errOut)
			}
		})
	}
}

func TestKVCommands(t *testing.T) {
	f := newFakeRESP(t)
	eps := "--endpoints=" + proctest.RefusedAddr(t) + "," + f.addr
	steps := []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"get", "greeting"}, "", 1},
		{[]string{"set", "greeting", "hello world", "--ttl", "90s"}, "OK\n", 0},
		{[]string{"get", "greeting"}, "hello world\n", 0},
		{[]string{"incr", "n"}, "1\n", 0},
		{[]string{"incr", "n", "--by", "-5"}, "-4\n", 0},
		{[]string{"incr", "greeting"}, "", 1},
		{[]string{"del", "greeting", "nothere"}, "1\n", 0},
	}
	for _, s := range steps {
		out, errOut, code := runCLI(t, "", append(s.args, eps)...)
		if out != s.out || code != s.code {
			t.Fatalf("%v: got %q exit %d (stderr %q), want %q exit %d", s.args, out, code, errOut, s.out, s.code)
		}
	}
	if got := f.data["ttl:greeting"]; got != "PX 90000" {
		t.Errorf("--ttl 90s sent %q, want PX 90000", got)
	}
	out, _, _ := runCLI(t, "", "keys", "*", eps)
	if keys := strings.Fields(out); len(keys) != 2 {
		t.Errorf("keys printed %q, want n and ttl:greeting", out)
	}
}

func TestShellPiped(t *testing.T) {
	f := newFakeRESP(t)
	script := "SET a 1\n\nINCR a\nget a\nSET 'two words' \"x\\ty\"\nGET \"two words\"\nKEYS *\nGET missing\nhelp\nexit\nGET a\n"
	out, errOut, code := runCLI(t, script, "shell", "--endpoints", f.addr, "--history", "")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"OK\n(integer) 2\n\"2\"\nOK\n\"x\\ty\"\n", "(nil)\n", "Admin commands"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if strings.Count(out, "\"2\"") != 1 {
		t.Errorf("a command after 'exit' ran: %q", out)
	}

	out, errOut, code = runCLI(t, "INCR a\nBOGUS\nSET \"unbalanced\n", "shell", "--endpoints", f.addr, "--history", "")
	if code != exitError || !strings.Contains(out, "(error) ERR unknown command 'BOGUS'") || !strings.Contains(out, "(error) unbalanced quotes") {
		t.Fatalf("exit %d, out %q; want errors shown and exit 1", code, out)
	}
	if !strings.Contains(errOut, "2 of 3 commands failed") {
		t.Errorf("stderr %q", errOut)
	}
}

func TestShellCompletesEveryCommand(t *testing.T) {
	sh := &shell{}
	pc := sh.completer()
	for _, word := range append(append([]string{}, shellRedisCommands...), "status", "members", "leader", "snapshot", "help", "exit") {
		prefix := word[:len(word)-1]
		cands, _ := pc.Do([]rune(prefix), len(prefix))
		found := false
		for _, c := range cands {
			if strings.TrimSpace(prefix+string(c)) == word {
				found = true
			}
		}
		if !found {
			t.Errorf("completing %q does not offer %q", prefix, word)
		}
	}
	for line, want := range map[string]string{"members li": "st ", "members pro": "mote ", "leader tr": "ansfer ", "leader transfer --": "to "} {
		cands, _ := pc.Do([]rune(line), len(line))
		if len(cands) != 1 || string(cands[0]) != want {
			t.Errorf("completing %q offers %q, want %q", line, cands, want)
		}
	}
}

func TestShellAdminCommands(t *testing.T) {
	members := `"members":[{"id":1,"peer_addr":"127.0.0.1:7001","voter":true}]`
	a := statusServer(t, `{"id":1,"role":"leader","term":3,"leader":1,"commit_index":10,"applied_index":10,`+members+`}`)
	f := newFakeRESP(t)
	out, _, code := runCLI(t, "status\nmembers\nmembers lst\n", "shell", "--endpoints", f.addr, "--http-endpoints", a, "--history", "")
	if code != exitError {
		t.Errorf("exit %d, want 1 (two admin commands failed)", code)
	}
	for _, want := range []string{"leader", "missing subcommand", `unknown command "lst"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "unknown flag") {
		t.Errorf("output %q: the shell passed --http-endpoints to a command without it", out)
	}
}

func TestSplitLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  GET   k ", []string{"GET", "k"}},
		{`SET k "a b"`, []string{"SET", "k", "a b"}},
		{`SET k 'it''s'`, []string{"SET", "k", "its"}},
		{`SET k "q\"uote\n"`, []string{"SET", "k", "q\"uote\n"}},
		{`SET k ""`, []string{"SET", "k", ""}},
	} {
		got, err := splitLine(tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("splitLine(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestWriteReply(t *testing.T) {
	var b bytes.Buffer
	writeReply(&b, []any{"a", int64(3), nil, []any{"x", "y"}}, "")
	want := "1) \"a\"\n2) (integer) 3\n3) (nil)\n4) 1) \"x\"\n   2) \"y\"\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// statusServer serves a fixed /status document.
func statusServer(t *testing.T, doc string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, doc)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestStatusTableAndExitCode(t *testing.T) {
	members := `"members":[{"id":1,"peer_addr":"127.0.0.1:7001","voter":true},{"id":2,"peer_addr":"127.0.0.1:7002","voter":true}]`
	a := statusServer(t, `{"id":1,"role":"leader","term":3,"leader":1,"commit_index":10,"applied_index":10,`+members+`}`)
	b := statusServer(t, `{"id":2,"role":"follower","term":3,"leader":1,"commit_index":10,"applied_index":7,`+members+`}`)
	out, errOut, code := runCLI(t, "", "status", "--http-endpoints", a+","+b)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("table %q", out)
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "2 127.0.0.1:7002 "+b+" follower 3 10 7 3 yes" {
		t.Errorf("row 2 = %q", lines[2])
	}

	out, _, code = runCLI(t, "", "status", "--json", "--http-endpoints", a)
	var doc struct {
		Leader  uint64 `json:"leader"`
		Members []struct {
			ID      uint64 `json:"id"`
			Healthy bool   `json:"healthy"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || doc.Leader != 1 || len(doc.Members) != 2 {
		t.Fatalf("--json: %v, exit %d, %q", err, code, out)
	}

	// No leader: the table still prints, then exit 1 with one line.
	c := statusServer(t, `{"id":1,"role":"candidate","term":4,"leader":0,"commit_index":10,"applied_index":10,`+members+`}`)
	out, errOut, code = runCLI(t, "", "status", "--http-endpoints", c)
	if code != exitError || !strings.Contains(out, "candidate") || !strings.Contains(errOut, "no leader") {
		t.Fatalf("no leader: exit %d, out %q, stderr %q", code, out, errOut)
	}
}

func TestBenchAgainstFake(t *testing.T) {
	f := newFakeRESP(t)
	out, errOut, code := runCLI(t, "", "bench", "--endpoints", f.addr, "--duration", "300ms", "--clients", "4",
		"--pipeline", "4", "--key-space", "10", "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var res benchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if res.Ops == 0 || res.Reads+res.Writes != res.Ops || res.Errors != 0 || res.OpsPerSec <= 0 {
		t.Fatalf("result %+v", res)
	}
	all := res.LatencyUS["all"]
	if all.Count != res.Ops || all.P50 <= 0 || all.P50 > all.P99 || all.P99 > all.Max {
		t.Fatalf("latency %+v", all)
	}

	out, _, code = runCLI(t, "", "bench", "--endpoints", f.addr, "--duration", "200ms", "--clients", "2", "--read-ratio", "1")
	if code != 0 || !strings.Contains(out, "throughput:") || !strings.Contains(out, "p99.9") {
		t.Fatalf("text output (exit %d): %q", code, out)
	}
}

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedisLog{})
	os.Exit(m.Run())
}
