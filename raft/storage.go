package raft

import (
	"errors"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Errors a Storage returns; the core matches them with errors.Is.
var (
	// ErrCompacted: the requested index is below the first index still kept
	// (it was folded into a snapshot). The leader sends a snapshot instead.
	ErrCompacted = errors.New("raft: requested index is unavailable due to compaction")
	// ErrUnavailable: the requested index is above the last index stored.
	ErrUnavailable = errors.New("raft: requested entry at index is unavailable")
	// ErrSnapshotTemporarilyUnavailable: no snapshot can be served right now;
	// the core retries later.
	ErrSnapshotTemporarilyUnavailable = errors.New("raft: snapshot is temporarily unavailable")
)

// Storage is the core's read-only view of the durable log. The runtime writes
// to it (the entries, hard state and snapshots that Ready hands out) and the
// core reads from it; the core never writes.
//
// Every method is called only from the goroutine that drives the RawNode, and
// must answer from memory or an in-memory index: it is on the hot path.
//
// The log held is (Snapshot().Index, LastIndex()]; FirstIndex() is
// Snapshot().Index+1. Term(Snapshot().Index) must be answered too (it is the
// term of the entry preceding the first one kept).
type Storage interface {
	// InitialState returns the durable HardState and membership on restart.
	InitialState() (pb.HardState, pb.ConfState, error)
	// Entries returns entries [lo, hi), at most maxSize bytes of Data in total
	// but always at least one entry if lo < hi.
	Entries(lo, hi pb.Index, maxSize uint64) ([]pb.Entry, error)
	// Term returns the term of the entry at index i.
	Term(i pb.Index) (pb.Term, error)
	// FirstIndex returns the index of the first entry that Entries can return.
	FirstIndex() (pb.Index, error)
	// LastIndex returns the index of the last entry stored.
	LastIndex() (pb.Index, error)
	// Snapshot returns the metadata of the newest snapshot stored.
	Snapshot() (pb.SnapshotMeta, error)
}
