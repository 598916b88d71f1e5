package main

import (
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
