package chaos

import (
	"github.com/raftkv/raftkv/internal/proctest"

	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
)

var seedFlag = flag.Uint64("chaos.seed", 0, "seed of the first run's fault schedule (0: random)")

func enabled(t *testing.T) {
	if os.Getenv("RAFTKV_CHAOS") != "1" {
		t.Skip("chaos suite is off: set RAFTKV_CHAOS=1 to run it (it takes minutes; see doc.go)")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestChaos runs RAFTKV_CHAOS_RUNS runs (default 3) of RAFTKV_CHAOS_SECONDS
// (default 60) each, alternating 3 and 5 members, with every fault kind.
func TestChaos(t *testing.T) {
	enabled(t)
	runs := envInt("RAFTKV_CHAOS_RUNS", 3)
	dur := time.Duration(envInt("RAFTKV_CHAOS_SECONDS", 60)) * time.Second
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64() % 1_000_000
	}
	var totalOps int64
	var totalFaults int
	for run := 0; run < runs; run++ {
		members := 3
		if run%2 == 1 {
			members = 5
		}
		s := seed + uint64(run)
		t.Run(fmt.Sprintf("members=%d/seed=%d", members, s), func(t *testing.T) {
			r := runOnce(t, members, s, dur)
			totalOps += r.ops
			totalFaults += r.faults
		})
	}
	t.Logf("chaos: %d runs, %d operations checked, %d faults injected", runs, totalOps, totalFaults)
}

// newChaosCluster gives each member its own network namespace when this
// process may make them (root on Linux, iproute2 and iptables present), as a
// real deployment has separate hosts; otherwise members talk through the
// per-link TCP proxies. RAFTKV_CHAOS_NET=proxy or =netns forces one.
func newChaosCluster(t *testing.T, members int, dir string, seed uint64, flags ...string) *proctest.Cluster {
	mode := os.Getenv("RAFTKV_CHAOS_NET")
	if mode == "" {
		mode = "proxy"
		if proctest.NetnsAvailable() == "" {
			mode = "netns"
		}
	}
	t.Logf("chaos: network: %s", mode)
	if mode == "netns" {
		return proctest.NewNetnsCluster(t, members, dir, seed, flags...)
	}
	return proctest.NewCluster(t, members, dir, seed, flags...)
}

type runResult struct {
	ops    int64
	faults int
}

func artifactDir(t *testing.T) string {
	base := os.Getenv("RAFTKV_CHAOS_ARTIFACTS")
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, "raftkv-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos: members' logs and the checker's output are in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func runOnce(t *testing.T, members int, seed uint64, dur time.Duration) runResult {
	dir := artifactDir(t)
	replay := fmt.Sprintf("RAFTKV_CHAOS=1 RAFTKV_CHAOS_RUNS=1 go test ./test/chaos -run TestChaos -chaos.seed=%d -v", seed)
	if members == 5 {
		replay = fmt.Sprintf("RAFTKV_CHAOS=1 RAFTKV_CHAOS_RUNS=2 go test ./test/chaos -run 'TestChaos/members=5' -chaos.seed=%d -v", seed-1)
	}
	t.Logf("chaos: %d members, seed %d; replay with: %s", members, seed, replay)
	c := newChaosCluster(t, members, dir, seed)
	t.Cleanup(c.Stop)
	c.StartAll()
	ctx := context.Background()
	if !proctest.WaitFor(ctx, 30*time.Second, func() bool { return c.Leader() != 0 }) {
		t.Fatalf("chaos: no leader within 30s of starting %d members", members)
	}
	h := newHistory()
	w := newWorkload(c, h, 2*members)
	n := &nemesis{c: c, rng: rand.New(rand.NewPCG(seed, 0x6e656d)), logf: t.Logf}

	runCtx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	done := make(chan struct{})
	go func() { w.run(runCtx, seed); close(done) }()
	nerr := n.run(runCtx, func(ctx context.Context) error { return probe(ctx, c, 20*time.Second) })
	cancel()
	<-done
	if nerr != nil {
		t.Errorf("chaos: availability: %v (replay: %s)", nerr, replay)
	}

	// Heal everything, then restart every member from its data dir: what
	// was acknowledged must survive all of it.
	c.Net.Heal()
	for _, m := range c.Members {
		c.Kill(m)
	}
	c.StartAll()
	if err := probe(ctx, c, 30*time.Second); err != nil {
		t.Fatalf("chaos: after restarting every member: %v (replay: %s)", err, replay)
	}
	final := finalReads(t, c, h, w)
	checkDurability(t, h, w, final, replay)
	checkLinearizable(t, h, dir, replay)
	h.mu.Lock()
	unknown := 0
	for _, n := range h.unknown {
		unknown += n
	}
	h.mu.Unlock()
	t.Logf("chaos: %d operations (%d writes of unknown outcome), %d faults, slowest recovery after a heal %v",
		w.ops.Load(), unknown, n.faults, n.worstRecovery)
	return runResult{ops: w.ops.Load(), faults: n.faults}
}

// probe waits until a write succeeds through some member.
func probe(ctx context.Context, c *proctest.Cluster, within time.Duration) error {
	var last error
	i := 0
	ok := proctest.WaitFor(ctx, within, func() bool {
		m := c.Members[i%len(c.Members)]
		i++
		if !c.Running(m) {
			return false
		}
		rdb := newRedis(m.RedisAddr)
		defer rdb.Close()
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		last = rdb.Set(pctx, "chaos-probe", "x", 0).Err()
		return last == nil
	})
	if !ok {
		return fmt.Errorf("no write succeeded within %v (last error: %v)", within, last)
	}
	return nil
}

// finalReads reads every key once more, after the cluster settled, and adds
// the reads to the history.
func finalReads(t *testing.T, c *proctest.Cluster, h *history, w *workload) map[string]string {
	final := map[string]string{}
	for i, key := range w.usedKeys() {
		m := c.Members[i%len(c.Members)]
		rdb := newRedis(m.RedisAddr)
		var v string
		var err error
		ok := proctest.WaitFor(context.Background(), 20*time.Second, func() bool {
			call := h.now()
			v, err = rdb.Get(context.Background(), key).Result()
			if errors.Is(err, redis.Nil) {
				v, err = "", nil
			}
			if err == nil {
				h.record(w.clients, input{kind: opGet, key: key}, call, output{value: v}, false)
			}
			return err == nil
		})
		rdb.Close()
		if !ok {
			t.Fatalf("chaos: final read of %q through member %d: %v", key, m.ID, err)
		}
		final[key] = v
	}
	return final
}

// checkDurability: every acknowledged APPEND token is present exactly once,
// a token of unknown outcome at most once, and nothing else; every counter
// counts at least its acknowledged INCRs and at most those plus the unknown ones.
func checkDurability(t *testing.T, h *history, w *workload, final map[string]string, replay string) {
	seen := map[string]int{}
	for key, v := range final {
		if !isKind(key, w.appendKeys) {
			continue
		}
		for _, tok := range strings.Split(v, ",") {
			if tok != "" {
				seen[tok+","]++
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for tok, n := range seen {
		switch {
		case h.acked[tok] == 0 && h.unknown[tok] == 0:
			t.Errorf("chaos: durability: token %q is present but was never written (replay: %s)", tok, replay)
		case n > 1:
			t.Errorf("chaos: durability: token %q applied %d times (replay: %s)", tok, n, replay)
		}
	}
	for tok := range h.acked {
		if strings.HasSuffix(tok, ",") && seen[tok] == 0 {
			t.Errorf("chaos: durability: acknowledged APPEND %q is lost (replay: %s)", tok, replay)
		}
	}
	for key, fv := range final {
		if !isKind(key, w.incrKeys) {
			continue
		}
		v, _ := strconv.ParseInt(fv, 10, 64)
		if lo, hi := int64(h.acked[key]), int64(h.acked[key]+h.unknown[key]); v < lo || v > hi {
			t.Errorf("chaos: durability: counter %s = %d, want %d..%d (acknowledged..acknowledged+unknown) (replay: %s)", key, v, lo, hi, replay)
		}
	}
}

// checkLinearizable runs porcupine over the whole history and writes its
// visualization when the history is not linearizable.
func checkLinearizable(t *testing.T, h *history, dir, replay string) {
	ops := h.snapshot()
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, 2*time.Minute)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(dir, "linearizability.html")
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Logf("chaos: write visualization: %v", err)
		}
		t.Errorf("chaos: the history of %d operations is NOT linearizable; visualization: %s (replay: %s)", len(ops), path, replay)
	case porcupine.Unknown:
		t.Logf("chaos: the linearizability check of %d operations timed out (inconclusive)", len(ops))
	default:
		t.Logf("chaos: %d operations are linearizable", len(ops))
	}
}

// TestCheckerCatchesStaleReads proves the checker can fail: with stale reads
// switched on, a leader cut off from its peers keeps answering reads from its
// own state while the majority moves on, and porcupine must reject the
// history. The same schedule with the default (linearizable) reads must pass.
func TestCheckerCatchesStaleReads(t *testing.T) {
	enabled(t)
	for _, tc := range []struct {
		name  string
		flags []string
		want  porcupine.CheckResult
	}{
		{"stale reads are caught", []string{"--stale-reads"}, porcupine.Illegal},
		{"linearizable reads pass", nil, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := staleReadSchedule(t, tc.flags)
			if got != tc.want {
				t.Fatalf("checker said %s, want %s", got, tc.want)
			}
		})
	}
}

func staleReadSchedule(t *testing.T, flags []string) porcupine.CheckResult {
	dir := artifactDir(t)
	c := newChaosCluster(t, 3, dir, 1, flags...)
	t.Cleanup(c.Stop)
	c.StartAll()
	ctx := context.Background()
	var old int
	if !proctest.WaitFor(ctx, 30*time.Second, func() bool { old = c.Leader(); return old != 0 }) {
		t.Fatal("no leader")
	}
	h := newHistory()
	do := func(client int, m *proctest.Member, in input) {
		rdb := newRedis(m.RedisAddr)
		defer rdb.Close()
		call := h.now()
		var err error
		var out output
		switch in.kind {
		case opSet:
			err = rdb.Set(ctx, in.key, in.value, 0).Err()
		case opGet:
			out.value, err = rdb.Get(ctx, in.key).Result()
			if errors.Is(err, redis.Nil) {
				out.value, err = "", nil
			}
		}
		failed, unknown := classify(err)
		out.unknown = unknown
		h.record(client, in, call, out, failed || (in.kind == opGet && err != nil))
	}
	leader := c.Member(old)
	do(0, leader, input{kind: opSet, key: "x", value: "before"})
	// Cut the leader off from its peers; its clients still reach it.
	c.Net.Apply(func(from, to int) proctest.LinkMode { return proctest.LinkMode{Down: from == old || to == old} })
	var other *proctest.Member
	for _, m := range c.Members {
		if m.ID != old {
			other = m
		}
	}
	if !proctest.WaitFor(ctx, 30*time.Second, func() bool {
		s, err := other.Status()
		return err == nil && s.Leader != 0 && s.Leader != old
	}) {
		t.Fatal("the majority elected no new leader")
	}
	if err := probe(ctx, &proctest.Cluster{Members: []*proctest.Member{other}}, 20*time.Second); err != nil {
		t.Fatalf("majority side: %v", err)
	}
	do(1, other, input{kind: opSet, key: "x", value: "after"})
	// The read begins after the write above was acknowledged.
	do(2, leader, input{kind: opGet, key: "x"})
	res, _ := porcupine.CheckOperationsVerbose(kvModel, h.snapshot(), time.Minute)
	return res
}
