package e2e

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/timerslack"
)

// TestServerTimerSlack: a member gives all its threads the --timer-slack
// (1 ms by default) by re-executing itself once, keeps its pid and serves;
// with --timer-slack 0 it keeps the slack it inherited and does not
// re-execute.
func TestServerTimerSlack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("timer slack is a Linux setting")
	}
	inherited, err := timerslack.Current()
	if err != nil {
		t.Fatal(err)
	}
	if inherited == time.Millisecond {
		t.Skip("this test process already has a 1 ms timer slack: the default would not show")
	}
	for _, tc := range []struct {
		name  string
		extra []string
		want  time.Duration
		sets  int // times the member logs that it set the slack
	}{
		{"default", nil, time.Millisecond, 1},
		{"zero keeps the inherited slack", []string{"--timer-slack", "0"}, inherited, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterArgs(t, 1, tc.extra...)
			p := c.procs[0]
			pid := p.cmd.Process.Pid
			c.waitLeader(20 * time.Second)
			if err := c.client(p).Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatalf("SET after start: %v", err)
			}
			c.logsMu.Lock()
			logs := p.logs.String()
			c.logsMu.Unlock()
			if got := strings.Count(logs, `msg="timer slack set"`); got != tc.sets {
				t.Errorf("member logged %q %d times, want %d", "timer slack set", got, tc.sets)
			}
			if tc.sets > 0 && !strings.Contains(logs, "timer_slack=1ms") {
				t.Errorf("member did not log timer_slack=1ms")
			}
			select {
			case <-p.exited: // a re-execution must keep the process, not start another
				t.Fatalf("the process started as pid %d exited; the member served from another", pid)
			default:
			}
			checkThreadSlack(t, pid, tc.want)
		})
	}
}

// checkThreadSlack checks every thread of pid has slack want, when this
// process may read it (that takes CAP_SYS_NICE).
func checkThreadSlack(t *testing.T, pid int, want time.Duration) {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*"))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of pid %d: %v (%d found)", pid, err, len(tasks))
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", filepath.Base(task), "timerslack_ns"))
		if errors.Is(err, fs.ErrPermission) {
			t.Logf("threads' slack not checked: reading another process's needs CAP_SYS_NICE")
			return
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != strconv.FormatInt(want.Nanoseconds(), 10) {
			t.Errorf("thread %s of pid %d has timer slack %s ns, want %d", filepath.Base(task), pid, got, want.Nanoseconds())
		}
	}
}
