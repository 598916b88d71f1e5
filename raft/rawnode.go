package raft

import (
	"errors"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Errors returned by RawNode methods; match them with errors.Is.
var (
	// ErrProposalDropped: the proposal was not appended anywhere (no leader
	// known, a transfer in progress, the uncommitted budget is full, or this
	// node was removed). It will never commit; retrying is safe.
	ErrProposalDropped = errors.New("raft: proposal dropped")
	// ErrNotLeader: forwarding is disabled and this node is not the leader.
	// Use errors.As with *NotLeaderError to learn the leader, if known.
	ErrNotLeader = errors.New("raft: not leader")
	// ErrConfChangePending: a membership change is already in flight; only one
	// at a time is allowed (thesis §4.1).
	ErrConfChangePending = errors.New("raft: a membership change is already pending")
	// ErrStepLocalMsg: Step was given a message type that never crosses the network.
	ErrStepLocalMsg = errors.New("raft: cannot step a local message")
	// ErrStepPeerNotFound: a response came from a node that is not a member.
	ErrStepPeerNotFound = errors.New("raft: cannot step a response from an unknown peer")
)

// NotLeaderError is returned (wrapping ErrNotLeader) when a request needs the
// leader and this node is not it.
type NotLeaderError struct {
	Leader pb.NodeID // pb.None when no leader is known
}

func (e *NotLeaderError) Error() string {
	if e.Leader == pb.None {
		return "raft: not leader (no leader known)"
	}
	return "raft: not leader (leader is " + e.Leader.String() + ")"
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// Role is a node's part in its group.
type Role uint8

const (
	RoleFollower Role = iota
	RoleCandidate
	RoleLeader
	RolePreCandidate
	RoleLearner // a non-voting member; it follows the leader and never campaigns
)

func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	case RolePreCandidate:
		return "pre-candidate"
	case RoleLearner:
		return "learner"
	}
	return "unknown"
}

// SoftState is volatile state that need not be persisted.
type SoftState struct {
	Lead pb.NodeID
	Role Role
}

// ReadState answers a ReadIndex request: once the state machine has applied
// Index, a read issued with RequestCtx is linearizable (thesis §6.4).
type ReadState struct {
	Index      pb.Index
	RequestCtx []byte
}

// Ready is a batch of work the core hands the runtime. The runtime must handle
// it in this order, then call Advance:
//
//  1. Persist HardState, Entries and Snapshot (in one durable write; fsync if
//     MustSync). Until this is done, no message of this Ready may be sent,
//     except as noted on Messages.
//  2. Send Messages.
//  3. Install Snapshot into the state machine (if set), then apply
//     CommittedEntries in order.
//  4. Call Advance.
type Ready struct {
	// SoftState is nil unless it changed since the last Ready.
	*SoftState
	// HardState is empty unless it changed since the last Ready.
	HardState pb.HardState
	// ReadStates answer ReadIndex requests; the reads may be served once the
	// state machine has applied each Index.
	ReadStates []ReadState
	// Entries are to be appended to stable storage, replacing any entries at
	// the same indexes or after (a new leader may overwrite a follower's tail).
	Entries []pb.Entry
	// Snapshot, if not empty, is to be installed: persist its metadata,
	// restore the state machine from its data, and drop the log it covers.
	Snapshot pb.SnapshotMeta
	// CommittedEntries are committed and to be applied to the state machine.
	// They may include entries just appended in Entries only after those are durable.
	CommittedEntries []pb.Entry
	// Messages are to be sent after step 1. A leader's MsgApp and MsgSnap
	// messages may be sent before step 1 completes, in parallel with the
	// write (thesis §10.2.1): the leader counts its own log only once it is
	// durable, that is, after Advance.
	Messages []pb.Message
	// MustSync says whether step 1 must fsync (a new term, vote or entries).
	MustSync bool
}

// Status is a snapshot of a node's state for monitoring.
type Status struct {
	ID             pb.NodeID
	HardState      pb.HardState
	SoftState      SoftState
	Applied        pb.Index
	LastIndex      pb.Index
	FirstIndex     pb.Index
	LeadTransferee pb.NodeID
	ConfState      pb.ConfState
	// Progress is filled on the leader only: each member's replication state.
	Progress map[pb.NodeID]PeerProgress
}

// PeerProgress is a leader's view of one member's replication.
type PeerProgress struct {
	Match        pb.Index
	Next         pb.Index
	State        string // "probe", "replicate" or "snapshot"
	RecentActive bool
	IsLearner    bool
}
