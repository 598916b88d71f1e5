package wal

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// The raft.Storage methods answer from memory under a read lock: they may
// run concurrently with the writer and with each other.
var _ raft.Storage = (*Log)(nil)

// InitialState returns the durable hard state and the latest membership
// (SetConfState, or the snapshot's if none was set since).
func (l *Log) InitialState() (pb.HardState, pb.ConfState, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.st.hs, cloneConfState(l.st.cs), nil
}

// Entries returns entries [lo, hi), at most maxSize bytes of Data but at
// least one. The returned slice must not be modified; it stays valid (the
// log copies on truncation rather than overwrite).
func (l *Log) Entries(lo, hi pb.Index, maxSize uint64) ([]pb.Entry, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if lo <= l.st.snap.Index {
		return nil, raft.ErrCompacted
	}
	if hi > l.st.lastIndex()+1 {
		return nil, raft.ErrUnavailable
	}
	if lo > hi {
		return nil, fmt.Errorf("wal: Entries: lo %d > hi %d", lo, hi)
	}
	if lo == hi {
		return nil, nil
	}
	first := l.st.snap.Index + 1
	ents := l.st.ents[lo-first : hi-first]
	var size uint64
	for i := range ents {
		size += uint64(len(ents[i].Data))
		if i > 0 && size > maxSize {
			ents = ents[:i]
			break
		}
	}
	return ents[:len(ents):len(ents)], nil
}

// Term returns the term of the entry at index i (the snapshot's term at
// its index).
func (l *Log) Term(i pb.Index) (pb.Term, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	switch {
	case i == l.st.snap.Index:
		return l.st.snap.Term, nil
	case i < l.st.snap.Index:
		return 0, raft.ErrCompacted
	case i > l.st.lastIndex():
		return 0, raft.ErrUnavailable
	}
	return l.st.ents[i-l.st.snap.Index-1].Term, nil
}

// FirstIndex returns the snapshot's index + 1.
func (l *Log) FirstIndex() (pb.Index, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.st.snap.Index + 1, nil
}

// LastIndex returns the index of the last entry (the snapshot's index if
// the log holds none after it).
func (l *Log) LastIndex() (pb.Index, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.st.lastIndex(), nil
}

// Snapshot returns the metadata of the newest snapshot recorded.
func (l *Log) Snapshot() (pb.SnapshotMeta, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	m := l.st.snap
	m.ConfState = cloneConfState(m.ConfState)
	return m, nil
}
