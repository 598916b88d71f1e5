package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/raftkv/raftkv/replica"
)

func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

func wantErr(t *testing.T, err error, prefix string) {
	t.Helper()
	if err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("error = %v, want prefix %q", err, prefix)
	}
}

// TestRESPCommands runs every contract command through go-redis against a
// one-member backend with the real kv store, checking Redis 7's replies.
func TestRESPCommands(t *testing.T) {
	n := newLocalNode(t)
	addr, _ := startRESP(t, n, testConfig())
	c := newClient(t, addr)
	ctx := context.Background()

	if s, err := c.Ping(ctx).Result(); err != nil || s != "PONG" {
		t.Fatalf("PING = %q, %v", s, err)
	}
	if s, err := c.Echo(ctx, "hi").Result(); err != nil || s != "hi" {
		t.Fatalf("ECHO = %q, %v", s, err)
	}
	if s, err := c.Set(ctx, "k", "v", 0).Result(); err != nil || s != "OK" {
		t.Fatalf("SET = %q, %v", s, err)
	}
	if s, err := c.Get(ctx, "k").Result(); err != nil || s != "v" {
		t.Fatalf("GET = %q, %v", s, err)
	}
	if _, err := c.Get(ctx, "missing").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing: %v, want nil", err)
	}
	if ok, err := c.SetNX(ctx, "k", "x", 0).Result(); err != nil || ok {
		t.Fatalf("SET NX existing = %v, %v", ok, err)
	}
	if ok, err := c.SetXX(ctx, "nx", "x", 0).Result(); err != nil || ok {
		t.Fatalf("SET XX missing = %v, %v", ok, err)
	}
	if s, err := c.Do(ctx, "SET", "k", "v2", "GET").Text(); err != nil || s != "v" {
		t.Fatalf("SET GET = %q, %v", s, err)
	}
	if err := c.Set(ctx, "t", "1", 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := c.TTL(ctx, "t").Result(); err != nil || d != 10*time.Second {
		t.Fatalf("TTL = %v, %v", d, err)
	}
	if d, err := c.PTTL(ctx, "t").Result(); err != nil || d <= 9*time.Second || d > 10*time.Second {
		t.Fatalf("PTTL = %v, %v", d, err)
	}
	if err := c.Do(ctx, "SET", "t", "2", "KEEPTTL").Err(); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.TTL(ctx, "t").Result(); d <= 0 {
		t.Fatalf("TTL after KEEPTTL = %v", d)
	}
	if ok, err := c.Persist(ctx, "t").Result(); err != nil || !ok {
		t.Fatalf("PERSIST = %v, %v", ok, err)
	}
	if d, _ := c.TTL(ctx, "t").Result(); d != -1 {
		t.Fatalf("TTL after PERSIST = %v, want -1", d)
	}
	if ok, err := c.Expire(ctx, "t", time.Minute).Result(); err != nil || !ok {
		t.Fatalf("EXPIRE = %v, %v", ok, err)
	}
	if ok, err := c.PExpire(ctx, "t", 90*time.Second).Result(); err != nil || !ok {
		t.Fatalf("PEXPIRE = %v, %v", ok, err)
	}
	if d, _ := c.TTL(ctx, "t").Result(); d != 90*time.Second {
		t.Fatalf("TTL after PEXPIRE = %v", d)
	}
	future := time.Now().Add(time.Hour)
	if err := c.Do(ctx, "SET", "at", "x", "PXAT", future.UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.TTL(ctx, "at").Result(); d < 59*time.Minute {
		t.Fatalf("TTL after PXAT = %v", d)
	}
	if err := c.Do(ctx, "SET", "at", "x", "EXAT", future.Unix()).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Do(ctx, "SETNX", "snx", "1").Int(); err != nil || ok != 1 {
		t.Fatalf("SETNX = %v, %v", ok, err)
	}
	if s, err := c.Do(ctx, "GETSET", "snx", "2").Text(); err != nil || s != "1" {
		t.Fatalf("GETSET = %q, %v", s, err)
	}
	if s, err := c.GetDel(ctx, "snx").Result(); err != nil || s != "2" {
		t.Fatalf("GETDEL = %q, %v", s, err)
	}
	if n, err := c.Exists(ctx, "k", "snx", "k").Result(); err != nil || n != 2 {
		t.Fatalf("EXISTS = %d, %v", n, err)
	}
	if n, err := c.Append(ctx, "ap", "ab").Result(); err != nil || n != 2 {
		t.Fatalf("APPEND = %d, %v", n, err)
	}
	if n, err := c.Append(ctx, "ap", "cd").Result(); err != nil || n != 4 {
		t.Fatalf("APPEND = %d, %v", n, err)
	}
	if n, err := c.StrLen(ctx, "ap").Result(); err != nil || n != 4 {
		t.Fatalf("STRLEN = %d, %v", n, err)
	}
	if n, err := c.Incr(ctx, "n").Result(); err != nil || n != 1 {
		t.Fatalf("INCR = %d, %v", n, err)
	}
	if n, err := c.IncrBy(ctx, "n", 10).Result(); err != nil || n != 11 {
		t.Fatalf("INCRBY = %d, %v", n, err)
	}
	if n, err := c.Decr(ctx, "n").Result(); err != nil || n != 10 {
		t.Fatalf("DECR = %d, %v", n, err)
	}
	if n, err := c.DecrBy(ctx, "n", 4).Result(); err != nil || n != 6 {
		t.Fatalf("DECRBY = %d, %v", n, err)
	}
	wantErr(t, c.Incr(ctx, "ap").Err(), "ERR value is not an integer or out of range")
	wantErr(t, c.Do(ctx, "INCRBY", "n", "1.5").Err(), "ERR value is not an integer or out of range")
	if err := c.MSet(ctx, "m1", "a", "m2", "b").Err(); err != nil {
		t.Fatal(err)
	}
	if vs, err := c.MGet(ctx, "m1", "nope", "m2").Result(); err != nil || vs[0] != "a" || vs[1] != nil || vs[2] != "b" {
		t.Fatalf("MGET = %v, %v", vs, err)
	}
	if err := c.Set(ctx, "empty", "", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if vs, err := c.MGet(ctx, "empty").Result(); err != nil || vs[0] != "" {
		t.Fatalf("MGET empty value = %#v, %v", vs, err)
	}
	if s, err := c.Type(ctx, "m1").Result(); err != nil || s != "string" {
		t.Fatalf("TYPE = %q, %v", s, err)
	}
	if s, err := c.Type(ctx, "nope").Result(); err != nil || s != "none" {
		t.Fatalf("TYPE missing = %q, %v", s, err)
	}
	if ks, err := c.Keys(ctx, "m*").Result(); err != nil || len(ks) != 2 {
		t.Fatalf("KEYS = %v, %v", ks, err)
	}
	all := map[string]bool{}
	var cursor uint64
	for i := 0; ; i++ {
		ks, next, err := c.Scan(ctx, cursor, "*", 2).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			all[k] = true
		}
		if next == 0 {
			break
		}
		cursor = next
		if i > 100 {
			t.Fatal("SCAN does not terminate")
		}
	}
	size, err := c.DBSize(ctx).Result()
	if err != nil || int(size) != len(all) {
		t.Fatalf("DBSIZE = %d, %v; SCAN saw %d keys", size, err, len(all))
	}
	if n, err := c.Del(ctx, "m1", "m2", "nope").Result(); err != nil || n != 2 {
		t.Fatalf("DEL = %d, %v", n, err)
	}
	if n, err := c.Unlink(ctx, "k").Result(); err != nil || n != 1 {
		t.Fatalf("UNLINK = %d, %v", n, err)
	}
	if s, err := c.FlushDB(ctx).Result(); err != nil || s != "OK" {
		t.Fatalf("FLUSHDB = %q, %v", s, err)
	}
	if err := c.Set(ctx, "x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if s, err := c.FlushAll(ctx).Result(); err != nil || s != "OK" {
		t.Fatalf("FLUSHALL = %q, %v", s, err)
	}
	if n, _ := c.DBSize(ctx).Result(); n != 0 {
		t.Fatalf("DBSIZE after FLUSHALL = %d", n)
	}
	if s, err := c.Info(ctx).Result(); err != nil || !strings.Contains(s, "redis_version") {
		t.Fatalf("INFO = %q, %v", s, err)
	}
	if n, err := c.Do(ctx, "COMMAND", "COUNT").Int(); err != nil || n != len(commandTable) {
		t.Fatalf("COMMAND COUNT = %d, %v", n, err)
	}
	if info, err := c.Command(ctx).Result(); err != nil || info["get"] == nil || info["get"].Arity != 2 {
		t.Fatalf("COMMAND = %v, %v", info["get"], err)
	}
	if err := c.Do(ctx, "CLIENT", "SETNAME", "me").Err(); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Do(ctx, "CLIENT", "GETNAME").Text(); err != nil || s != "me" {
		t.Fatalf("CLIENT GETNAME = %q, %v", s, err)
	}
	if err := c.Do(ctx, "SELECT", "0").Err(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, c.Do(ctx, "SELECT", "1").Err(), "ERR DB index is out of range")
	wantErr(t, c.Do(ctx, "HELLO", "3").Err(), "NOPROTO")
	if v, err := c.Do(ctx, "HELLO", "2").Slice(); err != nil || len(v) < 6 || v[5] != int64(2) {
		t.Fatalf("HELLO 2 = %v, %v", v, err)
	}
}

// TestRESPErrors checks Redis 7's error wording for bad input, and that the
// connection stays usable after each error.
func TestRESPErrors(t *testing.T) {
	n := newLocalNode(t)
	cfg := testConfig()
	cfg.MaxValueBytes = 1024
	addr, _ := startRESP(t, n, cfg)
	c := newClient(t, addr)
	c.Options().PoolSize = 1
	ctx := context.Background()
	cases := []struct {
		name string
		args []any
		want string
	}{
		{"get arity", []any{"GET"}, "ERR wrong number of arguments for 'get' command"},
		{"get arity 2", []any{"GET", "a", "b"}, "ERR wrong number of arguments for 'get' command"},
		{"set arity", []any{"SET", "a"}, "ERR wrong number of arguments for 'set' command"},
		{"mset odd", []any{"MSET", "a", "1", "b"}, "ERR wrong number of arguments for 'mset' command"},
		{"ping 3", []any{"PING", "a", "b"}, "ERR wrong number of arguments for 'ping' command"},
		{"unknown", []any{"FOO", "bar"}, "ERR unknown command 'FOO', with args beginning with: 'bar'"},
		{"set syntax", []any{"SET", "a", "b", "BOGUS"}, "ERR syntax error"},
		{"set nx xx", []any{"SET", "a", "b", "NX", "XX"}, "ERR syntax error"},
		{"set ex keepttl", []any{"SET", "a", "b", "EX", "10", "KEEPTTL"}, "ERR syntax error"},
		{"set ex missing", []any{"SET", "a", "b", "EX"}, "ERR syntax error"},
		{"set ex nonint", []any{"SET", "a", "b", "EX", "x"}, "ERR value is not an integer or out of range"},
		{"set ex zero", []any{"SET", "a", "b", "EX", "0"}, "ERR invalid expire time in 'set' command"},
		{"set px negative", []any{"SET", "a", "b", "PX", "-5"}, "ERR invalid expire time in 'set' command"},
		{"incrby nonint", []any{"INCRBY", "a", "x"}, "ERR value is not an integer or out of range"},
		{"expire nonint", []any{"EXPIRE", "a", "1x"}, "ERR value is not an integer or out of range"},
		{"expire nx xx", []any{"EXPIRE", "a", "10", "NX", "XX"}, "ERR NX and XX, GT or LT options at the same time are not compatible"},
		{"select nonint", []any{"SELECT", "x"}, "ERR value is not an integer or out of range"},
		{"scan cursor", []any{"SCAN", "x"}, "ERR invalid cursor"},
		{"scan count", []any{"SCAN", "0", "COUNT", "0"}, "ERR syntax error"},
		{"flushdb opt", []any{"FLUSHDB", "NOW"}, "ERR syntax error"},
		{"too large", []any{"SET", "a", strings.Repeat("x", 2000)}, "ERR value is too large"},
		{"client sub", []any{"CLIENT", "NOPE"}, "ERR unknown subcommand 'NOPE'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, c.Do(ctx, tc.args...).Err(), tc.want)
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatalf("connection not usable after the error: %v", err)
			}
		})
	}
	if _, err := c.Get(ctx, "a").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("a failed SET changed the data: GET a = %v", err)
	}
}

// rawConn speaks RESP by hand, for framing tests.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	rd *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc, rd: bufio.NewReader(nc)}
}

func (r *rawConn) send(s string) {
	if _, err := io.WriteString(r.nc, s); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) line() string {
	s, err := r.rd.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read reply: %v (got %q)", err, s)
	}
	return strings.TrimRight(s, "\r\n")
}

func respCmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// TestRESPPipelineOrder sends many pipelined commands in one write; replies
// must come back in order, and same-key commands must apply in order.
func TestRESPPipelineOrder(t *testing.T) {
	n := newLocalNode(t)
	addr, _ := startRESP(t, n, testConfig())
	r := dialRaw(t, addr)
	var b strings.Builder
	const N = 200
	for i := 0; i < N; i++ {
		b.WriteString(respCmd("INCR", "ctr"))
		b.WriteString(respCmd("SET", fmt.Sprintf("k%d", i), fmt.Sprint(i)))
		b.WriteString(respCmd("GET", fmt.Sprintf("k%d", i)))
	}
	b.WriteString(respCmd("DBSIZE"))
	r.send(b.String())
	for i := 0; i < N; i++ {
		if got, want := r.line(), fmt.Sprintf(":%d", i+1); got != want {
			t.Fatalf("INCR reply %d = %q, want %q", i, got, want)
		}
		if got := r.line(); got != "+OK" {
			t.Fatalf("SET reply %d = %q", i, got)
		}
		r.line() // $len
		if got := r.line(); got != fmt.Sprint(i) {
			t.Fatalf("GET k%d = %q", i, got)
		}
	}
	if got := r.line(); got != fmt.Sprintf(":%d", N+1) {
		t.Fatalf("DBSIZE after the pipeline = %q, want :%d", got, N+1)
	}
}

// TestRESPOversizedBulkDiscarded: a bulk far over the limit is answered with
// an error without being buffered, and the connection stays usable.
func TestRESPOversizedBulkDiscarded(t *testing.T) {
	n := newLocalNode(t)
	cfg := testConfig()
	cfg.MaxValueBytes = 16
	addr, _ := startRESP(t, n, cfg)
	r := dialRaw(t, addr)
	big := strings.Repeat("z", 1<<20)
	r.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$" + fmt.Sprint(len(big)) + "\r\n" + big + "\r\n")
	if got := r.line(); !strings.HasPrefix(got, "-ERR value is too large") {
		t.Fatalf("reply = %q", got)
	}
	r.send(respCmd("PING"))
	if got := r.line(); got != "+PONG" {
		t.Fatalf("PING after oversized value = %q", got)
	}
	if n.applied != 0 {
		t.Fatalf("%d proposals applied, want 0", n.applied)
	}
}

// TestRESPMalformedFrameClosesOnlyThatConnection.
func TestRESPMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	n := newLocalNode(t)
	cfg := testConfig()
	cfg.MaxArgs = 8
	addr, _ := startRESP(t, n, cfg)
	other := dialRaw(t, addr)
	// The commands before the bad frame, in the same write, are still
	// answered: one PING, or a pipeline longer than one parser read.
	pipeline := strings.Repeat(respCmd("SET", "k", strings.Repeat("v", 256)), 16)
	for _, bad := range []string{"*2\r\n$3\r\nGET\r\n$-5\r\n", "*1\r\n+PING\r\n", "*100\r\n", "*abc\r\n", "*1\r\n$4\r\nPINGxx", "*0\r\n"} {
		for _, before := range []struct{ cmds, reply string }{{respCmd("PING"), "+PONG"}, {pipeline, "+OK"}} {
			r := dialRaw(t, addr)
			r.send(before.cmds + bad)
			for range strings.Count(before.cmds, "*") {
				if got := r.line(); got != before.reply {
					t.Fatalf("%q: reply before the bad frame = %q, want %q", bad, got, before.reply)
				}
			}
			if got := r.line(); !strings.HasPrefix(got, "-ERR Protocol error") {
				t.Fatalf("%q: reply = %q, want a protocol error", bad, got)
			}
			if _, err := r.rd.ReadByte(); err == nil {
				t.Fatalf("%q: connection still open after a protocol error", bad)
			}
		}
	}
	other.send(respCmd("PING"))
	if got := other.line(); got != "+PONG" {
		t.Fatalf("other connection: %q", got)
	}
}

// TestRESPClusterErrors: no leader and unknown outcomes become the
// contract's error replies within the request deadline.
func TestRESPClusterErrors(t *testing.T) {
	n := newLocalNode(t)
	cfg := testConfig()
	cfg.RequestTimeout = 300 * time.Millisecond
	addr, _ := startRESP(t, n, cfg)
	c := newClient(t, addr)
	ctx := context.Background()

	n.read = func() error { return replica.ErrNoLeader }
	n.propose = func([]byte) (any, error) { return nil, replica.ErrProposalDropped }
	start := time.Now()
	wantErr(t, c.Get(ctx, "a").Err(), "CLUSTERDOWN")
	wantErr(t, c.Set(ctx, "a", "1", 0).Err(), "CLUSTERDOWN")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("errors took %v, want about 2 request timeouts", d)
	}
	n.propose = func([]byte) (any, error) { return nil, fmt.Errorf("lost leadership: %w", replica.ErrOutcomeUnknown) }
	wantErr(t, c.Set(ctx, "a", "1", 0).Err(), "UNKNOWN")
	n.propose = func([]byte) (any, error) { return nil, replica.ErrBusy }
	wantErr(t, c.Set(ctx, "a", "1", 0).Err(), "TRYAGAIN")
}

// TestRESPRetryIsExactlyOnce: when the first attempt's outcome is unknown
// but it did apply, the server's retry (same session and seq) is answered
// from the dedup table: INCR applies once and the client gets its result.
func TestRESPRetryIsExactlyOnce(t *testing.T) {
	n := newLocalNode(t)
	addr, _ := startRESP(t, n, testConfig())
	c := newClient(t, addr)
	ctx := context.Background()
	attempts := 0
	n.propose = func(data []byte) (any, error) {
		attempts++
		res, err := n.apply(data)
		if attempts == 1 {
			return nil, replica.ErrOutcomeUnknown // applied, but the proposer could not tell
		}
		return res, err
	}
	if v, err := c.Incr(ctx, "ctr").Result(); err != nil || v != 1 {
		t.Fatalf("INCR = %d, %v, want 1", v, err)
	}
	n.propose = nil
	if v, err := c.Get(ctx, "ctr").Result(); err != nil || v != "1" {
		t.Fatalf("GET = %q, %v, want 1 (the retried INCR applied twice?)", v, err)
	}
	if attempts != 2 {
		t.Fatalf("attempts = %d, want 2", attempts)
	}
}

// TestRESPStaleReadsOptIn: by default a read waits for the ReadIndex
// barrier (and fails without a leader); with StaleReads it answers locally.
func TestRESPStaleReadsOptIn(t *testing.T) {
	for _, stale := range []bool{false, true} {
		n := newLocalNode(t)
		cfg := testConfig()
		cfg.RequestTimeout = 200 * time.Millisecond
		cfg.StaleReads = stale
		addr, _ := startRESP(t, n, cfg)
		c := newClient(t, addr)
		if err := c.Set(context.Background(), "a", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		n.read = func() error { return replica.ErrNoLeader }
		v, err := c.Get(context.Background(), "a").Result()
		if stale && (err != nil || v != "1") {
			t.Fatalf("stale read = %q, %v", v, err)
		}
		if !stale && (err == nil || !strings.HasPrefix(err.Error(), "CLUSTERDOWN")) {
			t.Fatalf("linearizable read without a leader = %q, %v; want CLUSTERDOWN", v, err)
		}
	}
}

// TestRESPPipelinedWritesShareOneEntry: a pipeline of writes is proposed
// as few entries (one per run between other commands), each command still
// gets its own reply in order, and a write with bad syntax in the middle is
// answered on its own without affecting the writes around it.
func TestRESPPipelinedWritesShareOneEntry(t *testing.T) {
	n := newLocalNode(t)
	addr, _ := startRESP(t, n, testConfig())
	r := dialRaw(t, addr)
	const N = 64
	var b strings.Builder
	for i := range N {
		b.WriteString(respCmd("INCR", "ctr"))
		if i == N/2 {
			b.WriteString(respCmd("SET", "k", "v", "EX", "soon"))
		}
	}
	r.send(b.String())
	for i := range N {
		if got, want := r.line(), fmt.Sprintf(":%d", i+1); got != want {
			t.Fatalf("INCR reply %d = %q, want %q", i, got, want)
		}
		if i == N/2 {
			if got := r.line(); !strings.HasPrefix(got, "-ERR value is not an integer") {
				t.Fatalf("SET with a bad EX = %q, want the not-an-integer error", got)
			}
		}
	}
	n.mu.Lock()
	entries := n.applied
	n.mu.Unlock()
	if entries >= N {
		t.Fatalf("%d pipelined writes took %d entries, want them batched", N, entries)
	}
	if v, _ := n.store.Get([]byte("k"), time.Now().UnixMilli()); v != nil {
		t.Fatalf("the malformed SET wrote k = %q", v)
	}
}

// TestRESPPipelineLongerThanAReadIsOneEntry: redis-benchmark -P 16 -d 256
// sends 4.8 KiB per pipeline, more than redcon's reader took in one read
// (4 KiB), which made it two entries. What arrived together is proposed
// together.
func TestRESPPipelineLongerThanAReadIsOneEntry(t *testing.T) {
	n := newLocalNode(t)
	addr, _ := startRESP(t, n, testConfig())
	r := dialRaw(t, addr)
	val := strings.Repeat("v", 256)
	for round := range 3 {
		var b strings.Builder
		for i := range 16 {
			b.WriteString(respCmd("SET", fmt.Sprintf("key:%012d", i), val))
		}
		n.mu.Lock()
		before := n.applied
		n.mu.Unlock()
		r.send(b.String())
		for i := range 16 {
			if got := r.line(); got != "+OK" {
				t.Fatalf("round %d: SET reply %d = %q", round, i, got)
			}
		}
		n.mu.Lock()
		entries := n.applied - before
		n.mu.Unlock()
		if entries != 1 {
			t.Fatalf("round %d: a %d-byte pipeline of 16 SETs took %d entries, want 1", round, b.Len(), entries)
		}
	}
}

// TestRESPBatchRetryIsExactlyOnce: a batch whose first attempt applied but
// whose outcome was unknown is proposed again, and the dedup table answers
// every command in it from the first application.
func TestRESPBatchRetryIsExactlyOnce(t *testing.T) {
	n := newLocalNode(t)
	addr, _ := startRESP(t, n, testConfig())
	r := dialRaw(t, addr)
	var attempts atomic.Int32
	n.propose = func(data []byte) (any, error) {
		res, err := n.apply(data)
		if attempts.Add(1) == 1 {
			return nil, replica.ErrOutcomeUnknown // applied, but the proposer could not tell
		}
		return res, err
	}
	r.send(respCmd("INCR", "ctr") + respCmd("INCR", "ctr") + respCmd("APPEND", "s", "x"))
	for _, want := range []string{":1", ":2", ":1"} {
		if got := r.line(); got != want {
			t.Fatalf("reply %q, want %q", got, want)
		}
	}
	now := time.Now().UnixMilli()
	if v, _ := n.store.Get([]byte("ctr"), now); string(v) != "2" {
		t.Fatalf("ctr = %q, want 2 (a retried INCR applied twice?)", v)
	}
	if v, _ := n.store.Get([]byte("s"), now); string(v) != "x" {
		t.Fatalf("s = %q, want x", v)
	}
}

// TestSeqTrackerAck: the acknowledgement is the lowest seq still in flight,
// whatever order proposals finish in.
func TestSeqTrackerAck(t *testing.T) {
	tr := seqTracker{low: 1, live: map[uint64]struct{}{}}
	a, ack := tr.take(1) // 1
	if a != 1 || ack != 1 {
		t.Fatalf("take = %d, ack %d; want 1, 1", a, ack)
	}
	b, _ := tr.take(3) // 2, 3, 4
	c, _ := tr.take(1) // 5
	tr.done(b, 3)
	if _, ack := tr.take(0); ack != 1 {
		t.Fatalf("ack %d with seq 1 in flight, want 1", ack)
	}
	tr.done(a, 1)
	if _, ack := tr.take(0); ack != c {
		t.Fatalf("ack %d with only seq %d in flight, want %d", ack, c, c)
	}
	tr.done(c, 1)
	if d, ack := tr.take(1); d != 6 || ack != 6 {
		t.Fatalf("take = %d, ack %d after everything resolved; want 6, 6", d, ack)
	}
}

// TestWritesKeepDedupTableSmall: the server acknowledges its resolved
// proposals, so after many writes the store remembers only a handful
// instead of every write of the dedup window.
func TestWritesKeepDedupTableSmall(t *testing.T) {
	n := newLocalNode(t)
	addr, _ := startRESP(t, n, testConfig())
	c := newClient(t, addr)
	ctx := context.Background()
	for i := range 500 {
		if err := c.Set(ctx, fmt.Sprint("k", i%7), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.store.Stats().DedupEntries; got > 2 {
		t.Fatalf("dedup table holds %d entries after 500 sequential writes, want at most 2", got)
	}
}

// TestRESPLoneCommandWaitsForEarlierReplies: a command read on its own is
// answered straight from the reader only when nothing earlier is still
// unanswered; behind a pipeline in flight it takes its turn.
func TestRESPLoneCommandWaitsForEarlierReplies(t *testing.T) {
	n := newLocalNode(t)
	proposing, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	n.propose = func(data []byte) (any, error) {
		once.Do(func() {
			close(proposing)
			<-release
		})
		return n.apply(data)
	}
	reading := make(chan struct{}, 1)
	n.read = func() error {
		select {
		case reading <- struct{}{}:
		default:
		}
		return nil
	}
	addr, _ := startRESP(t, n, testConfig())
	r := dialRaw(t, addr)
	r.send(respCmd("SET", "a", "1") + respCmd("INCR", "c"))
	<-proposing // the pipeline's proposal is in flight
	r.send(respCmd("GET", "b"))
	<-reading // the lone GET has run; its reply must still wait
	close(release)
	for _, want := range []string{"+OK", ":1", "$-1"} {
		if got := r.line(); got != want {
			t.Fatalf("reply line %q, want %q (replies out of order?)", got, want)
		}
	}
	// Now idle: a lone command is answered at once, and the next after it.
	r.send(respCmd("INCR", "c"))
	if got := r.line(); got != ":2" {
		t.Fatalf("INCR c = %q, want :2", got)
	}
	r.send(respCmd("GET", "c"))
	if got := r.line() + r.line(); got != "$12" {
		t.Fatalf("GET c = %q, want $1 2", got)
	}
}
