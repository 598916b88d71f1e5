package raft

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// raftLog is the core's view of the replicated log: the durable part in
// Storage, followed by the unstable part not yet written.
//
// Invariants: applied <= applying <= committed <= lastIndex(); the log never
// truncates at or below committed (Raft §5.3, Log Matching).
type raftLog struct {
	storage  Storage
	unstable unstable

	// committed is the highest index known to be committed.
	committed pb.Index
	// applying is the highest index handed out in Ready.CommittedEntries.
	applying pb.Index
	// applied is the highest index the runtime reported applied (Advance).
	applied pb.Index

	maxApplyingSize uint64
}

func newLog(storage Storage, maxApplyingSize uint64) (*raftLog, error) {
	first, err := storage.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: storage first index: %w", err)
	}
	last, err := storage.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: storage last index: %w", err)
	}
	if first == 0 || last+1 < first {
		return nil, fmt.Errorf("raft: storage holds an invalid log range: first %d, last %d", first, last)
	}
	l := &raftLog{storage: storage, maxApplyingSize: maxApplyingSize}
	l.unstable.offset = last + 1
	l.unstable.offsetInProgress = last + 1
	l.committed = first - 1
	l.applying = first - 1
	l.applied = first - 1
	return l, nil
}

// mustStorage turns an unexpected Storage failure into a panic naming it.
// Storage answers from memory (see its doc); failing here means it is broken.
func mustStorage[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("raft: storage failed: %v", err))
	}
	return v
}

func (l *raftLog) firstIndex() pb.Index {
	if i, ok := l.unstable.maybeFirstIndex(); ok {
		return i
	}
	return mustStorage(l.storage.FirstIndex())
}

func (l *raftLog) lastIndex() pb.Index {
	if i, ok := l.unstable.maybeLastIndex(); ok {
		return i
	}
	return mustStorage(l.storage.LastIndex())
}

// term returns the term of entry i; ErrCompacted or ErrUnavailable when it
// is outside the log.
func (l *raftLog) term(i pb.Index) (pb.Term, error) {
	if t, ok := l.unstable.maybeTerm(i); ok {
		return t, nil
	}
	if i+1 < l.firstIndex() {
		return 0, ErrCompacted
	}
	if i > l.lastIndex() {
		return 0, ErrUnavailable
	}
	t, err := l.storage.Term(i)
	if err == nil || errors.Is(err, ErrCompacted) || errors.Is(err, ErrUnavailable) {
		return t, err
	}
	panic(fmt.Sprintf("raft: storage term %d: %v", i, err))
}

// termOr0 returns the term of entry i, or 0 if it is not in the log.
func (l *raftLog) termOr0(i pb.Index) pb.Term {
	t, err := l.term(i)
	if err != nil {
		return 0
	}
	return t
}

func (l *raftLog) lastTerm() pb.Term { return l.termOr0(l.lastIndex()) }

func (l *raftLog) matchTerm(i pb.Index, t pb.Term) bool {
	gt, err := l.term(i)
	return err == nil && gt == t
}

// isUpToDate reports whether a log ending at (lasti, term) is at least as
// up-to-date as ours (Raft §5.4.1, the election restriction).
func (l *raftLog) isUpToDate(lasti pb.Index, term pb.Term) bool {
	lt := l.lastTerm()
	return term > lt || (term == lt && lasti >= l.lastIndex())
}

// maybeAppend appends ents after (prevIndex, prevTerm) if our log holds that
// entry (the AppendEntries consistency check, Raft §5.3), and advances the
// commit index to min(committed, last new index). It returns the last index
// the message covers and whether it matched. A conflict at or below the
// commit index is an error: no correct leader sends one.
func (l *raftLog) maybeAppend(prevIndex pb.Index, prevTerm pb.Term, committed pb.Index, ents []pb.Entry) (pb.Index, bool, error) {
	if !l.matchTerm(prevIndex, prevTerm) {
		return 0, false, nil
	}
	lastNew := prevIndex + pb.Index(len(ents))
	ci := l.findConflict(ents)
	switch {
	case ci == 0:
	case ci <= l.committed:
		return 0, false, fmt.Errorf("raft: append conflicts with committed entry %d (committed %d)", ci, l.committed)
	default:
		l.append(ents[ci-(prevIndex+1):])
	}
	l.commitTo(min(committed, lastNew))
	return lastNew, true, nil
}

// append adds ents to the unstable log, replacing any conflicting tail.
func (l *raftLog) append(ents []pb.Entry) pb.Index {
	if len(ents) == 0 {
		return l.lastIndex()
	}
	l.unstable.truncateAndAppend(ents)
	return l.lastIndex()
}

// findConflict returns the index of the first entry of ents that is not in
// our log with the same term (a new entry or a conflicting one), or 0 if all
// are present.
func (l *raftLog) findConflict(ents []pb.Entry) pb.Index {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index <= index whose term is <=
// term, with that term: the fast-backtracking hint of thesis §5.3. Entries
// after it cannot match a log whose entry at index has term `term`.
func (l *raftLog) findConflictByTerm(index pb.Index, term pb.Term) (pb.Index, pb.Term) {
	index = min(index, l.lastIndex())
	for ; index > 0; index-- {
		t, err := l.term(index)
		if err != nil {
			return index, 0
		}
		if t <= term {
			return index, t
		}
	}
	return 0, 0
}

func (l *raftLog) commitTo(i pb.Index) {
	if i > l.committed {
		if i > l.lastIndex() {
			panic(fmt.Sprintf("raft: commit %d beyond last index %d", i, l.lastIndex()))
		}
		l.committed = i
	}
}

// entries returns the log from lo, at most maxSize bytes (but one entry).
func (l *raftLog) entries(lo pb.Index, maxSize uint64) ([]pb.Entry, error) {
	last := l.lastIndex()
	if lo > last {
		return nil, nil
	}
	return l.slice(lo, last+1, maxSize)
}

// slice returns entries [lo, hi), at most maxSize bytes (but one entry).
func (l *raftLog) slice(lo, hi pb.Index, maxSize uint64) ([]pb.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo < l.firstIndex() {
		return nil, ErrCompacted
	}
	if hi > l.lastIndex()+1 {
		return nil, fmt.Errorf("raft: slice [%d, %d) beyond last index %d: %w", lo, hi, l.lastIndex(), ErrUnavailable)
	}
	off := l.unstable.offset
	if lo >= off {
		return limitSize(l.unstable.slice(lo, hi), maxSize), nil
	}
	stored, err := l.storage.Entries(lo, min(hi, off), maxSize)
	if err != nil {
		return nil, err
	}
	if hi <= off || pb.Index(len(stored)) < min(hi, off)-lo {
		return stored, nil
	}
	size := entsSize(stored)
	if size >= maxSize {
		return stored, nil
	}
	more := limitSize(l.unstable.slice(off, hi), maxSize-size)
	if len(more) == 1 && size+uint64(len(more[0].Data)) > maxSize {
		return stored, nil
	}
	out := make([]pb.Entry, 0, len(stored)+len(more))
	return append(append(out, stored...), more...), nil
}

// hasNextOrInProgressSnapshot reports whether a snapshot from the leader is
// not yet durable and applied.
func (l *raftLog) hasNextOrInProgressSnapshot() bool { return l.unstable.snapshot != nil }

// nextCommittedEnts returns committed entries not yet handed out to apply.
// Entries still being written may be included: Ready's order makes them
// durable before the runtime applies them.
func (l *raftLog) nextCommittedEnts() []pb.Entry {
	if l.hasNextOrInProgressSnapshot() || l.applying >= l.committed {
		return nil
	}
	ents, err := l.slice(l.applying+1, l.committed+1, l.maxApplyingSize)
	if err != nil {
		panic(fmt.Sprintf("raft: committed entries (%d, %d] unavailable: %v", l.applying, l.committed, err))
	}
	return ents
}

func (l *raftLog) hasNextCommittedEnts() bool {
	return !l.hasNextOrInProgressSnapshot() && l.applying < l.committed
}

// snapshot returns the newest snapshot: the one being installed, or the
// storage's.
func (l *raftLog) snapshot() (pb.SnapshotMeta, error) {
	if l.unstable.snapshot != nil {
		return *l.unstable.snapshot, nil
	}
	return l.storage.Snapshot()
}

// restore resets the log to snapshot s (a follower installing the leader's).
func (l *raftLog) restore(s pb.SnapshotMeta) {
	l.committed = s.Index
	l.unstable.restore(s)
}

func (l *raftLog) appliedTo(i pb.Index) {
	if i > l.applied {
		l.applied = i
	}
	l.applying = max(l.applying, i)
}

// stableLastIndex returns the last index known durable: what precedes the
// unstable part (in progress or not).
func (l *raftLog) stableLastIndex() pb.Index {
	if l.unstable.snapshot != nil {
		return l.unstable.snapshot.Index
	}
	return l.unstable.offset - 1
}
