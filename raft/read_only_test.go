package raft

import (
	"fmt"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestReadIndexBatched checks thesis §6.4 with batching: many requests made
// between two Readys are confirmed by one heartbeat round, each answered
// with the commit index at the time it arrived.
func TestReadIndexBatched(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	tn := nw.nodes[1]
	commit := nw.status(1).HardState.Commit
	nw.sent = nil
	for i := range 10 {
		tn.rn.ReadIndex([]byte(fmt.Sprint("r", i)))
	}
	nw.stabilize()
	if len(tn.reads) != 10 {
		t.Fatalf("%d reads answered, want 10", len(tn.reads))
	}
	for i, rs := range tn.reads {
		if string(rs.RequestCtx) != fmt.Sprint("r", i) || rs.Index != commit {
			t.Fatalf("read %d: %+v (commit %d)", i, rs, commit)
		}
	}
	if n := nw.countSent(pb.MsgHeartbeat, pb.None); n != 2 {
		t.Fatalf("%d heartbeats for 10 reads, want one round (2)", n)
	}
}

// TestReadIndexWaitsForCurrentTermCommit checks thesis §6.4 step 1: a new
// leader does not answer reads before it has committed an entry of its term
// (until then its commit index may lag the true one).
func TestReadIndexWaitsForCurrentTermCommit(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.filter = func(m pb.Message) bool { return m.Type != pb.MsgApp }
	nw.campaign(1)
	tn := nw.nodes[1]
	if nw.role(1) != RoleLeader {
		t.Fatal("setup")
	}
	tn.rn.ReadIndex([]byte("early"))
	nw.tickAll(3) // heartbeats flow, but the no-op cannot commit
	if len(tn.reads) != 0 {
		t.Fatalf("read answered before a current-term commit: %+v", tn.reads)
	}
	nw.filter = nil
	nw.tickAll(2)
	if len(tn.reads) != 1 || string(tn.reads[0].RequestCtx) != "early" || tn.reads[0].Index != nw.status(1).HardState.Commit {
		t.Fatalf("reads %+v", tn.reads)
	}
}

// TestReadIndexPartitionedLeaderNeverAnswers checks thesis §6.4: a leader
// cut off from the majority cannot confirm its leadership, so it never
// answers a read (a new leader may have accepted writes meanwhile).
func TestReadIndexPartitionedLeaderNeverAnswers(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.isolate(1)
	nw.nodes[1].rn.ReadIndex([]byte("stale"))
	for range 50 {
		nw.tickAll(1)
	}
	if got := nw.nodes[1].reads; len(got) != 0 {
		t.Fatalf("partitioned old leader answered %+v", got)
	}
	// The majority side elected a new leader and accepted a write.
	l := nw.leader()
	if l == 1 || l == pb.None {
		t.Fatalf("no new leader\n%s", nw.dump())
	}
	nw.heal()
	nw.tickAll(5)
	if got := nw.nodes[1].reads; len(got) != 0 {
		t.Fatalf("old leader answered after healing: %+v", got)
	}
}

// TestReadIndexFromFollower checks forwarding: the follower's request is
// confirmed by the leader and answered to the follower.
func TestReadIndexFromFollower(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	_ = nw.propose(1, "w")
	nw.nodes[2].rn.ReadIndex([]byte("f"))
	nw.stabilize()
	got := nw.nodes[2].reads
	if len(got) != 1 || string(got[0].RequestCtx) != "f" || got[0].Index != nw.status(1).HardState.Commit {
		t.Fatalf("follower reads %+v", got)
	}
	if len(nw.nodes[1].reads) != 0 {
		t.Fatal("the leader must not surface a forwarded read as its own")
	}
}

// TestReadIndexSingleVoter checks that a one-voter group answers at once
// (after its first commit): no one else can be leader.
func TestReadIndexSingleVoter(t *testing.T) {
	nw := newNetwork(t, 1, nil)
	nw.campaign(1)
	nw.nodes[1].rn.ReadIndex([]byte("s"))
	nw.stabilize()
	if got := nw.nodes[1].reads; len(got) != 1 || got[0].Index != nw.status(1).HardState.Commit {
		t.Fatalf("reads %+v", got)
	}
}

// TestReadIndexFollowerVouches checks that a follower's own request, sent in
// the leader's term, counts as its acknowledgement: with three voters the
// leader and the requester are a majority, so the read is answered without
// a heartbeat round, with the leader's commit index.
func TestReadIndexFollowerVouches(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	_ = nw.propose(1, "w")
	nw.stabilize()
	nw.sent = nil
	nw.nodes[2].rn.ReadIndex([]byte("f"))
	nw.stabilize()
	got := nw.nodes[2].reads
	if len(got) != 1 || string(got[0].RequestCtx) != "f" || got[0].Index != nw.status(1).HardState.Commit {
		t.Fatalf("follower reads %+v", got)
	}
	if n := nw.countSent(pb.MsgHeartbeat, pb.None); n != 0 {
		t.Fatalf("%d heartbeats for a read the requester vouched for, want 0", n)
	}
	if n := nw.countSent(pb.MsgReadIndex, 1); n != 1 || nw.sent[0].LogTerm != nw.term(2) {
		t.Fatalf("the request must carry the follower's term %d: %s", nw.term(2), fmtMessage(nw.sent[0]))
	}
}

// TestReadIndexFollowerVouchesNotEnough checks that with five voters the
// requester and the leader are not a majority: a heartbeat round still
// confirms the read.
func TestReadIndexFollowerVouchesNotEnough(t *testing.T) {
	nw := newNetwork(t, 5, nil)
	nw.campaign(1)
	nw.sent = nil
	nw.nodes[2].rn.ReadIndex([]byte("f"))
	nw.stabilize()
	if got := nw.nodes[2].reads; len(got) != 1 || got[0].Index != nw.status(1).HardState.Commit {
		t.Fatalf("follower reads %+v", got)
	}
	if n := nw.countSent(pb.MsgHeartbeat, pb.None); n != 4 {
		t.Fatalf("%d heartbeats, want one round (4)", n)
	}
}

// TestReadIndexVouchOnlyInOurTerm checks that only a request stamped with
// the leader's own term stands for its requester's acknowledgement: one with
// an older stamp, or with none (from an older member), waits for a heartbeat
// round like a read of the leader's own, so a partitioned leader answers
// neither. A member passing on someone else's request removes the stamp.
func TestReadIndexVouchOnlyInOurTerm(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    func(term pb.Term) pb.Message
	}{
		{"older term", func(term pb.Term) pb.Message {
			return pb.Message{Type: pb.MsgReadIndex, From: 2, To: 1, LogTerm: term - 1, Context: []byte("r")}
		}},
		{"no term", func(pb.Term) pb.Message {
			return pb.Message{Type: pb.MsgReadIndex, From: 2, To: 1, Context: []byte("r")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := newNetwork(t, 3, nil)
			nw.campaign(1)
			nw.isolate(1)
			if err := nw.nodes[1].rn.Step(tc.m(nw.term(1))); err != nil {
				t.Fatal(err)
			}
			nw.stabilize()
			if n := nw.countSent(pb.MsgReadIndexResp, 2); n != 0 {
				t.Fatal("a partitioned leader answered a read no one vouched for")
			}
			nw.heal()
			nw.tickAll(2) // the next heartbeat round carries the read's round
			if n := nw.countSent(pb.MsgReadIndexResp, 2); n != 1 {
				t.Fatalf("%d answers after healing, want 1", n)
			}
		})
	}

	// A request passed on loses the stamp: the member passing it on cannot
	// vouch for the requester.
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.sent = nil
	if err := nw.nodes[3].rn.Step(pb.Message{Type: pb.MsgReadIndex, From: 2, To: 3, LogTerm: nw.term(3), Context: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	if len(nw.sent) == 0 || nw.sent[0].Type != pb.MsgReadIndex || nw.sent[0].LogTerm != 0 {
		t.Fatalf("forwarded request %v, want MsgReadIndex with no term", nw.sent)
	}
}
