package transport

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// countHandler counts delivered messages and lets a sender wait for a count
// without polling.
type countHandler struct {
	n      atomic.Int64
	target atomic.Int64
	mu     sync.Mutex
	cond   *sync.Cond
}

func newCountHandler() *countHandler {
	h := &countHandler{}
	h.cond = sync.NewCond(&h.mu)
	h.target.Store(1 << 62)
	return h
}

func (h *countHandler) Step(raftpb.Message) {
	if h.n.Add(1) >= h.target.Load() {
		h.mu.Lock()
		h.cond.Broadcast()
		h.mu.Unlock()
	}
}

// waitAtLeast blocks until n messages have been delivered.
func (h *countHandler) waitAtLeast(n int64) {
	if h.n.Load() >= n {
		return
	}
	h.target.Store(n)
	h.mu.Lock()
	for h.n.Load() < n {
		h.cond.Wait()
	}
	h.mu.Unlock()
}

func (h *countHandler) ReceiveSnapshot(_ raftpb.Message, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (h *countHandler) ReportUnreachable(raftpb.NodeID)    {}
func (h *countHandler) ReportSnapshot(raftpb.NodeID, bool) {}

// BenchmarkSend measures delivered messages per second over loopback TCP,
// from Send to the receiver's Handler.Step, for MsgApp of one 256-byte
// entry, sent one per Send call or in batches. The sender keeps at most
// half a queue in flight, so nothing is dropped: this is throughput, not
// drop rate.
//
//	go test ./transport -run '^$' -bench BenchmarkSend -benchtime 200000x
func BenchmarkSend(b *testing.B) {
	for _, bc := range []struct {
		perSend, entrySize int
		tls                bool
	}{{1, 256, false}, {64, 256, false}, {64, 4096, false}, {64, 256, true}} {
		name := fmt.Sprintf("batch=%d/entry=%dB", bc.perSend, bc.entrySize)
		if bc.tls {
			name = "tls/" + name
		}
		b.Run(name, func(b *testing.B) {
			h := newCountHandler()
			var optA, optR []func(*Config)
			if bc.tls {
				ca := newTestCA(b, "bench-ca")
				optA = append(optA, withTLS(ca.config(b, "a")))
				optR = append(optR, withTLS(ca.config(b, "r")))
			}
			a := newNode(b, 1, optA...)
			r := newNode(b, 2, append(optR, func(c *Config) { c.Handler = h })...)
			mesh(b, a, r)
			m := app(1, 2, 1, bc.entrySize)
			enc, _, err := appendMessage(nil, &m)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(enc)))
			batch := make([]raftpb.Message, bc.perSend)
			for i := range batch {
				batch[i] = m
			}
			window := int64(DefaultQueueSize / 2)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var sent int64
			for sent < int64(b.N) {
				n := min(int64(bc.perSend), int64(b.N)-sent)
				h.waitAtLeast(sent + n - window)
				a.Send(batch[:n])
				sent += n
			}
			h.waitAtLeast(int64(b.N))
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			st := a.PeerStats()[2]
			if st.Dropped != 0 {
				b.Fatalf("%d messages dropped", st.Dropped)
			}
			b.ReportMetric(float64(b.N)/float64(max(st.FramesSent, 1)), "msgs/frame")
		})
	}
}

// echoHandler answers every MsgHeartbeat with a MsgHeartbeatResp.
type echoHandler struct {
	countHandler
	t atomic.Pointer[Transport]
}

func (h *echoHandler) Step(m raftpb.Message) {
	if m.Type == raftpb.MsgHeartbeat {
		h.t.Load().Send([]raftpb.Message{{Type: raftpb.MsgHeartbeatResp, From: m.To, To: m.From, Term: m.Term}})
	}
}

// BenchmarkRoundTrip measures one message there and its answer back over
// loopback, one at a time: the latency floor the transport adds to a
// replication round (no batching can help here).
//
//	go test ./transport -run '^$' -bench BenchmarkRoundTrip -benchtime 20000x
func BenchmarkRoundTrip(b *testing.B) {
	back := newCountHandler()
	echo := &echoHandler{}
	a := newNode(b, 1, func(c *Config) { c.Handler = back })
	r := newNode(b, 2, func(c *Config) { c.Handler = echo })
	echo.t.Store(r.Transport)
	mesh(b, a, r)
	hb := []raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 1}}
	b.ResetTimer()
	for i := range b.N {
		a.Send(hb)
		back.waitAtLeast(int64(i + 1))
	}
}
