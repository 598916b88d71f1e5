package raft

import (
	"errors"
	"log/slog"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Rand is the core's only source of randomness (election timeout jitter).
// *math/rand/v2.Rand satisfies it; the simulator passes a seeded one so that a
// schedule replays exactly.
type Rand interface {
	IntN(n int) int
}

// Config configures a RawNode. The zero value of every optional field means
// "the default"; see withDefaults.
type Config struct {
	// ID is this node's id; required, never 0.
	ID pb.NodeID
	// Storage is the durable log; required.
	Storage Storage
	// Applied is the index of the last entry the state machine has applied,
	// for a restart; committed entries are handed out from Applied+1.
	Applied pb.Index

	// ElectionTick is how many Ticks a follower waits without hearing from a
	// leader before campaigning; the actual timeout is drawn from
	// [ElectionTick, 2*ElectionTick). Default 10. Must exceed HeartbeatTick.
	ElectionTick int
	// HeartbeatTick is how many Ticks pass between a leader's heartbeats. Default 1.
	HeartbeatTick int

	// MaxSizePerMsg caps the bytes of entry data in one MsgApp. Default 1 MiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs caps MsgApps sent to one follower and not yet
	// acknowledged (the pipeline window). Default 256.
	MaxInflightMsgs int
	// MaxUncommittedEntriesSize caps the bytes of entry data a leader holds
	// uncommitted; past it Propose returns ErrProposalDropped. Default 64 MiB.
	MaxUncommittedEntriesSize uint64
	// MaxCommittedSizePerReady caps the bytes of committed entries in one Ready. Default 64 MiB.
	MaxCommittedSizePerReady uint64

	// DisablePreVote turns pre-vote (thesis §9.6) off. It is on by default.
	DisablePreVote bool
	// DisableCheckQuorum turns check-quorum (thesis §6.2) off. It is on by default.
	DisableCheckQuorum bool
	// DisableProposalForwarding makes a follower reject proposals with
	// ErrNotLeader instead of forwarding them to the leader.
	DisableProposalForwarding bool

	// Rand draws election timeouts. Default: a generator seeded from ID.
	Rand Rand
	// Logger receives state changes. Nil discards.
	Logger *slog.Logger
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.ID == pb.None {
		errs = append(errs, errors.New("raft: config: ID must not be 0"))
	}
	if c.Storage == nil {
		errs = append(errs, errors.New("raft: config: Storage is required"))
	}
	d := c.withDefaults()
	if d.HeartbeatTick <= 0 {
		errs = append(errs, errors.New("raft: config: HeartbeatTick must be > 0"))
	}
	if d.ElectionTick <= d.HeartbeatTick {
		errs = append(errs, errors.New("raft: config: ElectionTick must be greater than HeartbeatTick"))
	}
	if d.MaxInflightMsgs <= 0 {
		errs = append(errs, errors.New("raft: config: MaxInflightMsgs must be > 0"))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with every unset optional field filled.
func (c Config) withDefaults() Config {
	if c.ElectionTick == 0 {
		c.ElectionTick = 10
	}
	if c.HeartbeatTick == 0 {
		c.HeartbeatTick = 1
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = 1 << 20
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = 256
	}
	if c.MaxUncommittedEntriesSize == 0 {
		c.MaxUncommittedEntriesSize = 64 << 20
	}
	if c.MaxCommittedSizePerReady == 0 {
		c.MaxCommittedSizePerReady = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
