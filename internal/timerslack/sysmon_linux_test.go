//go:build linux

package timerslack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFindSysmonFindsTheFirstThread checks FindSysmon, which goes by what
// threads do, against another fact of the runtime: sysmon is the first
// thread a Go program starts. Thread ids are handed out in increasing
// order, wrapping at pid_max, so the first is the one nearest after the
// process id in that order.
func TestFindSysmonFindsTheFirstThread(t *testing.T) {
	got, err := FindSysmon()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	tids, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	first, firstDist := 0, pidMax
	for _, tid := range tids {
		if d := (tid - pid + pidMax) % pidMax; tid != pid && d < firstDist {
			first, firstDist = tid, d
		}
	}
	if got != first {
		t.Errorf("FindSysmon() = %d, but the first thread started is %d (pid %d, threads %v)", got, first, pid, tids)
	}
}

// TestHoldSysmon checks that sysmon gets its slack and every other thread
// the base one, including a thread whose slack changes afterwards, as the
// slack of a thread that sysmon starts would. Setting another thread's
// slack takes CAP_SYS_NICE.
func TestHoldSysmon(t *testing.T) {
	const (
		sysmonSlack = 7 * time.Millisecond // none of these is a default anywhere
		base        = 2 * time.Millisecond
		other       = 5 * time.Millisecond
	)
	sysmon, err := FindSysmon()
	if err != nil {
		t.Fatal(err)
	}
	restore := snapshotSlacks(t)
	ctx, cancel := context.WithCancel(context.Background())
	err = HoldSysmon(ctx, sysmon, sysmonSlack, base, 5*time.Millisecond)
	if errors.Is(err, fs.ErrPermission) {
		cancel()
		t.Skip("setting another thread's timer slack needs CAP_SYS_NICE")
	}
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); restore() })

	check := func() (bad []string) {
		tids, err := threads()
		if err != nil {
			t.Fatal(err)
		}
		for _, tid := range tids {
			want := base
			if tid == sysmon {
				want = sysmonSlack
			}
			got, err := Thread(tid)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			if err == nil && got != want {
				bad = append(bad, strconv.Itoa(tid)+": "+got.String()+", want "+want.String())
			}
		}
		return bad
	}
	if bad := check(); bad != nil {
		t.Fatalf("right after HoldSysmon: %v", bad)
	}

	// Threads started now, and one thread given another slack, as sysmon's
	// children get its slack.
	var started, release sync.WaitGroup
	release.Add(1)
	for range 4 {
		started.Add(1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			started.Done()
			release.Wait()
		}()
	}
	started.Wait()
	defer release.Done()
	tids, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		if tid != sysmon {
			if err := SetThread(tid, other); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for bad := check(); bad != nil; bad = check() {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after a change: %v", bad)
		}
		time.Sleep(time.Millisecond)
	}
}

// snapshotSlacks records every thread's slack, to put it back after a
// test: threads of this process outlive it.
func snapshotSlacks(t *testing.T) (restore func()) {
	tids, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	was := map[int]time.Duration{}
	for _, tid := range tids {
		if d, err := Thread(tid); err == nil {
			was[tid] = d
		}
	}
	cur, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		tids, _ := threads()
		for _, tid := range tids {
			d, ok := was[tid]
			if !ok {
				d = cur
			}
			_ = SetThread(tid, d)
		}
	}
}

// TestSetThreadRefusesOtherProcesses: a thread id that is not one of this
// process's (as an exited thread's id may become) is refused, even where
// CAP_SYS_NICE would let the write through.
func TestSetThreadRefusesOtherProcesses(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no process to try it on: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	before, _ := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", pid))
	err := SetThread(pid, 7*time.Millisecond)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SetThread(pid %d of another process) = %v, want an error wrapping fs.ErrNotExist", pid, err)
	}
	if after, _ := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", pid)); string(after) != string(before) {
		t.Errorf("the other process's slack changed from %q to %q", before, after)
	}
	if _, err := Thread(pid); err == nil {
		t.Errorf("Thread(pid %d of another process) succeeded", pid)
	}
}
