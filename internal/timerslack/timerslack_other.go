//go:build !linux

package timerslack

import (
	"errors"
	"time"
)

// Current returns errors.ErrUnsupported: timer slack is a Linux setting.
func Current() (time.Duration, error) { return 0, errors.ErrUnsupported }

// Exec returns errors.ErrUnsupported: timer slack is a Linux setting.
func Exec(time.Duration) error { return errors.ErrUnsupported }
