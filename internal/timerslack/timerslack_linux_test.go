//go:build linux

package timerslack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	helperEnv = "TIMERSLACK_TEST_HELPER" // run as the helper process
	execedEnv = "TIMERSLACK_TEST_EXECED" // the helper has already called Exec
	want      = 3 * time.Millisecond     // not a default anywhere, so it cannot pass by chance
)

// TestExecGivesEveryThreadTheSlack runs this test binary as a helper that
// calls Exec, then checks in the re-executed image that its threads have
// the slack, those the runtime started before main (sysmon) as well as
// later ones, and that the process kept its pid. Reading another thread's
// slack takes CAP_SYS_NICE; without it only the threads that ask for their
// own are checked.
func TestExecGivesEveryThreadTheSlack(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		execHelper()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExecGivesEveryThreadTheSlack$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var pids []string
	read, own, unreadable := 0, 0, 0
	wantNs := strconv.FormatInt(want.Nanoseconds(), 10)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "pid":
			pids = append(pids, f[1])
		case len(f) == 2 && f[0] == "unreadable":
			unreadable++
		case len(f) == 3 && (f[0] == "thread" || f[0] == "own"):
			if f[0] == "thread" {
				read++
			} else {
				own++
			}
			if f[2] != wantNs {
				t.Errorf("%s %s has timer slack %s ns, want %s", f[0], f[1], f[2], wantNs)
			}
		}
	}
	wantPid := strconv.Itoa(cmd.Process.Pid)
	if len(pids) != 2 || pids[0] != wantPid || pids[1] != wantPid {
		t.Errorf("pids before and after Exec: %v, want [%s %s]\n%s", pids, wantPid, wantPid, out)
	}
	if own != helperThreads {
		t.Errorf("%d threads reported their own slack, want %d\n%s", own, helperThreads, out)
	}
	if unreadable > 0 {
		t.Logf("%d threads (sysmon among them) not checked: reading another thread's slack needs CAP_SYS_NICE", unreadable)
	} else if read < helperThreads+2 {
		t.Errorf("read the slack of %d threads, want at least %d\n%s", read, helperThreads+2, out)
	}
}

// helperThreads is how many threads the helper starts after Exec.
const helperThreads = 4

// execHelper is the helper process: the first image calls Exec, the second
// starts more threads and prints the slack of each thread it can read.
func execHelper() {
	fmt.Printf("pid %d\n", os.Getpid())
	if os.Getenv(execedEnv) == "" {
		os.Setenv(execedEnv, "1")
		err := Exec(want)
		fmt.Printf("Exec returned: %v\n", err)
		os.Exit(1)
	}
	// Threads started after Exec: each goroutine locked to its thread and
	// blocked holds a thread of its own; each reports its own slack.
	var started, release sync.WaitGroup
	var mu sync.Mutex
	release.Add(1)
	for i := range helperThreads {
		started.Add(1)
		go func() {
			runtime.LockOSThread()
			d, err := Current()
			mu.Lock()
			fmt.Printf("own %d %d\n", i, d.Nanoseconds())
			if err != nil {
				fmt.Println(err)
			}
			mu.Unlock()
			started.Done()
			release.Wait()
		}()
	}
	started.Wait()
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	for _, task := range tasks {
		// The file is /proc/<tid>/timerslack_ns; task directories lack it.
		b, err := os.ReadFile(filepath.Join("/proc", filepath.Base(task), "timerslack_ns"))
		switch {
		case errors.Is(err, fs.ErrPermission):
			fmt.Printf("unreadable %s\n", filepath.Base(task))
		case err != nil:
			fmt.Println(err)
			os.Exit(1)
		default:
			fmt.Printf("thread %s %s\n", filepath.Base(task), strings.TrimSpace(string(b)))
		}
	}
	release.Done()
	os.Exit(0)
}
