package replica

import (
	"io"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Storage is the durable log the replica persists to and the core reads
// from. *wal.Log provides it through AdaptStorage (its CreateSnapshot returns
// a concrete writer type); tests and library users may plug their own.
//
// Concurrency contract: every method is called from the replica goroutine,
// except CreateSnapshot (and the writer it returns), which is also called
// from the goroutine that streams a snapshot being taken and from transport
// goroutines receiving one, and OpenSnapshot, which may be called from the
// replica goroutine while a snapshot is being written.
type Storage interface {
	raft.Storage
	// Save appends ents (truncating any conflicting tail first) and records hs
	// if it is not empty. With sync set it returns only once both are durable.
	Save(hs pb.HardState, ents []pb.Entry, sync bool) error
	// SaveSnapshot records that the snapshot meta describes is installed (its
	// file is already durable) and drops the log it covers.
	SaveSnapshot(meta pb.SnapshotMeta) error
	// Compact drops durable log below index (covered by a saved snapshot).
	Compact(index pb.Index) error
	// SetConfState durably records the membership as of the last applied conf change.
	SetConfState(cs pb.ConfState) error
	// CreateSnapshot starts writing the snapshot file for meta.
	CreateSnapshot(meta pb.SnapshotMeta) (SnapshotWriter, error)
	// OpenSnapshot opens the snapshot file at index for reading, with its size in bytes.
	OpenSnapshot(index pb.Index) (pb.SnapshotMeta, io.ReadCloser, int64, error)
}

// SnapshotWriter receives a snapshot's bytes. Commit makes the file durable
// and visible (atomically); Abort discards it (after a failed Write or
// Commit, or instead of Commit). *wal.SnapshotWriter satisfies it.
type SnapshotWriter interface {
	io.Writer
	Commit() error
	Abort()
}

// snapshotStore is Storage with CreateSnapshot returning a concrete writer
// type W, as *wal.Log's does.
type snapshotStore[W SnapshotWriter] interface {
	raft.Storage
	Save(hs pb.HardState, ents []pb.Entry, sync bool) error
	SaveSnapshot(meta pb.SnapshotMeta) error
	Compact(index pb.Index) error
	SetConfState(cs pb.ConfState) error
	CreateSnapshot(meta pb.SnapshotMeta) (W, error)
	OpenSnapshot(index pb.Index) (pb.SnapshotMeta, io.ReadCloser, int64, error)
}

// AdaptStorage returns s as a Storage when its CreateSnapshot returns a
// concrete writer type rather than SnapshotWriter (Go method sets must
// match exactly). For the WAL: replica.Config{Storage: replica.AdaptStorage(log)}.
func AdaptStorage[W SnapshotWriter, S snapshotStore[W]](s S) Storage {
	return adaptedStorage[W, S]{s}
}

type adaptedStorage[W SnapshotWriter, S snapshotStore[W]] struct{ snapshotStore[W] }

func (a adaptedStorage[W, S]) CreateSnapshot(meta pb.SnapshotMeta) (SnapshotWriter, error) {
	w, err := a.snapshotStore.CreateSnapshot(meta)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Sender delivers messages to peers. *transport.Transport satisfies it.
//
// Send must never block the replica goroutine: a slow or dead peer loses
// messages (Raft retries them). SendSnapshot streams data in the background,
// closes it when done, and reports the outcome through the replica's
// ReportSnapshot.
type Sender interface {
	Send(msgs []pb.Message)
	SendSnapshot(m pb.Message, data io.ReadCloser, size int64)
}
