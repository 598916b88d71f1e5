package chaos

import (
	"github.com/raftkv/raftkv/internal/proctest"

	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"
)

// fault is one kind of damage the nemesis does, then undoes.
type fault struct {
	name string
	// inject breaks something and returns the function that heals it.
	inject func(n *nemesis) (heal func())
}

// nemesis injects faults from a seeded schedule while the workload runs.
type nemesis struct {
	c      *proctest.Cluster
	rng    *rand.Rand
	logf   func(format string, args ...any)
	faults int
	// worstRecovery is the longest time a write took to succeed after a heal.
	worstRecovery time.Duration
}

func (n *nemesis) randomMember() *proctest.Member { return n.c.Members[n.rng.IntN(len(n.c.Members))] }

// leaderOrRandom is the current leader if one is known, else a random member.
func (n *nemesis) leaderOrRandom() *proctest.Member {
	if id := n.c.Leader(); id != 0 {
		return n.c.Member(id)
	}
	return n.randomMember()
}

func (n *nemesis) shuffled() []*proctest.Member {
	ms := append([]*proctest.Member(nil), n.c.Members...)
	n.rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	return ms
}

func (n *nemesis) killAndRestart(ms []*proctest.Member) func() {
	for _, m := range ms {
		n.c.Kill(m)
	}
	return func() {
		for _, m := range ms {
			n.c.Start(m)
		}
	}
}

// isolate cuts every link between the two sides (a set of member ids).
func (n *nemesis) partition(side map[int]bool) func() {
	n.c.Net.Apply(func(from, to int) proctest.LinkMode { return proctest.LinkMode{Down: side[from] != side[to]} })
	return n.c.Net.Heal
}

var faults = []fault{
	{"kill a random member", func(n *nemesis) func() { return n.killAndRestart([]*proctest.Member{n.randomMember()}) }},
	{"kill the leader", func(n *nemesis) func() { return n.killAndRestart([]*proctest.Member{n.leaderOrRandom()}) }},
	{"kill a majority", func(n *nemesis) func() { return n.killAndRestart(n.shuffled()[:len(n.c.Members)/2+1]) }},
	{"kill every member", func(n *nemesis) func() { return n.killAndRestart(n.c.Members) }},
	{"pause the leader", func(n *nemesis) func() {
		m := n.leaderOrRandom()
		n.c.Signal(m, syscall.SIGSTOP)
		return func() { n.c.Signal(m, syscall.SIGCONT) }
	}},
	{"pause a random member", func(n *nemesis) func() {
		m := n.randomMember()
		n.c.Signal(m, syscall.SIGSTOP)
		return func() { n.c.Signal(m, syscall.SIGCONT) }
	}},
	{"isolate the leader", func(n *nemesis) func() {
		return n.partition(map[int]bool{n.leaderOrRandom().ID: true})
	}},
	{"split majority/minority", func(n *nemesis) func() {
		side := map[int]bool{}
		for _, m := range n.shuffled()[:len(n.c.Members)/2] {
			side[m.ID] = true
		}
		return n.partition(side)
	}},
	{"ring of overlapping majorities", func(n *nemesis) func() {
		// Each member hears only its ring neighbours: every member sees a
		// different majority (for 3 members: a bridge through one member).
		ms := n.shuffled()
		pos := map[int]int{}
		for i, m := range ms {
			pos[m.ID] = i
		}
		k := len(ms)
		n.c.Net.Apply(func(from, to int) proctest.LinkMode {
			d := (pos[from] - pos[to] + k) % k
			if k == 3 {
				// A bridge: the two ends cannot talk, the middle talks to both.
				return proctest.LinkMode{Down: d != 0 && pos[from] != 1 && pos[to] != 1}
			}
			return proctest.LinkMode{Down: d != 1 && d != k-1}
		})
		return n.c.Net.Heal
	}},
	{"lossy, slow links", func(n *nemesis) func() {
		n.c.Net.Apply(func(int, int) proctest.LinkMode {
			return proctest.LinkMode{Delay: time.Duration(1+n.rng.IntN(20)) * time.Millisecond, Loss: 0.002 * float64(n.rng.IntN(5))}
		})
		return n.c.Net.Heal
	}},
}

// run injects faults until ctx ends: inject, hold, heal, wait for writes to
// succeed again (availability), rest.
func (n *nemesis) run(ctx context.Context, probe func(context.Context) error) error {
	for ctx.Err() == nil {
		f := faults[n.rng.IntN(len(faults))]
		hold := time.Duration(1000+n.rng.IntN(3000)) * time.Millisecond
		n.logf("nemesis: %s for %v", f.name, hold)
		heal := f.inject(n)
		n.faults++
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		heal()
		start := time.Now()
		if err := probe(context.Background()); err != nil {
			return fmt.Errorf("after healing %q: %w", f.name, err)
		}
		if d := time.Since(start); d > n.worstRecovery {
			n.worstRecovery = d
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(500+n.rng.IntN(1500)) * time.Millisecond):
		}
	}
	return nil
}
