package tracker

import (
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

func TestInflightsWindow(t *testing.T) {
	in := NewInflights(4)
	for i := pb.Index(1); i <= 4; i++ {
		in.Add(i * 10)
	}
	if !in.Full() {
		t.Fatal("window of 4 with 4 messages must be full")
	}
	in.FreeLE(25) // frees 10 and 20
	if in.Count() != 2 || in.Full() {
		t.Fatalf("count = %d, want 2", in.Count())
	}
	in.Add(50)
	in.Add(60) // wraps around the ring
	in.FreeLE(5)
	if in.Count() != 4 {
		t.Fatalf("freeing below the oldest must do nothing; count = %d", in.Count())
	}
	in.FreeLE(55)
	if in.Count() != 1 {
		t.Fatalf("count = %d, want 1", in.Count())
	}
	in.FreeLE(100)
	if in.Count() != 0 {
		t.Fatalf("count = %d, want 0", in.Count())
	}
}

// TestProgressProbeBacktracking checks the probe rules of Raft §5.3: only the
// answer to the outstanding probe moves Next, never below Match+1.
func TestProgressProbeBacktracking(t *testing.T) {
	pr := &Progress{Match: 3, Next: 10, Inflights: NewInflights(8)}
	if pr.MaybeDecrTo(5, 4) {
		t.Fatal("a rejection of an older probe must be ignored")
	}
	if !pr.MaybeDecrTo(9, 1) || pr.Next != 4 {
		t.Fatalf("Next = %d, want Match+1 = 4", pr.Next)
	}
	pr.UpdateOnEntriesSend(1, 4)
	if !pr.IsPaused() {
		t.Fatal("probe state must pause after one message")
	}
	if !pr.MaybeUpdate(6) || pr.Next != 7 || pr.IsPaused() {
		t.Fatalf("after ack: %v", pr)
	}
	pr.BecomeReplicate()
	pr.UpdateOnEntriesSend(3, 9)
	if pr.Next != 10 || pr.Inflights.Count() != 1 {
		t.Fatalf("replicate: %v", pr)
	}
	if pr.MaybeDecrTo(6, 0) {
		t.Fatal("a rejection at or below Match is stale in replicate state")
	}
	if !pr.MaybeDecrTo(8, 0) || pr.Next != 7 {
		t.Fatalf("replicate rejection: Next = %d, want 7", pr.Next)
	}
}

func TestTrackerConfigAndQuorum(t *testing.T) {
	tr := New(4)
	tr.SetConfig(pb.ConfState{Voters: []pb.NodeID{3, 1, 2}, Learners: []pb.NodeID{4}}, 5)
	if got := tr.IDs(); len(got) != 4 || got[0] != 1 || got[3] != 4 {
		t.Fatalf("IDs = %v", got)
	}
	if !tr.Progress[4].IsLearner || tr.Progress[1].IsLearner {
		t.Fatal("learner flags wrong")
	}
	tr.Progress[1].Match = 7
	tr.Progress[2].Match = 6
	tr.Progress[4].Match = 100 // learners never count
	if got := tr.Committed(); got != 6 {
		t.Fatalf("Committed = %d, want 6", got)
	}
	for _, id := range tr.IDs() {
		tr.Progress[id].RecentActive = false
	}
	tr.Progress[1].RecentActive = true
	tr.Progress[4].RecentActive = true
	if tr.QuorumActive() {
		t.Fatal("one voter and a learner are not a quorum")
	}
	tr.Progress[3].RecentActive = true
	if !tr.QuorumActive() {
		t.Fatal("two of three voters are a quorum")
	}
	tr.SetConfig(pb.ConfState{Voters: []pb.NodeID{1, 2, 4}}, 9)
	if tr.Progress[3] != nil || tr.Progress[4].IsLearner || tr.Progress[4].Match != 100 {
		t.Fatal("reconfiguration must drop 3 and promote 4 keeping its progress")
	}
}
