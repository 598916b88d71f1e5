package replica

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestElectAndReplicate(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d members", size), func(t *testing.T) {
			c := newMemCluster(t, size, nil)
			c.startAll()
			defer c.stopAll()
			lead := c.waitLeader()
			var vs []string
			for i := range 20 {
				// Alternate between the leader and followers: a follower
				// forwards through the core and resolves on its own apply.
				via := pb.NodeID(i%size + 1)
				v := fmt.Sprintf("v%d", i)
				res := c.propose(via, v)
				if pos, ok := res.(int); !ok || pos < 1 {
					t.Fatalf("propose via %d returned %v, want the state machine's position", via, res)
				}
				vs = append(vs, v)
			}
			c.waitApplied(vs...)
			c.checkSameLog()
			st := c.node(lead).r.Status()
			if st.Role != raft.RoleLeader || len(st.Progress) != size || len(st.Members) != size {
				t.Fatalf("leader status = %+v, want leader with %d peers and members", st, size)
			}
			for _, m := range st.Members {
				if want := fmt.Sprintf("mem-%d", m.ID); m.Addr != want || !m.Voter {
					t.Errorf("member %d = %+v, want voter at %s", m.ID, m, want)
				}
			}
		})
	}
}

func TestMinorityDownMajorityCommitsAndRestartCatchesUp(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "before")

	// Kill a follower: the other two keep committing.
	down := pb.NodeID(1)
	if down == lead {
		down = 2
	}
	c.kill(down)
	var vs []string
	for i := range 10 {
		v := fmt.Sprintf("during-%d", i)
		c.propose(c.waitLeader(), v)
		vs = append(vs, v)
	}
	// Kill the leader too? No: that would lose the quorum. Restart the
	// follower from its storage instead and watch it catch up.
	c.start(down)
	c.waitApplied(append(vs, "before")...)
	c.checkSameLog()

	// Now the leader dies: the remaining two elect a new one and go on.
	lead = c.waitLeader()
	c.kill(lead)
	newLead := c.waitLeader()
	if newLead == lead {
		t.Fatalf("dead member %d still seen as leader", lead)
	}
	c.propose(newLead, "after")
	c.start(lead)
	c.waitApplied("after")
	c.checkSameLog()
}

func TestLeaderLossResolvesProposalWithOutcomeUnknown(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")

	// Cut the leader off: its proposal can never commit through it, and
	// check-quorum makes it step down within an election timeout. The
	// caller must hear "outcome unknown", not a failure and not silence.
	c.isolate(lead)
	errc := make(chan error, 1)
	go func() {
		_, err := c.node(lead).r.Propose(context.Background(), []byte("stranded"))
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("stranded proposal: err = %v, want ErrOutcomeUnknown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stranded proposal never resolved")
	}

	// The old leader cannot serve a linearizable read while cut off.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.node(lead).r.ReadIndex(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("ReadIndex on a cut-off old leader: err = %v, want ErrNoLeader", err)
	}

	// The majority elected someone else and commits.
	var others []pb.NodeID
	for _, p := range c.peers {
		if p.ID != lead {
			others = append(others, p.ID)
		}
	}
	newLead := c.waitLeader(others...)
	c.propose(newLead, "y")
	c.heal()
	c.waitApplied("x", "y")
	c.checkSameLog()
}

func TestStaleLeaderWithoutCheckQuorumCannotServeReadIndex(t *testing.T) {
	// Without check-quorum a cut-off leader keeps believing it leads; the
	// read must still fail (within bounded time), never return stale data.
	c := newMemCluster(t, 3, func(cfg *Config) { cfg.Raft.DisableCheckQuorum = true })
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")
	c.isolate(lead)
	var others []pb.NodeID
	for _, p := range c.peers {
		if p.ID != lead {
			others = append(others, p.ID)
		}
	}
	c.propose(c.waitLeader(others...), "newer")

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.node(lead).r.ReadIndex(ctx)
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("ReadIndex on a stale leader: err = %v, want ErrNoLeader", err)
	}
	if c.node(lead).sm.contains("newer") {
		t.Fatal("stale leader saw a write it cannot have")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ReadIndex took %v to fail", d)
	}

	// A proposal handed to the stale leader with a short deadline: outcome unknown, wrapping the ctx error.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	_, err = c.node(lead).r.Propose(ctx2, []byte("late"))
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("propose on stale leader with deadline: err = %v, want ErrOutcomeUnknown wrapping DeadlineExceeded", err)
	}
}

func TestReadIndexIsLinearizableOnFollowers(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	for i := range 20 {
		v := fmt.Sprintf("w%d", i)
		c.propose(lead, v)
		// Right after the write is acknowledged, any member that passes the
		// barrier must see it.
		for _, n := range c.live() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := n.r.ReadIndex(ctx)
			cancel()
			if err != nil {
				t.Fatalf("ReadIndex on %d: %v", n.id, err)
			}
			if !n.sm.contains(v) {
				t.Fatalf("member %d passed ReadIndex without %q applied", n.id, v)
			}
		}
	}
}

func TestReadIndexBatchesConcurrentCallers(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")
	follower := pb.NodeID(1)
	if follower == lead {
		follower = 2
	}
	const callers = 200
	// Hold the replica goroutine until every caller is queued, so that the
	// callers are concurrent however fast the loop runs.
	r := c.node(follower).r
	held, release := make(chan struct{}), make(chan struct{})
	holdErr := make(chan error, 1)
	go func() {
		holdErr <- r.do(context.Background(), func() { close(held); <-release })
	}()
	select {
	case <-held:
	case err := <-holdErr:
		t.Fatalf("hold the replica goroutine: %v", err)
	}
	errc := make(chan error, callers)
	for range callers {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errc <- r.ReadIndex(ctx)
		}()
	}
	for r.pendingReads.Load() < callers {
		runtime.Gosched()
	}
	close(release)
	for range callers {
		if err := <-errc; err != nil {
			t.Fatalf("ReadIndex: %v", err)
		}
	}
	if seq := readSeq(c.node(follower).r); seq >= callers {
		t.Fatalf("%d concurrent reads took %d core requests; want them batched", callers, seq)
	}
}

// readSeq returns how many ReadIndex requests the replica made to the core.
func readSeq(r *Replica) uint64 {
	var seq uint64
	_ = r.do(context.Background(), func() { seq = r.reads.ctxSeq })
	return seq
}

func TestReadIndexWithoutLeaderFailsFast(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")
	survivor := c.node(lead)
	for _, p := range c.peers {
		if p.ID != lead {
			c.kill(p.ID)
		}
	}
	// The lone member steps down (check-quorum) and then knows no leader.
	waitFor(t, 10*time.Second, "the lone member to step down", func() bool { return survivor.r.Leader() == pb.None })
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := survivor.r.ReadIndex(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("ReadIndex with no leader: err = %v, want ErrNoLeader", err)
	}
	if _, err := survivor.r.Propose(ctx, []byte("y")); !errors.Is(err, ErrProposalDropped) || !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Propose with no leader: err = %v, want ErrProposalDropped and ErrNoLeader", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("failing without a leader took %v", d)
	}
}

func TestBusyWhenQueueFull(t *testing.T) {
	// A replica that is not started never drains its queue: the limit is
	// what stands between callers and unbounded memory.
	r, err := New(Config{ID: 1, StateMachine: &testSM{}, Storage: newMemStorage(),
		Transport: &memSender{n: &memNet{handlers: map[pb.NodeID]*handlerProxy{}}}, Peers: []Peer{{ID: 1}},
		MaxPendingProposals: 4})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := r.Propose(context.Background(), []byte{byte(i)})
			errc <- err
		}()
	}
	waitFor(t, 5*time.Second, "4 proposals admitted", func() bool { return r.pendingProps.Load() == 4 })
	start := time.Now()
	if _, err := r.Propose(context.Background(), []byte("one too many")); !errors.Is(err, ErrBusy) {
		t.Fatalf("fifth proposal: err = %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("ErrBusy took %v", d)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for range 4 {
		if err := <-errc; !errors.Is(err, ErrStopped) || errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("queued proposal after Stop: err = %v, want ErrStopped (never handed to Raft)", err)
		}
	}
	if _, err := r.Propose(context.Background(), []byte("after stop")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Propose after Stop: err = %v, want ErrStopped", err)
	}
	if err := r.ReadIndex(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("ReadIndex after Stop: err = %v, want ErrStopped", err)
	}
}

func TestProposalExpiredBeforeReachingRaft(t *testing.T) {
	// Not started: the proposal stays queued. A caller that gives up before
	// its proposal reaches Raft gets its ctx error alone: nothing was
	// proposed, so it is safe to retry, and its admission slot is freed.
	r, err := New(Config{ID: 1, StateMachine: &testSM{}, Storage: newMemStorage(),
		Transport: &memSender{n: &memNet{handlers: map[pb.NodeID]*handlerProxy{}}}, Peers: []Peer{{ID: 1}},
		TickInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := r.Propose(ctx, []byte("expires queued")); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("expired while queued: err = %v, want DeadlineExceeded alone", err)
	}
	if n := r.pendingProps.Load(); n != 0 {
		t.Fatalf("%d proposals still counted pending", n)
	}
	// Once started, the loop skips the canceled proposal: nothing commits
	// and nothing reaches the state machine.
	r.Start()
	waitFor(t, 10*time.Second, "the single member to lead", r.IsLeader)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := r.Propose(ctx2, []byte("real")); err != nil {
		t.Fatal(err)
	}
	if got := r.cfg.StateMachine.(*testSM).values(); !slices.Equal(got, []string{"real"}) {
		t.Fatalf("state machine applied %q, want only the live proposal", got)
	}
}

func TestStopResolvesInFlightProposals(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")
	// Cut the leader off so that its proposals stay in flight, then stop it.
	c.isolate(lead)
	n := c.node(lead)
	errc := make(chan error, 10)
	for i := range 10 {
		go func() {
			_, err := n.r.Propose(context.Background(), []byte(fmt.Sprint("p", i)))
			errc <- err
		}()
	}
	waitFor(t, 5*time.Second, "proposals in flight", func() bool { return n.r.pendingProps.Load() == 10 || len(errc) > 0 })
	c.kill(lead)
	for range 10 {
		err := <-errc
		if !errors.Is(err, ErrStopped) && !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("in-flight proposal after Stop: err = %v", err)
		}
	}
}

func TestTransferLeadership(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")
	c.waitApplied("x")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(lead).r.TransferLeadership(ctx, 0); err != nil {
		t.Fatalf("TransferLeadership(0): %v", err)
	}
	newLead := c.waitLeader()
	if newLead == lead {
		t.Fatalf("leadership stayed with %d", lead)
	}
	// Hand it back explicitly.
	if err := c.node(newLead).r.TransferLeadership(ctx, lead); err != nil {
		t.Fatalf("TransferLeadership(%d): %v", lead, err)
	}
	if got := c.waitLeader(); got != lead {
		t.Fatalf("leader = %d, want %d", got, lead)
	}
	c.propose(lead, "y")
	c.waitApplied("y")
}

func TestSnapshotsCompactAndCatchUpLaggingMember(t *testing.T) {
	c := newMemCluster(t, 3, func(cfg *Config) { cfg.SnapshotEntries = 20 })
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
	waitFor(t, 10*time.Second, "a snapshot on the leader", func() bool {
		return c.node(lead).r.Status().SnapshotIndex >= 60
	})
	if first := c.node(lead).r.Status().FirstIndex; first <= 20 {
		t.Fatalf("leader's log starts at %d after snapshots; want it compacted", first)
	}
	// The returning member is behind the compacted log: it must get the
	// snapshot, restore from it, and then follow the log.
	n := c.start(down)
	c.waitApplied(vs...)
	c.propose(lead, "after")
	c.waitApplied("after")
	c.checkSameLog()
	n.sm.mu.Lock()
	restores := n.sm.restores
	n.sm.mu.Unlock()
	if restores == 0 {
		t.Fatal("lagging member caught up without restoring a snapshot")
	}
	st := n.r.Status()
	if st.SnapshotIndex == 0 {
		t.Fatalf("lagging member status %+v: no snapshot recorded", st)
	}
	for _, m := range st.Members {
		if m.Addr != fmt.Sprintf("mem-%d", m.ID) {
			t.Fatalf("member table after snapshot install lost addresses: %+v", st.Members)
		}
	}

	// A member restarted from a snapshot restores it before replaying the rest.
	c.kill(down)
	c.start(down)
	c.waitApplied("after")
	c.checkSameLog()
}

func TestTakeSnapshot(t *testing.T) {
	c := newMemCluster(t, 3, func(cfg *Config) { cfg.SnapshotEntries = -1 })
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	for i := range 10 {
		c.propose(lead, fmt.Sprint(i))
	}
	r := c.node(lead).r
	applied := r.AppliedIndex()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	meta, err := r.TakeSnapshot(ctx)
	if err != nil {
		t.Fatalf("TakeSnapshot: %v", err)
	}
	if meta.Index < applied || len(meta.ConfState.Voters) != 3 {
		t.Fatalf("snapshot meta = %+v, want index >= %d and 3 voters", meta, applied)
	}
	files := c.stores[lead].(*memStorage).snapshotFiles()
	if !slices.Contains(files, meta.Index) {
		t.Fatalf("snapshot files %v lack %d", files, meta.Index)
	}
	// Nothing new applied: the same snapshot answers.
	again, err := r.TakeSnapshot(ctx)
	if err != nil || again.Index != meta.Index {
		t.Fatalf("second TakeSnapshot = %+v, %v; want the same index %d", again, err, meta.Index)
	}
}

func TestStorageErrorStopsMember(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")
	n := c.node(lead)
	injected := errors.New("disk on fire")
	n.st.(*memStorage).injectSaveError(injected)
	_, err := n.r.Propose(context.Background(), []byte("doomed"))
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("propose during a storage failure: err = %v, want ErrStopped", err)
	}
	select {
	case <-n.r.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("member kept running after a storage error")
	}
	if !errors.Is(n.r.Err(), injected) || !errors.Is(n.r.Stop(), injected) {
		t.Fatalf("Err = %v, Stop = %v; want the storage error", n.r.Err(), n.r.Stop())
	}
	// The others carry on.
	c.kill(lead)
	c.propose(c.waitLeader(), "y")
}

func TestStateMachineErrorStopsMember(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")
	follower := pb.NodeID(1)
	if follower == lead {
		follower = 2
	}
	c.node(follower).sm.failNext.Store(true)
	c.propose(lead, "y")
	select {
	case <-c.node(follower).r.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("member kept running after its state machine failed")
	}
	if err := c.node(follower).r.Err(); err == nil {
		t.Fatal("Err() = nil after a state machine failure")
	}
}

func TestConfChangeAddsLearnerAndVoter(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "before-join")

	// Member 4 joins: it starts empty with no Peers and learns from the leader.
	c.peers = append(c.peers, Peer{ID: 4, Addr: "mem-4"})
	joinCfg := c.cfg
	c.cfg = func(cfg *Config) {
		if cfg.ID == 4 {
			cfg.Peers = nil
		}
		if joinCfg != nil {
			joinCfg(cfg)
		}
	}
	c.start(4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Propose through a follower: conf changes forward too.
	via := pb.NodeID(1)
	if via == lead {
		via = 2
	}
	if err := c.node(via).r.ProposeConfChange(ctx, pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: 4, Context: []byte("mem-4")}); err != nil {
		t.Fatalf("add learner: %v", err)
	}
	c.waitApplied("before-join")
	if err := c.node(lead).r.ProposeConfChange(ctx, pb.ConfChange{Type: pb.ConfChangeAddVoter, NodeID: 4, Context: []byte("mem-4")}); err != nil {
		t.Fatalf("promote: %v", err)
	}
	c.propose(lead, "after-join")
	c.waitApplied("after-join")
	c.checkSameLog()
	st := c.node(lead).r.Status()
	if len(st.Members) != 4 || st.Members[3] != (Member{ID: 4, Addr: "mem-4", Voter: true}) {
		t.Fatalf("members = %+v, want 4 voters with member 4 at mem-4", st.Members)
	}
	n := c.node(4)
	n.ccMu.Lock()
	defer n.ccMu.Unlock()
	var sawPromote bool
	for _, cc := range n.cc {
		if cc.NodeID == 4 && cc.Type == pb.ConfChangeAddVoter && string(cc.Context) == "mem-4" {
			sawPromote = true
		}
	}
	if !sawPromote {
		t.Fatalf("OnConfChange on the new member saw %+v; want its promotion with its address (envelope stripped)", n.cc)
	}
}

func TestStartStopWithoutLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newMemCluster(t, 3, nil)
	c.startAll()
	c.propose(c.waitLeader(), "x")
	c.stopAll()
	// Stop before Start, and Stop twice.
	r, err := New(Config{ID: 1, StateMachine: &testSM{}, Storage: newMemStorage(),
		Transport: &memSender{n: &memNet{handlers: map[pb.NodeID]*handlerProxy{}}}, Peers: []Peer{{ID: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r.Start() // after Stop: does nothing
	if st := r.Status(); !st.Stopped {
		t.Fatalf("status after Stop = %+v, want Stopped", st)
	}
}

func TestSingleMember(t *testing.T) {
	c := newMemCluster(t, 1, nil)
	c.startAll()
	defer c.stopAll()
	if got := c.waitLeader(); got != 1 {
		t.Fatalf("leader = %d", got)
	}
	if res := c.propose(1, "solo"); res != 1 {
		t.Fatalf("result = %v, want 1", res)
	}
	if err := c.node(1).r.ReadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.node(1).r.Propose(context.Background(), nil); !errors.Is(err, ErrEmptyProposal) {
		t.Fatalf("empty proposal: %v", err)
	}
}
