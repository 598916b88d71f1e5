package raft

import (
	"github.com/raftkv/raftkv/raft/quorum"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// hup starts an election if this node may: it is a voter, not already
// leader, and has applied every committed conf change (it must know the
// configuration it campaigns in). transfer marks a campaign a leader asked
// for with MsgTimeoutNow.
func (r *raft) hup(transfer bool) {
	if r.role == RoleLeader {
		return
	}
	if !r.promotable() {
		r.logger.Debug("not campaigning: not a voter, or installing a snapshot")
		return
	}
	if r.hasUnappliedConfChanges() {
		r.logger.Info("not campaigning: committed conf changes are not applied yet", "applied", r.log.applied, "commit", r.log.committed)
		return
	}
	if transfer || r.cfg.DisablePreVote {
		r.campaign(false, transfer)
	} else {
		r.campaign(true, false)
	}
}

func (r *raft) hasUnappliedConfChanges() bool {
	from := max(r.log.applied, r.confKnown)
	if from >= r.log.committed {
		return false
	}
	ents, err := r.log.slice(from+1, r.log.committed+1, noLimit)
	if err != nil {
		return true // cannot tell: be safe and wait
	}
	for i := range ents {
		if ents[i].Type == pb.EntryConfChange {
			return true
		}
	}
	return false
}

// campaign asks every voter for its (pre-)vote. A pre-vote (thesis §9.6)
// asks "would you vote for me at term+1?" without changing anyone's term, so
// that a node that cannot win (partitioned, or with a stale log) never forces
// the group into a new term.
func (r *raft) campaign(pre, transfer bool) {
	var term pb.Term
	var typ pb.MessageType
	if pre {
		r.becomePreCandidate()
		typ, term = pb.MsgPreVote, r.term+1
	} else {
		r.becomeCandidate()
		typ, term = pb.MsgVote, r.term
	}
	if r.poll(r.id, typ, true) == quorum.VoteWon {
		// A single-voter group wins its own election.
		r.winElection(pre)
		return
	}
	var ctx []byte
	if transfer {
		ctx = campaignTransfer
	}
	last, lastTerm := r.log.lastIndex(), r.log.lastTerm()
	for _, id := range r.trk.Voters {
		if id == r.id {
			continue
		}
		r.send(pb.Message{To: id, Type: typ, Term: term, Index: last, LogTerm: lastTerm, Context: ctx})
	}
}

func (r *raft) winElection(pre bool) {
	if !r.trk.IsVoter(r.id) {
		r.becomeFollower(r.term, pb.None)
		return
	}
	if pre {
		r.campaign(false, false)
		return
	}
	r.becomeLeader()
}

// poll records a vote and returns the election's state.
func (r *raft) poll(id pb.NodeID, typ pb.MessageType, granted bool) quorum.VoteResult {
	r.logger.Debug("received vote", "from", id, "type", typ, "granted", granted, "term", r.term)
	r.trk.RecordVote(id, granted)
	_, _, res := r.trk.TallyVotes()
	return res
}

// handleVoteRequest answers MsgVote and MsgPreVote (Raft §5.2, §5.4.1).
func (r *raft) handleVoteRequest(m pb.Message) {
	resp := pb.MsgVoteResp
	if m.Type == pb.MsgPreVote {
		resp = pb.MsgPreVoteResp
	}
	// We can vote for m.From if we already did (a retransmitted request), or
	// we have not voted in this term and know no leader, or this is a
	// pre-vote for a later term (pre-votes bind nothing).
	canVote := r.vote == m.From ||
		(r.vote == pb.None && r.lead == pb.None) ||
		(m.Type == pb.MsgPreVote && m.Term > r.term)
	// Learners answer too: a learner promoted by a committed conf change it
	// has not applied yet is a voter to the candidate. Whether the vote
	// counts is the candidate's configuration's decision, never ours.
	if canVote && r.log.isUpToDate(m.Index, m.LogTerm) {
		r.logger.Info("granted vote", "type", m.Type, "to", m.From, "msg_term", m.Term, "term", r.term)
		// A granted response carries the request's term: for a pre-vote it
		// is the future term the pre-candidate checks for.
		r.send(pb.Message{To: m.From, Type: resp, Term: m.Term})
		if m.Type == pb.MsgVote {
			// The vote goes into the HardState of this Ready and is durable
			// before the response is sent: a vote forgotten in a crash could
			// be cast twice in one term (Raft §5.2, Figure 2).
			r.electionElapsed = 0
			r.vote = m.From
		}
		return
	}
	r.send(pb.Message{To: m.From, Type: resp, Term: r.term, Reject: true})
}

func (r *raft) stepCandidate(m pb.Message) error {
	want := pb.MsgVoteResp
	if r.role == RolePreCandidate {
		want = pb.MsgPreVoteResp
	}
	switch m.Type {
	case pb.MsgProp:
		return r.forwardProposal(m) // no leader known: dropped
	case pb.MsgApp:
		// A leader of our term exists (we lost, or were pre-campaigning).
		r.becomeFollower(m.Term, m.From)
		r.handleAppendEntries(m)
	case pb.MsgHeartbeat:
		r.becomeFollower(m.Term, m.From)
		r.handleHeartbeat(m)
	case pb.MsgSnap:
		r.becomeFollower(m.Term, m.From)
		r.handleSnapshot(m)
	case want:
		if !r.trk.IsVoter(m.From) {
			return ErrStepPeerNotFound
		}
		switch r.poll(m.From, m.Type, !m.Reject) {
		case quorum.VoteWon:
			r.winElection(r.role == RolePreCandidate)
		case quorum.VoteLost:
			// Wait for the next timeout as a follower. A pre-candidate's term
			// did not change; a candidate keeps its (durable) self-vote.
			r.becomeFollower(r.term, pb.None)
		}
	case pb.MsgTimeoutNow:
		// We are campaigning already.
	}
	return nil
}
