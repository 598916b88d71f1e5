package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
)

// BenchmarkRESPPipelinedSet: the RESP front door's cost per SET when a
// client pipelines 16 of them (redis-benchmark -P 16), over loopback TCP,
// with Raft replaced by a node that applies at once. Compare commits with
// benchstat: ns/op is per command.
func BenchmarkRESPPipelinedSet(b *testing.B) {
	for _, depth := range []int{1, 16} {
		b.Run(fmt.Sprintf("P%d", depth), func(b *testing.B) {
			n := newLocalNode(b)
			addr, _ := startRESP(b, n, testConfig())
			c := newClient(b, addr)
			ctx := context.Background()
			val := strings.Repeat("v", 256)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += depth {
				p := c.Pipeline()
				for j := range min(depth, b.N-i) {
					p.Set(ctx, fmt.Sprintf("key:%d", (i+j)%10000), val, 0)
				}
				if _, err := p.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRESPPipelinedSetRaw is BenchmarkRESPPipelinedSet with a client
// that costs next to nothing (pre-encoded frames, replies only compared), so
// that the server's own cost dominates. Pipelines of 16 SETs of 256-byte
// values over 10,000 keys, as redis-benchmark -P 16 sends. cpu-ns/op is the
// process's CPU time per command (all threads). With 1 connection, ns/op is
// mostly the wait for each round trip; with 16 (redis-benchmark -c 16 -P 16)
// the server is busy, and ns/op shows its cost per command too.
func BenchmarkRESPPipelinedSetRaw(b *testing.B) {
	for _, conns := range []int{1, 16} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) { benchPipelinedSetRaw(b, conns) })
	}
}

func benchPipelinedSetRaw(b *testing.B, conns int) {
	const depth = 16
	n := newLocalNode(b)
	addr, _ := startRESP(b, n, testConfig())
	val := strings.Repeat("v", 256)
	var frames [][]byte // one pipeline per 16 keys, cycling
	for i := 0; i < 10000; i += depth {
		var p []byte
		for j := range depth {
			k := fmt.Sprintf("key:%d", i+j)
			p = fmt.Appendf(p, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(val), val)
		}
		frames = append(frames, p)
	}
	want := []byte(strings.Repeat("+OK\r\n", depth))
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { nc.Close() })
		ncs[i] = nc
	}
	b.SetBytes(int64(len(frames[0]) / depth))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	defer func() { b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op") }()
	// Connection c sends pipelines c, c+conns, c+2*conns... of the b.N/16.
	errs := make(chan error, conns)
	for c, nc := range ncs {
		go func() {
			rd := bufio.NewReader(nc)
			got := make([]byte, len(want))
			for i := c * depth; i < b.N; i += conns * depth {
				if _, err := nc.Write(frames[(i/depth)%len(frames)]); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(rd, got); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("replies %q, want %d OKs", got, depth)
					return
				}
			}
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

// processCPU returns the CPU time this process has used (user and system),
// in nanoseconds.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkFrameLimiter: parsing alone, per command, for pipelines of 16
// SETs of 256-byte values each arriving in one read (redis-benchmark -P 16
// -d 256), and for single commands (a client waiting for each reply).
func BenchmarkFrameLimiter(b *testing.B) {
	for _, depth := range []int{1, 16} {
		b.Run(fmt.Sprintf("P%d", depth), func(b *testing.B) {
			val := strings.Repeat("v", 256)
			var p []byte
			for j := range depth {
				k := fmt.Sprintf("key:%d", j)
				p = fmt.Appendf(p, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(val), val)
			}
			src := &repeatReader{p: p}
			l := newFrameLimiter(src, 1024, 512<<20)
			b.SetBytes(int64(len(p) / depth))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; {
				cmds, err := l.commands()
				if err != nil {
					b.Fatal(err)
				}
				if len(cmds) != depth || len(cmds[0].args) != 3 {
					b.Fatalf("%d commands of %d arguments, want %d of 3", len(cmds), len(cmds[0].args), depth)
				}
				i += len(cmds)
			}
		})
	}
}

// repeatReader returns p whole from every Read.
type repeatReader struct{ p []byte }

func (r *repeatReader) Read(b []byte) (int, error) { return copy(b, r.p), nil }
