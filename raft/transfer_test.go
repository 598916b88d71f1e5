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

// TestTransferWaitsForTransfereeToApply checks that a MsgTimeoutNow reaching
// the transferee while a committed conf change is still unapplied there is
// not lost: the transferee may not campaign yet (hup), so it campaigns as
// soon as it has applied. An operator's "remove a member, then move the
// leader" hits exactly this order.
func TestTransferWaitsForTransfereeToApply(t *testing.T) {
	nw := timeoutNowBeforeApply(t)
	term := nw.term(1)
	nw.stabilize() // 3 applies the removal
	if nw.leader() != 3 || nw.term(3) != term+1 {
		t.Fatalf("transfer lost: leader %d\n%s", nw.leader(), nw.dump())
	}
}

// TestDeferredTransferLapses checks that the deferred campaign is dropped
// once the leader's transfer would have timed out: a late campaign would
// unseat a leader that has taken its leadership back.
func TestDeferredTransferLapses(t *testing.T) {
	nw := timeoutNowBeforeApply(t)
	term := nw.term(1)
	for range nw.nodes[3].cfg.ElectionTick {
		nw.nodes[3].rn.Tick() // 3 still has not applied the removal
	}
	nw.queue = nil
	nw.stabilize()
	if nw.leader() != 1 || nw.term(3) != term {
		t.Fatalf("a lapsed transfer campaigned: leader %d, term %d (was %d)\n%s", nw.leader(), nw.term(3), term, nw.dump())
	}
}

// timeoutNowBeforeApply returns a group led by 1 whose member 3 has a
// MsgTimeoutNow and a committed, unapplied conf change (removing learner 4).
func timeoutNowBeforeApply(t *testing.T) *network {
	t.Helper()
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	addMember(t, nw, 4, pb.ConfChangeAddLearner)
	if err := nw.nodes[1].rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	// round handles the Readys of ids only, then delivers what is queued.
	round := func(ids ...pb.NodeID) {
		for _, id := range ids {
			if tn := nw.nodes[id]; tn.rn.HasReady() {
				nw.handle(tn)
			}
		}
		q := nw.queue
		nw.queue = nil
		for _, m := range q {
			nw.deliver(m)
		}
	}
	round(1)       // the removal goes out
	round(2, 3, 4) // acknowledged: 1 commits it
	round(1)       // 1 applies it and tells the others the new commit index
	if s := nw.status(3); s.Applied >= s.HardState.Commit {
		t.Fatalf("setup: 3 applied %d of commit %d", s.Applied, s.HardState.Commit)
	}
	nw.nodes[1].rn.TransferLeadership(3)
	round(1) // MsgTimeoutNow reaches 3 before it applies the removal
	if nw.countSent(pb.MsgTimeoutNow, 3) != 1 || nw.role(3) != RoleFollower {
		t.Fatalf("setup: MsgTimeoutNow sent %d times, 3 is %s", nw.countSent(pb.MsgTimeoutNow, 3), nw.role(3))
	}
	return nw
}
