//go:build linux

package vfs

import (
	"os"
	"syscall"
)

// fdatasync flushes data and the metadata needed to read it back (size), but
// not timestamps: one journal commit fewer than fsync on most filesystems.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
