package server

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// localNode is a one-member "cluster" for unit tests: Propose applies the
// data to a real kv.Store at once, ReadIndex always succeeds. Hooks let a
// test inject errors.
type localNode struct {
	mu      sync.Mutex
	store   *kv.Store
	index   pb.Index
	propose func(data []byte) (any, error) // if set, replaces the default
	read    func() error
	applied int
}

func newLocalNode(t testing.TB) *localNode {
	s, err := kv.New(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &localNode{store: s}
}

func (n *localNode) apply(data []byte) (any, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.index++
	n.applied++
	res, err := n.store.Apply([]pb.Entry{{Index: n.index, Term: 1, Data: append([]byte(nil), data...)}})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

func (n *localNode) Propose(ctx context.Context, data []byte) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n.propose != nil {
		return n.propose(data)
	}
	return n.apply(data)
}

func (n *localNode) ReadIndex(ctx context.Context) error {
	if n.read != nil {
		return n.read()
	}
	return ctx.Err()
}

func testConfig() Config {
	return Config{ID: 1, DataDir: "unused", PeerAddr: "127.0.0.1:0", RedisAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		InitialCluster: []Peer{{ID: 1, PeerAddr: "127.0.0.1:0"}}, RequestTimeout: 2 * time.Second}.WithDefaults()
}

// startRESP serves RESP on a loopback port backed by n, until the test ends.
func startRESP(t testing.TB, n *localNode, cfg Config) (string, *executor) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newExecutor(n, n.store, cfg, 42, newMetrics(nil))
	e.info = func() string { return "# Server\r\nredis_version:7.0.0\r\n" }
	s := newRESPServer(e, cfg, ln)
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return ln.Addr().String(), e
}
