package replica

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// regInput is one register operation: a write of value, or a read.
type regInput struct {
	write bool
	value string
}

// registerModel: a single register; the state machine's newest applied
// value is the register's value.
var registerModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("write(%s)", in.value)
		}
		return fmt.Sprintf("read() -> %v", output)
	},
}

// TestLinearizableUnderFaults runs concurrent writers (Propose) and readers
// (ReadIndex, then the local state machine) against random members while
// members are cut off, killed and restarted, and checks the history with
// porcupine. It catches a stale read served by a deposed leader, and a write
// reported failed that was in fact applied (writes whose outcome is unknown
// may or may not take effect; any other error must mean "not applied").
func TestLinearizableUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	c.waitLeader()

	const (
		clients  = 6
		duration = 4 * time.Second
	)
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		stats   = map[string]int{}
	)
	record := func(op porcupine.Operation, outcome string) {
		mu.Lock()
		defer mu.Unlock()
		stats[outcome]++
		if outcome != "failed" {
			history = append(history, op)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), 1))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := c.node(pb.NodeID(rng.IntN(3) + 1))
				if n == nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				if rng.IntN(2) == 0 {
					v := fmt.Sprintf("c%d-%d", cl, i)
					op := porcupine.Operation{ClientId: cl, Input: regInput{write: true, value: v}, Call: now()}
					_, err := n.r.Propose(ctx, []byte(v))
					op.Return = now()
					switch {
					case err == nil:
						record(op, "written")
					case errors.Is(err, ErrOutcomeUnknown):
						op.Return = math.MaxInt64 // may take effect at any later time, or never
						record(op, "unknown")
					default:
						record(op, "failed")
					}
				} else {
					op := porcupine.Operation{ClientId: cl, Input: regInput{}, Call: now()}
					err := n.r.ReadIndex(ctx)
					if err == nil {
						vals := n.sm.values()
						val := ""
						if len(vals) > 0 {
							val = vals[len(vals)-1]
						}
						op.Output = val
						op.Return = now()
						record(op, "read")
					} else {
						record(op, "failed")
					}
				}
				cancel()
			}
		}()
	}

	// The nemesis: cut off or kill a random member, then heal or restart it.
	rng := rand.New(rand.NewPCG(99, 2))
	for time.Since(start) < duration {
		victim := pb.NodeID(rng.IntN(3) + 1)
		if rng.IntN(2) == 0 {
			c.isolate(victim)
			time.Sleep(300 * time.Millisecond) // fault duration, not synchronisation
			c.heal()
		} else {
			c.kill(victim)
			time.Sleep(300 * time.Millisecond)
			c.start(victim)
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("operations: %v", stats)
	if stats["written"] < 20 || stats["read"] < 20 {
		t.Fatalf("too little progress under faults: %v", stats)
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel, history, 30*time.Second)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("replica-linearizability-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatal("history is not linearizable")
	case porcupine.Unknown:
		t.Log("linearizability check timed out; history too large to decide")
	}
}
