package server

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

// splitArgs turns fuzz input into command arguments: NUL separates them.
func splitArgs(data []byte) [][]byte {
	if len(data) == 0 {
		return nil
	}
	return bytes.Split(data, []byte{0})
}

// FuzzExec drives the command dispatcher with arbitrary arguments: it must
// never panic, always produce a reply, and keep the kv store consistent
// (every reply is one the RESP writer can encode).
func FuzzExec(f *testing.F) {
	for _, seed := range []string{
		"SET\x00k\x00v", "SET\x00k\x00v\x00EX\x0010\x00NX\x00GET", "SET\x00k\x00v\x00PX\x00-1",
		"GET\x00k", "INCRBY\x00n\x009223372036854775807", "INCR\x00n", "DECRBY\x00n\x00-9223372036854775808",
		"MSET\x00a\x001\x00b", "MGET\x00a\x00b", "EXPIRE\x00a\x0010\x00GT\x00LT", "PEXPIRE\x00a\x00-5",
		"SCAN\x000\x00MATCH\x00*\x00COUNT\x005\x00TYPE\x00string", "KEYS\x00[a-", "CLIENT\x00SETNAME\x00x y",
		"HELLO\x003", "HELLO\x002\x00SETNAME\x00me", "COMMAND\x00INFO\x00get\x00nope", "SELECT\x0099",
		"APPEND\x00k\x00zz", "GETDEL\x00k", "FLUSHALL\x00ASYNC", "DEL\x00a\x00a\x00b", "TTL\x00k", "PING\x00x\x00y",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := newLocalNode(t)
		cfg := testConfig()
		cfg.MaxValueBytes = 64
		e := newExecutor(n, n.store, cfg, 7, newMetrics(nil))
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			args := splitArgs(line)
			if len(args) == 0 {
				continue
			}
			spec, name := lookup(args)
			var r reply
			if spec != nil && spec.flags&(flagRead|flagWrite) != 0 && spec.flags&flagConn == 0 {
				r = e.run(context.Background(), spec, name, args)
			} else {
				r, _ = e.runLocal(nil, spec, name, args)
			}
			if r == nil {
				t.Fatalf("no reply for %q", args)
			}
			var buf bytes.Buffer
			w := redcon.NewWriter(&buf)
			r.writeTo(w)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if er, ok := r.(errReply); ok && strings.ContainsAny(string(er), "\r\n") {
				t.Fatalf("error reply breaks framing: %q", er)
			}
		}
	})
}

// FuzzFrames feeds arbitrary bytes through the frame limiter and redcon's
// parser: no panic, bounded buffering, and every parsed command respects the
// limits.
func FuzzFrames(f *testing.F) {
	for _, seed := range []string{
		"*1\r\n$4\r\nPING\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n" + strings.Repeat("x", 100) + "\r\n",
		"PING\r\n", "*2\r\n$3\r\nGET\r\n$-1\r\n", "*99999999999\r\n", "$5\r\nhello\r\n", "*1\r\n$4\r\nPI",
		"\"unbalanced\r\n", "*0\r\n", "*-1\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxArgs, maxBulk = 8, 32
		rd := redcon.NewReader(newFrameLimiter(bytes.NewReader(data), maxArgs, maxBulk))
		for i := 0; i < 1000; i++ {
			cmds, err := rd.ReadCommands()
			if err != nil {
				return
			}
			for _, c := range cmds {
				if len(c.Args) > maxArgs+1 && !bytes.HasPrefix(data, []byte{'*'}) {
					continue // inline commands are bounded by line length instead
				}
				for _, a := range c.Args {
					if len(a) > maxInlineBytes {
						t.Fatalf("argument of %d bytes passed the limiter", len(a))
					}
				}
			}
		}
	})
}

// TestFrameLimiterPassesValidFrames: for frames within the limits, the
// limiter is the identity.
func TestFrameLimiterPassesValidFrames(t *testing.T) {
	var in bytes.Buffer
	for i := 0; i < 200; i++ {
		in.WriteString(respCmd("SET", strings.Repeat("k", i%7+1), strings.Repeat("v", i*3)))
		in.WriteString("PING\r\n")
	}
	// Read through the limiter in small, odd-sized chunks.
	l := newFrameLimiter(&in, 100, 1000)
	var out bytes.Buffer
	buf := make([]byte, 7)
	want := in.String()
	for {
		n, err := l.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != want {
		t.Fatalf("limiter changed valid input:\n got %q\nwant %q", out.String()[:100], want[:100])
	}
}
