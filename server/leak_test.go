package server

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/proctest"
)

// TestMemberStopLeaksNoGoroutine: Start then Stop of a one-member cluster,
// with a client connected that has pipelined commands, leaves no goroutine
// behind.
func TestMemberStopLeaksNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ports := proctest.FreeAddrs(t, 3)
	m, err := New(Config{ID: 1, DataDir: t.TempDir(), PeerAddr: ports[0], RedisAddr: ports[1], HTTPAddr: ports[2],
		InitialCluster: []Peer{{1, ports[0]}}, TickInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, m.Addrs().Redis)
	r.send(respCmd("SET", "a", "1"))
	if got := r.line(); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	// A pipeline runs on a pooled worker goroutine (runAfter), which Stop
	// must end too.
	r.send(respCmd("SET", "b", "2") + respCmd("SET", "c", "3"))
	for range 2 {
		if got := r.line(); got != "+OK" {
			t.Fatalf("pipelined SET = %q", got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := m.Start(); err == nil {
		t.Fatal("Start after Stop succeeded")
	}
	r.nc.Close()
}
