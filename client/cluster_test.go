package client

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proctest"
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/server"
)

// startCluster starts three real members in this process (fast ticks, no
// fsync) and returns them with their RESP addresses.
func startCluster(t *testing.T) ([]*server.Member, []string) {
	t.Helper()
	dir := t.TempDir()
	var peers []server.Peer
	for i := 1; i <= 3; i++ {
		peers = append(peers, server.Peer{ID: pb.NodeID(i), PeerAddr: proctest.FreeAddr(t)})
	}
	var members []*server.Member
	var addrs []string
	for _, p := range peers {
		m, err := server.New(server.Config{
			ID: p.ID, DataDir: filepath.Join(dir, p.ID.String()), PeerAddr: p.PeerAddr,
			RedisAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", InitialCluster: peers,
			TickInterval: 10 * time.Millisecond, NoSync: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = m.Stop(ctx)
		})
		members = append(members, m)
		addrs = append(addrs, m.Addrs().Redis)
	}
	return members, addrs
}

// TestAgainstRealCluster checks the client's promises on real members: any
// member serves any command, a stopped member is skipped, and a cluster
// without quorum gives an error in bounded time, never a value.
func TestAgainstRealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-member cluster")
	}
	members, addrs := startCluster(t)
	c, err := New(Config{Endpoints: addrs, CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The first write may meet an election in progress: -TRYAGAIN is retried.
	if err := c.Set(ctx, "greeting", "hello", 0); err != nil {
		t.Fatalf("Set: %v", err)
	}
	for i := 1; i <= 5; i++ {
		n, err := c.Incr(ctx, "n")
		if err != nil || n != int64(i) {
			t.Fatalf("Incr #%d = %d, %v", i, n, err)
		}
	}

	// Stop the member the client is using; reads and then writes move on.
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	stopCtx, stopCancel := context.WithTimeout(ctx, 10*time.Second)
	if err := members[cur].Stop(stopCtx); err != nil {
		t.Fatalf("stop member %d: %v", cur+1, err)
	}
	stopCancel()
	if v, err := c.Get(ctx, "greeting"); err != nil || v != "hello" {
		t.Fatalf("Get after stopping member %d = %q, %v", cur+1, v, err)
	}
	if n, err := c.Incr(ctx, "n"); err != nil || n != 6 {
		t.Fatalf("Incr after stopping member %d = %d, %v; want 6", cur+1, n, err)
	}

	// Stop a second member: no quorum. Reads must fail, in bounded time.
	for i, m := range members {
		if i != cur {
			stopCtx, stopCancel := context.WithTimeout(ctx, 10*time.Second)
			_ = m.Stop(stopCtx)
			stopCancel()
			break
		}
	}
	readCtx, readCancel := context.WithTimeout(ctx, 20*time.Second)
	defer readCancel()
	start := time.Now()
	v, err := c.Get(readCtx, "greeting")
	if err == nil {
		t.Fatalf("Get without quorum = %q, want an error", v)
	}
	var re *ReplyError
	if !errors.Is(err, ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &re) {
		t.Fatalf("Get without quorum: unexpected error %v", err)
	}
	t.Logf("without quorum after %v: %v", time.Since(start).Round(time.Millisecond), err)
}
