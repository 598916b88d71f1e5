package transport

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Handler that records everything it is given.
type recorder struct {
	mu          sync.Mutex
	msgs        []raftpb.Message
	unreachable map[raftpb.NodeID]int
	snapReports []snapReport
	snapshots   []raftpb.Message
	snapErrs    []error

	count atomic.Int64 // messages stepped

	// Optional behaviour, set before use.
	onStep func(m raftpb.Message)                       // called before recording
	onSnap func(m raftpb.Message, data io.Reader) error // default: io.Copy to io.Discard
	noKeep bool                                         // count only, do not keep messages
}

func newRecorder() *recorder { return &recorder{unreachable: make(map[raftpb.NodeID]int)} }

func (r *recorder) Step(m raftpb.Message) {
	if r.onStep != nil {
		r.onStep(m)
	}
	if !r.noKeep {
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
	}
	r.count.Add(1)
}

func (r *recorder) ReceiveSnapshot(m raftpb.Message, data io.Reader) error {
	var err error
	if r.onSnap != nil {
		err = r.onSnap(m, data)
	} else {
		_, err = io.Copy(io.Discard, data)
	}
	r.mu.Lock()
	r.snapshots = append(r.snapshots, m)
	r.snapErrs = append(r.snapErrs, err)
	r.mu.Unlock()
	return err
}

func (r *recorder) ReportUnreachable(id raftpb.NodeID) {
	r.mu.Lock()
	r.unreachable[id]++
	r.mu.Unlock()
}

func (r *recorder) ReportSnapshot(id raftpb.NodeID, ok bool) {
	r.mu.Lock()
	r.snapReports = append(r.snapReports, snapReport{id, ok})
	r.mu.Unlock()
}

func (r *recorder) messages() []raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raftpb.Message(nil), r.msgs...)
}

func (r *recorder) unreachableCount(id raftpb.NodeID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *recorder) reports() []snapReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]snapReport(nil), r.snapReports...)
}

func (r *recorder) snapErrors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.snapErrs...)
}

// logBuffer is a concurrency-safe log sink for asserting what was logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// node is a started Transport with its recorder and log.
type node struct {
	*Transport
	id   raftpb.NodeID
	rec  *recorder
	logs *logBuffer
	addr string
}

const testCluster = 0xC1

// newNode starts a transport for id on a fresh 127.0.0.1 port; it is closed
// at the end of the test.
func newNode(t testing.TB, id raftpb.NodeID, opts ...func(*Config)) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startNode(t, id, ln, opts...)
}

func startNode(t testing.TB, id raftpb.NodeID, ln net.Listener, opts ...func(*Config)) *node {
	t.Helper()
	n := &node{id: id, rec: newRecorder(), logs: &logBuffer{}, addr: ln.Addr().String()}
	cfg := Config{ID: id, ClusterID: testCluster, Listener: ln, Handler: n.rec, Logger: n.logs.logger()}
	for _, o := range opts {
		o(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	n.Transport = tr
	tr.Start()
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("close %d: %v", id, err)
		}
		if t.Failed() {
			t.Logf("log of member %d:\n%s", id, n.logs.String())
		}
	})
	return n
}

// mesh makes every node a peer of every other and waits until all the
// streams are up.
func mesh(t testing.TB, nodes ...*node) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.AddPeer(b.id, b.addr)
			}
		}
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				waitConnected(t, a, b.id)
			}
		}
	}
}

func waitConnected(t testing.TB, a *node, to raftpb.NodeID) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d connected to %d", a.id, to), func() bool {
		return a.PeerStats()[to].Connected
	})
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// app builds a MsgApp from -> to carrying one entry of size bytes.
func app(from, to raftpb.NodeID, index int, size int) raftpb.Message {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(index + i)
	}
	return raftpb.Message{
		Type: raftpb.MsgApp, From: from, To: to, Term: 3, LogTerm: 3,
		Index: raftpb.Index(index), Commit: raftpb.Index(index),
		Entries: []raftpb.Entry{{Term: 3, Index: raftpb.Index(index + 1), Data: data}},
	}
}
