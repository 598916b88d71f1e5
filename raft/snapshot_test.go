package raft

import (
	"slices"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// compact snapshots node id's storage at its applied index and drops the log.
func compact(t *testing.T, nw *network, id pb.NodeID) pb.Index {
	t.Helper()
	tn := nw.nodes[id]
	applied := tn.rn.Status().Applied
	cs := tn.rn.Status().ConfState
	if _, err := tn.st.CreateSnapshot(applied, &cs); err != nil {
		t.Fatal(err)
	}
	if err := tn.st.Compact(applied); err != nil {
		t.Fatal(err)
	}
	return applied
}

// TestSnapshotToLaggingFollower checks log compaction (Raft §7): a follower
// needing compacted entries gets MsgSnap, installs it (Ready.Snapshot) and
// then receives the rest of the log.
func TestSnapshotToLaggingFollower(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.isolate(3)
	for range 10 {
		_ = nw.propose(1, "a")
	}
	snapIdx := compact(t, nw, 1)
	_ = nw.propose(1, "b")
	nw.heal()
	nw.sent = nil
	nw.tickAll(3)
	if nw.countSent(pb.MsgSnap, 3) != 1 {
		t.Fatalf("%d MsgSnap sent to 3", nw.countSent(pb.MsgSnap, 3))
	}
	// The runtime reports the stream's outcome.
	nw.nodes[1].rn.ReportSnapshot(3, true)
	nw.tickAll(3)
	st := nw.nodes[3].st
	if s, _ := st.Snapshot(); s.Index != snapIdx {
		t.Fatalf("node 3 snapshot %d, want %d", s.Index, snapIdx)
	}
	if got := appliedData(nw.nodes[3]); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("node 3 applied %v after the snapshot, want [b]", got)
	}
	s := nw.status(3)
	if s.Applied != nw.status(1).Applied || !slices.Equal(s.ConfState.Voters, []pb.NodeID{1, 2, 3}) {
		t.Fatalf("node 3 status %+v", s)
	}
	if pr := nw.status(1).Progress[3]; pr.State != "replicate" {
		t.Fatalf("progress %+v", pr)
	}
}

// TestSnapshotToNewMember checks that a member added after compaction
// starts from a snapshot whose ConfState includes it.
func TestSnapshotToNewMember(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	for range 5 {
		_ = nw.propose(1, "a")
	}
	addMember(t, nw, 4, pb.ConfChangeAddLearner)
	compact(t, nw, 1)
	addMember(t, nw, 5, pb.ConfChangeAddVoter)
	nw.nodes[1].rn.ReportSnapshot(5, true)
	nw.tickAll(3)
	s := nw.status(5)
	if !slices.Equal(s.ConfState.Voters, []pb.NodeID{1, 2, 3, 5}) || !slices.Equal(s.ConfState.Learners, []pb.NodeID{4}) {
		t.Fatalf("new member conf %+v", s.ConfState)
	}
	if s.Applied != nw.status(1).Applied {
		t.Fatalf("new member applied %d, leader %d", s.Applied, nw.status(1).Applied)
	}
}

// TestSnapshotFailureRetries checks that a failed snapshot stream is
// retried once the follower answers a heartbeat.
func TestSnapshotFailureRetries(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.isolate(3)
	for range 3 {
		_ = nw.propose(1, "a")
	}
	compact(t, nw, 1)
	nw.heal()
	nw.filter = func(m pb.Message) bool { return m.Type != pb.MsgSnap } // the stream breaks
	nw.sent = nil
	nw.tickAll(2)
	nw.nodes[1].rn.ReportSnapshot(3, false)
	nw.filter = nil
	nw.tickAll(3)
	nw.nodes[1].rn.ReportSnapshot(3, true)
	nw.tickAll(3)
	if nw.status(3).Applied != nw.status(1).Applied {
		t.Fatalf("follower did not catch up after a failed snapshot\n%s", nw.dump())
	}
}

// TestMemoryStorage covers the storage's contract edges.
func TestMemoryStorage(t *testing.T) {
	ms := NewMemoryStorage()
	ents := []pb.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 2, Data: []byte("abc")}}
	if err := ms.Append(ents); err != nil {
		t.Fatal(err)
	}
	if err := ms.Append([]pb.Entry{{Index: 5, Term: 2}}); err == nil {
		t.Fatal("append with a gap accepted")
	}
	if err := ms.Append([]pb.Entry{{Index: 3, Term: 3}}); err != nil {
		t.Fatal(err)
	}
	if tm, _ := ms.Term(3); tm != 3 {
		t.Fatalf("term(3) = %d after overwrite", tm)
	}
	if _, err := ms.CreateSnapshot(2, nil); err != nil {
		t.Fatal(err)
	}
	if err := ms.Compact(2); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Entries(2, 3, noLimit); err != ErrCompacted {
		t.Fatalf("err = %v, want ErrCompacted", err)
	}
	if tm, err := ms.Term(2); err != nil || tm != 1 {
		t.Fatalf("term of the snapshot index: %d, %v", tm, err)
	}
	if fi, _ := ms.FirstIndex(); fi != 3 {
		t.Fatalf("first index %d", fi)
	}
	if err := ms.ApplySnapshot(pb.SnapshotMeta{Index: 2, Term: 1}); err == nil {
		t.Fatal("older snapshot accepted")
	}
	if err := ms.ApplySnapshot(pb.SnapshotMeta{Index: 10, Term: 4, ConfState: pb.ConfState{Voters: []pb.NodeID{1}}}); err != nil {
		t.Fatal(err)
	}
	if li, _ := ms.LastIndex(); li != 10 {
		t.Fatalf("last index %d", li)
	}
	if _, cs, _ := ms.InitialState(); !slices.Equal(cs.Voters, []pb.NodeID{1}) {
		t.Fatalf("conf state %+v", cs)
	}
}
