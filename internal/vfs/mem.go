package vfs

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemFS is an in-memory filesystem that can simulate a crash (power loss).
//
// It tracks two views: the current one (what reads see) and the durable one
// (what survives Crash). A file's bytes become durable on File.Sync; a name
// (creation, rename, removal, mkdir) becomes durable on SyncDir of the
// directory holding it. Until then each change sits in a pending list, and
// Crash decides its fate at random:
//
//   - each unsynced write is kept, dropped, or torn (only a prefix of it
//     lands); a dropped write below a kept one leaves a hole of zeros, as a
//     real disk can when pages are written back out of order;
//   - each unsynced truncation is kept or dropped;
//   - each unsynced directory change is kept or dropped (in order, each
//     independently); files whose directory did not survive are gone.
//
// Create one with NewMem. Safe for concurrent use.
type MemFS struct {
	mu    sync.Mutex
	gen   uint64              // bumped by Crash: handles of older generations are dead
	cur   map[string]*memNode // current namespace
	dur   map[string]*memNode // durable namespace
	ops   []nsOp              // unsynced namespace changes, oldest first
	locks map[string]bool
}

type memNode struct {
	dir     bool
	data    []byte   // current content
	synced  []byte   // durable content
	pending []dataOp // unsynced changes since the last Sync, oldest first
	mtime   time.Time
}

type dataOp struct {
	trunc bool
	off   int64  // write offset, or the new size for a truncation
	data  []byte // write payload (a private copy)
}

type nsKind uint8

const (
	nsCreate nsKind = iota // name -> node
	nsRemove               // name
	nsRename               // name -> newname
)

type nsOp struct {
	kind          nsKind
	name, newname string
	node          *memNode
}

// dirs returns the directories whose SyncDir makes op durable.
func (op nsOp) dirs() []string {
	if op.kind == nsRename {
		return []string{filepath.Dir(op.name), filepath.Dir(op.newname)}
	}
	return []string{filepath.Dir(op.name)}
}

// NewMem returns an empty in-memory filesystem.
func NewMem() *MemFS {
	return &MemFS{cur: map[string]*memNode{}, dur: map[string]*memNode{}, locks: map[string]bool{}}
}

func clean(name string) string { return filepath.Clean(name) }

// isRoot reports whether name has no parent (it always exists).
func isRoot(name string) bool { return filepath.Dir(name) == name }

func (fs *MemFS) parentOK(ns map[string]*memNode, name string) bool {
	p := filepath.Dir(name)
	if p == name || isRoot(p) {
		return true
	}
	n, ok := ns[p]
	return ok && n.dir
}

func applyNS(ns map[string]*memNode, op nsOp) {
	switch op.kind {
	case nsCreate:
		ns[op.name] = op.node
	case nsRemove:
		delete(ns, op.name)
	case nsRename:
		if n, ok := ns[op.name]; ok && n == op.node {
			delete(ns, op.name)
			ns[op.newname] = n
		}
	}
}

func (fs *MemFS) record(op nsOp) {
	applyNS(fs.cur, op)
	fs.ops = append(fs.ops, op)
}

// Crash simulates a power loss: every open handle dies, every lock is
// released, and each unsynced change survives or not as rng decides (see
// the type's comment). The same seed and the same history give the same
// result.
func (fs *MemFS) Crash(rng *rand.Rand) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ns := make(map[string]*memNode, len(fs.dur))
	for k, v := range fs.dur {
		ns[k] = v
	}
	for _, op := range fs.ops {
		if rng.IntN(2) == 0 {
			applyNS(ns, op)
		}
	}
	// Drop entries whose parent directory did not survive, parents first.
	names := make([]string, 0, len(ns))
	for k := range ns {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		return len(names[i]) < len(names[j]) || (len(names[i]) == len(names[j]) && names[i] < names[j])
	})
	for _, k := range names {
		if !fs.parentOK(ns, k) {
			delete(ns, k)
		}
	}
	for _, k := range names {
		n, ok := ns[k]
		if !ok || n.dir {
			continue
		}
		res := append([]byte(nil), n.synced...)
		for _, op := range n.pending {
			if op.trunc {
				if rng.IntN(2) == 0 {
					res = resize(res, op.off)
				}
				continue
			}
			data := op.data
			switch rng.IntN(3) {
			case 0: // kept whole
			case 1: // dropped
				continue
			case 2: // torn: only a prefix reached the disk
				data = data[:rng.IntN(len(data)+1)]
			}
			res = writeAt(res, op.off, data)
		}
		n.data, n.synced, n.pending = res, append([]byte(nil), res...), nil
	}
	fs.cur = ns
	fs.dur = make(map[string]*memNode, len(ns))
	for k, v := range ns {
		fs.dur[k] = v
	}
	fs.ops = nil
	fs.locks = map[string]bool{}
	fs.gen++
}

func resize(b []byte, size int64) []byte {
	if int64(len(b)) >= size {
		return b[:size]
	}
	return append(b, make([]byte, size-int64(len(b)))...)
}

func writeAt(b []byte, off int64, p []byte) []byte {
	if end := off + int64(len(p)); end > int64(len(b)) {
		b = resize(b, end)
	}
	copy(b[off:], p)
	return b
}

func pathErr(op, name string, err error) error { return &os.PathError{Op: op, Path: name, Err: err} }

// Create implements FS.
func (fs *MemFS) Create(name string) (File, error) {
	return fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

// Open implements FS.
func (fs *MemFS) Open(name string) (File, error) { return fs.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile implements FS.
func (fs *MemFS) OpenFile(name string, flag int, _ os.FileMode) (File, error) {
	name = clean(name)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, ok := fs.cur[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pathErr("open", name, os.ErrExist)
	case ok && n.dir && flag&(os.O_WRONLY|os.O_RDWR) != 0:
		return nil, pathErr("open", name, errors.New("is a directory"))
	case !ok && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, os.ErrNotExist)
	case !ok:
		if !fs.parentOK(fs.cur, name) {
			return nil, pathErr("open", name, os.ErrNotExist)
		}
		n = &memNode{mtime: time.Now()}
		fs.record(nsOp{kind: nsCreate, name: name, node: n})
	}
	f := &memFile{fs: fs, node: n, name: name, gen: fs.gen,
		read:   flag&os.O_WRONLY == 0,
		write:  flag&(os.O_WRONLY|os.O_RDWR) != 0,
		append: flag&os.O_APPEND != 0}
	if flag&os.O_TRUNC != 0 && f.write && len(n.data) > 0 {
		n.truncate(0)
	}
	return f, nil
}

func (n *memNode) truncate(size int64) {
	n.data = resize(n.data, size)
	n.pending = append(n.pending, dataOp{trunc: true, off: size})
	n.mtime = time.Now()
}

// Remove implements FS.
func (fs *MemFS) Remove(name string) error {
	name = clean(name)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, ok := fs.cur[name]
	if !ok {
		return pathErr("remove", name, os.ErrNotExist)
	}
	if n.dir && len(fs.children(name)) > 0 {
		return pathErr("remove", name, errors.New("directory not empty"))
	}
	fs.record(nsOp{kind: nsRemove, name: name})
	return nil
}

// Rename implements FS.
func (fs *MemFS) Rename(oldname, newname string) error {
	oldname, newname = clean(oldname), clean(newname)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, ok := fs.cur[oldname]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: os.ErrNotExist}
	}
	if t, ok := fs.cur[newname]; ok && t.dir {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: errors.New("target is a directory")}
	}
	if !fs.parentOK(fs.cur, newname) {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: os.ErrNotExist}
	}
	if oldname == newname {
		return nil
	}
	fs.record(nsOp{kind: nsRename, name: oldname, newname: newname, node: n})
	return nil
}

// MkdirAll implements FS.
func (fs *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	dir = clean(dir)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var missing []string
	for d := dir; !isRoot(d); d = filepath.Dir(d) {
		if n, ok := fs.cur[d]; ok {
			if !n.dir {
				return pathErr("mkdir", d, errors.New("not a directory"))
			}
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		fs.record(nsOp{kind: nsCreate, name: missing[i], node: &memNode{dir: true, mtime: time.Now()}})
	}
	return nil
}

func (fs *MemFS) children(dir string) []string {
	var names []string
	for k := range fs.cur {
		if k != dir && filepath.Dir(k) == dir {
			names = append(names, filepath.Base(k))
		}
	}
	sort.Strings(names)
	return names
}

// ReadDir implements FS.
func (fs *MemFS) ReadDir(dir string) ([]string, error) {
	dir = clean(dir)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if n, ok := fs.cur[dir]; !isRoot(dir) && (!ok || !n.dir) {
		return nil, pathErr("readdir", dir, os.ErrNotExist)
	}
	return fs.children(dir), nil
}

// Stat implements FS.
func (fs *MemFS) Stat(name string) (os.FileInfo, error) {
	name = clean(name)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if isRoot(name) {
		return memInfo{name: name, dir: true}, nil
	}
	n, ok := fs.cur[name]
	if !ok {
		return nil, pathErr("stat", name, os.ErrNotExist)
	}
	return n.info(name), nil
}

// SyncDir implements FS: the pending changes to names in dir become durable.
func (fs *MemFS) SyncDir(dir string) error {
	dir = clean(dir)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if n, ok := fs.cur[dir]; !isRoot(dir) && (!ok || !n.dir) {
		return pathErr("syncdir", dir, os.ErrNotExist)
	}
	kept := fs.ops[:0]
	for _, op := range fs.ops {
		touches := false
		for _, d := range op.dirs() {
			touches = touches || d == dir
		}
		if touches {
			applyNS(fs.dur, op)
		} else {
			kept = append(kept, op)
		}
	}
	fs.ops = kept
	return nil
}

// Lock implements FS. Locks live in memory and do not survive Crash.
func (fs *MemFS) Lock(name string) (io.Closer, error) {
	name = clean(name)
	f, err := fs.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	f.Close()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.locks[name] {
		return nil, fmt.Errorf("vfs: lock %s: %w", name, ErrLocked)
	}
	fs.locks[name] = true
	return &memLock{fs: fs, name: name, gen: fs.gen}, nil
}

type memLock struct {
	fs   *MemFS
	name string
	gen  uint64
	once sync.Once
}

func (l *memLock) Close() error {
	l.once.Do(func() {
		l.fs.mu.Lock()
		defer l.fs.mu.Unlock()
		if l.fs.gen == l.gen {
			delete(l.fs.locks, l.name)
		}
	})
	return nil
}

// String lists the current namespace with sizes, for test failure output.
func (fs *MemFS) String() string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	names := make([]string, 0, len(fs.cur))
	for k, n := range fs.cur {
		if n.dir {
			names = append(names, k+"/")
		} else {
			names = append(names, fmt.Sprintf("%s (%d bytes, %d unsynced ops)", k, len(n.data), len(n.pending)))
		}
	}
	sort.Strings(names)
	return strings.Join(names, "\n")
}

type memInfo struct {
	name  string
	size  int64
	dir   bool
	mtime time.Time
}

func (n *memNode) info(name string) memInfo {
	return memInfo{name: filepath.Base(name), size: int64(len(n.data)), dir: n.dir, mtime: n.mtime}
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return i.mtime }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() os.FileMode {
	if i.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}

type memFile struct {
	fs                  *MemFS
	node                *memNode
	name                string
	gen                 uint64
	pos                 int64
	read, write, append bool
	closed              bool
}

var errClosed = os.ErrClosed

// check is called with fs.mu held.
func (f *memFile) check(op string) error {
	if f.closed {
		return pathErr(op, f.name, errClosed)
	}
	if f.gen != f.fs.gen {
		return pathErr(op, f.name, ErrCrashed)
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read"); err != nil {
		return 0, err
	}
	if !f.read {
		return 0, pathErr("read", f.name, errors.New("file not open for reading"))
	}
	if f.pos >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[f.pos:])
	f.pos += int64(n)
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read"); err != nil {
		return 0, err
	}
	if !f.read {
		return 0, pathErr("read", f.name, errors.New("file not open for reading"))
	}
	if off < 0 {
		return 0, pathErr("read", f.name, errors.New("negative offset"))
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write"); err != nil {
		return 0, err
	}
	if !f.write {
		return 0, pathErr("write", f.name, errors.New("file not open for writing"))
	}
	if f.append {
		f.pos = int64(len(f.node.data))
	}
	f.node.data = writeAt(f.node.data, f.pos, p)
	f.node.pending = append(f.node.pending, dataOp{off: f.pos, data: append([]byte(nil), p...)})
	f.node.mtime = time.Now()
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *memFile) Seek(offset int64, whence int) (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("seek"); err != nil {
		return 0, err
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.pos + offset
	case io.SeekEnd:
		abs = int64(len(f.node.data)) + offset
	default:
		return 0, pathErr("seek", f.name, errors.New("invalid whence"))
	}
	if abs < 0 {
		return 0, pathErr("seek", f.name, errors.New("negative position"))
	}
	f.pos = abs
	return abs, nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync"); err != nil {
		return err
	}
	f.node.synced = append(f.node.synced[:0:0], f.node.data...)
	f.node.pending = nil
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("truncate"); err != nil {
		return err
	}
	if !f.write {
		return pathErr("truncate", f.name, errors.New("file not open for writing"))
	}
	if size < 0 {
		return pathErr("truncate", f.name, errors.New("negative size"))
	}
	f.node.truncate(size)
	return nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("stat"); err != nil {
		return nil, err
	}
	return f.node.info(f.name), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return pathErr("close", f.name, errClosed)
	}
	f.closed = true
	return nil
}
