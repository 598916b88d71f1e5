package server

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"slices"
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

// FuzzFrames feeds arbitrary bytes to the frame limiter. Within generous
// limits it must parse as redcon's reader does (the same commands, and a
// protocol error wherever redcon finds one), except that it may refuse
// earlier, with a protocol error (its header and inline line limits), and
// keeps the commands redcon drops before a malformed frame; with small
// limits, every command it returns respects them.
func FuzzFrames(f *testing.F) {
	for _, seed := range []string{
		"*1\r\n$4\r\nPING\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n" + strings.Repeat("x", 100) + "\r\n",
		"PING\r\n", "*2\r\n$3\r\nGET\r\n$-1\r\n", "*99999999999\r\n", "$5\r\nhello\r\n", "*1\r\n$4\r\nPI",
		"\"unbalanced\r\n", "*0\r\n", "*-1\r\n", "   \r\nset 'a b' \"c\\td\"\r\n\r\nGET x\n", "*1\r\n$0\r\n\r\n",
		strings.Repeat("*2\r\n$3\r\nGET\r\n$300\r\n"+strings.Repeat("k", 300)+"\r\n", 20),
	} {
		f.Add([]byte(seed))
	}
	hugeCount := regexp.MustCompile(`\*\+?0*[1-9][0-9]{6}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLimits(t, data)
		if hugeCount.Match(data) {
			// redcon loops over a multibulk's announced count before it
			// has the bytes (the limiter refuses that count at once).
			return
		}
		got, gotErr := limiterParse(data, 1<<20, 1<<30)
		// Read a few bytes at a time, commands arrive cut: the limiter
		// follows them byte by byte instead of taking each whole.
		cut, cutErr := limiterRead(oddReader{bytes.NewReader(data), 1 + len(data)%7}, 1<<20, 1<<30)
		if !slices.EqualFunc(cut, got, func(a, b [][]byte) bool { return slices.EqualFunc(a, b, bytes.Equal) }) ||
			isProtocolError(cutErr) != isProtocolError(gotErr) {
			t.Fatalf("read whole: %q, %v; read cut: %q, %v", got, gotErr, cut, cutErr)
		}
		var want [][][]byte
		var wantErr error
		rd := redcon.NewReader(bytes.NewReader(data))
		for wantErr == nil {
			var cmds []redcon.Command
			cmds, wantErr = rd.ReadCommands()
			for _, c := range cmds {
				want = append(want, c.Args)
			}
		}
		if len(got) > len(want) {
			// redcon drops the commands it parsed from the same read as
			// a malformed frame; the limiter returns them first.
			if !isProtocolError(wantErr) || !isProtocolError(gotErr) {
				t.Fatalf("limiter parsed %d commands (%v), redcon %d (%v)", len(got), gotErr, len(want), wantErr)
			}
			got = got[:len(want)]
		}
		for i := range got {
			if !slices.EqualFunc(got[i], want[i], bytes.Equal) {
				t.Fatalf("command %d: limiter %q, redcon %q", i, got[i], want[i])
			}
		}
		if len(got) < len(want) && !isProtocolError(gotErr) {
			t.Fatalf("limiter stopped after %d of %d commands with %v", len(got), len(want), gotErr)
		}
		if len(got) == len(want) && isProtocolError(wantErr) && !isProtocolError(gotErr) {
			t.Fatalf("redcon: %v after %d commands; limiter: %v", wantErr, len(got), gotErr)
		}

	})
}

// checkLimits: every command the limiter reads from data is within its
// limits, as a multibulk (few arguments, none oversized but the marker) or
// as an inline line (short).
func checkLimits(t *testing.T, data []byte) {
	const maxArgs, maxBulk = 8, 32
	cmds, _ := limiterParse(data, maxArgs, maxBulk)
	for _, args := range cmds {
		total, multibulk := 0, len(args) <= maxArgs
		for _, a := range args {
			total += len(a)
			multibulk = multibulk && (len(a) <= maxBulk || bytes.Equal(a, tooLargeMarker))
		}
		if !multibulk && total > maxInlineBytes {
			t.Fatalf("a command of %d arguments, %d bytes, passed the limiter", len(args), total)
		}
	}
}

// limiterParse returns every command the frame limiter reads from data, and
// the error that ended it.
func limiterParse(data []byte, maxArgs, maxBulk int) ([][][]byte, error) {
	return limiterRead(bytes.NewReader(data), maxArgs, maxBulk)
}

func limiterRead(src io.Reader, maxArgs, maxBulk int) ([][][]byte, error) {
	l := newFrameLimiter(src, maxArgs, maxBulk)
	var all [][][]byte
	for {
		cmds, err := l.commands()
		if err != nil {
			return all, err
		}
		for _, c := range cmds {
			all = append(all, c.args)
		}
	}
}

// oddReader returns at most n bytes per Read.
type oddReader struct {
	r io.Reader
	n int
}

func (o oddReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), o.n)]) }

// TestFrameLimiterParsesValidFrames: frames within the limits come out as
// their arguments, whatever the reads' sizes.
func TestFrameLimiterParsesValidFrames(t *testing.T) {
	var in bytes.Buffer
	var want [][][]byte
	for i := 0; i < 200; i++ {
		k, v := strings.Repeat("k", i%7+1), strings.Repeat("v", i*3)
		in.WriteString(respCmd("SET", k, v))
		in.WriteString("PING\r\n")
		in.WriteString(" \r\n") // a line of spaces is no command
		in.WriteString("echo  'a b'  \"c\\td\"\n")
		want = append(want, [][]byte{[]byte("SET"), []byte(k), []byte(v)}, [][]byte{[]byte("PING")},
			[][]byte{[]byte("echo"), []byte("a b"), []byte("c\td")})
	}
	data := in.Bytes()
	for _, chunk := range []int{1, 7, 4096, len(data)} {
		l := newFrameLimiter(oddReader{bytes.NewReader(data), chunk}, 100, 1000)
		var got [][][]byte
		for {
			cmds, err := l.commands()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chunks of %d: %v", chunk, err)
			}
			for _, c := range cmds {
				got = append(got, c.args)
				if c.size <= 0 {
					t.Fatalf("chunks of %d: command %d has size %d", chunk, len(got), c.size)
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("chunks of %d: %d commands, want %d", chunk, len(got), len(want))
		}
		for i := range got {
			if !slices.EqualFunc(got[i], want[i], bytes.Equal) {
				t.Fatalf("chunks of %d: command %d = %q, want %q", chunk, i, got[i], want[i])
			}
		}
	}
}
