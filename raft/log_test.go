package raft

import (
	"errors"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

func newTestLog(t *testing.T, stored, unstable []pb.Entry) *raftLog {
	t.Helper()
	ms := NewMemoryStorage()
	if err := ms.Append(stored); err != nil {
		t.Fatal(err)
	}
	l, err := newLog(ms, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(unstable) > 0 {
		l.append(unstable)
	}
	return l
}

func ents(from, to pb.Index, term pb.Term, size int) []pb.Entry {
	var out []pb.Entry
	for i := from; i <= to; i++ {
		out = append(out, pb.Entry{Index: i, Term: term, Data: make([]byte, size)})
	}
	return out
}

// TestLogSliceAcrossStorageAndUnstable checks that reads spanning the
// durable and unstable parts are stitched together and size-limited.
func TestLogSliceAcrossStorageAndUnstable(t *testing.T) {
	l := newTestLog(t, ents(1, 5, 1, 10), ents(6, 10, 2, 10))
	for _, tc := range []struct {
		name    string
		lo, hi  pb.Index
		max     uint64
		wantLen int
	}{
		{"all", 1, 11, noLimit, 10},
		{"span", 4, 8, noLimit, 4},
		{"size-limited within storage", 1, 11, 25, 2},
		{"size-limited across", 4, 11, 35, 3},
		{"at least one", 7, 11, 1, 1},
		{"unstable only", 6, 11, noLimit, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.slice(tc.lo, tc.hi, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.wantLen || got[0].Index != tc.lo {
				t.Fatalf("got %d entries from %d, want %d from %d", len(got), got[0].Index, tc.wantLen, tc.lo)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Index != got[i-1].Index+1 {
					t.Fatalf("not contiguous: %v", got)
				}
			}
		})
	}
	if _, err := l.slice(5, 12, noLimit); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("beyond last: err = %v", err)
	}
}

// TestLogConflictTruncation checks §5.3: a conflicting entry and everything
// after it are replaced, and a write in progress of the replaced tail is
// re-issued from the conflict point.
func TestLogConflictTruncation(t *testing.T) {
	l := newTestLog(t, ents(1, 3, 1, 0), ents(4, 8, 2, 0))
	handed := l.unstable.nextEntries()
	l.unstable.acceptInProgress()
	if len(handed) != 5 {
		t.Fatalf("handed %d", len(handed))
	}
	last, ok, err := l.maybeAppend(5, 2, 0, ents(6, 7, 3, 0))
	if err != nil || !ok || last != 7 {
		t.Fatalf("maybeAppend = %d %v %v", last, ok, err)
	}
	if l.lastIndex() != 7 || l.termOr0(6) != 3 || l.termOr0(5) != 2 {
		t.Fatalf("log after truncation: last %d", l.lastIndex())
	}
	if handed[2].Term != 2 {
		t.Fatal("truncation modified entries already handed out")
	}
	next := l.unstable.nextEntries()
	if len(next) != 2 || next[0].Index != 6 {
		t.Fatalf("re-issued %v, want entries 6-7", next)
	}
	// The write of the old tail finishing must not mark the new one stable.
	l.unstable.stableTo(8, 2)
	if l.unstable.offset != 4 {
		t.Fatalf("stale stableTo moved offset to %d", l.unstable.offset)
	}
	// A conflict at or below the commit index is refused.
	l.commitTo(6)
	if _, _, err := l.maybeAppend(5, 2, 0, ents(6, 6, 4, 0)); err == nil {
		t.Fatal("overwrote a committed entry")
	}
}

// TestFindConflictByTerm checks the backtracking hint of thesis §5.3.
func TestFindConflictByTerm(t *testing.T) {
	var log []pb.Entry
	log = append(log, ents(1, 3, 1, 0)...)
	log = append(log, ents(4, 60, 2, 0)...)
	log = append(log, ents(61, 62, 4, 0)...)
	l := newTestLog(t, log, nil)
	for _, tc := range []struct {
		index     pb.Index
		term      pb.Term
		wantIndex pb.Index
		wantTerm  pb.Term
	}{
		{62, 3, 60, 2},  // skips the term-4 entries
		{60, 1, 3, 1},   // skips all 57 term-2 entries at once
		{100, 5, 62, 4}, // beyond the log: clamped
		{62, 0, 0, 0},
	} {
		i, tm := l.findConflictByTerm(tc.index, tc.term)
		if i != tc.wantIndex || tm != tc.wantTerm {
			t.Errorf("findConflictByTerm(%d, %d) = %d/%d, want %d/%d", tc.index, tc.term, i, tm, tc.wantIndex, tc.wantTerm)
		}
	}
}
