package kv

import (
	"fmt"
	"math/rand/v2"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestTTLDeterminism: two members fed the same entries agree after every
// entry, whatever reads happen on one of them and whenever (reads at any
// clock, before or after deadlines, must not change state).
func TestTTLDeterminism(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		a, _ := New(Config{})
		b, _ := New(Config{})
		now, seq := int64(t0), uint64(0)
		var last Command
		for i := 1; i <= 500; i++ {
			c := randCommand(r, &now, &seq, &last)
			last = c
			data, _ := c.Encode()
			e := []pb.Entry{{Index: pb.Index(i), Data: data}}
			ra, err := a.Apply(e)
			if err != nil {
				t.Fatal(err)
			}
			// Only a is read, at clocks around and far from the entry time.
			for range r.IntN(4) {
				k := []byte(modelKeys[r.IntN(len(modelKeys))])
				at := now + int64(r.IntN(20000)) - 10000
				a.Get(k, at)
				a.TTL(k, at)
				a.Keys([]byte("*"), at)
				a.Scan(0, nil, 3, at)
				a.ExpiredKeys(at, 10)
			}
			rb, err := b.Apply(e)
			if err != nil {
				t.Fatal(err)
			}
			if !ra[0].(Result).equal(rb[0].(Result)) {
				t.Fatalf("seed %d entry %d: results %v vs %v", seed, i, ra[0], rb[0])
			}
			var da, db string
			if i%50 == 0 { // everything, dedup table included
				da, db = dumpStore(t, a), dumpStore(t, b)
			} else {
				da, db = aliveStore(t, a, now-10000), aliveStore(t, b, now-10000)
			}
			if da != db {
				t.Fatalf("seed %d entry %d: members diverged\n%s\n---\n%s", seed, i, da, db)
			}
		}
	}
}

// TestTimeNeverRunsBackwards: an entry stamped by a leader whose clock is
// behind uses the latest time already applied, so a key that expired stays
// expired and TTLs are measured from the later time.
func TestTimeNeverRunsBackwards(t *testing.T) {
	h := newHarness(t)
	h.run([]string{
		"SET k v PX 1000 -> OK",
		"ADVANCE 2000",
		"SET other x -> OK", // applied at t0+2000: k is past its deadline
		"ADVANCE -1500",     // the next leader's clock is 1.5s behind
		"GET k -> (nil)",    // reads use max(now, applied time) too
		"SETNX k new -> (integer) 1",
		"SET t v PX 1000 -> OK",
	})
	if got := h.s.Stats().LastNow; got != t0+2000 {
		t.Errorf("applied clock %d, want %d", got, t0+2000)
	}
	// The deadline of t counts from the applied clock, not the stale stamp.
	if got := h.s.PTTL([]byte("t"), 0); got != 1000 {
		t.Errorf("PTTL %d, want 1000 from the applied clock", got)
	}
	h.s.mu.RLock()
	it, _ := h.s.lookupLocked("t")
	h.s.mu.RUnlock()
	if it.exp != t0+3000 {
		t.Errorf("deadline %d, want %d", it.exp, t0+3000)
	}
}

// TestExpiredKeysAndSweep: the leader's sweep finds due keys, and applying
// the sweep removes exactly those still due.
func TestExpiredKeysAndSweep(t *testing.T) {
	h := newHarness(t)
	for i := range 100 {
		h.do(fmt.Sprintf("SET k%d v PX %d", i, 100+i*10))
	}
	h.do("SET forever v")
	due := h.s.ExpiredKeys(t0+500, 1000)
	if len(due) != 41 { // deadlines t0+100 .. t0+500
		t.Fatalf("%d keys due at +500, want 41", len(due))
	}
	if got := h.s.ExpiredKeys(t0+500, 7); len(got) != 7 {
		t.Errorf("max 7: got %d", len(got))
	}
	// Between the leader's scan and the sweep's apply, one key is renewed.
	h.do("EXPIRE k0 100")
	h.now = t0 + 500
	c := Command{Now: h.now, Op: OpExpireSweep}
	for _, k := range due {
		c.Keys = append(c.Keys, []byte(k))
	}
	if r := h.applyCmd(c); r.Int != 40 {
		t.Errorf("sweep removed %v, want 40 (k0 was renewed)", r)
	}
	if got := h.s.DBSize(); got != 61 {
		t.Errorf("DBSIZE %d, want 61", got)
	}
	if got := h.s.Stats().KeysWithTTL; got != 60 {
		t.Errorf("keys with TTL %d, want 60", got)
	}
	if got := h.s.ExpiredKeys(t0+500, 1000); len(got) != 0 {
		t.Errorf("still due after the sweep: %v", got)
	}
}
