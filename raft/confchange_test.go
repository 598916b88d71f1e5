package raft

import (
	"errors"
	"slices"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// addMember starts node id with empty storage and has the leader add it.
func addMember(t *testing.T, nw *network, id pb.NodeID, typ pb.ConfChangeType) {
	t.Helper()
	if nw.nodes[id] == nil {
		nw.addEmpty(id, nil)
	}
	lead := nw.leader()
	if err := nw.nodes[lead].rn.ProposeConfChange(pb.ConfChange{Type: typ, NodeID: id}); err != nil {
		t.Fatalf("propose %s %d: %v", typ, id, err)
	}
	nw.stabilize()
	nw.tickAll(3) // heartbeats bring the new member along
}

// TestAddVoterAndLearner checks single-server changes (thesis §4.1): a
// learner gets the log but is not counted; once promoted it is.
func TestAddVoterAndLearner(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	addMember(t, nw, 4, pb.ConfChangeAddLearner)
	if err := nw.propose(1, "a"); err != nil {
		t.Fatal(err)
	}
	if got := appliedData(nw.nodes[4]); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("learner applied %v", got)
	}
	st := nw.status(1)
	if !st.Progress[4].IsLearner || !slices.Equal(st.ConfState.Learners, []pb.NodeID{4}) {
		t.Fatalf("status: %+v", st)
	}
	// Learners are not in the quorum: with 2 and 3 down nothing commits,
	// even though learner 4 acknowledges.
	nw.isolate(2)
	nw.isolate(3)
	commit := nw.status(1).HardState.Commit
	_ = nw.propose(1, "b")
	if nw.status(1).HardState.Commit != commit {
		t.Fatal("leader committed with a learner's acknowledgement")
	}
	nw.heal()
	nw.tickAll(2)
	addMember(t, nw, 4, pb.ConfChangeAddVoter) // promotion
	if st := nw.status(4); !slices.Equal(st.ConfState.Voters, []pb.NodeID{1, 2, 3, 4}) || st.SoftState.Role != RoleFollower {
		t.Fatalf("after promotion: %+v", st)
	}
}

// TestOneConfChangeAtATime checks thesis §4.1: a second change is refused
// while the first is not applied.
func TestOneConfChangeAtATime(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	rn := nw.nodes[1].rn
	if err := rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	err := rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: 5})
	if !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("second pending change: err = %v, want ErrConfChangePending", err)
	}
	nw.stabilize()
	if err := rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: 5}); err != nil {
		t.Fatalf("after the first applied: %v", err)
	}
}

// TestConfChangeNeedsCurrentTermCommit checks Ongaro's fix to single-server
// changes: a new leader proposes a change only after committing an entry of
// its own term.
func TestConfChangeNeedsCurrentTermCommit(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	// Node 1 dies; a new leader is elected among 2 and 3 but its no-op
	// cannot commit: appends are lost.
	nw.isolate(1)
	nw.filter = func(m pb.Message) bool { return m.Type != pb.MsgApp && m.Type != pb.MsgAppResp }
	for i := 0; i < 100 && (nw.leader() == 1 || nw.leader() == pb.None); i++ {
		nw.tickAll(1)
	}
	l := nw.leader()
	if l != 2 && l != 3 {
		t.Fatalf("no new leader\n%s", nw.dump())
	}
	err := nw.nodes[l].rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: 4})
	if !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("err = %v, want ErrProposalDropped before a current-term commit", err)
	}
	nw.filter = nil
	nw.tickAll(2)
	if err := nw.nodes[l].rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: 4}); err != nil {
		t.Fatalf("after the no-op committed: %v", err)
	}
}

// TestRemovedLeaderStepsDown checks thesis §4.2.2: a leader removed from the
// configuration steps down once the change is applied, and the rest elect a
// new leader; the removed node does not campaign.
func TestRemovedLeaderStepsDown(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	if err := nw.nodes[1].rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: 1}); err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	if nw.role(1) == RoleLeader {
		t.Fatal("removed leader still leads")
	}
	nw.tickAll(40)
	l := nw.leader()
	if l != 2 && l != 3 {
		t.Fatalf("leader = %d\n%s", l, nw.dump())
	}
	if err := nw.propose(l, "after"); err != nil {
		t.Fatal(err)
	}
	if got := appliedData(nw.nodes[l]); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("applied %v", got)
	}
	if err := nw.nodes[1].rn.Campaign(); err != nil || nw.role(1) != RoleFollower {
		t.Fatal("a removed node must not campaign")
	}
}

// TestRemovedNodeDoesNotDisrupt checks thesis §4.2.3: a removed server that
// never learned of its removal keeps timing out, but pre-vote and leader
// stickiness stop it from raising the group's term.
func TestRemovedNodeDoesNotDisrupt(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"prevote+checkquorum", nil},
		{"checkquorum only", func(c *Config) { c.DisablePreVote = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := newNetwork(t, 4, tc.mod)
			nw.campaign(1)
			nw.isolate(4) // 4 never hears of its removal
			if err := nw.nodes[1].rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: 4}); err != nil {
				t.Fatal(err)
			}
			nw.stabilize()
			nw.tickAll(2)
			term := nw.term(1)
			nw.heal()
			// 4 still thinks it is a voter and times out; the others must not care.
			for range 100 {
				nw.tickAll(1)
			}
			if nw.leader() != 1 || nw.term(1) != term || nw.term(2) != term {
				t.Fatalf("removed node disrupted the group (term %d)\n%s", term, nw.dump())
			}
			// Its responses to the leader are refused as from a non-member.
			err := nw.nodes[1].rn.Step(pb.Message{Type: pb.MsgHeartbeatResp, From: 4, To: 1, Term: term})
			if !errors.Is(err, ErrStepPeerNotFound) {
				t.Fatalf("err = %v, want ErrStepPeerNotFound", err)
			}
		})
	}
}

// TestConfChangeValidation checks that a bad change is an error, not a panic.
func TestConfChangeValidation(t *testing.T) {
	nw := newNetwork(t, 1, nil)
	nw.campaign(1)
	rn := nw.nodes[1].rn
	if err := rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeAddVoter}); err == nil {
		t.Fatal("node 0 accepted")
	}
	if err := rn.ProposeConfChange(pb.ConfChange{Type: 9, NodeID: 2}); err == nil {
		t.Fatal("unknown type accepted")
	}
	if err := rn.ProposeConfChange(pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: 1}); err == nil {
		t.Fatal("removing the last voter accepted")
	}
	// Applying it anyway (a log written elsewhere) leaves the config alone.
	cs := rn.ApplyConfChange(pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: 1})
	if !slices.Equal(cs.Voters, []pb.NodeID{1}) {
		t.Fatalf("voters %v", cs.Voters)
	}
}

// TestCandidateRemovedMidElection checks that a candidate whose removal is
// applied during its campaign gives up instead of becoming a leader that is
// not a member.
func TestCandidateRemovedMidElection(t *testing.T) {
	nw := newNetwork(t, 3, func(c *Config) { c.DisablePreVote = true })
	nw.campaign(1)
	nw.isolate(3)
	rn := nw.nodes[3].rn
	nw.expireLease(3)
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	if nw.role(3) != RoleCandidate {
		t.Fatalf("setup: %s", nw.role(3))
	}
	rn.ApplyConfChange(pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: 3})
	if nw.role(3) != RoleFollower {
		t.Fatalf("removed candidate is %s", nw.role(3))
	}
	// A late grant must not make it leader.
	_ = rn.Step(pb.Message{Type: pb.MsgVoteResp, From: 2, To: 3, Term: nw.term(3)})
	if nw.role(3) == RoleLeader {
		t.Fatal("a non-member became leader")
	}
}

// TestNoCampaignWithUnappliedConfChange checks that a node does not campaign
// while a committed conf change is unapplied: it would campaign in a
// configuration that is no longer current.
func TestNoCampaignWithUnappliedConfChange(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	before := nw.status(2).Applied
	addMember(t, nw, 4, pb.ConfChangeAddLearner)
	// Restart 2 as if it had applied nothing since.
	nw.isolate(2)
	tn := nw.start(2, nw.nodes[2].st, func(c *Config) { c.Applied = before })
	nw.expireLease(2)
	if err := tn.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	if r := nw.role(2); r != RoleFollower {
		t.Fatalf("campaigned with an unapplied conf change: %s", r)
	}
	nw.handle(tn) // applies the conf change
	nw.queue = nil
	if err := tn.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	if r := nw.role(2); r != RolePreCandidate {
		t.Fatalf("after applying: %s", r)
	}
}
