package sim

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

var (
	flagSeed      = flag.Uint64("seed", 0, "run only this seed (replay a failure); 0 = seeds 1..schedules")
	flagSchedules = flag.Int("schedules", 0, "number of random schedules (default 2000, or $RAFTKV_SIM_SCHEDULES)")
	flagSteps     = flag.Int("steps", 0, "steps per random schedule (default 600)")
	flagFirstSeed = flag.Uint64("firstseed", 1, "first seed of the random schedules (a soak can explore new ones)")
	flagLiveness  = flag.Bool("liveness", true, "after each random schedule, heal and check the cluster recovers")
)

const (
	defaultSchedules = 2000
	defaultSteps     = 600
)

// schedules returns how many random schedules to run: -schedules, else
// $RAFTKV_SIM_SCHEDULES, else 2000 (-short: 200).
func schedules(t *testing.T) int {
	if *flagSchedules > 0 {
		return *flagSchedules
	}
	if v := os.Getenv("RAFTKV_SIM_SCHEDULES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("RAFTKV_SIM_SCHEDULES=%q: want a positive integer", v)
		}
		return n
	}
	if testing.Short() {
		return 200
	}
	return defaultSchedules
}

func steps() int {
	if *flagSteps > 0 {
		return *flagSteps
	}
	return defaultSteps
}

// replayCommand is the line that reruns one schedule exactly.
func replayCommand(test string, seed uint64) string {
	cmd := fmt.Sprintf("go test ./internal/sim -run '^%s$' -seed=%d -v", test, seed)
	if *flagSteps > 0 {
		cmd += fmt.Sprintf(" -steps=%d", *flagSteps)
	}
	if !*flagLiveness {
		cmd += " -liveness=false"
	}
	return cmd
}

// runSchedule runs one random schedule; it returns the Sim (for its report)
// and the first violation.
func runSchedule(seed uint64, steps int, bugs Bugs, logf func(string, ...any)) (*Sim, error) {
	cfg, w := RandomSchedule(seed)
	cfg.Bugs = bugs
	cfg.Logf = logf
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return s, s.RunRandom(w, steps, *flagLiveness)
}

// TestRandomSchedules runs thousands of seeded random schedules (proposals,
// reads, conf changes, transfers, crashes at every point of Ready handling,
// partitions, an unreliable network) against the real core, checking every
// invariant after every step, then heals and checks recovery. A failure
// prints the command that replays it.
func TestRandomSchedules(t *testing.T) {
	if *flagSeed != 0 {
		var logf func(string, ...any)
		if testing.Verbose() {
			logf = t.Logf
		}
		s, err := runSchedule(*flagSeed, steps(), Bugs{}, logf)
		if s != nil {
			t.Log(s.Summary())
		}
		if err != nil {
			if s != nil {
				t.Fatalf("%s\nreplay: %s", s.Report(), replayCommand(t.Name(), *flagSeed))
			}
			t.Fatal(err)
		}
		return
	}
	n := schedules(t)
	var (
		next     atomic.Uint64
		failed   atomic.Int64
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
		stats    [8]atomic.Int64 // elections, reads served, commits, snapshots, conf changes, transfers, crashes, step errors
	)
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > uint64(n) || failed.Load() >= 5 {
					return
				}
				seed := *flagFirstSeed + i - 1
				s, err := runSchedule(seed, steps(), Bugs{}, nil)
				if s != nil {
					stats[0].Add(int64(s.Elections()))
					stats[1].Add(int64(s.ReadsServed()))
					stats[2].Add(int64(s.CommittedIndex()))
					stats[3].Add(int64(s.Sent(pb.MsgSnap)))
					stats[4].Add(int64(s.confChanges))
					stats[5].Add(int64(s.Sent(pb.MsgTimeoutNow)))
					stats[6].Add(int64(s.crashes))
					stats[7].Add(int64(s.stepErrors))
				}
				if err != nil {
					failed.Add(1)
					msg := err.Error()
					if s != nil {
						msg = s.Report()
					}
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s\nreplay: %s", msg, replayCommand(t.Name(), seed)))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	t.Logf("%d schedules x %d steps in %v (%.0f schedules/minute); elections=%d reads served=%d committed entries=%d "+
		"MsgSnap=%d conf changes=%d MsgTimeoutNow=%d crashes=%d step errors=%d",
		n, steps(), el.Round(time.Millisecond), float64(n)/el.Minutes(), stats[0].Load(), stats[1].Load(), stats[2].Load(),
		stats[3].Load(), stats[4].Load(), stats[5].Load(), stats[6].Load(), stats[7].Load())
	for _, f := range failures {
		t.Error(f)
	}
}

// TestReplayIsDeterministic: the same seed produces the same run, event for
// event; otherwise a printed replay command would not reproduce a failure.
// (It also catches nondeterminism in the core, such as map iteration order
// leaking into the order of Ready.Messages.)
func TestReplayIsDeterministic(t *testing.T) {
	for _, seed := range []uint64{3, 77, 1234} {
		var runs [2][]string
		for i := range runs {
			cfg, w := RandomSchedule(seed)
			cfg.Logf = func(format string, args ...any) { runs[i] = append(runs[i], fmt.Sprintf(format, args...)) }
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.RunRandom(w, 400, true); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		if len(runs[0]) != len(runs[1]) {
			t.Errorf("seed %d: %d events, then %d", seed, len(runs[0]), len(runs[1]))
		}
		for i := range min(len(runs[0]), len(runs[1])) {
			if runs[0][i] != runs[1][i] {
				t.Fatalf("seed %d: runs diverge at event %d:\n  %s\n  %s", seed, i, runs[0][i], runs[1][i])
			}
		}
	}
}

// BenchmarkRandomSchedule measures whole random schedules (600 steps plus
// recovery), one per iteration, seeds 1..b.N.
func BenchmarkRandomSchedule(b *testing.B) {
	seed := uint64(0)
	for b.Loop() {
		seed++
		if _, err := runSchedule(seed, defaultSteps, Bugs{}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
