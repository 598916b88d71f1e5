package client

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"

	"github.com/raftkv/raftkv/internal/proctest"
)

// fakeMember is a RESP server backed by a map, standing in for a raftkv
// member. hook, if set, sees every command first and may answer it itself.
type fakeMember struct {
	t    *testing.T
	addr string

	mu    sync.Mutex
	data  map[string]string
	calls map[string]int // command name -> times received
	hook  func(name string, args []string, conn redcon.Conn) bool
}

func newFakeMember(t *testing.T) *fakeMember {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMember{t: t, addr: ln.Addr().String(), data: map[string]string{}, calls: map[string]int{}}
	srv := redcon.NewServerNetwork("tcp", f.addr, f.handle, nil, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ln.Close() // not srv.Close: it fails if Serve has not stored the listener yet
		<-done
	})
	return f
}

func (f *fakeMember) setHook(h func(name string, args []string, conn redcon.Conn) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

func (f *fakeMember) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeMember) handle(conn redcon.Conn, cmd redcon.Command) {
	args := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		args[i] = string(a)
	}
	name := strings.ToUpper(args[0])
	f.mu.Lock()
	f.calls[name]++
	hook := f.hook
	f.mu.Unlock()
	if hook != nil && hook(name, args, conn) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch name {
	case "HELLO":
		conn.WriteError("ERR unknown command 'HELLO'") // a RESP2-only server
	case "PING":
		conn.WriteString("PONG")
	case "GET":
		if v, ok := f.data[args[1]]; ok {
			conn.WriteBulkString(v)
		} else {
			conn.WriteNull()
		}
	case "SET":
		f.data[args[1]] = args[2]
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
	case "INCR", "INCRBY":
		by := int64(1)
		if name == "INCRBY" {
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
	default:
		conn.WriteError("ERR unknown command '" + args[0] + "'")
	}
}

func newTestClient(t *testing.T, endpoints ...string) *Client {
	t.Helper()
	c, err := New(Config{Endpoints: endpoints, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestBasicCommands(t *testing.T) {
	f := newFakeMember(t)
	c := newTestClient(t, f.addr)
	ctx := context.Background()

	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing key: err = %v, want ErrNotFound", err)
	}
	if err := c.Set(ctx, "k", "v", 0); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v; want \"v\"", v, err)
	}
	if n, err := c.Incr(ctx, "n"); err != nil || n != 1 {
		t.Fatalf("Incr = %d, %v; want 1", n, err)
	}
	if n, err := c.IncrBy(ctx, "n", -5); err != nil || n != -4 {
		t.Fatalf("IncrBy = %d, %v; want -4", n, err)
	}
	keys, err := c.Keys(ctx, "*")
	if err != nil || len(keys) != 2 {
		t.Fatalf("Keys = %v, %v; want 2 keys", keys, err)
	}
	if n, err := c.Del(ctx, "k", "missing"); err != nil || n != 1 {
		t.Fatalf("Del = %d, %v; want 1", n, err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSetTTLSendsPX(t *testing.T) {
	f := newFakeMember(t)
	var got []string
	f.setHook(func(name string, args []string, conn redcon.Conn) bool {
		if name == "SET" {
			got = args
		}
		return false
	})
	c := newTestClient(t, f.addr)
	if err := c.Set(context.Background(), "k", "v", 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "SET k v PX 1500" {
		t.Fatalf("sent %q, want SET k v PX 1500", got)
	}
	if err := c.Set(context.Background(), "k", "v", -time.Second); err == nil {
		t.Fatal("negative ttl accepted")
	}
}

func TestWriteFailsOverWhenMemberUnreachable(t *testing.T) {
	f := newFakeMember(t)
	c := newTestClient(t, proctest.RefusedAddr(t), f.addr)
	// INCR is not idempotent, but a refused connection proves it was never sent.
	n, err := c.Incr(context.Background(), "n")
	if err != nil || n != 1 {
		t.Fatalf("Incr = %d, %v; want 1 via the second endpoint", n, err)
	}
	// The client now sticks to the endpoint that answered.
	if _, err := c.Incr(context.Background(), "n"); err != nil {
		t.Fatal(err)
	}
	if got := f.count("INCR"); got != 2 {
		t.Fatalf("live member saw %d INCRs, want 2", got)
	}
}

func TestTryAgainIsRetried(t *testing.T) {
	for _, code := range []string{"TRYAGAIN no leader", "CLUSTERDOWN no quorum"} {
		t.Run(code, func(t *testing.T) {
			f := newFakeMember(t)
			refusals := 3
			f.setHook(func(name string, args []string, conn redcon.Conn) bool {
				if name == "INCR" && refusals > 0 {
					refusals--
					conn.WriteError(code)
					return true
				}
				return false
			})
			c := newTestClient(t, f.addr)
			n, err := c.Incr(context.Background(), "n")
			if err != nil || n != 1 {
				t.Fatalf("Incr = %d, %v; want 1 after retries", n, err)
			}
			if got := f.count("INCR"); got != 4 {
				t.Fatalf("member saw %d INCRs, want 4 (3 refused + 1)", got)
			}
		})
	}
}

func TestLostAnswerToWriteIsNotResent(t *testing.T) {
	first, second := newFakeMember(t), newFakeMember(t)
	first.setHook(func(name string, args []string, conn redcon.Conn) bool {
		if name == "INCR" {
			conn.Close() // the command arrived; its answer never leaves
			return true
		}
		return false
	})
	c := newTestClient(t, first.addr, second.addr)
	_, err := c.Incr(context.Background(), "n")
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("err = %v, want ErrUnknownOutcome", err)
	}
	if first.count("INCR") != 1 || second.count("INCR") != 0 {
		t.Fatalf("INCR sent %d+%d times, want exactly once", first.count("INCR"), second.count("INCR"))
	}
}

func TestUnknownReplyIsUnknownOutcome(t *testing.T) {
	f := newFakeMember(t)
	f.setHook(func(name string, args []string, conn redcon.Conn) bool {
		if name == "SET" {
			conn.WriteError("UNKNOWN request timed out; the write may or may not be applied")
			return true
		}
		return false
	})
	c := newTestClient(t, f.addr, f.addr)
	err := c.Set(context.Background(), "k", "v", 0)
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("err = %v, want ErrUnknownOutcome", err)
	}
	if got := f.count("SET"); got != 1 {
		t.Fatalf("SET sent %d times, want 1", got)
	}
}

func TestLostAnswerToReadIsResent(t *testing.T) {
	first, second := newFakeMember(t), newFakeMember(t)
	first.setHook(func(name string, args []string, conn redcon.Conn) bool {
		if name == "GET" {
			conn.Close()
			return true
		}
		return false
	})
	second.data["k"] = "v"
	c := newTestClient(t, first.addr, second.addr)
	v, err := c.Get(context.Background(), "k")
	if err != nil || v != "v" {
		t.Fatalf("Get = %q, %v; want \"v\" from the second member", v, err)
	}
}

func TestReplyErrorIsFinal(t *testing.T) {
	first, second := newFakeMember(t), newFakeMember(t)
	first.data["k"] = "not a number"
	c := newTestClient(t, first.addr, second.addr)
	_, err := c.Incr(context.Background(), "k")
	var re *ReplyError
	if !errors.As(err, &re) || re.Code() != "ERR" || re.Endpoint != first.addr {
		t.Fatalf("err = %#v, want a *ReplyError ERR from %s", err, first.addr)
	}
	if second.count("INCR") != 0 {
		t.Fatal("a final error reply was retried on another member")
	}
}

func TestAllMembersDownIsUnavailable(t *testing.T) {
	c := newTestClient(t, proctest.RefusedAddr(t), proctest.RefusedAddr(t))
	start := time.Now()
	_, err := c.Get(context.Background(), "k")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q does not say why", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("giving up took %v", d)
	}
}

func TestContextCancelStopsRetrying(t *testing.T) {
	f := newFakeMember(t)
	f.setHook(func(name string, args []string, conn redcon.Conn) bool {
		if name == "GET" {
			conn.WriteError("TRYAGAIN no leader")
			return true
		}
		return false
	})
	c, err := New(Config{Endpoints: []string{f.addr}, MaxAttempts: 1000, MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = c.Get(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

func TestClosedClient(t *testing.T) {
	f := newFakeMember(t)
	c := newTestClient(t, f.addr)
	c.Close()
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no endpoints", Config{}, "no endpoints"},
		{"no port", Config{Endpoints: []string{"127.0.0.1"}}, "HOST:PORT"},
		{"bad port", Config{Endpoints: []string{"127.0.0.1:http"}}, "port"},
		{"port out of range", Config{Endpoints: []string{"127.0.0.1:70000"}}, "port"},
		{"negative timeout", Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: -1}, ">= 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestIsReadOnly(t *testing.T) {
	for cmd, want := range map[string]bool{"get": true, "MGET": true, "SET": false, "INCR": false, "DEL": false, "": false} {
		if got := IsReadOnly(strings.Fields(cmd)); got != want {
			t.Errorf("IsReadOnly(%q) = %v, want %v", cmd, got, want)
		}
	}
}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial to stderr; the tests assert on errors.
	redis.SetLogger(quietLog{})
	os.Exit(m.Run())
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

func TestWriteCutOffByDeadlineIsUnknownOutcome(t *testing.T) {
	f := newFakeMember(t)
	f.setHook(func(name string, args []string, conn redcon.Conn) bool {
		return name == "APPEND" // swallow it: no answer, like a member stuck mid-commit
	})
	c := newTestClient(t, f.addr, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, "APPEND", "k", "x")
	// The socket's read deadline (from ctx) may fire just before ctx reports
	// Err: either way, the write's outcome is unknown.
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("err = %v, want ErrUnknownOutcome", err)
	}
	if got := f.count("APPEND"); got != 1 {
		t.Fatalf("APPEND sent %d times, want 1", got)
	}
}
