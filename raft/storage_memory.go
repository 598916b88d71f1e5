package raft

import (
	"errors"
	"fmt"
	"slices"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// MemoryStorage is a Storage held in memory: for tests, the simulator, and
// programs whose durability lives elsewhere (a runtime can keep its WAL's
// recent tail here and serve the core from it).
//
// It is not safe for concurrent use: like the RawNode, it belongs to the one
// goroutine that drives the node.
type MemoryStorage struct {
	hardState pb.HardState
	confState pb.ConfState
	snapshot  pb.SnapshotMeta
	// ents[0] is a dummy entry standing for the snapshot (its Index and
	// Term); the real log is ents[1:].
	ents []pb.Entry
}

// NewMemoryStorage returns an empty storage.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{ents: make([]pb.Entry, 1)}
}

// InitialState implements Storage.
func (ms *MemoryStorage) InitialState() (pb.HardState, pb.ConfState, error) {
	return ms.hardState, cloneConfState(ms.confState), nil
}

// SetHardState records the durable HardState.
func (ms *MemoryStorage) SetHardState(hs pb.HardState) { ms.hardState = hs }

// SetConfState records the membership (what ApplyConfChange returned, or
// what Bootstrap returned for a founding member).
func (ms *MemoryStorage) SetConfState(cs pb.ConfState) { ms.confState = cloneConfState(cs) }

func (ms *MemoryStorage) firstIndex() pb.Index { return ms.ents[0].Index + 1 }
func (ms *MemoryStorage) lastIndex() pb.Index {
	return ms.ents[0].Index + pb.Index(len(ms.ents)) - 1
}

// Entries implements Storage.
func (ms *MemoryStorage) Entries(lo, hi pb.Index, maxSize uint64) ([]pb.Entry, error) {
	if lo <= ms.ents[0].Index {
		return nil, ErrCompacted
	}
	if hi > ms.lastIndex()+1 {
		return nil, fmt.Errorf("raft: memory storage: entries [%d, %d) beyond last index %d: %w",
			lo, hi, ms.lastIndex(), ErrUnavailable)
	}
	if lo >= hi {
		return nil, nil
	}
	off := ms.ents[0].Index
	ents := limitSize(ms.ents[lo-off:hi-off], maxSize)
	// Cap the slice so that a caller's append cannot overwrite our entries.
	return ents[:len(ents):len(ents)], nil
}

// Term implements Storage.
func (ms *MemoryStorage) Term(i pb.Index) (pb.Term, error) {
	off := ms.ents[0].Index
	if i < off {
		return 0, ErrCompacted
	}
	if i > ms.lastIndex() {
		return 0, ErrUnavailable
	}
	return ms.ents[i-off].Term, nil
}

// FirstIndex implements Storage.
func (ms *MemoryStorage) FirstIndex() (pb.Index, error) { return ms.firstIndex(), nil }

// LastIndex implements Storage.
func (ms *MemoryStorage) LastIndex() (pb.Index, error) { return ms.lastIndex(), nil }

// Snapshot implements Storage.
func (ms *MemoryStorage) Snapshot() (pb.SnapshotMeta, error) {
	s := ms.snapshot
	s.ConfState = cloneConfState(s.ConfState)
	return s, nil
}

// ApplySnapshot replaces the log with the snapshot: everything it covers is
// dropped, and the membership becomes its ConfState. A snapshot older than
// the one held is refused with ErrSnapOutOfDate.
func (ms *MemoryStorage) ApplySnapshot(s pb.SnapshotMeta) error {
	if s.Index <= ms.snapshot.Index {
		return fmt.Errorf("raft: memory storage: apply snapshot %d (have %d): %w", s.Index, ms.snapshot.Index, ErrSnapOutOfDate)
	}
	ms.snapshot = s
	ms.snapshot.ConfState = cloneConfState(s.ConfState)
	ms.confState = cloneConfState(s.ConfState)
	ms.ents = []pb.Entry{{Term: s.Term, Index: s.Index}}
	if ms.hardState.Commit < s.Index {
		ms.hardState.Commit = s.Index
	}
	if ms.hardState.Term < s.Term {
		ms.hardState.Term = s.Term
	}
	return nil
}

// CreateSnapshot records that the state machine has a snapshot covering the
// log through i (which must be applied, hence stored), with membership cs
// (nil: the current one). The log is kept; call Compact to drop it.
func (ms *MemoryStorage) CreateSnapshot(i pb.Index, cs *pb.ConfState) (pb.SnapshotMeta, error) {
	if i <= ms.snapshot.Index {
		return pb.SnapshotMeta{}, fmt.Errorf("raft: memory storage: create snapshot %d (have %d): %w", i, ms.snapshot.Index, ErrSnapOutOfDate)
	}
	if i > ms.lastIndex() {
		return pb.SnapshotMeta{}, fmt.Errorf("raft: memory storage: create snapshot %d beyond last index %d: %w", i, ms.lastIndex(), ErrUnavailable)
	}
	c := ms.confState
	if cs != nil {
		c = *cs
	}
	ms.snapshot = pb.SnapshotMeta{Index: i, Term: ms.ents[i-ms.ents[0].Index].Term, ConfState: cloneConfState(c)}
	return ms.Snapshot()
}

// Compact drops the entries before compactIndex; compactIndex itself stays
// as the dummy entry so that its term remains known. The runtime compacts
// only what a snapshot covers.
func (ms *MemoryStorage) Compact(compactIndex pb.Index) error {
	off := ms.ents[0].Index
	if compactIndex <= off {
		return fmt.Errorf("raft: memory storage: compact %d (first kept %d): %w", compactIndex, off, ErrCompacted)
	}
	if compactIndex > ms.lastIndex() {
		return fmt.Errorf("raft: memory storage: compact %d beyond last index %d: %w", compactIndex, ms.lastIndex(), ErrUnavailable)
	}
	i := compactIndex - off
	ents := make([]pb.Entry, 1, pb.Index(len(ms.ents))-i)
	ents[0] = pb.Entry{Index: ms.ents[i].Index, Term: ms.ents[i].Term}
	ms.ents = append(ents, ms.ents[i+1:]...)
	return nil
}

// Append adds entries to the log, replacing any it holds at the same
// indexes or after (a new leader may overwrite an uncommitted tail). Entries
// that a snapshot already covers are skipped. A gap after the last index is
// an error.
func (ms *MemoryStorage) Append(entries []pb.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	first := ms.firstIndex()
	last := entries[len(entries)-1].Index
	if last < first {
		return nil
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Index != entries[i-1].Index+1 {
			return fmt.Errorf("raft: memory storage: append: entries not contiguous at index %d", entries[i].Index)
		}
	}
	if entries[0].Index < first {
		entries = entries[first-entries[0].Index:]
	}
	off := entries[0].Index - ms.ents[0].Index
	switch {
	case pb.Index(len(ms.ents)) > off:
		// Copy the kept prefix so that slices handed out by Entries stay intact.
		ms.ents = append(slices.Clone(ms.ents[:off]), entries...)
	case pb.Index(len(ms.ents)) == off:
		if need := len(ms.ents) + len(entries); need > cap(ms.ents) {
			// Double: append's growth for large slices (1.25x) would copy
			// a long log several times over.
			grown := make([]pb.Entry, len(ms.ents), max(need, 2*cap(ms.ents)))
			copy(grown, ms.ents)
			ms.ents = grown
		}
		ms.ents = append(ms.ents, entries...)
	default:
		return fmt.Errorf("raft: memory storage: append at %d leaves a gap after last index %d", entries[0].Index, ms.lastIndex())
	}
	return nil
}

// ErrSnapOutOfDate: a snapshot older than the one held was offered.
var ErrSnapOutOfDate = errors.New("raft: requested snapshot is older than the existing snapshot")

func cloneConfState(cs pb.ConfState) pb.ConfState {
	return pb.ConfState{Voters: slices.Clone(cs.Voters), Learners: slices.Clone(cs.Learners)}
}

// entsSize is the payload size Config limits count: the bytes of entry data.
func entsSize(ents []pb.Entry) uint64 {
	var n uint64
	for i := range ents {
		n += uint64(len(ents[i].Data))
	}
	return n
}

// limitSize returns the longest prefix of ents whose data fits in maxSize,
// but at least one entry so that a large entry still makes progress.
func limitSize(ents []pb.Entry, maxSize uint64) []pb.Entry {
	if len(ents) == 0 {
		return ents
	}
	size := uint64(len(ents[0].Data))
	for i := 1; i < len(ents); i++ {
		size += uint64(len(ents[i].Data))
		if size > maxSize {
			return ents[:i]
		}
	}
	return ents
}
