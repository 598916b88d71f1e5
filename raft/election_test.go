package raft

import (
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestLeaderElection checks §5.2: a candidate with votes from a majority
// becomes leader; the others follow it in the same term.
func TestLeaderElection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		preVot bool
	}{{"prevote", true}, {"no-prevote", false}} {
		t.Run(tc.name, func(t *testing.T) {
			nw := newNetwork(t, 3, func(c *Config) { c.DisablePreVote = !tc.preVot })
			nw.campaign(1)
			if got := nw.leader(); got != 1 {
				t.Fatalf("leader = %d, want 1\n%s", got, nw.dump())
			}
			for _, id := range []pb.NodeID{2, 3} {
				s := nw.status(id)
				if s.SoftState.Role != RoleFollower || s.SoftState.Lead != 1 || s.HardState.Term != nw.term(1) {
					t.Fatalf("node %d: %+v", id, s.SoftState)
				}
			}
			// The leader's no-op of its term commits everywhere (§5.4.2, §8).
			if c := nw.status(3).HardState.Commit; c != 4 {
				t.Fatalf("commit = %d, want 4 (3 founding entries + no-op)", c)
			}
		})
	}
}

// TestElectionByTimeout checks §5.2: without a leader, a follower times out
// within [ElectionTick, 2*ElectionTick) and wins.
func TestElectionByTimeout(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	for i := 0; i < 20 && nw.leader() == pb.None; i++ {
		nw.tickAll(1)
	}
	if nw.leader() == pb.None {
		t.Fatalf("no leader after 2*ElectionTick ticks\n%s", nw.dump())
	}
}

// TestRandomizedElectionTimeout checks §5.2: timeouts are spread over
// [ElectionTick, 2*ElectionTick).
func TestRandomizedElectionTimeout(t *testing.T) {
	st := NewMemoryStorage()
	rn, err := NewRawNode(Config{ID: 1, Storage: st, ElectionTick: 10})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 1000 {
		rn.r.resetRandomizedElectionTimeout()
		to := rn.r.randomizedElectionTimeout
		if to < 10 || to >= 20 {
			t.Fatalf("timeout %d outside [10, 20)", to)
		}
		seen[to] = true
	}
	if len(seen) < 8 {
		t.Fatalf("only %d distinct timeouts drawn", len(seen))
	}
}

// TestNoLeaderWithoutQuorum checks §5.2: a minority cannot elect a leader.
func TestNoLeaderWithoutQuorum(t *testing.T) {
	nw := newNetwork(t, 5, nil)
	nw.partition([]pb.NodeID{1, 2}, []pb.NodeID{3, 4, 5})
	nw.isolate(3)
	nw.isolate(4)
	nw.isolate(5)
	nw.tickAll(100)
	if l := nw.leader(); l != pb.None {
		t.Fatalf("leader %d elected without a quorum\n%s", l, nw.dump())
	}
}

// TestPreVoteKeepsTermOfPartitionedNode checks thesis §9.6: a node cut off
// from the group keeps pre-campaigning without raising its term, so that on
// rejoining it does not depose the healthy leader.
func TestPreVoteKeepsTermOfPartitionedNode(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	term := nw.term(1)
	nw.isolate(3)
	nw.tickAll(100)
	if got := nw.term(3); got != term {
		t.Fatalf("isolated node's term moved %d -> %d despite pre-vote", term, got)
	}
	nw.heal()
	nw.tickAll(5)
	if nw.leader() != 1 || nw.term(1) != term {
		t.Fatalf("rejoin disrupted the leader\n%s", nw.dump())
	}
}

// TestWithoutPreVoteRejoinRaisesTerm is the contrast case: without pre-vote
// the isolated node's term grows, and its return forces a new election.
func TestWithoutPreVoteRejoinRaisesTerm(t *testing.T) {
	nw := newNetwork(t, 3, func(c *Config) { c.DisablePreVote = true; c.DisableCheckQuorum = true })
	nw.campaign(1)
	term := nw.term(1)
	nw.isolate(3)
	nw.tickAll(100)
	if nw.term(3) <= term {
		t.Fatal("without pre-vote an isolated node should raise its term")
	}
}

// TestCheckQuorumLeaderStepsDown checks thesis §6.2: a leader that hears
// from no majority for an election timeout steps down.
func TestCheckQuorumLeaderStepsDown(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.isolate(1)
	nw.tick(1, 2*10)
	if r := nw.role(1); r == RoleLeader {
		t.Fatal("leader without a quorum did not step down")
	}
}

// TestLeaderStickiness checks thesis §4.2.3: a follower that heard from the
// leader within the election timeout ignores vote requests, so a disruptive
// candidate cannot depose a healthy leader.
func TestLeaderStickiness(t *testing.T) {
	nw := newNetwork(t, 3, func(c *Config) { c.DisablePreVote = true })
	nw.campaign(1)
	term := nw.term(1)
	// Node 3 campaigns on its own (as if its timer fired spuriously).
	nw.campaign(3)
	if nw.leader() != 1 || nw.term(1) != term || nw.term(2) != term {
		t.Fatalf("stickiness violated\n%s", nw.dump())
	}
	if nw.role(3) == RoleLeader {
		t.Fatal("node 3 became leader against a healthy one")
	}
	// Without pre-vote the candidate's higher term still reaches the leader
	// through its answer to the next heartbeat (the price pre-vote avoids);
	// the group then settles on one leader again.
	nw.tickAll(40)
	if nw.leader() == pb.None {
		t.Fatalf("no leader after the disruption\n%s", nw.dump())
	}
}

// TestVoteRequiresUpToDateLog checks §5.4.1: a voter denies its vote to a
// candidate whose log is less up-to-date than its own.
func TestVoteRequiresUpToDateLog(t *testing.T) {
	nw := newNetwork(t, 3, func(c *Config) { c.DisablePreVote = true })
	nw.campaign(1)
	nw.isolate(3)
	if err := nw.propose(1, "x"); err != nil {
		t.Fatal(err)
	}
	nw.heal()
	nw.isolate(1) // the leader dies; 3 lacks "x"
	nw.tick(2, 11)
	nw.campaign(3)
	if nw.role(3) == RoleLeader {
		t.Fatalf("node 3 with a stale log won\n%s", nw.dump())
	}
	nw.campaign(2)
	if nw.role(2) != RoleLeader {
		t.Fatalf("node 2 with the up-to-date log lost\n%s", nw.dump())
	}
}

// TestVotePersistedBeforeResponse checks Figure 2 / §5.2: the vote is in the
// HardState of the Ready that carries the vote response.
func TestVotePersistedBeforeResponse(t *testing.T) {
	nw := newNetwork(t, 3, func(c *Config) { c.DisablePreVote = true })
	n2 := nw.nodes[2]
	if err := n2.rn.Step(pb.Message{Type: pb.MsgVote, From: 1, To: 2, Term: 5, Index: 3, LogTerm: 1}); err != nil {
		t.Fatal(err)
	}
	rd := n2.rn.Ready()
	if rd.HardState.Vote != 1 || rd.HardState.Term != 5 || !rd.MustSync {
		t.Fatalf("HardState %+v MustSync %v: the vote must be persisted with the response", rd.HardState, rd.MustSync)
	}
	if len(rd.Messages) != 1 || rd.Messages[0].Type != pb.MsgVoteResp || rd.Messages[0].Reject {
		t.Fatalf("messages %+v", rd.Messages)
	}
	n2.rn.Advance(rd)
	// A second candidate in the same term is refused.
	_ = n2.rn.Step(pb.Message{Type: pb.MsgVote, From: 3, To: 2, Term: 5, Index: 3, LogTerm: 1})
	rd = n2.rn.Ready()
	if len(rd.Messages) != 1 || !rd.Messages[0].Reject {
		t.Fatalf("second vote in term 5 granted: %+v", rd.Messages)
	}
}

// TestLearnerNeverCampaigns checks that a learner does not start elections
// even when it stops hearing from the leader.
func TestLearnerNeverCampaigns(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	addMember(t, nw, 4, pb.ConfChangeAddLearner)
	nw.isolate(4)
	nw.tick(4, 100)
	if s := nw.status(4); s.SoftState.Role != RoleLearner || s.HardState.Term != nw.term(1) {
		t.Fatalf("learner: %+v term %d", s.SoftState, s.HardState.Term)
	}
	if err := nw.nodes[4].rn.Campaign(); err != nil || nw.status(4).SoftState.Role != RoleLearner {
		t.Fatal("Campaign on a learner must do nothing")
	}
}
