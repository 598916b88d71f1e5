package raft

import (
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/raft/tracker"
)

// Leadership transfer (thesis §3.10): the leader stops accepting proposals,
// brings the transferee's log up to date, then tells it to campaign at once
// (MsgTimeoutNow). The transferee's vote requests say so, which lets voters
// grant them despite leader stickiness. If the transferee has not taken over
// within an election timeout, the leader aborts and accepts proposals again.

// handleTransferLeader starts handing leadership to m.From.
func (r *raft) handleTransferLeader(m pb.Message, pr *tracker.Progress) {
	to := m.From
	if pr.IsLearner {
		r.logger.Info("ignored transfer to a learner", "transferee", to)
		return
	}
	if r.leadTransferee != pb.None {
		if r.leadTransferee == to {
			return // already in progress
		}
		r.abortLeaderTransfer()
	}
	if to == r.id {
		return // already leader
	}
	r.logger.Info("transferring leadership", "transferee", to, "term", r.term)
	// Measure the timeout from now.
	r.electionElapsed = 0
	r.leadTransferee = to
	if pr.Match == r.log.lastIndex() {
		r.sendTimeoutNow(to)
	} else {
		r.sendAppend(to, true)
	}
}

func (r *raft) sendTimeoutNow(to pb.NodeID) {
	r.send(pb.Message{To: to, Type: pb.MsgTimeoutNow})
}

func (r *raft) abortLeaderTransfer() { r.leadTransferee = pb.None }

// campaignDeferred starts the campaign a deferred MsgTimeoutNow asked for,
// once nothing committed that changes the configuration is left unapplied.
// Advance calls it: applying is what can lift the deferral.
func (r *raft) campaignDeferred() {
	if r.timeoutNowTicks == 0 || r.hasUnappliedConfChanges() {
		return
	}
	r.timeoutNowTicks = 0
	r.hup(true)
}
