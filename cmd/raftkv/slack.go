package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/raftkv/raftkv/internal/timerslack"
)

// defaultTimerSlack is --timer-slack's default. Why a member wants it:
// internal/timerslack; what it bought: docs/benchmarks.md, session 7.
const defaultTimerSlack = time.Millisecond

// slackEnv marks a process that setTimerSlack re-executed, so that it never
// does so twice, whatever the kernel made of the slack.
const slackEnv = "RAFTKV_TIMER_SLACK_EXEC"

// mayReexec is set by main: only a raftkv process of its own may replace
// its image. Tests run commands inside the test binary, which must not.
var mayReexec bool

// setTimerSlack gives every thread of the process timer slack d, which
// takes re-executing the binary (internal/timerslack says why); then the
// command starts over in the new image, finds the slack in place and goes
// on. d == 0 keeps the inherited slack. The member runs either way: a
// failure is logged, not returned.
func setTimerSlack(d time.Duration, logger *slog.Logger) {
	if d == 0 || !mayReexec {
		return
	}
	cur, err := timerslack.Current()
	if errors.Is(err, errors.ErrUnsupported) {
		return
	}
	if os.Getenv(slackEnv) != "" { // the re-executed image
		os.Unsetenv(slackEnv)
		if err != nil || cur != d {
			logger.Warn("timer slack not applied", "timer_slack", d, "have", cur, "err", err)
		} else {
			logger.Debug("timer slack set", "timer_slack", d)
		}
		return
	}
	if err != nil {
		logger.Warn("cannot read timer slack; keeping the inherited one", "err", err)
		return
	}
	if cur == d {
		return
	}
	os.Setenv(slackEnv, "1")
	err = timerslack.Exec(d) // returns only on failure
	os.Unsetenv(slackEnv)
	logger.Warn("cannot set timer slack; keeping the inherited one", "timer_slack", d, "have", cur, "err", err)
}

// defaultSysmonSlack is --sysmon-slack's default: sysmon's own longest
// sleep when the process is idle.
const defaultSysmonSlack = 10 * time.Millisecond

// setSysmonSlack gives the runtime's sysmon thread timer slack d and keeps
// every other thread at base, until the returned stop is called. Why:
// internal/timerslack. It takes CAP_SYS_NICE; without it, or with d == 0,
// sysmon keeps the slack of every thread, and the member runs either way.
func setSysmonSlack(d, base time.Duration, logger *slog.Logger) (stop func()) {
	if d == 0 || !mayReexec {
		return func() {}
	}
	tid, err := timerslack.FindSysmon()
	if errors.Is(err, errors.ErrUnsupported) {
		return func() {}
	}
	if err == nil && base == 0 { // --timer-slack 0: the others keep the inherited slack
		base, err = timerslack.Current()
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err == nil {
		err = timerslack.HoldSysmon(ctx, tid, d, base, time.Second)
	}
	if err != nil {
		cancel()
		logger.Info("sysmon keeps the timer slack of the other threads", "sysmon_slack", d, "err", err)
		return func() {}
	}
	logger.Debug("sysmon timer slack set", "sysmon_slack", d, "tid", tid)
	return cancel
}
