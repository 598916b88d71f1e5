package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Replica runs one member of a Raft group: a single goroutine drives the
// core (raft.RawNode), persists through Storage, sends through the
// Transport, applies to the StateMachine and resolves the futures of
// Propose, ProposeConfChange and ReadIndex. Every exported method is safe for
// concurrent use.
type Replica struct {
	cfg         Config
	id          pb.NodeID
	log         *slog.Logger
	sm          StateMachine
	st          Storage
	tr          Sender
	incarnation uint64
	transferTTL time.Duration
	maxPending  int64

	// Inputs to the loop. propc and readc are buffered to MaxPendingProposals
	// (admission is counted, so sends never block); recvc drops when full
	// (Raft retries); ctrlc is unbuffered, so a sent closure always runs.
	propc     chan *proposal
	readc     chan *readWaiter
	recvc     chan pb.Message
	ctrlc     chan func()
	reportc   chan struct{} // signal: reports has entries
	snapDonec chan snapResult

	reportMu sync.Mutex
	reports  []report

	pendingProps atomic.Int64  // proposals admitted and not yet resolved
	nextSeq      atomic.Uint64 // proposal sequence numbers of this incarnation
	dropped      atomic.Uint64 // inbound messages dropped on a full queue
	pendingReads atomic.Int64  // reads admitted and not yet resolved

	lifeMu  sync.Mutex
	started bool
	stopped bool
	stopc   chan struct{}
	donec   chan struct{}
	err     error // the fatal error, if any; written before donec is closed
	wg      sync.WaitGroup

	pub published

	// Owned by the loop goroutine (or by New before Start).
	rn          *raft.RawNode
	pending     map[uint64]*proposal
	lead        pb.NodeID
	term        pb.Term
	role        raft.Role
	commit      pb.Index
	applied     pb.Index
	appliedTerm pb.Term
	confState   pb.ConfState
	members     map[pb.NodeID]string
	removed     map[pb.NodeID]bool // ids ever removed (ErrMemberRemoved); kept in snapshots
	ticks       uint64
	reads       readQueue
	snap        snapState
	applyBuf    []pb.Entry
	ownerBuf    []*proposal
}

// New opens a replica over cfg.Storage: it bootstraps an empty Storage from
// cfg.Peers, or restores the state machine from the newest snapshot and
// resumes from the log. Nothing runs until Start.
func New(cfg Config) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r := &Replica{
		cfg:         cfg,
		id:          cfg.ID,
		log:         cfg.Logger.With("member", uint64(cfg.ID)),
		sm:          cfg.StateMachine,
		st:          cfg.Storage,
		tr:          cfg.Transport,
		incarnation: rand.Uint64(),
		transferTTL: 2 * time.Duration(cfg.ElectionTicks) * cfg.TickInterval,
		maxPending:  int64(cfg.MaxPendingProposals),
		propc:       make(chan *proposal, cfg.MaxPendingProposals),
		readc:       make(chan *readWaiter, cfg.MaxPendingProposals),
		recvc:       make(chan pb.Message, 4096),
		ctrlc:       make(chan func()),
		reportc:     make(chan struct{}, 1),
		snapDonec:   make(chan snapResult, 1),
		stopc:       make(chan struct{}),
		donec:       make(chan struct{}),
		pending:     make(map[uint64]*proposal),
		members:     make(map[pb.NodeID]string),
		removed:     make(map[pb.NodeID]bool),
	}
	r.pub.init()
	r.reads.init()

	empty, err := r.storageEmpty()
	if err != nil {
		return nil, err
	}
	if empty && len(cfg.Peers) > 0 {
		if err := r.bootstrap(); err != nil {
			return nil, err
		}
	}
	if err := r.restoreFromStorage(); err != nil {
		return nil, err
	}

	rc := cfg.Raft
	rc.ID = cfg.ID
	rc.Storage = cfg.Storage
	rc.Applied = r.applied
	rc.ElectionTick = cfg.ElectionTicks
	rc.HeartbeatTick = cfg.HeartbeatTicks
	rc.Logger = r.log
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	r.rn = rn
	st := rn.Status()
	r.term = st.HardState.Term
	r.commit = st.HardState.Commit
	r.lead = st.SoftState.Lead
	r.role = st.SoftState.Role
	r.confState = cloneConfState(st.ConfState)
	r.publish()
	r.pub.setStatus(r.buildStatus())
	return r, nil
}

// storageEmpty reports whether Storage holds no state at all.
func (r *Replica) storageEmpty() (bool, error) {
	hs, cs, err := r.st.InitialState()
	if err != nil {
		return false, fmt.Errorf("replica: read initial state: %w", err)
	}
	last, err := r.st.LastIndex()
	if err != nil {
		return false, fmt.Errorf("replica: read last index: %w", err)
	}
	snap, err := r.st.Snapshot()
	if err != nil {
		return false, fmt.Errorf("replica: read snapshot: %w", err)
	}
	return hs.IsEmpty() && last == 0 && snap.IsEmpty() && len(cs.Voters) == 0 && len(cs.Learners) == 0, nil
}

// bootstrap writes the founding membership into an empty Storage. Each
// founding conf change carries the member's address in its Context, so that
// every member (and a member replaying its log after a restart) learns the
// addresses from the log itself.
func (r *Replica) bootstrap() error {
	ids := make([]pb.NodeID, len(r.cfg.Peers))
	addrs := make(map[pb.NodeID]string, len(r.cfg.Peers))
	for i, p := range r.cfg.Peers {
		ids[i] = p.ID
		addrs[p.ID] = p.Addr
	}
	ents, cs := raft.Bootstrap(ids)
	if len(ents) == 0 {
		return errors.New("replica: bootstrap: raft.Bootstrap returned no entries")
	}
	for i := range ents {
		if ents[i].Type != pb.EntryConfChange {
			continue
		}
		var cc pb.ConfChange
		if err := cc.UnmarshalBinary(ents[i].Data); err != nil {
			return fmt.Errorf("replica: bootstrap: decode founding conf change: %w", err)
		}
		cc.Context = []byte(addrs[cc.NodeID])
		data, err := cc.AppendBinary(nil)
		if err != nil {
			return fmt.Errorf("replica: bootstrap: encode founding conf change: %w", err)
		}
		ents[i].Data = data
	}
	if err := r.st.SetConfState(cs); err != nil {
		return fmt.Errorf("replica: bootstrap: %w", err)
	}
	// An empty HardState over the founding entries: the core recognises
	// this log as committed by construction (every founder writes the same
	// entries) and hands the entries out to be applied like any others.
	if err := r.st.Save(pb.HardState{}, ents, true); err != nil {
		return fmt.Errorf("replica: bootstrap: %w", err)
	}
	for id, addr := range addrs {
		r.members[id] = addr
	}
	r.log.Info("bootstrapped", "voters", len(ids))
	return nil
}

// Start starts the replica goroutine. Calling it again, or after Stop, does nothing.
func (r *Replica) Start() {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.started || r.stopped {
		return
	}
	r.started = true
	go r.run()
}

// Stop stops the replica goroutine and waits for it (and any snapshot being
// written) to finish. Every pending future is resolved with ErrStopped (also
// matching ErrOutcomeUnknown if the proposal had been handed to Raft). It
// neither closes Storage nor the Transport: the caller owns them, and should
// close the Transport first so that no message arrives mid-stop (late ones
// are ignored anyway). It returns the fatal error that stopped the replica
// earlier, if any. Safe to call more than once.
func (r *Replica) Stop() error {
	r.lifeMu.Lock()
	if !r.stopped {
		r.stopped = true
		close(r.stopc)
		if !r.started {
			r.shutdown()
		}
	}
	r.lifeMu.Unlock()
	<-r.donec
	return r.err
}

// Done is closed once the replica has stopped, by Stop or by a fatal error.
func (r *Replica) Done() <-chan struct{} { return r.donec }

// Err returns the fatal error that stopped the replica, or nil. It is
// meaningful once Done is closed.
func (r *Replica) Err() error {
	select {
	case <-r.donec:
		return r.err
	default:
		return nil
	}
}

// stoppedErr is the error for requests that meet a stopped replica.
func (r *Replica) stoppedErr() error {
	select {
	case <-r.donec:
		if r.err != nil {
			return fmt.Errorf("%w: %w", ErrStopped, r.err)
		}
	default:
	}
	return ErrStopped
}

// run is the replica goroutine.
func (r *Replica) run() {
	ticker := time.NewTicker(r.cfg.TickInterval)
	defer ticker.Stop()
	var err error
	for err == nil {
		select {
		case <-ticker.C:
			r.rn.Tick()
			r.ticks++
			r.onTick()
		case m := <-r.recvc:
			r.step(m)
		case p := <-r.propc:
			r.propose(p)
		case w := <-r.readc:
			r.reads.add(w)
		case f := <-r.ctrlc:
			f()
		case <-r.reportc:
			r.handleReports()
		case res := <-r.snapDonec:
			err = r.finishSnapshot(res)
		case <-r.stopc:
			r.shutdown()
			return
		}
		if err != nil {
			break
		}
		// Take whatever else is already queued, so that many proposals go
		// into one Ready: one batch of entries, one fsync, one MsgApp.
		r.drainInputs(1024)
		r.flushReads()
		for err == nil && r.rn.HasReady() {
			err = r.handleReady()
		}
		if err == nil {
			err = r.maybeSnapshot()
		}
	}
	r.fail(err)
}

// drainInputs handles up to max queued inputs without blocking.
func (r *Replica) drainInputs(max int) {
	for range max {
		select {
		case m := <-r.recvc:
			r.step(m)
		case p := <-r.propc:
			r.propose(p)
		case w := <-r.readc:
			r.reads.add(w)
		default:
			return
		}
	}
}

// fail stops the replica after a fatal error: a storage or state machine
// error leaves the member in a state it cannot vouch for, so it stops
// rather than keep going (and, for example, acknowledge a write that is not
// durable).
func (r *Replica) fail(err error) {
	r.log.Error("replica stopping on fatal error", "err", err)
	r.lifeMu.Lock()
	r.err = err
	if !r.stopped {
		r.stopped = true
		close(r.stopc)
	}
	r.lifeMu.Unlock()
	r.shutdown()
}

// shutdown resolves everything still pending and closes donec. It runs on
// the loop goroutine, or in Stop when the loop never started.
func (r *Replica) shutdown() {
	r.wg.Wait() // a snapshot being written finishes (or fails) first
	select {
	case <-r.snapDonec:
	default:
	}
	stopErr := ErrStopped
	if r.err != nil {
		stopErr = fmt.Errorf("%w: %w", ErrStopped, r.err)
	}
	unknown := fmt.Errorf("%w: %w", stopErr, ErrOutcomeUnknown)
	for seq, p := range r.pending {
		delete(r.pending, seq)
		p.finish(r, nil, unknown)
	}
	for {
		select {
		case p := <-r.propc:
			if p.state.CompareAndSwap(stateQueued, stateCanceled) {
				p.finish(r, nil, stopErr)
			}
			continue
		case w := <-r.readc:
			w.finish(r, stopErr)
			continue
		default:
		}
		break
	}
	r.reads.failAll(r, stopErr)
	r.snap.failWaiters(stopErr)
	if r.rn != nil {
		r.pub.setStatus(r.buildStatus())
	}
	close(r.donec)
}

// do runs f on the loop goroutine and waits for it to have run.
func (r *Replica) do(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case r.ctrlc <- func() { f(); close(ran) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.donec:
		return r.stoppedErr()
	}
	<-ran
	return nil
}

// step feeds a message from a peer to the core.
func (r *Replica) step(m pb.Message) {
	if err := r.rn.Step(m); err != nil {
		r.log.Debug("step failed", "type", m.Type.String(), "from", uint64(m.From), "err", err)
	}
}

// onTick does the runtime's periodic housekeeping.
func (r *Replica) onTick() {
	r.sweepAbandoned()
	r.reads.expire(r, r.ticks, uint64(2*r.cfg.ElectionTicks))
}

// Campaign makes this member start an election now.
func (r *Replica) Campaign(ctx context.Context) error {
	var err error
	if derr := r.do(ctx, func() { err = r.rn.Campaign() }); derr != nil {
		return derr
	}
	if err != nil {
		return fmt.Errorf("replica: campaign: %w", err)
	}
	return nil
}

// TransferLeadership hands leadership to member to (0: the most caught-up
// voter) and waits until that member leads. It fails with ErrTransferFailed
// if that does not happen within two election timeouts.
func (r *Replica) TransferLeadership(ctx context.Context, to pb.NodeID) error {
	var err error
	derr := r.do(ctx, func() {
		if to == pb.None {
			to, err = r.pickTransferee()
			if err != nil {
				return
			}
		}
		if to == r.id && r.lead == r.id {
			return
		}
		r.rn.TransferLeadership(to)
	})
	if derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	timer := time.NewTimer(r.transferTTL)
	defer timer.Stop()
	for {
		changed := r.pub.leaderChanged()
		if r.Leader() == to {
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return fmt.Errorf("%w: member %d does not lead after %v", ErrTransferFailed, to, r.transferTTL)
		case <-ctx.Done():
			return ctx.Err()
		case <-r.donec:
			return r.stoppedErr()
		}
	}
}

// pickTransferee returns the voter, other than this leader, with the
// highest match index (the one that can take over soonest).
func (r *Replica) pickTransferee() (pb.NodeID, error) {
	st := r.rn.Status()
	if st.SoftState.Role != raft.RoleLeader {
		return pb.None, fmt.Errorf("replica: pick a transferee: %w", &raft.NotLeaderError{Leader: st.SoftState.Lead})
	}
	var best pb.NodeID
	var bestMatch pb.Index
	for _, v := range st.ConfState.Voters {
		pr, ok := st.Progress[v]
		if v == r.id || !ok {
			continue
		}
		if best == pb.None || pr.Match > bestMatch || (pr.Match == bestMatch && v < best) {
			best, bestMatch = v, pr.Match
		}
	}
	if best == pb.None {
		return pb.None, fmt.Errorf("%w: no other voter to hand leadership to", ErrTransferFailed)
	}
	return best, nil
}

// Step implements transport.Handler: it queues a message from a peer for
// the replica goroutine. It never blocks: when the queue is full the message
// is dropped and Raft's retries make up for it.
func (r *Replica) Step(m pb.Message) {
	if m.Type.IsLocal() {
		r.log.Warn("dropping local message type from the network", "type", m.Type.String(), "from", uint64(m.From))
		return
	}
	select {
	case r.recvc <- m:
	case <-r.stopc:
	default:
		r.dropped.Add(1)
		r.log.Debug("inbound queue full, dropping message", "type", m.Type.String(), "from", uint64(m.From))
	}
}

// report is an outcome the transport reports back.
type report struct {
	id          pb.NodeID
	snapshot    bool // a snapshot report (else unreachable)
	snapshotsOK bool
}

// ReportUnreachable implements transport.Handler: a message to id could not
// be delivered, so the leader probes it instead of streaming to it.
func (r *Replica) ReportUnreachable(id pb.NodeID) {
	r.queueReport(report{id: id})
}

// ReportSnapshot implements transport.Handler: streaming a snapshot to id
// ended, successfully or not. Reports are never dropped: a lost one would
// leave the leader waiting on that follower.
func (r *Replica) ReportSnapshot(id pb.NodeID, ok bool) {
	r.queueReport(report{id: id, snapshot: true, snapshotsOK: ok})
}

func (r *Replica) queueReport(rep report) {
	r.reportMu.Lock()
	// Unreachable reports for the same peer are idempotent; keep the queue
	// bounded by collapsing them.
	if !rep.snapshot {
		for _, q := range r.reports {
			if !q.snapshot && q.id == rep.id {
				r.reportMu.Unlock()
				return
			}
		}
	}
	r.reports = append(r.reports, rep)
	r.reportMu.Unlock()
	select {
	case r.reportc <- struct{}{}:
	default:
	}
}

func (r *Replica) handleReports() {
	r.reportMu.Lock()
	reps := r.reports
	r.reports = nil
	r.reportMu.Unlock()
	for _, rep := range reps {
		if rep.snapshot {
			r.rn.ReportSnapshot(rep.id, rep.snapshotsOK)
		} else {
			r.rn.ReportUnreachable(rep.id)
		}
	}
}
