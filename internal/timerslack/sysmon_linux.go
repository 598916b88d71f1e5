//go:build linux

package timerslack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FindSysmon returns the thread id of the Go runtime's sysmon thread.
//
// Nothing names it, so it is told apart by what it does: sysmon is the one
// thread of a Go process that waits in nanosleep (its usleep) rather than
// in futex or epoll_wait, nearly all the time, while any goroutine runs.
// FindSysmon samples every thread's current system call for a few
// milliseconds, busy the whole time so that sysmon keeps polling, and
// returns the one thread found in nanosleep in most samples, if every
// other thread was there in at most one of ten (a spinning thread looking
// for work also naps in nanosleep, but briefly). It tries three times.
func FindSysmon() (int, error) {
	var err error
	for range 3 {
		var tid int
		if tid, err = findSysmon(); err == nil {
			return tid, nil
		}
	}
	return 0, err
}

func findSysmon() (int, error) {
	const samples = 200
	counts := map[int]int{}
	self := os.Getpid()
	for range samples {
		tids, err := threads()
		if err != nil {
			return 0, err
		}
		for _, tid := range tids {
			if tid != self && inNanosleep(tid) {
				counts[tid]++
			}
		}
	}
	found, others := 0, 0
	for tid, n := range counts {
		switch {
		case n*2 > samples:
			if found != 0 {
				return 0, errors.New("timerslack: two threads sleep like sysmon")
			}
			found = tid
		case n*10 > samples:
			others++
		}
	}
	if found == 0 || others > 0 {
		return 0, fmt.Errorf("timerslack: no thread sleeps like sysmon (nanosleep counts of %d samples: %v)", samples, counts)
	}
	return found, nil
}

// SetThread sets the timer slack of thread tid of this process. For any
// thread but the caller's own that takes CAP_SYS_NICE.
func SetThread(tid int, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("timerslack: slack must be > 0 (got %v)", d)
	}
	dir, err := openThread(tid)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := dir.WriteFile("timerslack_ns", []byte(strconv.FormatInt(d.Nanoseconds(), 10)), 0); err != nil {
		return fmt.Errorf("timerslack: %w", err)
	}
	return nil
}

// Thread returns the timer slack of thread tid of this process (CAP_SYS_NICE
// for any thread but the caller's own).
func Thread(tid int) (time.Duration, error) {
	dir, err := openThread(tid)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	b, err := dir.ReadFile("timerslack_ns")
	if err != nil {
		return 0, fmt.Errorf("timerslack: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timerslack: thread %d: %w", tid, err)
	}
	return time.Duration(ns), nil
}

// openThread opens /proc/TID, the one directory with a thread's
// timerslack_ns, after checking that tid is a thread of this process. The
// open directory stays bound to that thread: were it to exit and its id
// go to a thread of another process, files opened through it fail instead
// of reaching the other thread.
func openThread(tid int) (*os.Root, error) {
	dir, err := os.OpenRoot(fmt.Sprintf("/proc/%d", tid))
	if err != nil {
		return nil, fmt.Errorf("timerslack: %w", err)
	}
	status, err := dir.ReadFile("status")
	if err == nil && !strings.Contains(string(status), fmt.Sprintf("\nTgid:\t%d\n", os.Getpid())) {
		err = fmt.Errorf("thread %d belongs to another process: %w", tid, fs.ErrNotExist)
	}
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("timerslack: %w", err)
	}
	return dir, nil
}

// HoldSysmon gives sysmon (thread tid, from FindSysmon) timer slack d and
// every other thread slack base, until ctx is done. A new thread inherits
// the slack of the thread that started it, and sysmon starts threads too
// (when it hands a P on and no idle thread is left), so HoldSysmon sets
// every thread's slack again each interval: a few writes to /proc. The
// first round happens before it returns; an error then (most often: no
// CAP_SYS_NICE) is returned, with sysmon's slack put back to base. Later
// errors, such as a thread that exits meanwhile, are ignored.
func HoldSysmon(ctx context.Context, tid int, d, base, interval time.Duration) error {
	if err := SetThread(tid, d); err != nil {
		return err
	}
	hold := func() error {
		tids, err := threads()
		for _, t := range tids {
			if t == tid {
				continue
			}
			// A thread that exits meanwhile takes its /proc entry along.
			if e := SetThread(t, base); err == nil && !errors.Is(e, fs.ErrNotExist) && !errors.Is(e, unix.ESRCH) {
				err = e
			}
		}
		return err
	}
	if err := hold(); err != nil {
		_ = SetThread(tid, base)
		return err
	}
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = hold()
			}
		}
	}()
	return nil
}

// threads lists the thread ids of this process.
func threads() ([]int, error) {
	f, err := os.Open("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("timerslack: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("timerslack: %w", err)
	}
	tids := make([]int, 0, len(names))
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// inNanosleep tells whether thread tid is blocked in nanosleep now.
func inNanosleep(tid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
	if err != nil {
		return false
	}
	nr, _, _ := strings.Cut(string(b), " ")
	return nr == strconv.Itoa(unix.SYS_NANOSLEEP)
}
