package vfs

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Op names a kind of filesystem operation that an Injector counts and can
// fail.
type Op uint8

// The operation kinds. OpCreate counts Create and OpenFile with O_CREATE;
// OpOpen counts the other opens; OpRead counts Read and ReadAt.
const (
	OpCreate Op = iota
	OpOpen
	OpRead
	OpWrite
	OpSync
	OpTruncate
	OpSeek
	OpStat
	OpClose
	OpRemove
	OpRename
	OpMkdir
	OpReadDir
	OpLock
	OpSyncDir
	numOps
)

var opNames = [numOps]string{"create", "open", "read", "write", "sync", "truncate", "seek", "stat",
	"close", "remove", "rename", "mkdir", "readdir", "lock", "syncdir"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", o)
}

// Ops lists every operation kind, for tests that iterate over them.
func Ops() []Op {
	ops := make([]Op, numOps)
	for i := range ops {
		ops[i] = Op(i)
	}
	return ops
}

// InjectedError is the error an Injector returns; it wraps the error given
// to the rule (or ErrInjected) and names the operation.
type InjectedError struct {
	Op  Op
	N   int // which operation of its kind (1-based) failed
	Err error
}

func (e *InjectedError) Error() string {
	return fmt.Sprintf("vfs: injected %s error (#%d): %v", e.Op, e.N, e.Err)
}
func (e *InjectedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInjected) true for every injected error.
func (e *InjectedError) Is(target error) bool { return target == ErrInjected }

// ErrInjected is the default error of an injection rule.
var ErrInjected = fmt.Errorf("vfs: injected failure")

// Injector wraps an FS and fails chosen operations. It counts operations of
// each kind from its creation; a rule fails the Nth operation of a kind
// (1-based) and, if sticky, every later one too. A failed write first writes
// half of its bytes (a short write, as a full disk can cause); every other
// failed operation has no effect.
//
// Safe for concurrent use.
type Injector struct {
	fs     FS
	mu     sync.Mutex
	counts [numOps]int
	total  int
	rules  []rule
}

type rule struct {
	op     Op
	all    bool // any kind; n counts all operations
	n      int
	sticky bool
	err    error
}

// NewInjector wraps fs.
func NewInjector(fs FS) *Injector { return &Injector{fs: fs} }

// FailNth makes the nth operation of kind op fail with err (ErrInjected if nil).
func (in *Injector) FailNth(op Op, n int, err error) { in.add(rule{op: op, n: n, err: err}) }

// FailFrom makes the nth operation of kind op and every later one fail.
func (in *Injector) FailFrom(op Op, n int, err error) {
	in.add(rule{op: op, n: n, sticky: true, err: err})
}

// FailAllFrom makes the nth operation overall, of any kind, and every later
// one fail: the filesystem "stops" at that point, as if the process died
// there. Tests combine it with MemFS.Crash to crash at every point.
func (in *Injector) FailAllFrom(n int, err error) {
	in.add(rule{all: true, n: n, sticky: true, err: err})
}

// Clear removes every rule (counts keep running).
func (in *Injector) Clear() {
	in.mu.Lock()
	in.rules = nil
	in.mu.Unlock()
}

func (in *Injector) add(r rule) {
	if r.err == nil {
		r.err = ErrInjected
	}
	in.mu.Lock()
	in.rules = append(in.rules, r)
	in.mu.Unlock()
}

// Count returns how many operations of kind op have been attempted.
func (in *Injector) Count(op Op) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.counts[op]
}

// Total returns how many operations of any kind have been attempted.
func (in *Injector) Total() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.total
}

// step counts one operation and returns the error to inject, if any.
func (in *Injector) step(op Op) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.counts[op]++
	in.total++
	n := in.counts[op]
	for _, r := range in.rules {
		cnt := n
		if r.all {
			cnt = in.total
		} else if r.op != op {
			continue
		}
		if cnt == r.n || (r.sticky && cnt > r.n) {
			return &InjectedError{Op: op, N: n, Err: r.err}
		}
	}
	return nil
}

func (in *Injector) wrap(f File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &injFile{f: f, in: in}, nil
}

// Create implements FS.
func (in *Injector) Create(name string) (File, error) {
	if err := in.step(OpCreate); err != nil {
		return nil, err
	}
	return in.wrap(in.fs.Create(name))
}

// Open implements FS.
func (in *Injector) Open(name string) (File, error) {
	if err := in.step(OpOpen); err != nil {
		return nil, err
	}
	return in.wrap(in.fs.Open(name))
}

// OpenFile implements FS.
func (in *Injector) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	op := OpOpen
	if flag&os.O_CREATE != 0 {
		op = OpCreate
	}
	if err := in.step(op); err != nil {
		return nil, err
	}
	return in.wrap(in.fs.OpenFile(name, flag, perm))
}

// Remove implements FS.
func (in *Injector) Remove(name string) error {
	if err := in.step(OpRemove); err != nil {
		return err
	}
	return in.fs.Remove(name)
}

// Rename implements FS.
func (in *Injector) Rename(oldname, newname string) error {
	if err := in.step(OpRename); err != nil {
		return err
	}
	return in.fs.Rename(oldname, newname)
}

// MkdirAll implements FS.
func (in *Injector) MkdirAll(dir string, perm os.FileMode) error {
	if err := in.step(OpMkdir); err != nil {
		return err
	}
	return in.fs.MkdirAll(dir, perm)
}

// ReadDir implements FS.
func (in *Injector) ReadDir(dir string) ([]string, error) {
	if err := in.step(OpReadDir); err != nil {
		return nil, err
	}
	return in.fs.ReadDir(dir)
}

// Stat implements FS.
func (in *Injector) Stat(name string) (os.FileInfo, error) {
	if err := in.step(OpStat); err != nil {
		return nil, err
	}
	return in.fs.Stat(name)
}

// Lock implements FS.
func (in *Injector) Lock(name string) (io.Closer, error) {
	if err := in.step(OpLock); err != nil {
		return nil, err
	}
	return in.fs.Lock(name)
}

// SyncDir implements FS.
func (in *Injector) SyncDir(dir string) error {
	if err := in.step(OpSyncDir); err != nil {
		return err
	}
	return in.fs.SyncDir(dir)
}

type injFile struct {
	f  File
	in *Injector
}

func (f *injFile) Read(p []byte) (int, error) {
	if err := f.in.step(OpRead); err != nil {
		return 0, err
	}
	return f.f.Read(p)
}

func (f *injFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.in.step(OpRead); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *injFile) Write(p []byte) (int, error) {
	if err := f.in.step(OpWrite); err != nil {
		n, _ := f.f.Write(p[:len(p)/2])
		return n, err
	}
	return f.f.Write(p)
}

func (f *injFile) Seek(offset int64, whence int) (int64, error) {
	if err := f.in.step(OpSeek); err != nil {
		return 0, err
	}
	return f.f.Seek(offset, whence)
}

func (f *injFile) Sync() error {
	if err := f.in.step(OpSync); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *injFile) Truncate(size int64) error {
	if err := f.in.step(OpTruncate); err != nil {
		return err
	}
	return f.f.Truncate(size)
}

func (f *injFile) Stat() (os.FileInfo, error) {
	if err := f.in.step(OpStat); err != nil {
		return nil, err
	}
	return f.f.Stat()
}

// Close always closes the underlying file (a leaked descriptor helps no
// test) but still reports an injected error.
func (f *injFile) Close() error {
	err := f.in.step(OpClose)
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	return err
}
