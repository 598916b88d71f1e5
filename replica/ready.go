package replica

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// handleReady handles one Ready in the order raft.Ready documents. Any
// error it returns is fatal to the member.
func (r *Replica) handleReady() error {
	rd := r.rn.Ready()
	prevLead, prevTerm := r.lead, r.term
	if rd.SoftState != nil {
		r.lead, r.role = rd.SoftState.Lead, rd.SoftState.Role
	}
	if !rd.HardState.IsEmpty() {
		r.term, r.commit = rd.HardState.Term, rd.HardState.Commit
	}

	// 1. A leader sends its MsgApp and MsgSnap before its own write, so that
	// followers persist in parallel with it (thesis §10.2.1); the core
	// counts the leader's own log only once Advance says it is durable.
	// Every other message waits for the write: a vote or an append
	// acknowledgement must never get ahead of the state it vouches for.
	var late []pb.Message
	if r.role == raft.RoleLeader {
		var early []pb.Message
		for _, m := range rd.Messages {
			if m.Type == pb.MsgApp || m.Type == pb.MsgSnap {
				early = append(early, m)
			} else {
				late = append(late, m)
			}
		}
		r.send(early)
	} else {
		late = rd.Messages
	}
	if !rd.Snapshot.IsEmpty() {
		// The received snapshot's file is already durable (ReceiveSnapshot
		// committed it before stepping the MsgSnap); record it in the log.
		if err := r.st.SaveSnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("replica: save snapshot %d: %w", rd.Snapshot.Index, err)
		}
	}
	if !rd.HardState.IsEmpty() || len(rd.Entries) > 0 {
		if err := r.st.Save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
			return fmt.Errorf("replica: save %d entries: %w", len(rd.Entries), err)
		}
	}
	r.send(late)

	// 2. Install the snapshot, then apply the committed entries.
	if !rd.Snapshot.IsEmpty() {
		if err := r.installSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := r.apply(rd.CommittedEntries); err != nil {
		return err
	}

	// 3. Resolve futures. Entries committed in this Ready have resolved their
	// proposals above; what is still pending after a leader or term change
	// may commit or not, and this member cannot tell which.
	if len(rd.ReadStates) > 0 {
		r.handleReadStates(rd.ReadStates)
	}
	if r.lead != prevLead || r.term != prevTerm {
		if len(r.pending) > 0 {
			r.failPending(fmt.Errorf("%w: leader changed from %d (term %d) to %d (term %d)",
				ErrOutcomeUnknown, prevLead, prevTerm, r.lead, r.term))
		}
		if r.lead != prevLead {
			r.reads.failUnconfirmed(r, fmt.Errorf("%w: leader changed before the read was confirmed", ErrNoLeader))
			r.log.Info("leader changed", "leader", uint64(r.lead), "term", uint64(r.term), "role", r.role.String())
		}
	}
	r.resolveReads()

	// 4. Hand the batch back.
	r.rn.Advance(rd)
	r.publish()
	return nil
}

// send hands messages to the transport; MsgSnap goes through the snapshot
// stream with the newest snapshot file.
func (r *Replica) send(msgs []pb.Message) {
	if len(msgs) == 0 {
		return
	}
	plain := msgs[:0:0]
	for _, m := range msgs {
		if m.Type != pb.MsgSnap {
			plain = append(plain, m)
			continue
		}
		r.sendSnapshot(m)
	}
	if len(plain) > 0 {
		r.tr.Send(plain)
	}
}

// apply applies committed entries: runs of normal entries in one
// StateMachine.Apply call each, conf changes in between.
func (r *Replica) apply(ents []pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	for _, e := range ents {
		if e.Index <= r.applied {
			continue // covered by a snapshot installed in this same Ready
		}
		switch e.Type {
		case pb.EntryNormal:
			if len(e.Data) == 0 {
				break // a leader's no-op
			}
			id, payload, ok := decodeEnvelope(e.Data)
			var owner *proposal
			if ok {
				owner = r.ownerOf(id)
			}
			if len(payload) == 0 {
				if owner != nil { // an enveloped empty payload: nothing to apply
					r.resolveApplied(id, nil)
				}
				break
			}
			ae := e
			ae.Data = payload
			r.applyBuf = append(r.applyBuf, ae)
			r.ownerBuf = append(r.ownerBuf, owner)
		case pb.EntryConfChange:
			if err := r.flushApply(); err != nil {
				return err
			}
			if err := r.applyConfChange(e); err != nil {
				return err
			}
		default:
			return fmt.Errorf("replica: entry %d has unknown type %d", e.Index, e.Type)
		}
		r.applied, r.appliedTerm = e.Index, e.Term
	}
	if err := r.flushApply(); err != nil {
		return err
	}
	r.resolveReads()
	return nil
}

// ownerOf returns the pending proposal of this incarnation with id, if any.
func (r *Replica) ownerOf(id proposalID) *proposal {
	if id.member != uint64(r.id) || id.incarnation != r.incarnation {
		return nil
	}
	return r.pending[id.seq]
}

// flushApply hands the collected normal entries to the state machine and
// resolves their futures.
func (r *Replica) flushApply() error {
	if len(r.applyBuf) == 0 {
		return nil
	}
	ents, owners := r.applyBuf, r.ownerBuf
	r.applyBuf, r.ownerBuf = ents[:0], owners[:0]
	defer func() {
		clear(ents)
		clear(owners)
	}()
	results, err := r.sm.Apply(ents)
	if err != nil {
		return fmt.Errorf("replica: apply entries %d..%d: %w", ents[0].Index, ents[len(ents)-1].Index, err)
	}
	if len(results) != len(ents) {
		return fmt.Errorf("replica: state machine returned %d results for %d entries", len(results), len(ents))
	}
	for i, p := range owners {
		if p == nil {
			continue
		}
		if r.pending[p.seq] == p {
			delete(r.pending, p.seq)
		}
		p.finish(r, results[i], nil)
	}
	return nil
}

// applyConfChange applies one committed membership change.
func (r *Replica) applyConfChange(e pb.Entry) error {
	var cc pb.ConfChange
	if err := cc.UnmarshalBinary(e.Data); err != nil {
		return fmt.Errorf("replica: decode conf change at %d: %w", e.Index, err)
	}
	id, payload, enveloped := decodeEnvelope(cc.Context)
	cc.Context = append([]byte(nil), payload...)
	cs := r.rn.ApplyConfChange(cc)
	if err := r.st.SetConfState(cs); err != nil {
		return fmt.Errorf("replica: record membership at %d: %w", e.Index, err)
	}
	r.confState = cloneConfState(cs)
	switch cc.Type {
	case pb.ConfChangeAddVoter, pb.ConfChangeAddLearner:
		delete(r.removed, cc.NodeID) // committed anyway (proposed before the removal was known): a member again
		if len(cc.Context) > 0 {
			r.members[cc.NodeID] = string(cc.Context)
		} else if _, ok := r.members[cc.NodeID]; !ok {
			r.members[cc.NodeID] = ""
		}
	case pb.ConfChangeRemove:
		delete(r.members, cc.NodeID)
		r.removed[cc.NodeID] = true
	}
	r.log.Info("membership changed", "change", cc.Type.String(), "node", uint64(cc.NodeID),
		"voters", len(cs.Voters), "learners", len(cs.Learners), "index", uint64(e.Index))
	if r.cfg.OnConfChange != nil {
		r.cfg.OnConfChange(cc, cloneConfState(cs))
	}
	if enveloped {
		r.resolveApplied(id, nil)
	}
	return nil
}

func cloneConfState(cs pb.ConfState) pb.ConfState {
	return pb.ConfState{
		Voters:   append([]pb.NodeID(nil), cs.Voters...),
		Learners: append([]pb.NodeID(nil), cs.Learners...),
	}
}
