package wal

import (
	"fmt"
	"slices"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// state is the Raft state a log's records add up to. Replay and the write
// path apply records through the same methods, so what Open rebuilds is by
// construction what the writer held.
//
// Invariants (checked by valid after replay, kept by every write):
//  1. ents is contiguous: ents[i].Index == ents[0].Index + i.
//  2. ents[0].Index == snap.Index+1 when ents is not empty.
//
// During replay (2) may be broken for a while: after log compaction the
// first segment kept can start above the snapshot it replays first, and a
// later snapshot record covers the gap. valid checks it at the end.
type state struct {
	hs   pb.HardState
	cs   pb.ConfState
	snap pb.SnapshotMeta
	ents []pb.Entry
}

func (s *state) lastIndex() pb.Index {
	if len(s.ents) == 0 {
		return s.snap.Index
	}
	return s.ents[len(s.ents)-1].Index
}

func (s *state) isEmpty() bool {
	return s.hs.IsEmpty() && s.snap.IsEmpty() && len(s.ents) == 0 &&
		len(s.cs.Voters) == 0 && len(s.cs.Learners) == 0
}

// appendEntry adds e, first dropping any entries at e.Index and above (a
// new leader overwriting a follower's tail). Entries at or below the
// snapshot are ignored: the snapshot already covers them. gapOK allows an
// entry beyond lastIndex()+1 (replay only; see the type comment).
//
// A truncation copies the kept prefix into a new array, so slices handed
// to readers by Entries never see an overwritten element.
func (s *state) appendEntry(e pb.Entry, gapOK bool) error {
	if e.Index <= s.snap.Index {
		return nil
	}
	last := s.lastIndex()
	switch {
	case len(s.ents) > 0 && e.Index < s.ents[0].Index:
		s.ents = nil // overwrites everything kept (replay after a gap only)
	case e.Index > last+1:
		if !gapOK {
			return fmt.Errorf("wal: entry %d would leave a gap after last index %d", e.Index, last)
		}
		s.ents = nil
	case e.Index <= last:
		s.ents = slices.Clone(s.ents[:e.Index-s.ents[0].Index])
	}
	s.ents = append(s.ents, e)
	return nil
}

// snapshotKeeps reports whether recording snapshot m keeps the entries
// after it: the log agrees with the snapshot at m.Index (a local snapshot
// of an applied prefix). Otherwise the snapshot replaces the whole log (one
// received from the leader). The writer decides and records the decision
// in the snapshot record, because replay after log compaction may no
// longer hold the entry at m.Index to decide again.
func (s *state) snapshotKeeps(m pb.SnapshotMeta) bool {
	return len(s.ents) > 0 && m.Index >= s.ents[0].Index && m.Index <= s.lastIndex() &&
		s.ents[m.Index-s.ents[0].Index].Term == m.Term
}

// applySnapshot records that a snapshot up to m.Index is durably in place,
// keeping the entries after it if keep (see snapshotKeeps).
//
// Membership: a snapshot that replaces the log brings its ConfState; one of
// a local prefix leaves the latest SetConfState in force (it is at least as
// new), unless none was ever recorded.
func (s *state) applySnapshot(m pb.SnapshotMeta, keep bool) {
	if m.Index <= s.snap.Index {
		return
	}
	switch {
	case !keep:
		s.ents = nil
	case len(s.ents) > 0 && m.Index >= s.ents[0].Index:
		s.ents = slices.Clone(s.ents[min(m.Index-s.ents[0].Index+1, pb.Index(len(s.ents))):])
	}
	if !keep || (len(s.cs.Voters) == 0 && len(s.cs.Learners) == 0) {
		s.cs = cloneConfState(m.ConfState)
	}
	s.snap = m
	s.snap.ConfState = cloneConfState(m.ConfState)
}

// valid checks the invariants; replay calls it once all records are in.
func (s *state) valid() error {
	if len(s.ents) > 0 && s.ents[0].Index != s.snap.Index+1 {
		return fmt.Errorf("entries (%d, %d) are missing: the log starts at %d after a snapshot at %d",
			s.snap.Index, s.ents[0].Index, s.ents[0].Index, s.snap.Index)
	}
	for i := 1; i < len(s.ents); i++ {
		if s.ents[i].Index != s.ents[i-1].Index+1 {
			panic(fmt.Sprintf("wal: in-memory log not contiguous at %d: %d then %d", i, s.ents[i-1].Index, s.ents[i].Index))
		}
	}
	return nil
}

func cloneConfState(cs pb.ConfState) pb.ConfState {
	return pb.ConfState{Voters: slices.Clone(cs.Voters), Learners: slices.Clone(cs.Learners)}
}
