package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Bugs are faults injected into the simulated runtime, to show that the
// checker catches what they break. They exist for tests only.
type Bugs struct {
	// AckBeforeSync makes storage's fsync lag one Ready behind (a broken
	// group commit): a Ready's acknowledgements and votes go out before its
	// write is durable, so a crash can take back what a node promised.
	AckBeforeSync bool
	// ForgetVote makes storage never sync a changed vote: after a crash a
	// node can vote twice in one term.
	ForgetVote bool
	// ServeReadsEarly serves a ReadIndex read as soon as its ReadState
	// arrives, without waiting for the state machine to apply its index.
	ServeReadsEarly bool
}

// Config configures a simulation. Zero fields take the defaults noted.
type Config struct {
	// Seed makes the run reproducible: every random choice (network, faults,
	// workload, the cores' election timeouts) is drawn from it.
	Seed uint64
	// Voters is the number of founding voters (default 3).
	Voters int
	// ElectionTick and HeartbeatTick configure the cores (default 10 and 1).
	ElectionTick, HeartbeatTick int
	// MaxSizePerMsg and MaxInflightMsgs configure the cores (default 256
	// bytes and 4: small, so batching and the in-flight window are exercised).
	MaxSizePerMsg   uint64
	MaxInflightMsgs int
	// DisablePreVote turns pre-vote off in the cores.
	DisablePreVote bool
	// Net is the network's unreliability.
	Net NetConfig
	// WireCodec sends every message through raftpb's binary encoding.
	WireCodec bool
	// MemoryStorage serves the cores from raft.MemoryStorage (kept equal to
	// the simulated disk's written view and checked against it) instead of
	// the simulator's own Storage.
	MemoryStorage bool
	// Bugs injects runtime bugs.
	Bugs Bugs
	// TraceLines is how many recent events a failure report includes
	// (default 60; negative: none).
	TraceLines int
	// Logf, if set, receives every event as it happens (verbose replay).
	Logf func(format string, args ...any)

	// skipDurabilityChecks turns off the send-time persistence checks, so a
	// test can show the deeper invariants catch an injected bug on their own.
	skipDurabilityChecks bool
}

func (c Config) withDefaults() Config {
	if c.Voters == 0 {
		c.Voters = 3
	}
	if c.ElectionTick == 0 {
		c.ElectionTick = 10
	}
	if c.HeartbeatTick == 0 {
		c.HeartbeatTick = 1
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = 256
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = 4
	}
	if c.TraceLines == 0 {
		c.TraceLines = 60
	}
	return c
}

// Sim is one deterministic simulated cluster. It is not safe for concurrent
// use; run many Sims in parallel instead.
type Sim struct {
	cfg   Config
	rng   *rand.Rand
	now   int64 // virtual time, in ticks
	steps int
	net   *network
	nodes map[pb.NodeID]*node
	ids   []pb.NodeID // every node ever created, ascending
	next  pb.NodeID   // the next fresh id: ids are never reused
	chk   checker
	err   error

	touched  []*node
	removals []removal

	trace    []string
	traceAt  int
	nextProp int
	nextRead int

	delivered, readsServed, crashes, confChanges, stepErrors int
}

func newRand(a, b uint64) *rand.Rand { return rand.New(rand.NewPCG(a, b)) }

// New creates a cluster of cfg.Voters founding voters, bootstrapped and
// started, with ids 1..Voters.
func New(cfg Config) (*Sim, error) {
	cfg = cfg.withDefaults()
	if cfg.Voters < 1 {
		return nil, fmt.Errorf("sim: config: Voters must be >= 1, got %d", cfg.Voters)
	}
	s := &Sim{
		cfg:   cfg,
		rng:   newRand(cfg.Seed, 0x5eed),
		nodes: map[pb.NodeID]*node{},
		chk:   newChecker(),
	}
	s.net = newNetwork(cfg.Net, s.rng)
	if cfg.TraceLines > 0 {
		s.trace = make([]string, 0, cfg.TraceLines)
	}
	voters := make([]pb.NodeID, cfg.Voters)
	for i := range voters {
		voters[i] = pb.NodeID(i + 1)
	}
	s.next = pb.NodeID(cfg.Voters + 1)
	ents, cs := raft.Bootstrap(voters)
	if len(ents) == 0 {
		return nil, errors.New("sim: raft.Bootstrap returned no entries")
	}
	for _, id := range voters {
		n := newNode(id)
		if err := n.st.appendEntries(ents); err != nil {
			return nil, fmt.Errorf("sim: bootstrap: %w", err)
		}
		// The founding log is persisted with an empty HardState: the core
		// recognises it and commits it, and the entries are applied like any
		// others (see raft.Bootstrap).
		n.baseConf = cloneConf(cs)
		n.st.setApplied(0, 0, n.baseConf)
		n.st.sync()
		n.st.forgetVote, n.st.lagSync = cfg.Bugs.ForgetVote, cfg.Bugs.AckBeforeSync
		s.addNode(n)
		if err := s.start(n, false); err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
	}
	return s, nil
}

func (s *Sim) addNode(n *node) {
	s.nodes[n.id] = n
	s.ids = append(s.ids, n.id)
	slices.Sort(s.ids)
}

// tracef records an event for the failure report (and Logf).
func (s *Sim) tracef(format string, args ...any) {
	if s.cfg.Logf == nil && s.trace == nil {
		return
	}
	line := fmt.Sprintf("t=%d step=%d ", s.now, s.steps) + fmt.Sprintf(format, args...)
	if s.cfg.Logf != nil {
		s.cfg.Logf("%s", line)
	}
	if s.trace == nil {
		return
	}
	if len(s.trace) < cap(s.trace) {
		s.trace = append(s.trace, line)
		return
	}
	s.trace[s.traceAt] = line
	s.traceAt = (s.traceAt + 1) % len(s.trace)
}

// Trace returns the most recent events, oldest first.
func (s *Sim) Trace() []string {
	out := append([]string(nil), s.trace[s.traceAt:]...)
	return append(out, s.trace[:s.traceAt]...)
}

// The two kinds of violation; every error a Sim reports wraps exactly one.
var (
	// ErrSafety: an invariant that must hold at every step was broken.
	ErrSafety = errors.New("safety violation")
	// ErrLiveness: something that must happen (an election, catch-up) did
	// not within its bound.
	ErrLiveness = errors.New("liveness violation")
)

// fail records the first invariant violation.
func (s *Sim) fail(err error) error {
	if s.err == nil && err != nil {
		if !errors.Is(err, ErrLiveness) {
			err = fmt.Errorf("%w: %w", ErrSafety, err)
		}
		s.err = fmt.Errorf("sim: seed %d, step %d, tick %d: %w", s.cfg.Seed, s.steps, s.now, err)
		s.tracef("VIOLATION: %v", err)
	}
	return s.err
}

// Err returns the first invariant violation, if any.
func (s *Sim) Err() error { return s.err }

// touch marks n as changed by the current step, so its role is re-read.
func (s *Sim) touch(n *node) {
	if !slices.Contains(s.touched, n) {
		s.touched = append(s.touched, n)
	}
}

// endStep checks the invariants that depend on nodes' volatile state for
// every node the step touched, and shuts down removed members.
func (s *Sim) endStep() error {
	s.steps++
	for _, n := range s.touched {
		if !n.up {
			continue
		}
		st := n.rn.Status()
		if st.ID != n.id {
			return s.fail(fmt.Errorf("node %d: Status().ID is %d", n.id, st.ID))
		}
		if st.HardState.Term < n.term {
			return s.fail(fmt.Errorf("node %d: term went backwards from %d to %d", n.id, n.term, st.HardState.Term))
		}
		if st.SoftState.Role == raft.RoleLeader && (n.role != raft.RoleLeader || n.term != st.HardState.Term) {
			s.tracef("leader %d term %d", n.id, st.HardState.Term)
		}
		n.role, n.term, n.lead = st.SoftState.Role, st.HardState.Term, st.SoftState.Lead
		s.chk.observeTerm(n.term)
		if n.role == raft.RoleLeader {
			if err := s.chk.observeLeader(n, n.term); err != nil {
				return s.fail(err)
			}
		}
	}
	s.touched = s.touched[:0]
	s.decommission()
	return s.err
}

// removal is a committed ConfChangeRemove waiting for its node's shutdown.
type removal struct {
	id    pb.NodeID
	index pb.Index     // the removal entry
	conf  pb.ConfState // the configuration it produced
}

// decommission shuts down removed nodes, as an operator would, once a
// majority of the new configuration's voters has applied the removal: before
// that the remaining members may not know it committed, and still count the
// removed node in their quorum.
func (s *Sim) decommission() {
	keep := s.removals[:0]
	for _, r := range s.removals {
		n := s.nodes[r.id]
		if n == nil || n.removed {
			continue
		}
		applied := 0
		for _, v := range r.conf.Voters {
			if m := s.nodes[v]; m != nil && m.applied >= r.index {
				applied++
			}
		}
		if applied < len(r.conf.Voters)/2+1 {
			keep = append(keep, r)
			continue
		}
		s.tracef("decommission %d", r.id)
		s.crash(n)
		n.removed = true
	}
	s.removals = keep
}

// ---- primitive actions (each one step) ----

// deliverOne delivers one random deliverable message.
func (s *Sim) deliverOne() (bool, error) {
	e, ok := s.net.take(s.now)
	if !ok {
		return false, nil
	}
	if err := s.deliver(e); err != nil {
		return true, s.fail(err)
	}
	return true, s.endStep()
}

// readyNodes returns the up nodes with a Ready pending, ascending.
func (s *Sim) readyNodes() []*node {
	var out []*node
	for _, id := range s.ids {
		if n := s.nodes[id]; n.up && n.rn.HasReady() {
			out = append(out, n)
		}
	}
	return out
}

// readyOne handles the Ready of one random node that has one.
func (s *Sim) readyOne() (bool, error) {
	rs := s.readyNodes()
	if len(rs) == 0 {
		return false, nil
	}
	n := rs[s.rng.IntN(len(rs))]
	s.touch(n)
	if err := s.handleReady(n); err != nil {
		return true, s.fail(err)
	}
	return true, s.endStep()
}

// tick advances virtual time by one tick on every up node.
func (s *Sim) tick() error {
	s.now++
	for _, id := range s.ids {
		if n := s.nodes[id]; n.up {
			n.rn.Tick()
			s.touch(n)
		}
	}
	return s.endStep()
}

// drain delivers messages and handles Readys in random order until nothing
// is deliverable at the current tick and no node has a Ready.
func (s *Sim) drain() error {
	for range 100000 {
		if s.err != nil {
			return s.err
		}
		var did bool
		var err error
		if s.rng.IntN(2) == 0 {
			if did, err = s.deliverOne(); !did && err == nil {
				did, err = s.readyOne()
			}
		} else {
			if did, err = s.readyOne(); !did && err == nil {
				did, err = s.deliverOne()
			}
		}
		if err != nil || !did {
			return err
		}
	}
	return s.fail(errors.New("drain did not quiesce after 100000 actions (message storm)"))
}

// RunTicks runs k ticks, draining messages and Readys before each.
func (s *Sim) RunTicks(k int) error {
	for range k {
		if err := s.drain(); err != nil {
			return err
		}
		if err := s.tick(); err != nil {
			return err
		}
	}
	return s.drain()
}

// RunUntil runs ticks until cond holds (checked after every drain) or
// maxTicks pass; it returns the ticks taken, or an error naming what.
func (s *Sim) RunUntil(what string, maxTicks int, cond func() bool) (int, error) {
	for i := 0; ; i++ {
		if err := s.drain(); err != nil {
			return i, err
		}
		if cond() {
			return i, nil
		}
		if i == maxTicks {
			return i, s.fail(fmt.Errorf("%w: %s did not happen within %d ticks", ErrLiveness, what, maxTicks))
		}
		if err := s.tick(); err != nil {
			return i, err
		}
	}
}

// ---- observation ----

// Leader returns the up node that leads the highest term, or None.
func (s *Sim) Leader() pb.NodeID {
	var best *node
	for _, id := range s.ids {
		n := s.nodes[id]
		if n.up && n.role == raft.RoleLeader && (best == nil || n.term > best.term) {
			best = n
		}
	}
	if best == nil {
		return pb.None
	}
	return best.id
}

// LeaderAmong returns the leader of the highest term among ids (up nodes
// only), or None.
func (s *Sim) LeaderAmong(ids ...pb.NodeID) pb.NodeID {
	var best *node
	for _, id := range ids {
		n := s.nodes[id]
		if n != nil && n.up && n.role == raft.RoleLeader && (best == nil || n.term > best.term) {
			best = n
		}
	}
	if best == nil {
		return pb.None
	}
	return best.id
}

// Term returns node id's current term (0 for an unknown id).
func (s *Sim) Term(id pb.NodeID) pb.Term {
	if n := s.nodes[id]; n != nil {
		return n.term
	}
	return 0
}

// Applied returns node id's applied index (0 for an unknown id).
func (s *Sim) Applied(id pb.NodeID) pb.Index {
	if n := s.nodes[id]; n != nil {
		return n.applied
	}
	return 0
}

// LastIndex returns node id's last written log index (0 for an unknown id).
func (s *Sim) LastIndex(id pb.NodeID) pb.Index {
	if n := s.nodes[id]; n != nil {
		return n.st.cur.lastIndex()
	}
	return 0
}

// CommittedIndex returns the highest index known committed anywhere.
func (s *Sim) CommittedIndex() pb.Index { return s.chk.committedMax() }

// Up reports whether node id is running.
func (s *Sim) Up(id pb.NodeID) bool { n := s.nodes[id]; return n != nil && n.up }

// IDs returns every node id ever created, ascending.
func (s *Sim) IDs() []pb.NodeID { return slices.Clone(s.ids) }

// Status returns node id's raft status, and false if it is not running.
func (s *Sim) Status(id pb.NodeID) (raft.Status, bool) {
	n := s.nodes[id]
	if n == nil || !n.up {
		return raft.Status{}, false
	}
	return n.rn.Status(), true
}

// Sent returns how many messages of type t the nodes have sent.
func (s *Sim) Sent(t pb.MessageType) int { return s.net.sent[t] }

// AppRejects returns how many MsgAppResp rejections the nodes have sent.
func (s *Sim) AppRejects() int { return s.net.rejects }

// AppliedAt returns the log index at which proposal value v was applied
// anywhere, if it was.
func (s *Sim) AppliedAt(v string) (pb.Index, bool) {
	i, ok := s.chk.values[v]
	return i, ok
}

// Now returns the virtual time in ticks.
func (s *Sim) Now() int64 { return s.now }

// Elections returns how many distinct (term, leader) pairs were observed.
func (s *Sim) Elections() int { return s.chk.elections }

// ReadsServed returns how many ReadIndex reads were served (and checked).
func (s *Sim) ReadsServed() int { return s.readsServed }

// ---- controls (scenarios and the random workload) ----

// SetNet changes the network's unreliability.
func (s *Sim) SetNet(c NetConfig) { s.net.cfg = c }

// Partition splits the nodes into groups; nodes listed in no group are
// isolated. In-flight messages across the cut are lost on delivery.
func (s *Sim) Partition(groups ...[]pb.NodeID) {
	s.tracef("partition %v", groups)
	s.net.partition(s.ids, groups...)
}

// CutLink cuts the one-way link from->to.
func (s *Sim) CutLink(from, to pb.NodeID) {
	s.tracef("cut %d->%d", from, to)
	s.net.cut[[2]pb.NodeID{from, to}] = true
}

// Heal restores every link.
func (s *Sim) Heal() { s.tracef("heal"); s.net.heal() }

// Crash stops node id at once, losing all its unsynced writes.
func (s *Sim) Crash(id pb.NodeID) {
	if n := s.nodes[id]; n != nil {
		s.crashes++
		s.crash(n)
	}
}

// armCrash makes node id crash at point p of its next Ready handling.
func (s *Sim) armCrash(id pb.NodeID, p crashPoint) {
	if n := s.nodes[id]; n != nil && n.up {
		s.crashes++
		s.tracef("arm crash %d at %s", id, p)
		n.crashAt = p
	}
}

// Restart restarts a crashed node from its durable state. reapply throws
// the state machine away and rebuilds it from the snapshot and the log.
func (s *Sim) Restart(id pb.NodeID, reapply bool) error {
	n := s.nodes[id]
	if n == nil || n.up || n.removed {
		return nil
	}
	s.tracef("restart %d (reapply=%v, durable hs %+v, log (%d, %d], sm applied %d)", id, reapply,
		n.st.durable.hs, n.st.durable.snap.Index, n.st.durable.lastIndex(), n.st.durable.smApplied)
	if err := s.start(n, reapply); err != nil {
		return s.fail(err)
	}
	s.touch(n)
	return s.endStep()
}

// Propose proposes a fresh unique value at node id; it returns the value,
// and the core's error (a dropped proposal is normal).
func (s *Sim) Propose(id pb.NodeID) (string, error) {
	n := s.nodes[id]
	if n == nil || !n.up {
		return "", errors.New("sim: node down")
	}
	s.nextProp++
	v := fmt.Sprintf("v%d", s.nextProp)
	err := n.rn.Propose([]byte(v))
	s.tracef("propose %d %s: %v", id, v, err)
	s.touch(n)
	if e := s.endStep(); e != nil {
		return v, e
	}
	return v, err
}

// ReadIndex issues a linearizable read at node id, to be checked when served.
func (s *Sim) ReadIndex(id pb.NodeID) string {
	n := s.nodes[id]
	if n == nil || !n.up {
		return ""
	}
	s.nextRead++
	ctx := fmt.Sprintf("r%d", s.nextRead)
	s.chk.reads[ctx] = &readRec{node: id, mustSee: s.chk.appliedMax, issuedAt: s.now}
	n.rn.ReadIndex([]byte(ctx))
	s.tracef("read %d %s (must see %d)", id, ctx, s.chk.appliedMax)
	s.touch(n)
	_ = s.endStep()
	return ctx
}

// ReadServed reports how many times read ctx was served.
func (s *Sim) ReadServed(ctx string) int {
	if r := s.chk.reads[ctx]; r != nil {
		return r.served
	}
	return 0
}

// Transfer asks node at to transfer leadership to target.
func (s *Sim) Transfer(at, target pb.NodeID) {
	if n := s.nodes[at]; n != nil && n.up {
		s.tracef("transfer via %d to %d", at, target)
		n.rn.TransferLeadership(target)
		s.touch(n)
		_ = s.endStep()
	}
}

// Campaign makes node id campaign now.
func (s *Sim) Campaign(id pb.NodeID) error {
	n := s.nodes[id]
	if n == nil || !n.up {
		return nil
	}
	s.tracef("campaign %d", id)
	err := n.rn.Campaign()
	s.touch(n)
	if e := s.endStep(); e != nil {
		return e
	}
	return err
}

// ProposeConfChange proposes cc at node at; for an AddLearner of a new id
// use AddLearner, which also starts the new node.
func (s *Sim) ProposeConfChange(at pb.NodeID, cc pb.ConfChange) error {
	n := s.nodes[at]
	if n == nil || !n.up {
		return errors.New("sim: node down")
	}
	err := n.rn.ProposeConfChange(cc)
	s.tracef("propose-conf %d: %s %d: %v", at, cc.Type, cc.NodeID, err)
	if err == nil {
		s.confChanges++
	}
	s.touch(n)
	if e := s.endStep(); e != nil {
		return e
	}
	return err
}

// AddLearner starts a new, empty node under a fresh id and proposes adding
// it as a learner at node at. Ids are never reused.
func (s *Sim) AddLearner(at pb.NodeID) (pb.NodeID, error) {
	id := s.next
	s.next++
	n := newNode(id)
	n.st.forgetVote, n.st.lagSync = s.cfg.Bugs.ForgetVote, s.cfg.Bugs.AckBeforeSync
	s.addNode(n)
	if err := s.start(n, false); err != nil {
		return id, s.fail(err)
	}
	s.tracef("new node %d", id)
	err := s.ProposeConfChange(at, pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: id, Context: []byte(fmt.Sprintf("127.0.0.1:%d", 7000+id))})
	return id, err
}

// Compact folds node id's log up to its applied index into a snapshot.
func (s *Sim) Compact(id pb.NodeID) error {
	n := s.nodes[id]
	if n == nil || !n.up || n.applied <= n.st.cur.snap.Index || n.applied > n.st.cur.lastIndex() {
		return nil
	}
	s.tracef("compact %d to %d", id, n.applied)
	if err := n.st.compact(n.applied, n.conf); err != nil {
		return s.fail(fmt.Errorf("node %d: %w", id, err))
	}
	n.snaps[n.applied] = n.st.cur.chains[0]
	return nil
}

// Summary is a one-line description of the run so far.
func (s *Sim) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed=%d steps=%d ticks=%d nodes=%d commit=%d elections=%d delivered=%d reads=%d crashes=%d conf=%d step-errors=%d",
		s.cfg.Seed, s.steps, s.now, len(s.ids), s.chk.committedMax(), s.chk.elections, s.delivered, s.readsServed, s.crashes, s.confChanges, s.stepErrors)
	return b.String()
}
