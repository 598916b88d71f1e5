package vfs

import (
	"errors"
	"io"
	"os"
)

// File is an open file. Its methods mirror *os.File.
type File interface {
	io.Reader
	io.Writer
	io.ReaderAt
	io.Seeker
	io.Closer
	// Sync makes the file's data durable (fdatasync where available). After
	// Sync returns an error the state of unsynced data is unknown: callers
	// must not retry and assume success (the "fsyncgate" lesson).
	Sync() error
	// Truncate changes the file's size; like a write, it is durable only
	// after Sync.
	Truncate(size int64) error
	// Stat describes the file.
	Stat() (os.FileInfo, error)
}

// FS is a filesystem. Names are slash- or OS-separated paths as accepted by
// package os; MemFS cleans them with filepath.Clean.
type FS interface {
	// Create creates or truncates the named file for reading and writing.
	Create(name string) (File, error)
	// Open opens the named file read-only.
	Open(name string) (File, error)
	// OpenFile is the generalized open (os.O_* flags).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove removes the named file or empty directory.
	Remove(name string) error
	// Rename renames oldname to newname, replacing newname if it exists.
	Rename(oldname, newname string) error
	// MkdirAll creates dir and any missing parents.
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir returns the names of the entries of dir, sorted.
	ReadDir(dir string) ([]string, error)
	// Stat describes the named file.
	Stat(name string) (os.FileInfo, error)
	// Lock takes an exclusive, non-blocking lock on the named file, creating
	// it if needed. It fails with an error wrapping ErrLocked if another
	// holder (another process, or another Lock call) has it. Closing the
	// returned Closer releases the lock.
	Lock(name string) (io.Closer, error)
	// SyncDir makes the directory's entries (creations, renames, removals
	// of the files in it) durable.
	SyncDir(dir string) error
}

// ErrLocked is wrapped by the error FS.Lock returns when the lock is held.
var ErrLocked = errors.New("vfs: lock is held by another user")

// ErrCrashed is returned by every operation on a MemFS file handle that was
// open when MemFS.Crash ran: the "process" that owned it is gone.
var ErrCrashed = errors.New("vfs: file handle did not survive a crash")
