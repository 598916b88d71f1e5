package tracker

import (
	"slices"

	"github.com/raftkv/raftkv/raft/quorum"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Tracker holds the membership and every member's Progress, plus the votes
// of an election in progress.
//
// Members are always visited in ascending id order (IDs): Go's map order is
// random, and the simulator needs every message sequence to replay exactly.
type Tracker struct {
	Voters   quorum.MajorityConfig
	Learners quorum.MajorityConfig // sorted too; quorum maths never uses it
	Progress map[pb.NodeID]*Progress
	Votes    map[pb.NodeID]bool

	ids         []pb.NodeID // voters and learners, ascending
	maxInflight int
}

// New returns an empty tracker whose progresses get windows of maxInflight.
func New(maxInflight int) *Tracker {
	return &Tracker{
		Progress:    map[pb.NodeID]*Progress{},
		Votes:       map[pb.NodeID]bool{},
		maxInflight: maxInflight,
	}
}

// ConfState returns the membership.
func (t *Tracker) ConfState() pb.ConfState {
	return pb.ConfState{Voters: slices.Clone(t.Voters), Learners: slices.Clone(t.Learners)}
}

// IDs returns the members (voters and learners) in ascending order. The
// slice is owned by the tracker: do not modify it.
func (t *Tracker) IDs() []pb.NodeID { return t.ids }

// IsMember reports whether id is a voter or a learner.
func (t *Tracker) IsMember(id pb.NodeID) bool { return t.Progress[id] != nil }

// IsVoter reports whether id votes.
func (t *Tracker) IsVoter(id pb.NodeID) bool { return t.Voters.Contains(id) }

// SetConfig replaces the membership with cs. Members that stay keep their
// Progress; new ones start probing at next, marked RecentActive so that a
// just-added member does not make the leader fail check-quorum at once.
func (t *Tracker) SetConfig(cs pb.ConfState, next pb.Index) {
	t.Voters = quorum.NewMajorityConfig(cs.Voters...)
	t.Learners = quorum.NewMajorityConfig(cs.Learners...)
	all := append(slices.Clone([]pb.NodeID(t.Voters)), t.Learners...)
	slices.Sort(all)
	t.ids = slices.Compact(all)
	for id := range t.Progress {
		if !slices.Contains(t.ids, id) {
			delete(t.Progress, id)
		}
	}
	for _, id := range t.ids {
		pr := t.Progress[id]
		if pr == nil {
			pr = &Progress{Next: next, Inflights: NewInflights(t.maxInflight), RecentActive: true}
			t.Progress[id] = pr
		}
		pr.IsLearner = !t.Voters.Contains(id)
	}
}

// Committed returns the index a majority of voters has matched.
func (t *Tracker) Committed() pb.Index {
	return t.Voters.CommittedIndex(matchAckIndexer(t.Progress))
}

type matchAckIndexer map[pb.NodeID]*Progress

func (m matchAckIndexer) AckedIndex(id pb.NodeID) (pb.Index, bool) {
	pr, ok := m[id]
	if !ok {
		return 0, false
	}
	return pr.Match, true
}

// ResetVotes forgets the votes of the last election.
func (t *Tracker) ResetVotes() { clear(t.Votes) }

// RecordVote records id's vote unless id already voted in this election.
func (t *Tracker) RecordVote(id pb.NodeID, granted bool) {
	if _, ok := t.Votes[id]; !ok {
		t.Votes[id] = granted
	}
}

// TallyVotes counts the recorded votes of voters and returns the result.
func (t *Tracker) TallyVotes() (granted, rejected int, result quorum.VoteResult) {
	for _, id := range t.Voters {
		if v, ok := t.Votes[id]; ok {
			if v {
				granted++
			} else {
				rejected++
			}
		}
	}
	return granted, rejected, t.Voters.VoteResult(t.Votes)
}

// QuorumActive reports whether a majority of voters was heard from recently
// (RecentActive); the leader's own Progress must be marked active by the caller.
func (t *Tracker) QuorumActive() bool {
	votes := make(map[pb.NodeID]bool, len(t.Voters))
	for _, id := range t.Voters {
		votes[id] = t.Progress[id].RecentActive
	}
	return t.Voters.VoteResult(votes) == quorum.VoteWon
}

// IsSingleton reports whether the group has exactly one voter.
func (t *Tracker) IsSingleton() bool { return len(t.Voters) == 1 }
