package raft

// This file pins the RawNode method set so that other packages compile against
// it while the core is written. The core's author replaces it entirely.

import pb "github.com/raftkv/raftkv/raft/raftpb"

// RawNode is one Raft node as a pure state machine. It is not safe for
// concurrent use: one goroutine drives it.
type RawNode struct{}

// NewRawNode returns a node restored from cfg.Storage, or an error listing
// every problem with cfg.
func NewRawNode(cfg Config) (*RawNode, error) { return nil, cfg.Validate() }

// Bootstrap returns the entries and ConfState that found a new group with the
// given voters; the runtime persists them before calling NewRawNode on an
// empty Storage. (One ConfChangeAddVoter entry per voter, at term 1.)
func Bootstrap(voters []pb.NodeID) ([]pb.Entry, pb.ConfState) { return nil, pb.ConfState{} }

// Tick advances the node's logical clock by one tick.
func (rn *RawNode) Tick() {}

// Campaign makes the node start an election now (pre-vote first if enabled).
func (rn *RawNode) Campaign() error { return nil }

// Step feeds a message received from a peer (or a local MsgSnapStatus/MsgUnreachable).
func (rn *RawNode) Step(m pb.Message) error { return nil }

// Propose appends data to the log (leader) or forwards it (follower).
func (rn *RawNode) Propose(data []byte) error { return nil }

// ProposeConfChange proposes one membership change.
func (rn *RawNode) ProposeConfChange(cc pb.ConfChange) error { return nil }

// ApplyConfChange applies a committed ConfChange entry; the runtime calls it
// when it applies that entry, and persists the returned ConfState.
func (rn *RawNode) ApplyConfChange(cc pb.ConfChange) pb.ConfState { return pb.ConfState{} }

// ReadIndex requests a linearizable read point; the answer comes back as a
// ReadState carrying ctx in a later Ready.
func (rn *RawNode) ReadIndex(ctx []byte) {}

// TransferLeadership asks the leader to hand leadership to transferee.
func (rn *RawNode) TransferLeadership(transferee pb.NodeID) {}

// ReportUnreachable tells the leader that a message to id could not be sent.
func (rn *RawNode) ReportUnreachable(id pb.NodeID) {}

// ReportSnapshot tells the leader whether streaming a snapshot to id succeeded.
func (rn *RawNode) ReportSnapshot(id pb.NodeID, ok bool) {}

// HasReady reports whether Ready would return work.
func (rn *RawNode) HasReady() bool { return false }

// Ready returns the pending work; see Ready for the order to handle it in.
func (rn *RawNode) Ready() Ready { return Ready{} }

// Advance tells the node that rd has been handled (persisted, sent, applied).
func (rn *RawNode) Advance(rd Ready) {}

// Status returns the node's current state.
func (rn *RawNode) Status() Status { return Status{} }
