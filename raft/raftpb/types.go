package raftpb

import "strconv"

// NodeID names a member of a Raft group. Zero means "no node".
type NodeID uint64

// Term is a Raft term: a logical clock that only moves forward.
type Term uint64

// Index is the position of an entry in the replicated log; the first entry is at 1.
type Index uint64

// None is the NodeID that names no node (no vote cast, no leader known).
const None NodeID = 0

func (id NodeID) String() string { return strconv.FormatUint(uint64(id), 10) }
func (t Term) String() string    { return strconv.FormatUint(uint64(t), 10) }
func (i Index) String() string   { return strconv.FormatUint(uint64(i), 10) }

// EntryType says how an Entry's Data is to be read.
//
// Written to disk and to the wire: never renumber.
type EntryType uint8

const (
	// EntryNormal carries application data (empty Data: the leader's no-op of a new term).
	EntryNormal EntryType = 0
	// EntryConfChange carries an encoded ConfChange.
	EntryConfChange EntryType = 1
)

// Entry is one record of the replicated log.
type Entry struct {
	Term  Term
	Index Index
	Type  EntryType
	Data  []byte
}

// HardState is the part of a node's state that must be durable before the node
// answers any message that depends on it (Raft paper, Figure 2: currentTerm,
// votedFor; plus the commit index so that a restart need not re-learn it).
type HardState struct {
	Term   Term
	Vote   NodeID
	Commit Index
}

// IsEmpty reports whether h is the zero HardState.
func (h HardState) IsEmpty() bool { return h == HardState{} }

// ConfState is the membership of a group: who votes and who only learns.
// The two lists are disjoint and sorted ascending.
type ConfState struct {
	Voters   []NodeID
	Learners []NodeID
}

// ConfChangeType names a single-server membership change.
//
// Written to disk and to the wire: never renumber.
type ConfChangeType uint8

const (
	// ConfChangeAddLearner adds a non-voting member that receives the log.
	ConfChangeAddLearner ConfChangeType = 0
	// ConfChangeAddVoter adds a voting member (or promotes a learner to voter).
	ConfChangeAddVoter ConfChangeType = 1
	// ConfChangeRemove removes a member, voter or learner.
	ConfChangeRemove ConfChangeType = 2
)

func (t ConfChangeType) String() string {
	switch t {
	case ConfChangeAddLearner:
		return "AddLearner"
	case ConfChangeAddVoter:
		return "AddVoter"
	case ConfChangeRemove:
		return "Remove"
	}
	return "ConfChangeType(" + strconv.Itoa(int(t)) + ")"
}

// ConfChange is one membership change, carried in an EntryConfChange entry.
// Context is opaque to Raft; raftkv puts the member's peer address there so
// that every member learns where to dial the new one from the log itself.
type ConfChange struct {
	Type    ConfChangeType
	NodeID  NodeID
	Context []byte
}

// SnapshotMeta describes a snapshot: the last entry it covers and the
// membership as of that entry. The snapshot's data is not part of it: data is
// streamed beside the metadata (transport) and stored in files (wal), never
// held whole in memory.
type SnapshotMeta struct {
	Index     Index
	Term      Term
	ConfState ConfState
}

// IsEmpty reports whether m describes no snapshot.
func (m SnapshotMeta) IsEmpty() bool { return m.Index == 0 }

// MessageType names a Raft message.
//
// Written to the wire: never renumber.
type MessageType uint8

const (
	MsgApp            MessageType = 1  // leader -> follower: append entries (Index/LogTerm = previous entry)
	MsgAppResp        MessageType = 2  // follower -> leader: Index = last matching index, or Reject with hints
	MsgVote           MessageType = 3  // candidate -> all: Index/LogTerm = candidate's last entry
	MsgVoteResp       MessageType = 4  //
	MsgPreVote        MessageType = 5  // pre-candidate -> all, Term = the term it would campaign in (thesis §9.6)
	MsgPreVoteResp    MessageType = 6  //
	MsgHeartbeat      MessageType = 7  // leader -> follower: Commit, Context (ReadIndex round)
	MsgHeartbeatResp  MessageType = 8  //
	MsgSnap           MessageType = 9  // leader -> follower: Snapshot metadata; data streamed alongside
	MsgSnapStatus     MessageType = 10 // local only: the runtime reports the outcome of sending a snapshot
	MsgTimeoutNow     MessageType = 11 // leader -> transferee: campaign now, skipping pre-vote (thesis §3.10)
	MsgProp           MessageType = 12 // follower -> leader: forwarded proposals (Entries)
	MsgReadIndex      MessageType = 13 // follower -> leader: forwarded ReadIndex request (Context; LogTerm = requester's term, 0 if passed on)
	MsgReadIndexResp  MessageType = 14 // leader -> follower: Index = read index for Context
	MsgTransferLeader MessageType = 15 // follower -> leader: forwarded transfer request (From = transferee)
	MsgUnreachable    MessageType = 16 // local only: the runtime reports a peer unreachable
	MsgHup            MessageType = 17 // local only: start an election
	MsgBeat           MessageType = 18 // local only: leader sends heartbeats now
	MsgCheckQuorum    MessageType = 19 // local only: leader checks it heard from a quorum
	MsgForgetLeader   MessageType = 20 // local only: follower forgets its leader (reserved)
)

var messageTypeNames = map[MessageType]string{
	MsgApp: "MsgApp", MsgAppResp: "MsgAppResp", MsgVote: "MsgVote", MsgVoteResp: "MsgVoteResp",
	MsgPreVote: "MsgPreVote", MsgPreVoteResp: "MsgPreVoteResp", MsgHeartbeat: "MsgHeartbeat",
	MsgHeartbeatResp: "MsgHeartbeatResp", MsgSnap: "MsgSnap", MsgSnapStatus: "MsgSnapStatus",
	MsgTimeoutNow: "MsgTimeoutNow", MsgProp: "MsgProp", MsgReadIndex: "MsgReadIndex",
	MsgReadIndexResp: "MsgReadIndexResp", MsgTransferLeader: "MsgTransferLeader",
	MsgUnreachable: "MsgUnreachable", MsgHup: "MsgHup", MsgBeat: "MsgBeat",
	MsgCheckQuorum: "MsgCheckQuorum", MsgForgetLeader: "MsgForgetLeader",
}

func (t MessageType) String() string {
	if s, ok := messageTypeNames[t]; ok {
		return s
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// IsLocal reports whether messages of type t never cross the network.
func (t MessageType) IsLocal() bool {
	switch t {
	case MsgSnapStatus, MsgUnreachable, MsgHup, MsgBeat, MsgCheckQuorum, MsgForgetLeader:
		return true
	}
	return false
}

// Message is the unit of communication between Raft nodes. Which fields mean
// what depends on Type (see the constants above).
//
// For MsgAppResp with Reject set, RejectHint and LogTerm carry the follower's
// hint for fast log backtracking (thesis §5.3 "conflict term/index"): the
// follower's last index (or the first index of the conflicting term), and the
// term of its entry there.
type Message struct {
	Type       MessageType
	From       NodeID
	To         NodeID
	Term       Term
	LogTerm    Term
	Index      Index
	Entries    []Entry
	Commit     Index
	Reject     bool
	RejectHint Index
	Context    []byte
	// Snapshot is set on MsgSnap only.
	Snapshot *SnapshotMeta
}
