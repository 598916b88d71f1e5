package sim

import (
	"fmt"
	"maps"
	"slices"

	"github.com/raftkv/raftkv/raft"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Workload is the mix of client requests and faults a random schedule draws
// from. Every rate is per mille, per step.
type Workload struct {
	Propose, Read, Transfer, ConfChange, Campaign     int
	Crash, Restart, Partition, Heal, CutLink, Compact int
	// TickPerMille is the share of steps that advance virtual time; the rest
	// deliver messages and handle Readys. Lower means a faster network
	// relative to the election timeout.
	TickPerMille int
	// MaxNodes caps how many nodes (ever created) conf changes may add.
	MaxNodes int

	// earlyCrashes makes every armed crash strike before the write is
	// synced (tests of injected persistence bugs).
	earlyCrashes bool
}

// RandomSchedule derives a whole schedule's parameters from seed: cluster
// size, network unreliability, pre-vote, and the workload mix, so that the
// seeds together cover calm and hostile runs alike.
func RandomSchedule(seed uint64) (Config, Workload) {
	r := newRand(seed, 0xc0ffee)
	cfg := Config{Seed: seed, Voters: 3}
	if r.IntN(10) < 3 {
		cfg.Voters = 5
	}
	cfg.DisablePreVote = r.IntN(5) == 0
	cfg.WireCodec = r.IntN(2) == 0
	cfg.MemoryStorage = r.IntN(2) == 0
	cfg.MaxInflightMsgs = 1 + r.IntN(8)
	cfg.MaxSizePerMsg = uint64(16 + r.IntN(512))
	switch r.IntN(4) {
	case 0: // reliable
	case 1:
		cfg.Net = NetConfig{DropPerMille: r.IntN(50), DupPerMille: r.IntN(20), MaxDelay: r.IntN(2)}
	default:
		cfg.Net = NetConfig{DropPerMille: r.IntN(200), DupPerMille: r.IntN(100), MaxDelay: r.IntN(4)}
	}
	hostile := r.IntN(3) // 0 calm, 1 some faults, 2 many
	w := Workload{
		Propose:      50 + r.IntN(100),
		Read:         10 + r.IntN(40),
		TickPerMille: 80 + r.IntN(120),
		MaxNodes:     cfg.Voters + 3,
		Compact:      r.IntN(20),
	}
	f := []int{2, 8, 25}[hostile]
	w.Transfer = r.IntN(f)
	w.ConfChange = r.IntN(f)
	w.Campaign = r.IntN(f)
	w.Crash = r.IntN(f)
	w.Restart = 2 * w.Crash
	w.Partition = r.IntN(f)
	w.CutLink = r.IntN(f)
	w.Heal = 2 * (w.Partition + w.CutLink)
	return cfg, w
}

// RunRandom runs steps random steps of workload w, then, if settle, heals
// everything and checks that the cluster recovers (Settle).
func (s *Sim) RunRandom(w Workload, steps int, settle bool) error {
	for i := 0; i < steps && s.err == nil; i++ {
		s.randomStep(w)
	}
	if s.err != nil || !settle {
		return s.err
	}
	return s.Settle(400)
}

func (s *Sim) chance(perMille int) bool { return perMille > 0 && s.rng.IntN(1000) < perMille }

// live returns the nodes that are not removed, ascending; up filters those running.
func (s *Sim) live(upOnly bool) []*node {
	var out []*node
	for _, id := range s.ids {
		n := s.nodes[id]
		if !n.removed && (!upOnly || n.up) {
			out = append(out, n)
		}
	}
	return out
}

func (s *Sim) pick(ns []*node) *node {
	if len(ns) == 0 {
		return nil
	}
	return ns[s.rng.IntN(len(ns))]
}

// randomStep performs one action drawn from w.
func (s *Sim) randomStep(w Workload) {
	switch {
	case s.chance(w.Propose):
		target := s.Leader()
		if target == pb.None || s.rng.IntN(5) == 0 {
			if n := s.pick(s.live(true)); n != nil {
				target = n.id
			}
		}
		if target != pb.None {
			_, _ = s.Propose(target)
		}
	case s.chance(w.Read):
		if n := s.pick(s.live(true)); n != nil {
			s.ReadIndex(n.id)
		}
	case s.chance(w.Transfer):
		if l := s.Leader(); l != pb.None {
			voters := s.nodes[l].conf.Voters
			if len(voters) > 0 {
				at := l
				if n := s.pick(s.live(true)); n != nil && s.rng.IntN(3) == 0 {
					at = n.id // a follower forwards it
				}
				s.Transfer(at, voters[s.rng.IntN(len(voters))])
			}
		}
	case s.chance(w.ConfChange):
		s.randomConfChange(w)
	case s.chance(w.Campaign):
		if n := s.pick(s.live(true)); n != nil {
			_ = s.Campaign(n.id)
		}
	case s.chance(w.Crash):
		live, up := s.live(false), s.live(true)
		// Keep a majority of the live nodes up most of the time; sometimes
		// allow one more, so quorum loss is exercised too.
		if down := len(live) - len(up); down < (len(live)-1)/2 || (down < len(live)/2+1 && s.rng.IntN(4) == 0) {
			if n := s.pick(up); n != nil {
				p := crashPoint(s.rng.IntN(int(numCrashPoints)))
				if w.earlyCrashes {
					p = crashPoint(1 + s.rng.IntN(2))
				}
				if p == crashNone {
					s.Crash(n.id)
				} else {
					s.armCrash(n.id, p)
					n.crashOnWrite = w.earlyCrashes
				}
			}
		}
	case s.chance(w.Restart):
		var down []*node
		for _, n := range s.live(false) {
			if !n.up {
				down = append(down, n)
			}
		}
		if n := s.pick(down); n != nil {
			_ = s.Restart(n.id, s.rng.IntN(2) == 0)
		}
	case s.chance(w.Partition):
		live := s.live(false)
		ids := make([]pb.NodeID, len(live))
		for i, n := range live {
			ids[i] = n.id
		}
		s.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		cut := 1 + s.rng.IntN(max(1, len(ids)-1))
		if s.rng.IntN(3) == 0 && len(ids) > 2 {
			// Three-way split, with an isolated node.
			s.Partition(ids[:cut], ids[cut:len(ids)-1])
		} else {
			s.Partition(ids[:cut], ids[cut:])
		}
	case s.chance(w.CutLink):
		live := s.live(false)
		if len(live) > 1 {
			a, b := s.pick(live), s.pick(live)
			if a != b {
				s.CutLink(a.id, b.id)
			}
		}
	case s.chance(w.Heal):
		s.Heal()
	case s.chance(w.Compact):
		if n := s.pick(s.live(true)); n != nil {
			_ = s.Compact(n.id)
		}
	case s.chance(w.TickPerMille):
		_ = s.tick()
	default:
		var did bool
		if s.rng.IntN(2) == 0 {
			did, _ = s.deliverOne()
		}
		if !did && s.err == nil {
			if did, _ = s.readyOne(); !did && s.err == nil {
				did, _ = s.deliverOne()
			}
		}
		if !did && s.err == nil {
			_ = s.tick()
		}
	}
}

// randomConfChange proposes one membership change at the leader: add a
// learner under a fresh id, promote a learner, or remove a member.
func (s *Sim) randomConfChange(w Workload) {
	l := s.Leader()
	if l == pb.None {
		return
	}
	conf := s.nodes[l].conf
	switch r := s.rng.IntN(3); {
	case r == 0 && len(s.ids) < w.MaxNodes:
		_, _ = s.AddLearner(l)
	case r == 1 && len(conf.Learners) > 0:
		id := conf.Learners[s.rng.IntN(len(conf.Learners))]
		_ = s.ProposeConfChange(l, pb.ConfChange{Type: pb.ConfChangeAddVoter, NodeID: id})
	case r == 2:
		// Never below three voters: two-voter groups cannot lose anyone.
		var cands []pb.NodeID
		if len(conf.Voters) > 3 {
			cands = append(cands, conf.Voters...)
		}
		cands = append(cands, conf.Learners...)
		if len(cands) > 0 {
			id := cands[s.rng.IntN(len(cands))]
			_ = s.ProposeConfChange(l, pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: id})
		}
	}
}

// Settle heals the network, makes it reliable, restarts every crashed
// member, and checks liveness: within maxTicks a leader has committed an
// entry of its own term and every running member of its configuration has
// applied everything it committed.
func (s *Sim) Settle(maxTicks int) error {
	s.Heal()
	s.SetNet(NetConfig{MaxDelay: min(s.net.cfg.MaxDelay, 1)})
	for _, n := range s.live(false) {
		n.crashAt = crashNone
		if !n.up {
			if err := s.Restart(n.id, s.rng.IntN(2) == 0); err != nil {
				return err
			}
		}
	}
	_, err := s.RunUntil("recovery after healing (a leader that commits in its term and members that catch up)", maxTicks, s.converged)
	return err
}

// converged reports whether a leader has committed an entry of its term and
// all running members of its configuration have applied up to its commit.
func (s *Sim) converged() bool {
	id := s.Leader()
	if id == pb.None {
		return false
	}
	l := s.nodes[id]
	commit := l.st.cur.hs.Commit
	if t, ok := l.st.cur.termAt(commit); !ok || t != l.term || l.applied != commit {
		return false
	}
	members := append(slices.Clone(l.conf.Voters), l.conf.Learners...)
	for _, m := range members {
		n := s.nodes[m]
		if n != nil && n.up && n.applied != commit {
			return false
		}
	}
	return true
}

// describe renders the cluster's state for a failure report.
func (s *Sim) describe() string {
	out := ""
	for _, id := range s.ids {
		n := s.nodes[id]
		state := "up"
		switch {
		case n.removed:
			state = "removed"
		case !n.up:
			state = "down"
		}
		role := "-"
		if n.up {
			role = n.role.String()
		}
		out += fmt.Sprintf("  node %d %s %s term=%d lead=%d hs=%+v log=(%d,%d] applied=%d voters=%v learners=%v\n",
			id, state, role, n.term, n.lead, n.st.cur.hs, n.st.cur.snap.Index, n.st.cur.lastIndex(), n.applied, n.conf.Voters, n.conf.Learners)
		if n.up && n.role == raft.RoleLeader {
			st := n.rn.Status()
			for _, p := range slices.Sorted(maps.Keys(st.Progress)) {
				pr := st.Progress[p]
				out += fmt.Sprintf("    progress %d: match=%d next=%d state=%s active=%v learner=%v\n", p, pr.Match, pr.Next, pr.State, pr.RecentActive, pr.IsLearner)
			}
		}
	}
	return out
}

// Report is the full failure report: the error, the cluster, recent events.
func (s *Sim) Report() string {
	r := fmt.Sprintf("%v\n%s\ncluster:\n%s", s.err, s.Summary(), s.describe())
	if tr := s.Trace(); len(tr) > 0 {
		r += "recent events (oldest first):\n"
		for _, l := range tr {
			r += "  " + l + "\n"
		}
	}
	return r
}
