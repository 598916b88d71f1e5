package tracker

import (
	"fmt"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// StateType is how a leader currently replicates to one follower.
type StateType uint8

const (
	// StateProbe: the leader does not know where the follower's log matches
	// its own. It sends one MsgApp per heartbeat interval and waits for the
	// answer, backing Next off on rejections (Raft §5.3).
	StateProbe StateType = iota
	// StateReplicate: the logs match up to Match. The leader streams entries
	// optimistically (Next runs ahead of Match), bounded by the Inflights window.
	StateReplicate
	// StateSnapshot: the follower needs entries the leader has compacted; a
	// snapshot is being sent and nothing else is until it is reported.
	StateSnapshot
)

func (s StateType) String() string {
	switch s {
	case StateProbe:
		return "probe"
	case StateReplicate:
		return "replicate"
	case StateSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("StateType(%d)", uint8(s))
}

// Progress is a leader's view of one member.
//
// Invariants: Match < Next; in StateReplicate the Inflights hold the last
// indexes of MsgApps in (Match, Next-1]; in StateSnapshot PendingSnapshot > 0.
type Progress struct {
	// Match is the highest index known to be durably stored on the member
	// and to match the leader's log.
	Match pb.Index
	// Next is the index of the next entry to send.
	Next pb.Index
	// State is the replication state (see StateType).
	State StateType
	// PendingSnapshot is the index of the snapshot being sent (StateSnapshot).
	PendingSnapshot pb.Index
	// RecentActive records that the member was heard from since the last
	// check-quorum round (thesis §6.2).
	RecentActive bool
	// MsgAppFlowPaused stops further MsgApps in StateProbe until a reply or
	// a heartbeat response arrives.
	MsgAppFlowPaused bool
	// Inflights is the pipeline window.
	Inflights *Inflights
	// IsLearner marks a non-voting member.
	IsLearner bool
}

// ResetState moves to state with an empty window.
func (pr *Progress) ResetState(state StateType) {
	pr.MsgAppFlowPaused = false
	pr.PendingSnapshot = 0
	pr.State = state
	pr.Inflights.Reset()
}

// BecomeProbe starts probing from just after the last known match (or after
// the snapshot just sent, which the follower now presumably holds).
func (pr *Progress) BecomeProbe() {
	if pr.State == StateSnapshot {
		pending := pr.PendingSnapshot
		pr.ResetState(StateProbe)
		pr.Next = max(pr.Match+1, pending+1)
		return
	}
	pr.ResetState(StateProbe)
	pr.Next = pr.Match + 1
}

// BecomeReplicate starts optimistic streaming after Match.
func (pr *Progress) BecomeReplicate() {
	pr.ResetState(StateReplicate)
	pr.Next = pr.Match + 1
}

// BecomeSnapshot records that a snapshot at snapIndex is being sent.
func (pr *Progress) BecomeSnapshot(snapIndex pb.Index) {
	pr.ResetState(StateSnapshot)
	pr.PendingSnapshot = snapIndex
}

// UpdateOnEntriesSend records a MsgApp carrying entries whose last index is
// lastIndex (or no entries: lastIndex == Next-1).
func (pr *Progress) UpdateOnEntriesSend(numEntries int, lastIndex pb.Index) {
	switch pr.State {
	case StateReplicate:
		if numEntries > 0 {
			pr.Next = lastIndex + 1
			pr.Inflights.Add(lastIndex)
		}
	case StateProbe:
		// One message per round trip: wait for its answer (or a heartbeat).
		pr.MsgAppFlowPaused = true
	}
}

// MaybeUpdate records an acknowledgement of everything up to n. It reports
// whether Match moved.
func (pr *Progress) MaybeUpdate(n pb.Index) bool {
	updated := false
	if pr.Match < n {
		pr.Match = n
		updated = true
		pr.MsgAppFlowPaused = false
	}
	pr.Next = max(pr.Next, n+1)
	return updated
}

// MaybeDecrTo handles a rejection of the MsgApp whose previous index was
// rejected; matchHint is the leader's guess of where the logs agree, computed
// from the follower's conflict hint (thesis §5.3 optimisation). It reports
// false for a stale rejection (one that says nothing new).
func (pr *Progress) MaybeDecrTo(rejected, matchHint pb.Index) bool {
	if pr.State == StateReplicate {
		// A rejection at or below Match is stale: those entries matched.
		if rejected <= pr.Match {
			return false
		}
		// Optimistic streaming went wrong: restart right after Match.
		pr.Next = pr.Match + 1
		return true
	}
	// In probe state only the answer to the last probe counts.
	if pr.Next-1 != rejected {
		return false
	}
	pr.Next = max(min(rejected, matchHint+1), pr.Match+1)
	pr.MsgAppFlowPaused = false
	return true
}

// IsPaused reports whether the leader must not send MsgApp now.
func (pr *Progress) IsPaused() bool {
	switch pr.State {
	case StateProbe:
		return pr.MsgAppFlowPaused
	case StateReplicate:
		return pr.Inflights.Full()
	default:
		return true
	}
}

func (pr *Progress) String() string {
	s := fmt.Sprintf("%s match=%d next=%d", pr.State, pr.Match, pr.Next)
	if pr.IsLearner {
		s += " learner"
	}
	if pr.State == StateSnapshot {
		s += fmt.Sprintf(" pendingSnap=%d", pr.PendingSnapshot)
	}
	if pr.State == StateReplicate {
		s += fmt.Sprintf(" inflight=%d", pr.Inflights.Count())
	}
	return s
}
