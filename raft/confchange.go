package raft

import (
	"fmt"
	"slices"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Membership changes one server at a time (thesis §4.1): any majority of the
// old configuration overlaps any majority of the new one, so two leaders can
// never be elected in one term by disjoint majorities. That holds only if at
// most one change is in flight and a new leader commits an entry of its term
// before proposing one (Ongaro's fix to the single-server algorithm, raft-dev
// 2015): otherwise a change from an earlier term's leader could be lost.
//
// A change takes effect when the runtime applies its committed entry and
// calls ApplyConfChange (as in etcd-io/raft): every member switches at the
// same log position.

// checkConfChangeProposal tells whether the leader may append a conf change now.
func (r *raft) checkConfChangeProposal(data []byte) error {
	var cc pb.ConfChange
	if err := cc.UnmarshalBinary(data); err != nil {
		return fmt.Errorf("raft: decode conf change: %w", err)
	}
	if err := validConfChange(cc); err != nil {
		return err
	}
	if r.pendingConfIndex > r.log.applied {
		return fmt.Errorf("raft: conf change at index %d not applied yet (applied %d): %w",
			r.pendingConfIndex, r.log.applied, ErrConfChangePending)
	}
	if !r.committedEntryInCurrentTerm() {
		return fmt.Errorf("raft: leader has not committed an entry of term %d yet: %w", r.term, ErrProposalDropped)
	}
	if cs := applyToConfState(r.trk.ConfState(), cc); len(cs.Voters) == 0 {
		return fmt.Errorf("raft: conf change %s %d would leave no voter", cc.Type, cc.NodeID)
	}
	return nil
}

func validConfChange(cc pb.ConfChange) error {
	if cc.NodeID == pb.None {
		return fmt.Errorf("raft: conf change for node 0: %w", errMalformed)
	}
	switch cc.Type {
	case pb.ConfChangeAddLearner, pb.ConfChangeAddVoter, pb.ConfChangeRemove:
		return nil
	}
	return fmt.Errorf("raft: conf change of unknown type %d: %w", cc.Type, errMalformed)
}

// applyToConfState returns cs changed by cc. Adding a member that is there
// already is a no-op, so that re-applying entries after a restart is harmless.
func applyToConfState(cs pb.ConfState, cc pb.ConfChange) pb.ConfState {
	voters := slices.DeleteFunc(slices.Clone(cs.Voters), func(id pb.NodeID) bool { return id == cc.NodeID })
	learners := slices.DeleteFunc(slices.Clone(cs.Learners), func(id pb.NodeID) bool { return id == cc.NodeID })
	switch cc.Type {
	case pb.ConfChangeAddVoter:
		voters = append(voters, cc.NodeID)
	case pb.ConfChangeAddLearner:
		learners = append(learners, cc.NodeID)
	}
	slices.Sort(voters)
	slices.Sort(learners)
	return pb.ConfState{Voters: voters, Learners: learners}
}

// applyConfChange switches to the configuration cc produces and returns it.
// An invalid change, or one that would leave no voter, is ignored (and the
// unchanged configuration returned): every member ignores it alike.
func (r *raft) applyConfChange(cc pb.ConfChange) pb.ConfState {
	if err := validConfChange(cc); err != nil {
		r.logger.Error("ignored invalid conf change", "err", err)
		return r.trk.ConfState()
	}
	cs := applyToConfState(r.trk.ConfState(), cc)
	if len(cs.Voters) == 0 {
		r.logger.Error("ignored conf change that would leave no voter", "type", cc.Type, "node", cc.NodeID)
		return r.trk.ConfState()
	}
	r.trk.SetConfig(cs, r.log.lastIndex()+1)
	r.logger.Info("applied conf change", "type", cc.Type, "node", cc.NodeID, "voters", r.trk.Voters, "learners", r.trk.Learners)

	if r.role == RoleCandidate || r.role == RolePreCandidate {
		if !r.trk.IsVoter(r.id) {
			// No longer a voter: abandon the election.
			r.becomeFollower(r.term, pb.None)
		}
		return r.trk.ConfState()
	}
	if r.role != RoleLeader {
		return r.trk.ConfState()
	}
	if !r.trk.IsVoter(r.id) {
		// Removed (or demoted): a leader that is not a voter must not go on
		// leading a group that no longer counts it (thesis §4.2.2).
		r.logger.Info("stepping down: removed from the voters")
		r.becomeFollower(r.term, pb.None)
		return r.trk.ConfState()
	}
	if r.leadTransferee != pb.None && !r.trk.IsVoter(r.leadTransferee) {
		r.abortLeaderTransfer()
	}
	// The quorum changed: the commit index may move, reads may be confirmed,
	// and new members need the log.
	r.trk.Progress[r.id].RecentActive = true
	r.maybeCommit()
	r.releaseConfirmedReads()
	for _, id := range r.trk.IDs() {
		if pr := r.trk.Progress[id]; id != r.id && pr.Match == 0 {
			r.sendAppend(id, true) // probe a member we know nothing of
		}
	}
	return r.trk.ConfState()
}
