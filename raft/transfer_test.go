package raft

import (
	"errors"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestTransferLeadership checks thesis §3.10: the leader catches the
// transferee up, then sends MsgTimeoutNow; the transferee wins at once
// despite the others' leader stickiness.
func TestTransferLeadership(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.isolate(3)
	_ = nw.propose(1, "x") // 3 lags behind
	nw.heal()
	term := nw.term(1)
	nw.nodes[1].rn.TransferLeadership(3)
	nw.stabilize()
	if nw.leader() != 3 || nw.term(3) != term+1 {
		t.Fatalf("transfer failed\n%s", nw.dump())
	}
	if nw.countSent(pb.MsgTimeoutNow, 3) != 1 {
		t.Fatal("no MsgTimeoutNow sent")
	}
}

// TestTransferFromFollower checks that a follower forwards the request.
func TestTransferFromFollower(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.nodes[2].rn.TransferLeadership(2)
	nw.stabilize()
	if nw.leader() != 2 {
		t.Fatalf("transfer via follower failed\n%s", nw.dump())
	}
}

// TestTransferBlocksProposalsAndAborts checks that proposals are dropped
// during a transfer and that it aborts after an election timeout if the
// transferee does not take over.
func TestTransferBlocksProposalsAndAborts(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.isolate(3)
	nw.nodes[1].rn.TransferLeadership(3)
	nw.stabilize()
	if s := nw.status(1); s.LeadTransferee != 3 {
		t.Fatalf("LeadTransferee = %d", s.LeadTransferee)
	}
	if err := nw.nodes[1].rn.Propose([]byte("x")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("err = %v, want ErrProposalDropped during a transfer", err)
	}
	nw.tick(1, 10)
	if s := nw.status(1); s.LeadTransferee != pb.None || s.SoftState.Role != RoleLeader {
		t.Fatalf("transfer not aborted: %+v", s)
	}
	if err := nw.propose(1, "y"); err != nil {
		t.Fatalf("after abort: %v", err)
	}
}

// TestTransferToLearnerIgnored checks that leadership never goes to a learner.
func TestTransferToLearnerIgnored(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	addMember(t, nw, 4, pb.ConfChangeAddLearner)
	nw.nodes[1].rn.TransferLeadership(4)
	nw.stabilize()
	if nw.leader() != 1 || nw.status(1).LeadTransferee != pb.None {
		t.Fatalf("transfer to a learner\n%s", nw.dump())
	}
}
