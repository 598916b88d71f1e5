package raft

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/raft/tracker"
)

// appendEntries stamps ents with the leader's term and the next indexes and
// appends them to the leader's log. It fails (appending nothing) when the
// uncommitted budget is exhausted. The broadcast is deferred to the next
// Ready, so that every proposal made between two Readys travels in one
// MsgApp per follower (batching, thesis §10.2).
func (r *raft) appendEntries(ents []pb.Entry) error {
	size := entsSize(ents)
	// Always admit a proposal when nothing is uncommitted, so that an entry
	// larger than the budget can still get through alone.
	if r.uncommittedSize > 0 && size > 0 && r.uncommittedSize+size > r.cfg.MaxUncommittedEntriesSize {
		return fmt.Errorf("raft: %d bytes uncommitted, limit %d: %w", r.uncommittedSize, r.cfg.MaxUncommittedEntriesSize, ErrProposalDropped)
	}
	last := r.log.lastIndex()
	for i := range ents {
		ents[i].Term = r.term
		ents[i].Index = last + 1 + pb.Index(i)
	}
	r.log.append(ents)
	r.uncommittedSize += size
	r.needBcast = true
	// The leader's own entries count towards the quorum only once durable,
	// that is after Advance (see Ready.Messages); with a single voter, that
	// is also when they commit.
	return nil
}

func (r *raft) stepLeader(m pb.Message) error {
	switch m.Type {
	case pb.MsgBeat:
		r.bcastHeartbeat()
		return nil
	case pb.MsgCheckQuorum:
		r.checkQuorum()
		return nil
	case pb.MsgProp:
		return r.handlePropose(m)
	case pb.MsgReadIndex:
		r.handleReadIndex(m)
		return nil
	}

	pr := r.trk.Progress[m.From]
	if pr == nil {
		return ErrStepPeerNotFound
	}
	switch m.Type {
	case pb.MsgAppResp:
		r.handleAppendResponse(m, pr)
	case pb.MsgHeartbeatResp:
		r.handleHeartbeatResponse(m, pr)
	case pb.MsgSnapStatus:
		r.handleSnapStatus(m, pr)
	case pb.MsgUnreachable:
		// The transport dropped a message: stop streaming optimistically
		// and probe again.
		if pr.State == tracker.StateReplicate {
			pr.BecomeProbe()
		}
	case pb.MsgTransferLeader:
		r.handleTransferLeader(m, pr)
	}
	return nil
}

func (r *raft) handlePropose(m pb.Message) error {
	// Copy: the entries are stamped in place, and the caller (or the
	// transport's receive buffer) owns m.Entries.
	return r.propose(append([]pb.Entry(nil), m.Entries...))
}

// propose appends ents (which it stamps in place) to the leader's log.
func (r *raft) propose(ents []pb.Entry) error {
	if len(ents) == 0 {
		return fmt.Errorf("raft: proposal without entries: %w", errMalformed)
	}
	if !r.trk.IsMember(r.id) {
		return fmt.Errorf("raft: this node was removed from the group: %w", ErrProposalDropped)
	}
	if r.leadTransferee != pb.None {
		return fmt.Errorf("raft: leadership is being transferred to %d: %w", r.leadTransferee, ErrProposalDropped)
	}
	confIndex := pb.Index(0)
	for i := range ents {
		e := &ents[i]
		switch e.Type {
		case pb.EntryNormal:
		case pb.EntryConfChange:
			if err := r.checkConfChangeProposal(e.Data); err != nil {
				return err
			}
			if confIndex != 0 {
				return ErrConfChangePending
			}
			confIndex = r.log.lastIndex() + 1 + pb.Index(i)
		default:
			return fmt.Errorf("raft: proposal with entry type %d: %w", e.Type, errMalformed)
		}
	}
	if err := r.appendEntries(ents); err != nil {
		return err
	}
	if confIndex != 0 {
		r.pendingConfIndex = confIndex
	}
	return nil
}

// sendAppend sends to id the entries it lacks, or a snapshot if they were
// compacted. With sendIfEmpty it sends even when there is nothing new (to
// carry the commit index or probe). It reports whether it sent anything.
func (r *raft) sendAppend(to pb.NodeID, sendIfEmpty bool) bool {
	pr := r.trk.Progress[to]
	if pr == nil || pr.IsPaused() {
		return false
	}
	prevIndex := pr.Next - 1
	prevTerm, errT := r.log.term(prevIndex)
	var ents []pb.Entry
	var errE error
	if pr.State != tracker.StateReplicate || !pr.Inflights.Full() {
		ents, errE = r.log.entries(pr.Next, r.cfg.MaxSizePerMsg)
	}
	if len(ents) == 0 && !sendIfEmpty && errT == nil && errE == nil {
		return false
	}
	if errT != nil || errE != nil {
		return r.sendSnapshot(to, pr)
	}
	r.send(pb.Message{To: to, Type: pb.MsgApp, Index: prevIndex, LogTerm: prevTerm, Entries: ents, Commit: r.log.committed})
	last := prevIndex
	if n := len(ents); n > 0 {
		last = ents[n-1].Index
	}
	pr.UpdateOnEntriesSend(len(ents), last)
	return true
}

// sendSnapshot sends the newest snapshot's metadata; the runtime streams
// the data alongside and reports the outcome with ReportSnapshot.
func (r *raft) sendSnapshot(to pb.NodeID, pr *tracker.Progress) bool {
	if !pr.RecentActive {
		// Do not tie up a snapshot stream for a member that seems down.
		return false
	}
	snap, err := r.log.snapshot()
	if err != nil {
		if errors.Is(err, ErrSnapshotTemporarilyUnavailable) {
			return false
		}
		panic(fmt.Sprintf("raft: storage snapshot: %v", err))
	}
	if snap.IsEmpty() {
		// Entries are gone but no snapshot covers them: Storage broke its contract.
		panic(fmt.Sprintf("raft: entries for %d compacted but storage has no snapshot", to))
	}
	r.logger.Info("sending snapshot", "to", to, "index", snap.Index, "term", snap.Term)
	r.send(pb.Message{To: to, Type: pb.MsgSnap, Snapshot: &snap})
	pr.BecomeSnapshot(snap.Index)
	return true
}

// bcastAppend sends pending entries (or at least the commit index) to every
// other member, in id order.
func (r *raft) bcastAppend() {
	for _, id := range r.trk.IDs() {
		if id != r.id {
			r.sendAppend(id, true)
		}
	}
}

// flush performs the work deferred to Ready time: one broadcast for all the
// entries appended and commits made since the last Ready, and one heartbeat
// round for all the read requests received.
func (r *raft) flush() {
	if r.role != RoleLeader {
		r.needBcast = false
		return
	}
	if r.needBcast {
		r.needBcast = false
		r.bcastAppend()
	}
	if r.reads.needRound() {
		r.bcastHeartbeat()
		// With no other voter the round is confirmed as soon as it starts.
		r.releaseConfirmedReads()
	}
}

func (r *raft) hasFlush() bool {
	return r.role == RoleLeader && (r.needBcast || r.reads.needRound())
}

func (r *raft) bcastHeartbeat() {
	ctx := r.reads.startRound()
	for _, id := range r.trk.IDs() {
		if id == r.id {
			continue
		}
		pr := r.trk.Progress[id]
		// Never tell a follower to commit beyond what it is known to hold:
		// its log may still differ from ours past Match.
		commit := min(pr.Match, r.log.committed)
		r.send(pb.Message{To: id, Type: pb.MsgHeartbeat, Commit: commit, Context: ctx})
	}
}

// maybeCommit advances the commit index to what a majority has matched, if
// that entry is of the current term: entries of earlier terms are committed
// only indirectly, by a later entry of this term (Raft §5.4.2, Figure 8).
func (r *raft) maybeCommit() bool {
	idx := r.trk.Committed()
	if idx <= r.log.committed || r.log.termOr0(idx) != r.term {
		return false
	}
	r.log.commitTo(idx)
	r.needBcast = true // followers learn the new commit index
	r.releasePendingReads()
	return true
}

// committedEntryInCurrentTerm reports whether this leader has committed an
// entry of its term: before that it does not know the true commit index
// (thesis §6.4) nor may it change membership (Ongaro's single-server fix).
func (r *raft) committedEntryInCurrentTerm() bool {
	return r.log.termOr0(r.log.committed) == r.term
}

func (r *raft) handleAppendResponse(m pb.Message, pr *tracker.Progress) {
	pr.RecentActive = true
	if m.Index > r.log.lastIndex() {
		r.logger.Warn("append response beyond our last index", "from", m.From, "index", m.Index)
		return
	}
	if m.Reject {
		// Use the follower's hint to skip every entry of a term it does not
		// share with us in one round trip (thesis §5.3).
		next := m.RejectHint
		if m.LogTerm > 0 {
			next, _ = r.log.findConflictByTerm(m.RejectHint, m.LogTerm)
		}
		if pr.MaybeDecrTo(m.Index, next) {
			if pr.State == tracker.StateReplicate {
				pr.BecomeProbe()
			}
			r.sendAppend(m.From, true)
		}
		return
	}
	if !pr.MaybeUpdate(m.Index) {
		return
	}
	switch {
	case pr.State == tracker.StateProbe:
		pr.BecomeReplicate()
	case pr.State == tracker.StateSnapshot && pr.Match+1 >= r.log.firstIndex():
		// The follower caught up (through the snapshot or otherwise).
		pr.BecomeProbe()
		pr.BecomeReplicate()
	case pr.State == tracker.StateReplicate:
		pr.Inflights.FreeLE(m.Index)
	}
	// Committing sets needBcast: the next Ready carries the new commit
	// index to everyone.
	r.maybeCommit()
	// Keep the pipeline full: stream what the window allows (the ack may
	// have unpaused a probe or freed window slots).
	for r.sendAppend(m.From, false) {
	}
	if m.From == r.leadTransferee && pr.Match == r.log.lastIndex() {
		r.logger.Info("transferee caught up; sending timeout-now", "to", m.From)
		r.sendTimeoutNow(m.From)
	}
}

func (r *raft) handleHeartbeatResponse(m pb.Message, pr *tracker.Progress) {
	pr.RecentActive = true
	pr.MsgAppFlowPaused = false
	if pr.State == tracker.StateReplicate && pr.Inflights.Full() {
		// The follower is alive but its acknowledgements were lost (or are
		// slow): let one more MsgApp through so that progress resumes.
		pr.Inflights.FreeFirstOne()
	}
	// An empty MsgApp if need be: in replicate state the optimistic Next
	// may point past what the follower has (the messages were lost); its
	// rejection then restarts replication from Match.
	if pr.Match < r.log.lastIndex() {
		r.sendAppend(m.From, true)
	}
	if r.reads.ack(m.From, m.Context) {
		r.releaseConfirmedReads()
	}
}

func (r *raft) handleSnapStatus(m pb.Message, pr *tracker.Progress) {
	if pr.State != tracker.StateSnapshot {
		return
	}
	if m.Reject {
		// Sending failed: forget it; probing finds out again what is needed.
		pr.PendingSnapshot = 0
	}
	// On success, assume the follower has the snapshot and probe from there.
	// Either way wait for a heartbeat response before the next MsgApp.
	pr.BecomeProbe()
	pr.MsgAppFlowPaused = true
}

// checkQuorum steps down a leader that has not heard from a majority within
// an election timeout (thesis §6.2): it is probably partitioned away, and a
// new leader may already serve clients. It then starts a new round.
func (r *raft) checkQuorum() {
	r.trk.Progress[r.id].RecentActive = true
	if !r.trk.QuorumActive() {
		r.logger.Warn("stepping down: no quorum heard from within an election timeout", "term", r.term)
		r.becomeFollower(r.term, pb.None)
		return
	}
	for _, id := range r.trk.IDs() {
		if id != r.id {
			r.trk.Progress[id].RecentActive = false
		}
	}
}

// handleAppendEntries is a follower's side of AppendEntries (Raft §5.3).
func (r *raft) handleAppendEntries(m pb.Message) {
	if err := validAppend(m); err != nil {
		r.logger.Warn("dropped malformed append", "from", m.From, "err", err)
		return
	}
	if m.Index < r.log.committed {
		// Everything up to our commit index matches any leader's log.
		r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: r.log.committed})
		return
	}
	lastNew, ok, err := r.log.maybeAppend(m.Index, m.LogTerm, m.Commit, m.Entries)
	if err != nil {
		r.logger.Error("dropped append that conflicts with committed entries", "from", m.From, "err", err)
		return
	}
	if ok {
		// Sent after this Ready's entries are durable: the leader counts
		// them as replicated on the strength of this response.
		r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: lastNew})
		return
	}
	// Reject with a hint: the last index at or below m.Index whose term is
	// not above m.LogTerm; the leader skips the whole conflicting term.
	hintIndex, hintTerm := r.log.findConflictByTerm(min(m.Index, r.log.lastIndex()), m.LogTerm)
	r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: m.Index, Reject: true, RejectHint: hintIndex, LogTerm: hintTerm})
}

// validAppend checks what a correct leader guarantees about a MsgApp, so
// that garbage from the network cannot corrupt the log: entries are
// contiguous after m.Index, with terms non-decreasing from m.LogTerm up to
// the message's term.
func validAppend(m pb.Message) error {
	n := pb.Index(len(m.Entries))
	if m.Index+n < m.Index {
		return fmt.Errorf("raft: MsgApp index %d overflows: %w", m.Index, errMalformed)
	}
	prev := m.LogTerm
	if prev > m.Term {
		return fmt.Errorf("raft: MsgApp log term %d above message term %d: %w", prev, m.Term, errMalformed)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Index != m.Index+1+pb.Index(i) || e.Term < prev || e.Term > m.Term || e.Term == 0 ||
			(e.Type != pb.EntryNormal && e.Type != pb.EntryConfChange) {
			return fmt.Errorf("raft: MsgApp entry %d (index %d term %d type %d) out of place: %w", i, e.Index, e.Term, e.Type, errMalformed)
		}
		prev = e.Term
	}
	return nil
}

func (r *raft) handleHeartbeat(m pb.Message) {
	// The leader sends min(our match, its commit), so the entry there is
	// ours; one beyond our log can only come from a broken peer.
	if m.Commit <= r.log.lastIndex() {
		r.log.commitTo(m.Commit)
	}
	r.send(pb.Message{To: m.From, Type: pb.MsgHeartbeatResp, Context: m.Context})
}

// handleSnapshot installs the leader's snapshot if it is news to us.
func (r *raft) handleSnapshot(m pb.Message) {
	if m.Snapshot == nil {
		r.logger.Warn("dropped MsgSnap without snapshot", "from", m.From)
		return
	}
	s := *m.Snapshot
	if r.restore(s) {
		r.logger.Info("restored snapshot", "index", s.Index, "term", s.Term)
		r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: r.log.lastIndex()})
		return
	}
	r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: r.log.committed})
}

// restore resets the log to snapshot s unless we already have what it
// covers; the snapshot's membership becomes ours.
func (r *raft) restore(s pb.SnapshotMeta) bool {
	if s.Index <= r.log.committed || s.Term == 0 || s.Term > r.term {
		return false
	}
	if err := validConfState(s.ConfState); err != nil {
		r.logger.Warn("dropped snapshot with invalid conf state", "err", err)
		return false
	}
	if r.log.matchTerm(s.Index, s.Term) {
		// We hold the entry the snapshot ends at: the log through it matches
		// the leader's (Log Matching), so just commit up to it.
		r.log.commitTo(s.Index)
		return false
	}
	r.log.restore(s)
	r.trk.SetConfig(s.ConfState, r.log.lastIndex()+1)
	return true
}
