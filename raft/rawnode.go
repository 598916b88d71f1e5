package raft

import (
	"errors"
	"fmt"
	"slices"

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

// RawNode is one Raft node as a pure state machine. It is not safe for
// concurrent use: one goroutine drives it.
//
// Every input (Tick, Step, Propose, ...) only changes memory and queues
// work; Ready hands the work out and Advance acknowledges it. See the
// package documentation for the loop.
type RawNode struct {
	r        *raft
	prevSoft SoftState
	prevHard pb.HardState
}

// NewRawNode returns a node restored from cfg.Storage, or an error listing
// every problem with cfg, or describing how Storage contradicts itself.
func NewRawNode(cfg Config) (*RawNode, error) {
	r, err := newRaft(cfg)
	if err != nil {
		return nil, err
	}
	// The last HardState handed out is the durable one: anything newer
	// (such as a founding log's commit index) goes out in the first Ready.
	durable, _, err := cfg.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: storage initial state: %w", err)
	}
	return &RawNode{r: r, prevSoft: r.softState(), prevHard: durable}, nil
}

// Bootstrap returns the entries and ConfState that found a new group with the
// given voters; the runtime persists them before calling NewRawNode on an
// empty Storage. (One ConfChangeAddVoter entry per voter, at term 1.)
//
// With MemoryStorage: Append(entries) and SetConfState(cs). Every founding
// member persists the same entries; NewRawNode recognises this founding log
// (empty HardState, term-1 ConfChange entries from index 1) and treats it as
// committed, and the runtime then applies the entries like any others.
// Members added later start from an empty Storage without Bootstrap.
// Duplicate and zero ids are dropped.
func Bootstrap(voters []pb.NodeID) ([]pb.Entry, pb.ConfState) {
	ids := slices.Clone(voters)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	ids = slices.DeleteFunc(ids, func(id pb.NodeID) bool { return id == pb.None })
	ents := make([]pb.Entry, 0, len(ids))
	for i, id := range ids {
		cc := pb.ConfChange{Type: pb.ConfChangeAddVoter, NodeID: id}
		data, err := cc.AppendBinary(nil)
		if err != nil {
			panic(fmt.Sprintf("raft: encode conf change: %v", err)) // a valid ConfChange always encodes
		}
		ents = append(ents, pb.Entry{Term: 1, Index: pb.Index(i + 1), Type: pb.EntryConfChange, Data: data})
	}
	return ents, pb.ConfState{Voters: ids}
}

// Tick advances the node's logical clock by one tick.
func (rn *RawNode) Tick() { rn.r.tick() }

// Campaign makes the node start an election now (pre-vote first if enabled).
// It does nothing if the node may not campaign (a learner, a non-member, or
// a node that has committed conf changes left to apply).
func (rn *RawNode) Campaign() error {
	return rn.r.Step(pb.Message{Type: pb.MsgHup})
}

// Step feeds a message received from a peer (or a local MsgSnapStatus or
// MsgUnreachable). A malformed message is dropped with an error; it never
// corrupts the node.
func (rn *RawNode) Step(m pb.Message) error {
	switch m.Type {
	case pb.MsgSnapStatus, pb.MsgUnreachable:
		// Reported by the local runtime about a peer.
	case pb.MsgApp, pb.MsgAppResp, pb.MsgVote, pb.MsgVoteResp, pb.MsgPreVote, pb.MsgPreVoteResp,
		pb.MsgHeartbeat, pb.MsgHeartbeatResp, pb.MsgSnap, pb.MsgTimeoutNow, pb.MsgProp,
		pb.MsgReadIndex, pb.MsgReadIndexResp, pb.MsgTransferLeader:
	default:
		if m.Type.IsLocal() {
			return ErrStepLocalMsg
		}
		return fmt.Errorf("raft: step: unknown message type %d: %w", m.Type, errMalformed)
	}
	if m.From == pb.None {
		return fmt.Errorf("raft: step: %s from node 0: %w", m.Type, errMalformed)
	}
	if m.From == rn.r.id {
		switch m.Type {
		case pb.MsgProp, pb.MsgReadIndex, pb.MsgTransferLeader:
			// Requests can come back to their originator: forwarded to a
			// node that was leader, then forwarded on to us, or a transfer
			// to us forwarded by a follower. They are handled normally.
		default:
			return fmt.Errorf("raft: step: %s from this node itself: %w", m.Type, errMalformed)
		}
	}
	if m.Index > maxIndex || m.Commit > maxIndex || m.RejectHint > maxIndex ||
		(m.Snapshot != nil && m.Snapshot.Index > maxIndex) {
		return fmt.Errorf("raft: step: %s with an index beyond %d: %w", m.Type, pb.Index(maxIndex), errMalformed)
	}
	if isResponse(m.Type) && !rn.r.trk.IsMember(m.From) {
		return ErrStepPeerNotFound
	}
	if m.Term == 0 && m.Type != pb.MsgProp && m.Type != pb.MsgReadIndex && !m.Type.IsLocal() {
		return fmt.Errorf("raft: step: %s without a term: %w", m.Type, errMalformed)
	}
	return rn.r.Step(m)
}

// maxIndex bounds the indexes accepted from the network, far above any
// real log, so that arithmetic on them (Index+1, Index+len) cannot overflow.
const maxIndex = 1 << 62

func isResponse(t pb.MessageType) bool {
	switch t {
	case pb.MsgAppResp, pb.MsgVoteResp, pb.MsgPreVoteResp, pb.MsgHeartbeatResp,
		pb.MsgSnapStatus, pb.MsgUnreachable, pb.MsgReadIndexResp:
		return true
	}
	return false
}

// Propose appends data to the log (leader) or forwards it (follower). The
// node keeps data: the caller must not modify it afterwards.
func (rn *RawNode) Propose(data []byte) error {
	if rn.r.role == RoleLeader {
		// Fast path: the entry is copied into the log, so it can live on
		// the stack (proposing is the hot path).
		var e [1]pb.Entry
		e[0].Data = data
		return rn.r.propose(e[:])
	}
	return rn.r.Step(pb.Message{Type: pb.MsgProp, From: rn.r.id, Entries: []pb.Entry{{Data: data}}})
}

// ProposeConfChange proposes one membership change. On the leader it fails
// with ErrConfChangePending while an earlier change is not applied, and with
// ErrProposalDropped before the leader has committed an entry of its term.
func (rn *RawNode) ProposeConfChange(cc pb.ConfChange) error {
	if err := validConfChange(cc); err != nil {
		return err
	}
	data, err := cc.AppendBinary(nil)
	if err != nil {
		return fmt.Errorf("raft: encode conf change: %w", err)
	}
	return rn.r.Step(pb.Message{Type: pb.MsgProp, From: rn.r.id, Entries: []pb.Entry{{Type: pb.EntryConfChange, Data: data}}})
}

// ApplyConfChange applies a committed ConfChange entry; the runtime calls it
// when it applies that entry, and persists the returned ConfState.
func (rn *RawNode) ApplyConfChange(cc pb.ConfChange) pb.ConfState {
	return rn.r.applyConfChange(cc)
}

// ReadIndex requests a linearizable read point; the answer comes back as a
// ReadState carrying ctx in a later Ready (on this node, even when the
// request went to the leader). A request the node cannot serve (no leader
// known, leadership lost) gets no answer: the runtime times it out.
func (rn *RawNode) ReadIndex(ctx []byte) {
	_ = rn.r.Step(pb.Message{Type: pb.MsgReadIndex, From: rn.r.id, Context: ctx})
}

// TransferLeadership asks the leader to hand leadership to transferee.
func (rn *RawNode) TransferLeadership(transferee pb.NodeID) {
	_ = rn.r.Step(pb.Message{Type: pb.MsgTransferLeader, From: transferee})
}

// ReportUnreachable tells the leader that a message to id could not be sent.
func (rn *RawNode) ReportUnreachable(id pb.NodeID) {
	_ = rn.r.Step(pb.Message{Type: pb.MsgUnreachable, From: id})
}

// ReportSnapshot tells the leader whether streaming a snapshot to id succeeded.
func (rn *RawNode) ReportSnapshot(id pb.NodeID, ok bool) {
	_ = rn.r.Step(pb.Message{Type: pb.MsgSnapStatus, From: id, Reject: !ok})
}

// HasReady reports whether Ready would return work.
func (rn *RawNode) HasReady() bool {
	r := rn.r
	if r.hasFlush() || len(r.msgs) > 0 || len(r.readStates) > 0 {
		return true
	}
	if r.softState() != rn.prevSoft {
		return true
	}
	if hs := r.hardState(); !hs.IsEmpty() && hs != rn.prevHard {
		return true
	}
	if r.log.unstable.nextSnapshot() != nil || len(r.log.unstable.nextEntries()) > 0 {
		return true
	}
	return r.log.hasNextCommittedEnts()
}

// Ready returns the pending work; see Ready for the order to handle it in.
// What it returns is handed out once: the next Ready holds only newer work.
func (rn *RawNode) Ready() Ready {
	r := rn.r
	r.flush()
	rd := Ready{
		Entries:          r.log.unstable.nextEntries(),
		CommittedEntries: r.log.nextCommittedEnts(),
		Messages:         r.msgs,
		ReadStates:       r.readStates,
	}
	if ss := r.softState(); ss != rn.prevSoft {
		rd.SoftState = &ss
		rn.prevSoft = ss
	}
	if hs := r.hardState(); hs != rn.prevHard {
		rd.HardState = hs
		rd.MustSync = hs.Term != rn.prevHard.Term || hs.Vote != rn.prevHard.Vote
		rn.prevHard = hs
	}
	if s := r.log.unstable.nextSnapshot(); s != nil {
		rd.Snapshot = *s
		rd.MustSync = true
	}
	if len(rd.Entries) > 0 {
		rd.MustSync = true
	}
	r.msgs = nil
	r.readStates = nil
	r.log.unstable.acceptInProgress()
	if n := len(rd.CommittedEntries); n > 0 {
		r.log.applying = rd.CommittedEntries[n-1].Index
	}
	return rd
}

// Advance tells the node that rd has been handled (persisted, sent, applied).
func (rn *RawNode) Advance(rd Ready) {
	r := rn.r
	if !rd.Snapshot.IsEmpty() {
		r.log.unstable.stableSnapTo(rd.Snapshot.Index)
		r.log.appliedTo(rd.Snapshot.Index)
	}
	if n := len(rd.Entries); n > 0 {
		e := rd.Entries[n-1]
		r.log.unstable.stableTo(e.Index, e.Term)
		if r.role == RoleLeader {
			// The leader's own entries are durable now: count them (see
			// Ready.Messages). With a single voter this commits them.
			if self := r.trk.Progress[r.id]; self != nil && self.MaybeUpdate(r.log.stableLastIndex()) {
				r.maybeCommit()
			}
		}
	}
	if n := len(rd.CommittedEntries); n > 0 {
		r.log.appliedTo(rd.CommittedEntries[n-1].Index)
		if r.role == RoleLeader {
			r.uncommittedSize -= min(r.uncommittedSize, entsSize(rd.CommittedEntries))
		}
	}
	r.campaignDeferred()
}

// Status returns the node's current state.
func (rn *RawNode) Status() Status {
	r := rn.r
	s := Status{
		ID:             r.id,
		HardState:      r.hardState(),
		SoftState:      r.softState(),
		Applied:        r.log.applied,
		LastIndex:      r.log.lastIndex(),
		FirstIndex:     r.log.firstIndex(),
		LeadTransferee: r.leadTransferee,
		ConfState:      r.trk.ConfState(),
	}
	if r.role == RoleLeader {
		s.Progress = make(map[pb.NodeID]PeerProgress, len(r.trk.Progress))
		for id, pr := range r.trk.Progress {
			s.Progress[id] = PeerProgress{
				Match:        pr.Match,
				Next:         pr.Next,
				State:        pr.State.String(),
				RecentActive: pr.RecentActive || id == r.id,
				IsLearner:    pr.IsLearner,
			}
		}
	}
	return s
}
