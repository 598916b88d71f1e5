package quorum

import (
	"slices"
	"strings"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// MajorityConfig is a set of voters, sorted ascending without duplicates.
// A sorted slice (not a map) keeps iteration deterministic, which the
// simulator needs to replay a schedule exactly, and is faster for the handful
// of voters a Raft group has.
type MajorityConfig []pb.NodeID

// NewMajorityConfig returns the set of ids, sorted and deduplicated.
func NewMajorityConfig(ids ...pb.NodeID) MajorityConfig {
	c := slices.Clone(ids)
	slices.Sort(c)
	return MajorityConfig(slices.Compact(c))
}

// Contains reports whether id is a voter.
func (c MajorityConfig) Contains(id pb.NodeID) bool {
	_, ok := slices.BinarySearch(c, id)
	return ok
}

func (c MajorityConfig) String() string {
	var b strings.Builder
	b.WriteByte('(')
	for i, id := range c {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(id.String())
	}
	b.WriteByte(')')
	return b.String()
}

// AckedIndexer reports the highest log index a voter is known to hold
// durably (a leader's Progress.Match). ok is false for an unknown voter,
// which then counts as having acknowledged nothing.
type AckedIndexer interface {
	AckedIndex(id pb.NodeID) (idx pb.Index, ok bool)
}

// MapAckIndexer is an AckedIndexer over a map, handy in tests.
type MapAckIndexer map[pb.NodeID]pb.Index

// AckedIndex implements AckedIndexer.
func (m MapAckIndexer) AckedIndex(id pb.NodeID) (pb.Index, bool) {
	idx, ok := m[id]
	return idx, ok
}

// CommittedIndex returns the largest index that a majority of the voters has
// acknowledged: with the acknowledged indexes sorted descending, the one at
// position n/2 (0-based) is held by n/2+1 voters, a majority.
//
// An empty configuration commits nothing (0): a group without voters cannot
// make progress.
//
// It does not allocate for groups of up to 16 voters: it runs on every
// append acknowledgement a leader receives.
func (c MajorityConfig) CommittedIndex(l AckedIndexer) pb.Index {
	n := len(c)
	if n == 0 {
		return 0
	}
	var stk [16]pb.Index
	var srt []pb.Index
	if n <= len(stk) {
		srt = stk[:n]
	} else {
		srt = make([]pb.Index, n)
	}
	for i, id := range c {
		idx, _ := l.AckedIndex(id)
		srt[i] = idx
	}
	// Insertion sort, descending: n is small and this avoids the interface
	// boxing of sort.Slice.
	for i := 1; i < n; i++ {
		for j := i; j > 0 && srt[j-1] < srt[j]; j-- {
			srt[j-1], srt[j] = srt[j], srt[j-1]
		}
	}
	return srt[n/2]
}

// VoteResult is the outcome of an election as far as it is known.
type VoteResult uint8

const (
	// VotePending: neither a majority of grants nor of rejections yet.
	VotePending VoteResult = iota + 1
	// VoteLost: a majority rejected, or too few voters are left to win.
	VoteLost
	// VoteWon: a majority granted.
	VoteWon
)

func (v VoteResult) String() string {
	switch v {
	case VotePending:
		return "VotePending"
	case VoteLost:
		return "VoteLost"
	case VoteWon:
		return "VoteWon"
	}
	return "VoteResult(?)"
}

// VoteResult tallies votes (true = granted) cast by members of c; votes from
// non-voters are ignored. An empty configuration wins trivially only in the
// sense that it cannot lose, but the core never campaigns without being a
// voter itself, so an empty c is reported as VoteLost.
func (c MajorityConfig) VoteResult(votes map[pb.NodeID]bool) VoteResult {
	if len(c) == 0 {
		return VoteLost
	}
	granted, missing := 0, 0
	for _, id := range c {
		v, ok := votes[id]
		switch {
		case !ok:
			missing++
		case v:
			granted++
		}
	}
	q := len(c)/2 + 1
	if granted >= q {
		return VoteWon
	}
	if granted+missing >= q {
		return VotePending
	}
	return VoteLost
}
