package main

import (
	"log/slog"
	"os"
	"runtime"
)

// minProcs is the fewest Ps (GOMAXPROCS) a member runs with unless the
// operator sets GOMAXPROCS.
//
// Why: a member waits in fdatasync on the thread of its Raft loop, and with
// one P every other goroutine of the member (client readers, peer writers)
// waits too, until the runtime takes the P back from that thread. The Go
// runtime picks one P on a machine, VM or cpuset of one CPU (under a CPU
// quota it picks at least two by itself). With three members pinned to one
// CPU each (Docker cpuset), two Ps served 2.5-3x the writes of one, both
// pipelined and at 64 clients (docs/operations.md, "CPUs").
const minProcs = 2

// ensureProcs raises GOMAXPROCS to minProcs where the runtime chose fewer
// and the environment does not set it.
func ensureProcs(logger *slog.Logger) {
	if _, set := os.LookupEnv("GOMAXPROCS"); set || runtime.GOMAXPROCS(0) >= minProcs {
		return
	}
	runtime.GOMAXPROCS(minProcs)
	logger.Info("GOMAXPROCS raised", "gomaxprocs", minProcs,
		"why", "one CPU: a member that waits in fdatasync with one P stalls its other goroutines; set GOMAXPROCS to choose")
}
