package sim

import (
	"errors"
	"fmt"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Named scenarios, in the spirit of the classic Raft lab tests. Each runs a
// few seeds; every invariant is checked after every step as in the random
// schedules, and each scenario adds the liveness or outcome it is about.

const scenarioSeeds = 5

// forSeeds runs f as a subtest per seed, printing the replay command and the
// simulator's report on failure.
func forSeeds(t *testing.T, cfg Config, f func(t *testing.T, s *Sim)) {
	t.Helper()
	seeds := []uint64{}
	if *flagSeed != 0 {
		seeds = append(seeds, *flagSeed)
	} else {
		for i := range scenarioSeeds {
			seeds = append(seeds, uint64(i+1))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			c := cfg
			c.Seed = seed
			if *flagSeed != 0 && testing.Verbose() {
				c.Logf = t.Logf
			}
			s, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("%s\nreplay: go test ./internal/sim -run '^%s$' -seed=%d -v",
						s.Report(), t.Name()[:len(t.Name())-len(fmt.Sprintf("/seed=%d", seed))], seed)
				}
			}()
			f(t, s)
			if s.Err() != nil {
				t.Fatal(s.Err())
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitLeader runs until one of ids (all nodes if none given) leads, and
// returns it.
func waitLeader(t *testing.T, s *Sim, maxTicks int, ids ...pb.NodeID) pb.NodeID {
	t.Helper()
	if len(ids) == 0 {
		ids = s.IDs()
	}
	_, err := s.RunUntil(fmt.Sprintf("a leader among %v", ids), maxTicks, func() bool { return s.LeaderAmong(ids...) != pb.None })
	must(t, err)
	return s.LeaderAmong(ids...)
}

// commitValue proposes a fresh value at the leader among ids (re-proposing
// after leader changes or drops) until it is applied somewhere.
func commitValue(t *testing.T, s *Sim, maxTicks int, ids ...pb.NodeID) (string, pb.Index) {
	t.Helper()
	if len(ids) == 0 {
		ids = s.IDs()
	}
	var v string
	proposedAt := int64(-100)
	_, err := s.RunUntil("a proposal to commit", maxTicks, func() bool {
		if v != "" {
			if _, ok := s.AppliedAt(v); ok {
				return true
			}
		}
		if s.Now()-proposedAt >= 20 {
			if l := s.LeaderAmong(ids...); l != pb.None {
				v, _ = s.Propose(l)
				proposedAt = s.Now()
			}
		}
		return false
	})
	must(t, err)
	i, _ := s.AppliedAt(v)
	return v, i
}

// voters returns 1..n.
func voters(n int) []pb.NodeID {
	out := make([]pb.NodeID, n)
	for i := range out {
		out[i] = pb.NodeID(i + 1)
	}
	return out
}

func without(ids []pb.NodeID, drop ...pb.NodeID) []pb.NodeID {
	var out []pb.NodeID
	for _, id := range ids {
		keep := true
		for _, d := range drop {
			keep = keep && id != d
		}
		if keep {
			out = append(out, id)
		}
	}
	return out
}

// TestInitialElection: a fresh group elects one leader within a few election
// timeouts and, with a reliable network, keeps it and its term (paper §5.2).
func TestInitialElection(t *testing.T) {
	forSeeds(t, Config{Voters: 3}, func(t *testing.T, s *Sim) {
		l := waitLeader(t, s, 60)
		term := s.Term(l)
		must(t, s.RunTicks(100))
		if got := s.Leader(); got != l || s.Term(l) != term {
			t.Fatalf("leader changed without a fault: %d (term %d) -> %d (term %d)", l, term, got, s.Term(got))
		}
		for _, id := range s.IDs() {
			if s.Term(id) != term {
				t.Fatalf("node %d at term %d, leader's term %d", id, s.Term(id), term)
			}
		}
	})
}

// TestReElection: when the leader is lost a new one is elected among the
// rest; the old leader rejoining does not disrupt it (pre-vote, §9.6); with
// no quorum there is no leader; once a quorum is back, one is elected.
func TestReElection(t *testing.T) {
	forSeeds(t, Config{Voters: 3}, func(t *testing.T, s *Sim) {
		l1 := waitLeader(t, s, 60)
		s.Crash(l1)
		l2 := waitLeader(t, s, 60, without(voters(3), l1)...)
		term := s.Term(l2)
		must(t, s.Restart(l1, false))
		must(t, s.RunTicks(50))
		if s.Leader() != l2 || s.Term(l2) != term {
			t.Fatalf("rejoining old leader %d disrupted leader %d (term %d -> %d)", l1, l2, term, s.Term(s.Leader()))
		}
		// Lose two of three: no leader may remain (check-quorum, §6.2).
		others := without(voters(3), l2)
		s.Crash(others[0])
		s.Crash(others[1])
		must(t, s.RunTicks(60))
		if l := s.Leader(); l != pb.None {
			t.Fatalf("node %d still leads without a quorum", l)
		}
		must(t, s.Restart(others[0], true))
		waitLeader(t, s, 80)
		commitValue(t, s, 100)
	})
}

// TestNoLeaderWithoutQuorum: with every node isolated, no node may lead
// (after check-quorum steps an old leader down), for many election timeouts.
func TestNoLeaderWithoutQuorum(t *testing.T) {
	forSeeds(t, Config{Voters: 5}, func(t *testing.T, s *Sim) {
		waitLeader(t, s, 60)
		s.Partition() // everyone isolated
		must(t, s.RunTicks(30))
		for range 200 {
			must(t, s.RunTicks(1))
			if l := s.Leader(); l != pb.None {
				t.Fatalf("node %d leads term %d while every node is isolated", l, s.Term(l))
			}
		}
		s.Heal()
		waitLeader(t, s, 80)
	})
}

// TestManyElectionsRandomPartitions: repeatedly cut a random minority off;
// the majority side always elects a leader and commits within a bound
// (liveness once a quorum is connected and stable).
func TestManyElectionsRandomPartitions(t *testing.T) {
	forSeeds(t, Config{Voters: 5}, func(t *testing.T, s *Sim) {
		waitLeader(t, s, 60)
		all := voters(5)
		for range 15 {
			ids := append([]pb.NodeID(nil), all...)
			s.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
			major, minor := ids[:3], ids[3:]
			s.Partition(major, minor)
			waitLeader(t, s, 100, major...)
			commitValue(t, s, 100, major...)
			s.Heal()
			must(t, s.RunTicks(s.rng.IntN(20)))
		}
		must(t, s.Settle(200))
	})
}

// TestFailedFollowersCatchUp: followers that were down while the log grew
// catch up after restarting, both resuming and re-applying from scratch.
func TestFailedFollowersCatchUp(t *testing.T) {
	forSeeds(t, Config{Voters: 5}, func(t *testing.T, s *Sim) {
		l := waitLeader(t, s, 60)
		f := without(voters(5), l)
		s.Crash(f[0])
		s.Crash(f[1])
		for range 40 {
			_, _ = s.Propose(s.Leader())
			must(t, s.RunTicks(1))
		}
		_, last := commitValue(t, s, 100)
		must(t, s.Restart(f[0], false))
		must(t, s.Restart(f[1], true))
		_, err := s.RunUntil("restarted followers catch up", 100, func() bool {
			return s.Applied(f[0]) >= last && s.Applied(f[1]) >= last
		})
		must(t, err)
	})
}

// TestOldLeaderEntriesOverwritten: a leader cut off with a minority keeps
// appending entries that never commit; the majority elects a new leader and
// commits others; after healing, the old leader's uncommitted entries are
// overwritten (paper §5.3) and it applies the majority's log.
func TestOldLeaderEntriesOverwritten(t *testing.T) {
	forSeeds(t, Config{Voters: 5}, func(t *testing.T, s *Sim) {
		l1 := waitLeader(t, s, 60)
		rest := without(voters(5), l1)
		s.Partition([]pb.NodeID{l1, rest[0]}, rest[1:])
		var lost []string
		for range 10 {
			v, _ := s.Propose(l1)
			lost = append(lost, v)
		}
		must(t, s.RunTicks(5))
		waitLeader(t, s, 100, rest[1:]...)
		_, last := commitValue(t, s, 100, rest[1:]...)
		s.Heal()
		_, err := s.RunUntil("old leader and its follower catch up", 150, func() bool {
			return s.Applied(l1) >= last && s.Applied(rest[0]) >= last
		})
		must(t, err)
		for _, v := range lost {
			if i, ok := s.AppliedAt(v); ok {
				t.Fatalf("value %s proposed to the cut-off leader was applied at %d", v, i)
			}
		}
	})
}

// TestFastBackup: a follower with 50+ divergent entries is brought in line
// with far fewer rejections than entries, thanks to the conflict-term hints
// (thesis §5.3, "fast log backtracking").
func TestFastBackup(t *testing.T) {
	forSeeds(t, Config{Voters: 5, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64}, func(t *testing.T, s *Sim) {
		l1 := waitLeader(t, s, 60)
		rest := without(voters(5), l1)
		// The old leader and one follower take 60 entries that never commit.
		s.Partition([]pb.NodeID{l1, rest[0]}, rest[1:])
		for range 60 {
			_, _ = s.Propose(l1)
		}
		must(t, s.RunTicks(3))
		// The majority elects a leader and commits 60 other entries...
		l2 := waitLeader(t, s, 100, rest[1:]...)
		for range 60 {
			_, _ = s.Propose(l2)
		}
		_, last := commitValue(t, s, 100, rest[1:]...)
		if d := s.LastIndex(rest[0]); d < 50 {
			t.Fatalf("setup: divergent follower has only %d entries", d)
		}
		// ...then its leader fails and everyone else reconnects: the next
		// leader starts optimistic (next = its last index + 1) and has to
		// find the divergence point; count the rounds it takes.
		s.Crash(l2)
		before := s.AppRejects()
		s.Heal()
		waitLeader(t, s, 100, without(rest[1:], l2)...)
		_, err := s.RunUntil("divergent nodes catch up", 150, func() bool {
			return s.Applied(l1) >= last && s.Applied(rest[0]) >= last
		})
		must(t, err)
		if n := s.AppRejects() - before; n > 10 || n == 0 {
			t.Fatalf("backtracking over 60 divergent entries took %d rejected appends, want 1..10", n)
		} else {
			t.Logf("backtracking over 60 divergent entries took %d rejected appends", n)
		}
	})
}

// TestFigure8Unreliable is the Figure 8 scenario (paper §5.4.2) on an
// unreliable network: leaders come and go, crash and get cut off while
// proposing, so entries of old terms sit on some logs; none may ever be
// committed by counting replicas in a later term and then lost.
func TestFigure8Unreliable(t *testing.T) {
	forSeeds(t, Config{Voters: 5, Net: NetConfig{DropPerMille: 100, DupPerMille: 50, MaxDelay: 3}}, func(t *testing.T, s *Sim) {
		for i := range 120 {
			if l := s.Leader(); l != pb.None {
				_, _ = s.Propose(l)
				if s.rng.IntN(3) == 0 {
					if s.rng.IntN(2) == 0 {
						s.Crash(l)
					} else {
						s.Partition(without(voters(5), l))
					}
				}
			}
			if i%10 == 0 {
				s.Heal()
				for _, id := range voters(5) {
					if !s.Up(id) {
						must(t, s.Restart(id, s.rng.IntN(2) == 0))
					}
				}
			}
			must(t, s.RunTicks(1+s.rng.IntN(12)))
		}
		must(t, s.Settle(300))
	})
}

// TestChurnWithCrashes: nodes crash (at every point of Ready handling) and
// restart constantly while clients propose and read; afterwards the group
// recovers and every member converges.
func TestChurnWithCrashes(t *testing.T) {
	forSeeds(t, Config{Voters: 5, Net: NetConfig{DropPerMille: 20, MaxDelay: 1}}, func(t *testing.T, s *Sim) {
		for range 200 {
			ids := voters(5)
			id := ids[s.rng.IntN(len(ids))]
			switch r := s.rng.IntN(10); {
			case r < 2 && s.Up(id):
				s.armCrash(id, crashPoint(1+s.rng.IntN(int(numCrashPoints)-1)))
			case r < 3 && s.Up(id):
				s.Crash(id)
			case r < 6 && !s.Up(id):
				must(t, s.Restart(id, s.rng.IntN(2) == 0))
			case r < 8:
				if l := s.Leader(); l != pb.None {
					_, _ = s.Propose(l)
				}
			default:
				if s.Up(id) {
					s.ReadIndex(id)
				}
			}
			must(t, s.RunTicks(1+s.rng.IntN(3)))
		}
		must(t, s.Settle(300))
	})
}

// TestLeadershipTransfer: the leader hands over to a caught-up follower
// within an election timeout, directly or when a follower forwards the
// request (thesis §3.10).
func TestLeadershipTransfer(t *testing.T) {
	forSeeds(t, Config{Voters: 3}, func(t *testing.T, s *Sim) {
		l := waitLeader(t, s, 60)
		commitValue(t, s, 60)
		target := without(voters(3), l)[0]
		s.Transfer(l, target)
		_, err := s.RunUntil(fmt.Sprintf("leadership transfer %d -> %d", l, target), 20, func() bool { return s.Leader() == target })
		must(t, err)
		// Forwarded by a follower, back to the first leader.
		via := without(voters(3), l, target)[0]
		s.Transfer(via, l)
		_, err = s.RunUntil(fmt.Sprintf("forwarded leadership transfer %d -> %d", target, l), 20, func() bool { return s.Leader() == l })
		must(t, err)
		commitValue(t, s, 60)
	})
}

// TestMembershipChangesUnderFaults: add learners, promote them, remove
// voters and re-add a server under a new id, with partitions and crashes
// between the steps; every change eventually commits and the group ends with
// the expected membership and converged state.
func TestMembershipChangesUnderFaults(t *testing.T) {
	forSeeds(t, Config{Voters: 3, Net: NetConfig{DropPerMille: 30, MaxDelay: 1}}, func(t *testing.T, s *Sim) {
		waitLeader(t, s, 60)
		commitValue(t, s, 60)

		// change proposes cc at the current leader until the leader's
		// configuration satisfies done, under faults.
		change := func(what string, cc func() pb.ConfChange, done func(voters, learners []pb.NodeID) bool) {
			t.Helper()
			last := int64(-100)
			_, err := s.RunUntil(what, 400, func() bool {
				l := s.Leader()
				if l == pb.None {
					return false
				}
				c := s.nodes[l].conf
				if done(c.Voters, c.Learners) {
					return true
				}
				if s.Now()-last > 15 {
					last = s.Now()
					err := s.ProposeConfChange(l, cc())
					if err != nil && s.Err() != nil {
						return true
					}
				}
				return false
			})
			must(t, err)
		}
		has := func(ids []pb.NodeID, id pb.NodeID) bool {
			for _, x := range ids {
				if x == id {
					return true
				}
			}
			return false
		}

		l := s.Leader()
		n4, err := s.AddLearner(l)
		if err != nil && !errors.Is(err, ErrSafety) {
			t.Logf("first AddLearner: %v (retried)", err)
		}
		must(t, s.Err())
		change("add learner 4", func() pb.ConfChange { return pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: n4} },
			func(v, lr []pb.NodeID) bool { return has(lr, n4) })
		// Cut a follower off while the learner is promoted.
		s.Partition(without(s.IDs(), voters(3)[s.rng.IntN(3)]))
		change("promote 4", func() pb.ConfChange { return pb.ConfChange{Type: pb.ConfChangeAddVoter, NodeID: n4} },
			func(v, lr []pb.NodeID) bool { return has(v, n4) })
		s.Heal()
		// Crash a voter, then remove voter 1 (maybe the leader itself).
		s.Crash(voters(3)[1+s.rng.IntN(2)])
		change("remove 1", func() pb.ConfChange { return pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: 1} },
			func(v, lr []pb.NodeID) bool { return !has(v, 1) && !has(lr, 1) })
		for _, id := range s.IDs() {
			if !s.Up(id) {
				must(t, s.Restart(id, true))
			}
		}
		// Re-add the removed server's machine under a new id.
		n5, _ := s.AddLearner(s.Leader())
		must(t, s.Err())
		change("add learner 5", func() pb.ConfChange { return pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: n5} },
			func(v, lr []pb.NodeID) bool { return has(lr, n5) })
		change("promote 5", func() pb.ConfChange { return pb.ConfChange{Type: pb.ConfChangeAddVoter, NodeID: n5} },
			func(v, lr []pb.NodeID) bool { return has(v, n5) })
		must(t, s.Settle(300))
		c := s.nodes[s.Leader()].conf
		if len(c.Voters) != 4 || has(c.Voters, 1) || !has(c.Voters, n4) || !has(c.Voters, n5) {
			t.Fatalf("final voters %v learners %v, want [2 3 %d %d]", c.Voters, c.Learners, n4, n5)
		}
		commitValue(t, s, 100)
	})
}

// TestSnapshotCatchUp: a follower that was down while every other member
// compacted its log past what the follower has catches up through MsgSnap
// and then the log.
func TestSnapshotCatchUp(t *testing.T) {
	forSeeds(t, Config{Voters: 3}, func(t *testing.T, s *Sim) {
		l := waitLeader(t, s, 60)
		f := without(voters(3), l)[0]
		s.Crash(f)
		for range 50 {
			_, _ = s.Propose(s.Leader())
			must(t, s.RunTicks(1))
		}
		_, last := commitValue(t, s, 100)
		for _, id := range voters(3) {
			must(t, s.Compact(id))
		}
		must(t, s.Restart(f, s.rng.IntN(2) == 0))
		_, err := s.RunUntil("the lagging follower catches up past the compaction", 150, func() bool { return s.Applied(f) >= last })
		must(t, err)
		if s.Sent(pb.MsgSnap) == 0 {
			t.Fatal("follower caught up without a MsgSnap, but the log it needed was compacted")
		}
		commitValue(t, s, 60)
	})
}

// TestPartitionedLeaderNeverServesRead: a leader cut off from the majority
// must not answer a ReadIndex request (thesis §6.4): the majority may have
// committed writes it has not seen. (Any answer would also be caught as a
// stale read by the checker, since a write was acknowledged first.)
func TestPartitionedLeaderNeverServesRead(t *testing.T) {
	forSeeds(t, Config{Voters: 5}, func(t *testing.T, s *Sim) {
		l1 := waitLeader(t, s, 60)
		commitValue(t, s, 60)
		rest := without(voters(5), l1)
		s.Partition([]pb.NodeID{l1}, rest)
		waitLeader(t, s, 100, rest...)
		commitValue(t, s, 100, rest...) // acknowledged on the majority side
		ctx := s.ReadIndex(l1)
		must(t, s.RunTicks(100))
		if n := s.ReadServed(ctx); n != 0 {
			t.Fatalf("partitioned old leader %d served read %s", l1, ctx)
		}
		// A read at the real leader is served.
		ctx2 := s.ReadIndex(s.LeaderAmong(rest...))
		_, err := s.RunUntil("a read at the majority's leader is served", 30, func() bool { return s.ReadServed(ctx2) > 0 })
		must(t, err)
	})
}
