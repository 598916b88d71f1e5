package replica

import (
	"io"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// StateMachine is what a replica replicates. raftkv's kv.Store is one; users
// of the library bring their own.
//
// Concurrency contract: Apply, Snapshot and Restore are called only from the
// replica goroutine, never concurrently with each other. The SnapshotFunc that
// Snapshot returns runs on another goroutine, concurrently with later Apply
// calls, and must write the state as it was when Snapshot was called.
type StateMachine interface {
	// Apply applies committed normal entries in log order, each exactly once
	// per state (after a Restore, from the snapshot's index on). It returns one
	// result per entry, handed to the Propose call that proposed it. Entries
	// with empty Data (a leader's no-op) are not passed. Apply must depend only
	// on the state and the entries: no clocks, no randomness, no I/O that can
	// fail differently on different members. An error is fatal to the member.
	Apply(entries []pb.Entry) ([]any, error)

	// Snapshot captures the state as of the last applied entry. The returned
	// function streams it to w; it must not hold the whole state twice in memory.
	Snapshot() (SnapshotFunc, error)

	// Restore replaces the whole state with the one read from r (written by a
	// SnapshotFunc of any member).
	Restore(r io.Reader) error
}

// SnapshotFunc writes a point-in-time image of a state machine to w.
type SnapshotFunc func(w io.Writer) error
