package sim

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// crashPoint names where, inside the handling of one Ready, an armed crash
// strikes. Each is a moment a real process can die at.
type crashPoint uint8

const (
	crashNone          crashPoint = iota
	crashBeforeWrite              // after a leader's early MsgApp/MsgSnap went out, before the write
	crashBeforeSync               // after the write, before the fsync: the write is lost
	crashBeforeApply              // after persist and send, before applying
	crashBeforeAdvance            // after applying, before Advance
	numCrashPoints
)

func (p crashPoint) String() string {
	return [...]string{"none", "before-write", "before-sync", "before-apply", "before-advance"}[p]
}

// node is one simulated server: a RawNode, its disk, and a state machine.
//
// The state machine's whole state is summarised by (applied, smChain): the
// chain hash of the applied log prefix. That is all the invariants need, and
// it makes "two nodes applied different entries" a comparison of two numbers.
type node struct {
	id      pb.NodeID
	st      *storage
	rn      *raft.RawNode
	up      bool
	removed bool // removed from the group and shut down for good
	epoch   int  // incremented at every crash; older envelopes are dropped

	applied pb.Index
	smChain uint64
	conf    pb.ConfState

	// base is the state the node was created with (founders: the bootstrap
	// entries, applied; joiners: nothing), used when a restart re-applies
	// from scratch and there is no snapshot yet.
	baseApplied pb.Index
	baseChain   uint64
	baseConf    pb.ConfState

	role raft.Role
	term pb.Term
	lead pb.NodeID

	snapIn  map[pb.Index]uint64 // snapshot payloads received with MsgSnap
	snaps   map[pb.Index]uint64 // every snapshot this node's storage held: index -> chain
	reads   []pendingRead
	crashAt crashPoint
	// crashOnWrite delays an armed crash to the next Ready that writes
	// entries or a hard state (tests of injected persistence bugs).
	crashOnWrite bool
	reports      []func() // ReportSnapshot/ReportUnreachable calls queued until after Advance
	restarts     int
}

func newNode(id pb.NodeID) *node {
	return &node{id: id, st: newStorage(), snaps: map[pb.Index]uint64{}}
}

type pendingRead struct {
	ctx   string
	index pb.Index
	rec   *readRec
}

// start creates the RawNode from the durable state. reapply selects the
// restart flavour: false resumes from the state machine's checkpoint, true
// throws the state machine away and rebuilds it from the newest snapshot (or
// the founding state), re-applying the log after it.
func (s *Sim) start(n *node, reapply bool) error {
	n.st.crash() // the written-but-unsynced view is gone either way
	if s.cfg.MemoryStorage && n.st.ms == nil {
		n.st.ms = raft.NewMemoryStorage()
	}
	l := &n.st.cur
	if reapply {
		if l.snap.Index > n.baseApplied {
			n.applied, n.smChain, n.conf = l.snap.Index, l.chains[0], cloneConf(l.snap.ConfState)
		} else {
			n.applied, n.smChain, n.conf = n.baseApplied, n.baseChain, cloneConf(n.baseConf)
		}
		n.st.setApplied(n.applied, n.smChain, n.conf)
	} else {
		n.applied, n.smChain, n.conf = l.smApplied, l.smChain, cloneConf(l.smConf)
		if l.snap.Index > n.applied {
			// A snapshot was persisted but the crash came before the state
			// machine restored it: restore it now, as a runtime must.
			n.applied, n.smChain, n.conf = l.snap.Index, l.chains[0], cloneConf(l.snap.ConfState)
			n.st.setApplied(n.applied, n.smChain, n.conf)
		}
	}
	if err := n.st.rebuildMemory(); err != nil {
		return fmt.Errorf("restart node %d: %w", n.id, err)
	}
	cfg := raft.Config{
		ID:              n.id,
		Storage:         n.st,
		Applied:         n.applied,
		ElectionTick:    s.cfg.ElectionTick,
		HeartbeatTick:   s.cfg.HeartbeatTick,
		MaxSizePerMsg:   s.cfg.MaxSizePerMsg,
		MaxInflightMsgs: s.cfg.MaxInflightMsgs,
		DisablePreVote:  s.cfg.DisablePreVote,
		Rand:            newRand(s.rng.Uint64(), s.rng.Uint64()),
	}
	rn, err := raft.NewRawNode(cfg)
	if err != nil {
		return fmt.Errorf("restart node %d (applied %d, hard state %+v, log (%d, %d]): %w",
			n.id, n.applied, l.hs, l.snap.Index, l.lastIndex(), err)
	}
	if rn == nil {
		return fmt.Errorf("restart node %d: NewRawNode returned nil without an error", n.id)
	}
	n.rn, n.up = rn, true
	n.snapIn = map[pb.Index]uint64{}
	n.reads, n.reports, n.crashAt = nil, nil, crashNone
	n.role, n.term, n.lead = raft.RoleFollower, l.hs.Term, pb.None
	return nil
}

// crash stops n, losing everything not synced.
func (s *Sim) crash(n *node) {
	if !n.up {
		return
	}
	s.tracef("crash %d (armed point %s)", n.id, n.crashAt)
	n.up = false
	n.rn = nil
	n.epoch++
	n.st.crash()
	n.reads, n.reports = nil, nil
	n.crashAt = crashNone
	n.restarts++
}

// handleReady handles one Ready in the order documented on raft.Ready, with
// an optionally armed crash at one of the points in between.
func (s *Sim) handleReady(n *node) error {
	rd := n.rn.Ready()
	armed := n.crashAt
	if n.crashOnWrite && len(rd.Entries) == 0 && rd.HardState.IsEmpty() {
		n.crashAt = crashNone
	}
	defer func() {
		if n.up && n.crashAt == crashNone {
			n.crashAt = armed // still armed for a Ready that writes
		}
	}()
	s.tracef("ready %d: hs=%+v ents=%s commit=%s snap=%d msgs=%d reads=%d sync=%v",
		n.id, rd.HardState, entsRange(rd.Entries), entsRange(rd.CommittedEntries), rd.Snapshot.Index, len(rd.Messages), len(rd.ReadStates), rd.MustSync)
	if err := s.checkMustSync(n, &rd); err != nil {
		return err
	}

	// 1. Messages that may go before the write: a leader's MsgApp and MsgSnap
	// (thesis §10.2.1).
	sent := make([]bool, len(rd.Messages))
	early := s.rng.IntN(2) == 0
	for i := range rd.Messages {
		t := rd.Messages[i].Type
		if early && (t == pb.MsgApp || t == pb.MsgSnap) {
			if err := s.sendMsg(n, rd.Messages[i]); err != nil {
				return err
			}
			sent[i] = true
		}
	}
	if n.crashAt == crashBeforeWrite {
		s.crash(n)
		return nil
	}

	// 2. Write snapshot, entries and hard state, then sync.
	if !rd.Snapshot.IsEmpty() {
		chain, ok := n.snapIn[rd.Snapshot.Index]
		if !ok {
			return fmt.Errorf("node %d: Ready.Snapshot at index %d, but no MsgSnap with that index was delivered to it", n.id, rd.Snapshot.Index)
		}
		if rd.Snapshot.Index > s.chk.committedMax() || chain != s.chk.committed[rd.Snapshot.Index] {
			return fmt.Errorf("snapshot: node %d installs a snapshot at %d that is not the committed log prefix (known commit %d)", n.id, rd.Snapshot.Index, s.chk.committedMax())
		}
		if err := n.st.applySnapshot(rd.Snapshot, chain); err != nil {
			return fmt.Errorf("node %d: %w", n.id, err)
		}
		n.snaps[rd.Snapshot.Index] = chain
	}
	if err := n.st.appendEntries(rd.Entries); err != nil {
		return fmt.Errorf("node %d: %w", n.id, err)
	}
	if !rd.Snapshot.IsEmpty() {
		if err := s.chk.observeStored(n, rd.Snapshot.Index, rd.Snapshot.Index); err != nil {
			return err
		}
	}
	if len(rd.Entries) > 0 {
		if err := s.chk.observeStored(n, rd.Entries[0].Index, rd.Entries[len(rd.Entries)-1].Index); err != nil {
			return err
		}
	}
	if !rd.HardState.IsEmpty() {
		old := n.st.cur.hs
		if rd.HardState.Term < old.Term {
			return fmt.Errorf("node %d: hard state term went backwards from %d to %d", n.id, old.Term, rd.HardState.Term)
		}
		if rd.HardState.Term == old.Term && old.Vote != pb.None && rd.HardState.Vote != old.Vote {
			return fmt.Errorf("node %d: changed its vote in term %d from %d to %d", n.id, old.Term, old.Vote, rd.HardState.Vote)
		}
		if rd.HardState.Commit < old.Commit {
			return fmt.Errorf("node %d: commit index went backwards from %d to %d", n.id, old.Commit, rd.HardState.Commit)
		}
		n.st.setHardState(rd.HardState)
		s.chk.observeTerm(rd.HardState.Term)
	}
	if err := s.chk.observeCommit(n, n.st.cur.hs.Commit); err != nil {
		return err
	}
	if n.crashAt == crashBeforeSync {
		s.crash(n)
		return nil
	}
	// A Ready that needs no fsync may leave its write in the page cache; a
	// later sync or a crash decides its fate.
	if rd.MustSync || s.rng.IntN(2) == 0 {
		n.st.sync()
	}

	// 3. Send the rest.
	for i := range rd.Messages {
		if !sent[i] {
			if err := s.sendMsg(n, rd.Messages[i]); err != nil {
				return err
			}
		}
	}
	if n.crashAt == crashBeforeApply {
		s.crash(n)
		return nil
	}

	// 4. Install the snapshot, apply committed entries, serve reads.
	//
	// The state machine records its applied index durably as it applies, and
	// a restart passes that index as Config.Applied, which must not exceed
	// the durable commit index: so a commit-only HardState that skipped its
	// fsync is synced before entries it covers are applied.
	if len(rd.CommittedEntries) > 0 && n.st.durable.hs.Commit < rd.CommittedEntries[len(rd.CommittedEntries)-1].Index {
		n.st.sync()
	}
	if !rd.Snapshot.IsEmpty() {
		if rd.Snapshot.Index <= n.applied {
			return fmt.Errorf("node %d: Ready.Snapshot at %d does not move the state machine forward from applied %d", n.id, rd.Snapshot.Index, n.applied)
		}
		n.applied, n.smChain, n.conf = rd.Snapshot.Index, n.st.cur.chains[0], cloneConf(rd.Snapshot.ConfState)
		n.st.setApplied(n.applied, n.smChain, n.conf)
	}
	for _, rs := range rd.ReadStates {
		rec, err := s.chk.observeReadState(n, rs)
		if err != nil {
			return err
		}
		n.reads = append(n.reads, pendingRead{ctx: string(rs.RequestCtx), index: rs.Index, rec: rec})
	}
	if err := s.serveReads(n); err != nil {
		return err
	}
	for i := range rd.CommittedEntries {
		if err := s.apply(n, &rd.CommittedEntries[i]); err != nil {
			return err
		}
		if err := s.serveReads(n); err != nil {
			return err
		}
	}
	if n.crashAt == crashBeforeAdvance {
		s.crash(n)
		return nil
	}
	n.rn.Advance(rd)
	reports := n.reports
	n.reports = nil
	for _, f := range reports {
		f()
	}
	return nil
}

// checkMustSync checks that a Ready that changes term, vote or entries asks
// for an fsync (the persistence contract on raft.Ready).
func (s *Sim) checkMustSync(n *node, rd *raft.Ready) error {
	if rd.MustSync {
		return nil
	}
	hs := n.st.cur.hs
	if len(rd.Entries) > 0 || (!rd.HardState.IsEmpty() && (rd.HardState.Term != hs.Term || rd.HardState.Vote != hs.Vote)) {
		return fmt.Errorf("node %d: Ready with new entries, term or vote does not set MustSync (hs %+v -> %+v, %d entries)", n.id, hs, rd.HardState, len(rd.Entries))
	}
	return nil
}

// apply applies one committed entry to n's state machine.
func (s *Sim) apply(n *node, e *pb.Entry) error {
	h, err := s.chk.observeApply(n, e)
	if err != nil {
		return err
	}
	n.applied, n.smChain = e.Index, h
	if e.Type == pb.EntryConfChange {
		var cc pb.ConfChange
		if err := cc.UnmarshalBinary(e.Data); err != nil {
			return fmt.Errorf("node %d: committed conf change at index %d does not decode: %w", n.id, e.Index, err)
		}
		n.conf = cloneConf(n.rn.ApplyConfChange(cc))
		s.tracef("apply-conf %d: index %d %s %d -> voters %v learners %v", n.id, e.Index, cc.Type, cc.NodeID, n.conf.Voters, n.conf.Learners)
		if cc.Type == pb.ConfChangeRemove {
			s.removals = append(s.removals, removal{id: cc.NodeID, index: e.Index, conf: cloneConf(n.conf)})
		}
	}
	n.st.setApplied(n.applied, n.smChain, n.conf)
	return nil
}

// serveReads serves every pending read whose index n has applied.
func (s *Sim) serveReads(n *node) error {
	keep := n.reads[:0]
	for _, r := range n.reads {
		if r.index > n.applied && !s.cfg.Bugs.ServeReadsEarly {
			keep = append(keep, r)
			continue
		}
		s.readsServed++
		if err := s.chk.serveRead(n, r.ctx, r.rec, r.index, n.applied); err != nil {
			return err
		}
	}
	n.reads = keep
	return nil
}

// sendMsg hands a message from n to the network.
func (s *Sim) sendMsg(n *node, m pb.Message) error {
	// Forwarded requests keep their originator in From (a re-forwarded
	// proposal, a transfer request naming the transferee); anything else
	// must come from its sender.
	if m.From != n.id && m.Type != pb.MsgProp && m.Type != pb.MsgTransferLeader && m.Type != pb.MsgReadIndex {
		return fmt.Errorf("node %d sent %s with From=%d", n.id, m.Type, m.From)
	}
	if m.Type.IsLocal() {
		return fmt.Errorf("node %d sent local message %s to %d", n.id, m.Type, m.To)
	}
	if !s.cfg.skipDurabilityChecks {
		if err := s.chk.checkDurable(n, &m); err != nil {
			return err
		}
	}
	e := envelope{msg: m, sender: n.id, fromEpoch: n.epoch}
	if m.Type == pb.MsgSnap {
		if m.Snapshot == nil {
			return fmt.Errorf("node %d sent MsgSnap to %d without snapshot metadata", n.id, m.To)
		}
		// The core may have built the message before a compaction replaced
		// the snapshot it names; a transport would still hold that file.
		chain, ok := n.snaps[m.Snapshot.Index]
		if !ok || m.Snapshot.Index > n.st.cur.snap.Index {
			return fmt.Errorf("node %d sent MsgSnap at index %d, which its storage never held as a snapshot (current %d)", n.id, m.Snapshot.Index, n.st.cur.snap.Index)
		}
		e.snapChain = chain
	}
	if s.cfg.WireCodec {
		buf, err := m.AppendBinary(nil)
		if err != nil {
			return fmt.Errorf("encode %s from %d: %w", m.Type, n.id, err)
		}
		var d pb.Message
		if err := d.UnmarshalBinary(buf); err != nil {
			return fmt.Errorf("decode %s from %d: %w", m.Type, n.id, err)
		}
		e.msg = d
	}
	if dropped := s.net.send(e, s.now); dropped {
		s.reportLost(n, m)
	}
	return nil
}

// reportLost tells the sender's core that a message did not get through, as
// a transport would: snapshots always (the stream failed), other messages
// sometimes.
func (s *Sim) reportLost(from *node, m pb.Message) {
	if !from.up {
		return
	}
	rn, to := from.rn, m.To
	switch {
	case m.Type == pb.MsgSnap:
		from.reports = append(from.reports, func() { rn.ReportSnapshot(to, false) })
	case m.Type == pb.MsgApp && s.rng.IntN(4) == 0:
		from.reports = append(from.reports, func() { rn.ReportUnreachable(to) })
	}
}

// deliver delivers one envelope, if its sender's epoch, the link and the
// receiver allow it.
func (s *Sim) deliver(e envelope) error {
	m := e.msg
	from, to := s.nodes[e.sender], s.nodes[m.To]
	if from == nil || from.epoch != e.fromEpoch {
		s.tracef("drop %s %d->%d (sender's old epoch)", m.Type, e.sender, m.To)
		return nil
	}
	if to == nil || !to.up || !s.net.linkUp(e.sender, m.To) {
		s.tracef("drop %s %d->%d (receiver down or link cut)", m.Type, e.sender, m.To)
		s.reportLost(from, m)
		s.flushReports(from)
		return nil
	}
	if m.Type == pb.MsgSnap {
		if m.Snapshot == nil {
			return fmt.Errorf("MsgSnap %d->%d lost its snapshot metadata in transit (wire codec)", e.sender, m.To)
		}
		to.snapIn[m.Snapshot.Index] = e.snapChain
	}
	s.tracef("deliver %s %d->%d (via %d) term=%d logterm=%d index=%d commit=%d ents=%s reject=%v hint=%d",
		m.Type, m.From, m.To, e.sender, m.Term, m.LogTerm, m.Index, m.Commit, entsRange(m.Entries), m.Reject, m.RejectHint)
	s.delivered++
	// A Step error means the core refused the message; that is its call to
	// make (the invariants judge the outcome), so it is traced, not fatal.
	if err := to.rn.Step(m); err != nil {
		s.stepErrors++
		s.tracef("step error at %d: %v", to.id, err)
	}
	s.touch(to)
	if m.Type == pb.MsgSnap && from.up {
		rn, id := from.rn, to.id
		from.reports = append(from.reports, func() { rn.ReportSnapshot(id, true) })
		s.flushReports(from)
	}
	return nil
}

// flushReports runs queued local reports of a node that is not in the middle
// of a Ready (deliveries happen between Readys).
func (s *Sim) flushReports(n *node) {
	if !n.up {
		n.reports = nil
		return
	}
	reports := n.reports
	n.reports = nil
	for _, f := range reports {
		f()
	}
	s.touch(n)
}

func entsRange(ents []pb.Entry) string {
	if len(ents) == 0 {
		return "-"
	}
	return fmt.Sprintf("[%d..%d]", ents[0].Index, ents[len(ents)-1].Index)
}
