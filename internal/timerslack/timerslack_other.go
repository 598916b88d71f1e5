//go:build !linux

package timerslack

import (
	"context"
	"errors"
	"time"
)

// Current returns errors.ErrUnsupported: timer slack is a Linux setting.
func Current() (time.Duration, error) { return 0, errors.ErrUnsupported }

// Exec returns errors.ErrUnsupported: timer slack is a Linux setting.
func Exec(time.Duration) error { return errors.ErrUnsupported }

// FindSysmon returns errors.ErrUnsupported: timer slack is a Linux setting.
func FindSysmon() (int, error) { return 0, errors.ErrUnsupported }

// HoldSysmon returns errors.ErrUnsupported: timer slack is a Linux setting.
func HoldSysmon(context.Context, int, time.Duration, time.Duration, time.Duration) error {
	return errors.ErrUnsupported
}
