//go:build linux

package timerslack

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Current returns the calling thread's timer slack. After Exec every thread
// of the process has the same one.
func Current() (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("timerslack: prctl(PR_GET_TIMERSLACK): %w", err)
	}
	return time.Duration(ns), nil
}

// Exec replaces the process with a new run of the same binary, with the
// same arguments and environment, whose threads all have timer slack d
// (d > 0). It returns only on failure; the calling thread's slack is then
// restored.
func Exec(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("timerslack: slack must be > 0 (got %v)", d)
	}
	// The slack and the execve must happen on one thread: the new image
	// starts from the thread that called execve.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return fmt.Errorf("timerslack: prctl(PR_GET_TIMERSLACK): %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0, 0, 0); err != nil {
		return fmt.Errorf("timerslack: prctl(PR_SET_TIMERSLACK, %d): %w", d.Nanoseconds(), err)
	}
	// /proc/self/exe names this very binary even if its path was replaced
	// or removed since it started.
	err = syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
	return fmt.Errorf("timerslack: re-execute /proc/self/exe: %w", err)
}
