package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proctest"
	"github.com/raftkv/raftkv/internal/timerslack"
)

// TestServerTimerSlack: a member gives all its threads the --timer-slack
// (1 ms by default) by re-executing itself once, keeps its pid and serves;
// with --timer-slack 0 it keeps the slack it inherited and does not
// re-execute. Where it may (CAP_SYS_NICE), it gives the runtime's sysmon
// thread alone --sysmon-slack (10 ms by default).
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
		name   string
		extra  []string
		want   time.Duration
		sets   int           // times the member logs that it set the slack
		sysmon time.Duration // sysmon's slack, where the member may set it
	}{
		{"default", nil, time.Millisecond, 1, 10 * time.Millisecond},
		{"zero keeps the inherited slack", []string{"--timer-slack", "0", "--sysmon-slack", "0"}, inherited, 0, inherited},
		{"sysmon like the rest", []string{"--sysmon-slack", "0"}, time.Millisecond, 1, time.Millisecond},
		{"sysmon over the inherited slack", []string{"--timer-slack", "0", "--sysmon-slack", "3ms"}, inherited, 0, 3 * time.Millisecond},
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
			sysmon := tc.want
			if strings.Contains(logs, `msg="sysmon timer slack set"`) {
				sysmon = tc.sysmon
			} else if tc.sysmon != tc.want && !strings.Contains(logs, `msg="sysmon keeps the timer slack of the other threads"`) {
				t.Errorf("member logged neither that it set sysmon's slack nor why not")
			}
			checkThreadSlack(t, pid, tc.want, sysmon)
		})
	}
}

// checkThreadSlack checks that one thread of pid has slack sysmon and every
// other want, when this process may read them (that takes CAP_SYS_NICE). A
// thread that sysmon starts inherits sysmon's slack until the member's next
// round of setting them (every second), so the check waits up to 5 s for
// the threads to agree.
func checkThreadSlack(t *testing.T, pid int, want, sysmon time.Duration) {
	t.Helper()
	var mismatch string
	if !proctest.WaitFor(context.Background(), 5*time.Second, func() bool {
		var readable bool
		mismatch, readable = threadSlackMismatch(t, pid, want, sysmon)
		return !readable || mismatch == ""
	}) {
		t.Error(mismatch)
	}
}

// threadSlackMismatch describes how the threads of pid differ from one at
// slack sysmon and every other at want ("" if they do not), or reports
// false if their slack cannot be read here.
func threadSlackMismatch(t *testing.T, pid int, want, sysmon time.Duration) (string, bool) {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*"))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of pid %d: %v (%d found)", pid, err, len(tasks))
	}
	slacks := map[string]int{} // ns: threads
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", filepath.Base(task), "timerslack_ns"))
		if errors.Is(err, fs.ErrPermission) {
			t.Logf("threads' slack not checked: reading another process's needs CAP_SYS_NICE")
			return "", false
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		slacks[strings.TrimSpace(string(b))]++
	}
	wantNs, sysmonNs := strconv.FormatInt(want.Nanoseconds(), 10), strconv.FormatInt(sysmon.Nanoseconds(), 10)
	wantCounts := map[string]int{wantNs: len(tasks) - 1, sysmonNs: 1}
	if want == sysmon {
		wantCounts = map[string]int{wantNs: len(tasks)}
	}
	for ns, n := range slacks {
		if n != wantCounts[ns] && !(ns == wantNs && n < wantCounts[ns]) { // threads may exit meanwhile
			return fmt.Sprintf("pid %d: threads by timer slack in ns %v, want %v", pid, slacks, wantCounts), true
		}
	}
	if want != sysmon && slacks[sysmonNs] != 1 {
		return fmt.Sprintf("pid %d: threads by timer slack in ns %v, want one (sysmon) at %s", pid, slacks, sysmonNs), true
	}
	return "", true
}

// TestDevTimerSlack: `raftkv dev` gives its process the server's default
// slacks: 1 ms on every thread and, where it may, 10 ms on sysmon.
func TestDevTimerSlack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("timer slack is a Linux setting")
	}
	if inherited, err := timerslack.Current(); err != nil || inherited == time.Millisecond {
		t.Skipf("this test process's timer slack (%v, %v) would not show the default", inherited, err)
	}
	cmd := exec.Command(binary, "dev", "--base-port", "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Press Ctrl-C to stop") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("raftkv dev exited before its cluster was ready")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("raftkv dev printed no member table within 30 s")
	}
	sysmon := time.Millisecond
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "timerslack_ns")); err == nil && len(b) > 0 {
		sysmon = 10 * time.Millisecond // this process may set it, so the member may too
	}
	checkThreadSlack(t, cmd.Process.Pid, time.Millisecond, sysmon)
}
