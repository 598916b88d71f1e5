package replica

import (
	"errors"
	"log/slog"
	"time"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Peer is a founding member: its id and the address its peers dial.
type Peer struct {
	ID   pb.NodeID
	Addr string
}

// Config configures a Replica. Zero optional fields mean the defaults listed
// on each field.
type Config struct {
	// ID is this member's id; required, never 0.
	ID pb.NodeID
	// StateMachine is what is replicated; required.
	StateMachine StateMachine
	// Storage is the durable log; required. *wal.Log satisfies it.
	Storage Storage
	// Transport sends messages to peers; required. *transport.Transport satisfies it.
	Transport Sender
	// Peers are the founding members, used only to bootstrap an empty
	// Storage. Empty Peers with an empty Storage starts a member that waits
	// to be added to a running group (it learns everything from the leader).
	Peers []Peer

	// TickInterval is the length of one Raft tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks. Default 10.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval in ticks. Default 1.
	HeartbeatTicks int

	// MaxPendingProposals bounds the proposals and reads admitted and not yet
	// resolved; past it Propose and ReadIndex return ErrBusy at once, so
	// memory stays bounded under overload. Default 4096.
	MaxPendingProposals int
	// SnapshotEntries: take a snapshot every this many applied entries.
	// Default 10,000; negative disables automatic snapshots (TakeSnapshot
	// still works).
	SnapshotEntries int

	// OnConfChange is called on the replica goroutine (or in New, for the
	// snapshot restored on restart) after each membership
	// change is applied (cc.Context is the payload the proposer gave, e.g. the
	// new member's peer address), including the changes replayed on restart
	// and, after a snapshot is restored, one synthesized AddVoter/AddLearner
	// per member with its address. It must be idempotent and must not call
	// back into the Replica's blocking methods.
	OnConfChange func(cc pb.ConfChange, cs pb.ConfState)

	// Raft passes tuning through to the core (MaxSizePerMsg,
	// MaxInflightMsgs, DisablePreVote, ...). ID, Storage, Applied,
	// ElectionTick, HeartbeatTick and Logger are set by the replica.
	Raft raft.Config

	// Logger receives the replica's events. Nil discards.
	Logger *slog.Logger
}

// Defaults of Config's optional fields.
const (
	DefaultTickInterval        = 100 * time.Millisecond
	DefaultElectionTicks       = 10
	DefaultHeartbeatTicks      = 1
	DefaultMaxPendingProposals = 4096
	DefaultSnapshotEntries     = 10000
)

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.ID == pb.None {
		errs = append(errs, errors.New("replica: config: ID must not be 0"))
	}
	if c.StateMachine == nil {
		errs = append(errs, errors.New("replica: config: StateMachine is required"))
	}
	if c.Storage == nil {
		errs = append(errs, errors.New("replica: config: Storage is required"))
	}
	if c.Transport == nil {
		errs = append(errs, errors.New("replica: config: Transport is required"))
	}
	if c.TickInterval < 0 {
		errs = append(errs, errors.New("replica: config: TickInterval must not be negative"))
	}
	if c.MaxPendingProposals < 0 {
		errs = append(errs, errors.New("replica: config: MaxPendingProposals must not be negative"))
	}
	d := c.withDefaults()
	if d.HeartbeatTicks <= 0 {
		errs = append(errs, errors.New("replica: config: HeartbeatTicks must be > 0"))
	}
	if d.ElectionTicks <= d.HeartbeatTicks {
		errs = append(errs, errors.New("replica: config: ElectionTicks must be greater than HeartbeatTicks"))
	}
	seen := make(map[pb.NodeID]bool)
	for _, p := range c.Peers {
		if p.ID == pb.None {
			errs = append(errs, errors.New("replica: config: a peer has id 0"))
		} else if seen[p.ID] {
			errs = append(errs, errors.New("replica: config: peer "+p.ID.String()+" listed twice"))
		}
		seen[p.ID] = true
	}
	if len(c.Peers) > 0 && c.ID != pb.None && !seen[c.ID] {
		errs = append(errs, errors.New("replica: config: own id "+c.ID.String()+" is not among Peers"))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with every unset optional field filled.
func (c Config) withDefaults() Config {
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.MaxPendingProposals == 0 {
		c.MaxPendingProposals = DefaultMaxPendingProposals
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
