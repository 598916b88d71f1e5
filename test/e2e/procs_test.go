//go:build linux

package e2e

import (
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestServerProcsOnOneCPU: a member started on one CPU (its affinity, as a
// one-CPU machine or cpuset gives it) runs with two Ps, and says so; with
// GOMAXPROCS set in its environment it keeps the operator's choice.
func TestServerProcsOnOneCPU(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		want      string
	}{
		{"default", "", "2"},
		{"GOMAXPROCS set", "1", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("GOMAXPROCS", tc.env)
			}
			c := startOnOneCPU(t)
			p := c.procs[0]
			c.waitLeader(20 * time.Second)
			resp, err := httpClient.Get("http://" + p.httpAddr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, line := range strings.Split(string(body), "\n") {
				if v, ok := strings.CutPrefix(line, "go_sched_gomaxprocs_threads "); ok {
					got = v
				}
			}
			if got != tc.want {
				t.Errorf("member on one CPU runs with GOMAXPROCS %q, want %s", got, tc.want)
			}
			c.logsMu.Lock()
			raised := strings.Contains(p.logs.String(), `msg="GOMAXPROCS raised"`)
			c.logsMu.Unlock()
			if raised != (tc.want == "2") {
				t.Errorf("member logged GOMAXPROCS raised: %v, want %v", raised, tc.want == "2")
			}
		})
	}
}

// startOnOneCPU starts a one-member cluster whose process may run on the
// first CPU of this one's only: a child inherits the affinity of the thread
// that starts it.
func startOnOneCPU(t *testing.T) *cluster {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Skipf("cannot read the CPU affinity: %v", err)
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if old.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Skipf("cannot set the CPU affinity: %v", err)
	}
	defer func() {
		if err := unix.SchedSetaffinity(0, &old); err != nil {
			t.Errorf("restore the CPU affinity: %v", err)
		}
	}()
	return newClusterArgs(t, 1)
}
