package replica

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proctest"
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/transport"
)

var _ transport.Handler = (*Replica)(nil)

// newTCPCluster is a cluster whose members talk through real transports
// over loopback TCP and persist to storages made by newStorage.
func newTCPCluster(t testing.TB, size int, tweak func(*Config), newStorage func(id pb.NodeID) Storage) *cluster {
	c := newMemCluster(t, size, tweak)
	c.newStorage = newStorage
	c.reopen = true
	for i := range c.peers {
		// Reserved for the whole test: a restarted member listens there again.
		c.peers[i].Addr = proctest.FreeAddr(t)
	}
	c.attach = func(n *node) (Sender, error) {
		addr := ""
		for _, p := range c.peers {
			if p.ID == n.id {
				addr = p.Addr
			}
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		tr, err := transport.New(transport.Config{ID: n.id, ClusterID: 42, Listener: ln, Handler: n.proxy})
		if err != nil {
			ln.Close()
			return nil, err
		}
		for _, p := range c.peers {
			if p.ID != n.id {
				tr.AddPeer(p.ID, p.Addr)
			}
		}
		tr.Start()
		n.close = func() { tr.Close() }
		return tr, nil
	}
	return c
}

func TestTCPClusterElectsReplicatesAndSurvivesAMinority(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d members", size), func(t *testing.T) {
			c := newTCPCluster(t, size, nil, storageForTests(t))
			c.startAll()
			defer c.stopAll()
			lead := c.waitLeader()
			var vs []string
			for i := range 20 {
				v := fmt.Sprintf("v%d", i)
				c.propose(pb.NodeID(i%size+1), v)
				vs = append(vs, v)
			}
			c.waitApplied(vs...)

			// Kill a minority (the leader among them): the rest elects and commits.
			down := []pb.NodeID{lead}
			for _, p := range c.peers {
				if len(down) < (size-1)/2 && p.ID != lead {
					down = append(down, p.ID)
				}
			}
			for _, id := range down {
				c.kill(id)
			}
			newLead := c.waitLeader()
			for i := range 10 {
				v := fmt.Sprintf("w%d", i)
				c.propose(newLead, v)
				vs = append(vs, v)
			}
			// Restart them from their data: they catch up.
			for _, id := range down {
				c.start(id)
			}
			c.waitApplied(vs...)
			c.checkSameLog()
		})
	}
}

func TestTCPPartitionedLeaderStepsDownAndRejoins(t *testing.T) {
	c := newTCPCluster(t, 3, nil, storageForTests(t))
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "a")
	c.isolate(lead)
	var others []pb.NodeID
	for _, p := range c.peers {
		if p.ID != lead {
			others = append(others, p.ID)
		}
	}
	newLead := c.waitLeader(others...)
	c.propose(newLead, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.node(lead).r.ReadIndex(ctx); err == nil {
		t.Fatal("cut-off old leader served a linearizable read")
	}
	c.heal()
	c.waitApplied("a", "b")
	c.checkSameLog()
}

// latencies collects per-proposal latencies from many goroutines.
type latencies struct {
	mu sync.Mutex
	ds []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.ds = append(l.ds, d...)
	l.mu.Unlock()
}

func (l *latencies) quantile(q float64) time.Duration {
	if len(l.ds) == 0 {
		return 0
	}
	sort.Slice(l.ds, func(i, j int) bool { return l.ds[i] < l.ds[j] })
	return l.ds[min(len(l.ds)-1, int(q*float64(len(l.ds))))]
}

// BenchmarkReplicatedPropose measures proposals through the leader of three
// members over loopback TCP, each with a real fsync'ing WAL on disk.
func BenchmarkReplicatedPropose(b *testing.B) {
	for _, proposers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("proposers=%d", proposers), func(b *testing.B) {
			c := newTCPCluster(b, 3, func(cfg *Config) {
				cfg.MaxPendingProposals = 4096
				cfg.SnapshotEntries = -1
			}, storageForBench(b))
			c.startAll()
			defer c.stopAll()
			lead := c.node(c.waitLeader())
			payload := make([]byte, 128)
			// Warm up connections and the WAL.
			for range 10 {
				if _, err := lead.r.Propose(context.Background(), payload); err != nil {
					b.Fatal(err)
				}
			}
			runConcurrently(b, proposers, func() error {
				_, err := lead.r.Propose(context.Background(), payload)
				return err
			}, "proposals/s")
		})
	}
}

// BenchmarkReplicatedRead measures linearizable reads (ReadIndex) at the
// leader and at a follower of three members over loopback TCP: how long the
// barrier takes, one reader at a time or many.
func BenchmarkReplicatedRead(b *testing.B) {
	for _, at := range []string{"leader", "follower"} {
		for _, readers := range []int{1, 16} {
			b.Run(fmt.Sprintf("at=%s/readers=%d", at, readers), func(b *testing.B) {
				c := newTCPCluster(b, 3, func(cfg *Config) { cfg.SnapshotEntries = -1 }, storageForBench(b))
				c.startAll()
				defer c.stopAll()
				lead := c.waitLeader()
				c.propose(lead, "w") // a commit of the leader's term, and connections up
				n := c.node(lead)
				if at == "follower" {
					n = c.node(lead%3 + 1)
				}
				runConcurrently(b, readers, func() error { return n.r.ReadIndex(context.Background()) }, "reads/s")
			})
		}
	}
}

// runConcurrently runs b.N calls of op spread over workers goroutines and
// reports the rate (in unit) and the p50 and p99 latency of a call.
func runConcurrently(b *testing.B, workers int, op func() error, unit string) {
	var lat latencies
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	b.ResetTimer()
	start := time.Now()
	for g := range workers {
		n := b.N / workers
		if g < b.N%workers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds := make([]time.Duration, 0, n)
			for range n {
				t0 := time.Now()
				if err := op(); err != nil {
					errc <- err
					return
				}
				ds = append(ds, time.Since(t0))
			}
			lat.add(ds)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errc)
	for err := range errc {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	b.ReportMetric(float64(lat.quantile(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat.quantile(0.99).Microseconds())/1000, "p99-ms")
}

func TestTCPSnapshotStreamsToLaggingMemberAndSurvivesRestart(t *testing.T) {
	c := newTCPCluster(t, 3, func(cfg *Config) { cfg.SnapshotEntries = 20 }, storageForTests(t))
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	down := pb.NodeID(1)
	if down == lead {
		down = 2
	}
	c.kill(down)
	var vs []string
	for i := range 100 {
		v := fmt.Sprintf("s%d", i)
		c.propose(lead, v)
		vs = append(vs, v)
	}
	waitFor(t, 10*time.Second, "the leader to compact its log", func() bool {
		return c.node(lead).r.Status().FirstIndex > 40
	})
	n := c.start(down) // reopens its WAL: behind the leader's compacted log
	c.waitApplied(vs...)
	c.checkSameLog()
	n.sm.mu.Lock()
	restores := n.sm.restores
	n.sm.mu.Unlock()
	if restores == 0 {
		t.Fatal("the lagging member caught up without a snapshot")
	}
	// Restart it again: it restores from its own snapshot file, replays the
	// log after it, and keeps the member addresses.
	c.kill(down)
	n = c.start(down)
	n.sm.mu.Lock()
	restores = n.sm.restores
	n.sm.mu.Unlock()
	if restores != 1 {
		t.Fatalf("restart restored %d snapshots, want 1 (its own newest)", restores)
	}
	c.propose(lead, "after")
	c.waitApplied(append(vs, "after")...)
	c.checkSameLog()
	for _, m := range n.r.Status().Members {
		if m.Addr == "" {
			t.Fatalf("member table lost an address after restoring: %+v", n.r.Status().Members)
		}
	}
}
