package chaos

import (
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
	c      *cluster
	rng    *rand.Rand
	logf   func(format string, args ...any)
	faults int
	// worstRecovery is the longest time a write took to succeed after a heal.
	worstRecovery time.Duration
}

func (n *nemesis) randomMember() *member { return n.c.members[n.rng.IntN(len(n.c.members))] }

// leaderOrRandom is the current leader if one is known, else a random member.
func (n *nemesis) leaderOrRandom() *member {
	if id := n.c.leader(); id != 0 {
		return n.c.member(id)
	}
	return n.randomMember()
}

func (n *nemesis) shuffled() []*member {
	ms := append([]*member(nil), n.c.members...)
	n.rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	return ms
}

func (n *nemesis) killAndRestart(ms []*member) func() {
	for _, m := range ms {
		n.c.kill(m)
	}
	return func() {
		for _, m := range ms {
			n.c.start(m)
		}
	}
}

// isolate cuts every link between the two sides (a set of member ids).
func (n *nemesis) partition(side map[int]bool) func() {
	n.c.net.apply(func(from, to int) linkMode { return linkMode{down: side[from] != side[to]} })
	return n.c.net.heal
}

var faults = []fault{
	{"kill a random member", func(n *nemesis) func() { return n.killAndRestart([]*member{n.randomMember()}) }},
	{"kill the leader", func(n *nemesis) func() { return n.killAndRestart([]*member{n.leaderOrRandom()}) }},
	{"kill a majority", func(n *nemesis) func() { return n.killAndRestart(n.shuffled()[:len(n.c.members)/2+1]) }},
	{"kill every member", func(n *nemesis) func() { return n.killAndRestart(n.c.members) }},
	{"pause the leader", func(n *nemesis) func() {
		m := n.leaderOrRandom()
		n.c.signal(m, syscall.SIGSTOP)
		return func() { n.c.signal(m, syscall.SIGCONT) }
	}},
	{"pause a random member", func(n *nemesis) func() {
		m := n.randomMember()
		n.c.signal(m, syscall.SIGSTOP)
		return func() { n.c.signal(m, syscall.SIGCONT) }
	}},
	{"isolate the leader", func(n *nemesis) func() {
		return n.partition(map[int]bool{n.leaderOrRandom().id: true})
	}},
	{"split majority/minority", func(n *nemesis) func() {
		side := map[int]bool{}
		for _, m := range n.shuffled()[:len(n.c.members)/2] {
			side[m.id] = true
		}
		return n.partition(side)
	}},
	{"ring of overlapping majorities", func(n *nemesis) func() {
		// Each member hears only its ring neighbours: every member sees a
		// different majority (for 3 members: a bridge through one member).
		ms := n.shuffled()
		pos := map[int]int{}
		for i, m := range ms {
			pos[m.id] = i
		}
		k := len(ms)
		n.c.net.apply(func(from, to int) linkMode {
			d := (pos[from] - pos[to] + k) % k
			if k == 3 {
				// A bridge: the two ends cannot talk, the middle talks to both.
				return linkMode{down: d != 0 && pos[from] != 1 && pos[to] != 1}
			}
			return linkMode{down: d != 1 && d != k-1}
		})
		return n.c.net.heal
	}},
	{"lossy, slow links", func(n *nemesis) func() {
		n.c.net.apply(func(int, int) linkMode {
			return linkMode{delay: time.Duration(1+n.rng.IntN(20)) * time.Millisecond, loss: 0.002 * float64(n.rng.IntN(5))}
		})
		return n.c.net.heal
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
