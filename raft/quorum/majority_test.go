package quorum

import (
	"slices"
	"testing"
	"testing/quick"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// naiveCommitted is the textbook definition: the largest index i such that a
// majority of voters acknowledged at least i.
func naiveCommitted(c MajorityConfig, acks MapAckIndexer) pb.Index {
	var best pb.Index
	cands := []pb.Index{0}
	for _, id := range c {
		cands = append(cands, acks[id])
	}
	for _, i := range cands {
		n := 0
		for _, id := range c {
			if acks[id] >= i {
				n++
			}
		}
		if n > len(c)/2 && i > best {
			best = i
		}
	}
	return best
}

// TestCommittedIndexMatchesNaive checks the commit rule of Raft §5.3 (an entry
// is committed once a majority stores it) against a brute-force version.
func TestCommittedIndexMatchesNaive(t *testing.T) {
	f := func(ids []uint8, idxs []uint16, missing uint8) bool {
		var raw []pb.NodeID
		for _, id := range ids {
			raw = append(raw, pb.NodeID(id%40+1))
		}
		c := NewMajorityConfig(raw...)
		acks := MapAckIndexer{}
		for i, id := range c {
			if i < len(idxs) && (missing == 0 || i%int(missing) != 0) {
				acks[id] = pb.Index(idxs[i] % 64)
			}
		}
		got, want := c.CommittedIndex(acks), naiveCommitted(c, acks)
		if len(c) == 0 {
			want = 0
		}
		if got != want {
			t.Logf("config %v acks %v: got %d want %d", c, acks, got, want)
		}
		return got == want
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 5000}); err != nil {
		t.Fatal(err)
	}
}

func naiveVote(c MajorityConfig, votes map[pb.NodeID]bool) VoteResult {
	if len(c) == 0 {
		return VoteLost
	}
	yes, no := 0, 0
	for _, id := range c {
		if v, ok := votes[id]; ok {
			if v {
				yes++
			} else {
				no++
			}
		}
	}
	switch {
	case 2*yes > len(c):
		return VoteWon
	case 2*no >= len(c) && !(2*(len(c)-no) > len(c)):
		return VoteLost
	}
	return VotePending
}

// TestVoteResultMatchesNaive checks §5.2: a candidate wins with votes from a
// majority and has lost once a majority can no longer be reached.
func TestVoteResultMatchesNaive(t *testing.T) {
	f := func(ids []uint8, vs []uint8) bool {
		var raw []pb.NodeID
		for _, id := range ids {
			raw = append(raw, pb.NodeID(id%12+1))
		}
		c := NewMajorityConfig(raw...)
		votes := map[pb.NodeID]bool{}
		for i, v := range vs {
			id := pb.NodeID(i%14 + 1) // includes non-voters sometimes
			switch v % 3 {
			case 1:
				votes[id] = true
			case 2:
				votes[id] = false
			}
		}
		return c.VoteResult(votes) == naiveVote(c, votes)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 5000}); err != nil {
		t.Fatal(err)
	}
}

func TestMajorityConfigBasics(t *testing.T) {
	c := NewMajorityConfig(3, 1, 2, 3)
	if !slices.Equal(c, MajorityConfig{1, 2, 3}) {
		t.Fatalf("got %v", c)
	}
	if !c.Contains(2) || c.Contains(4) {
		t.Fatal("Contains is wrong")
	}
	if c.String() != "(1 2 3)" {
		t.Fatalf("String = %q", c.String())
	}
	if got := c.CommittedIndex(MapAckIndexer{1: 5, 2: 7}); got != 5 {
		t.Fatalf("committed = %d, want 5", got)
	}
	big := make([]pb.NodeID, 21)
	acks := MapAckIndexer{}
	for i := range big {
		big[i] = pb.NodeID(i + 1)
		acks[big[i]] = pb.Index(i)
	}
	if got, want := NewMajorityConfig(big...).CommittedIndex(acks), pb.Index(10); got != want {
		t.Fatalf("21 voters: committed = %d, want %d", got, want)
	}
}

func BenchmarkQuorumCommit(b *testing.B) {
	for _, n := range []int{3, 5, 7} {
		ids := make([]pb.NodeID, n)
		acks := MapAckIndexer{}
		for i := range ids {
			ids[i] = pb.NodeID(i + 1)
			acks[ids[i]] = pb.Index(1000 + i*7%5)
		}
		c := NewMajorityConfig(ids...)
		b.Run("voters="+string(rune('0'+n)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.CommittedIndex(acks)
			}
		})
	}
}
