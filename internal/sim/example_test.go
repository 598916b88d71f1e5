package sim_test

import (
	"fmt"

	"github.com/raftkv/raftkv/internal/sim"
)

// A three-node group on a lossy network elects a leader, then a seeded
// random schedule of faults runs with every invariant checked after every
// step, and the healed group recovers.
func Example() {
	cfg, w := sim.RandomSchedule(42)
	s, err := sim.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := s.RunRandom(w, 500, true); err != nil {
		fmt.Println(s.Report())
		return
	}
	fmt.Println("leader after recovery:", s.Leader() != 0)
	fmt.Println("violations:", s.Err())
	// Output:
	// leader after recovery: true
	// violations: <nil>
}
