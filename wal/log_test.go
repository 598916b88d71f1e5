package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/vfs"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

func mustOpen(t *testing.T, fs vfs.FS, opts ...func(*Options)) *Log {
	t.Helper()
	o := testOpts(fs)
	for _, f := range opts {
		f(&o)
	}
	l, err := Open(testDir, testID, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func ents(term pb.Term, lo, hi pb.Index) []pb.Entry {
	var out []pb.Entry
	for i := lo; i < hi; i++ {
		out = append(out, pb.Entry{Term: term, Index: i, Data: []byte(fmt.Sprintf("e%d-t%d", i, term))})
	}
	return out
}

func mustSave(t *testing.T, l *Log, hs pb.HardState, es []pb.Entry) {
	t.Helper()
	if err := l.Save(hs, es, true); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func commitSnapshot(t *testing.T, l *Log, meta pb.SnapshotMeta, data []byte) {
	t.Helper()
	w, err := l.CreateSnapshot(meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestStorageContract checks the raft.Storage answers the core relies on:
// ranges, sentinel errors, the size limit, and that a slice returned by
// Entries is not changed by a later overwrite of the tail.
func TestStorageContract(t *testing.T) {
	l := mustOpen(t, vfs.NewMem())
	defer l.Close()
	if !l.IsNew() {
		t.Fatal("fresh log not IsNew")
	}
	mustSave(t, l, pb.HardState{Term: 1, Vote: 2, Commit: 3}, ents(1, 1, 11))
	if fi, _ := l.FirstIndex(); fi != 1 {
		t.Fatalf("FirstIndex = %d", fi)
	}
	if li, _ := l.LastIndex(); li != 10 {
		t.Fatalf("LastIndex = %d", li)
	}
	cases := []struct {
		name    string
		lo, hi  pb.Index
		max     uint64
		wantN   int
		wantErr error
	}{
		{"all", 1, 11, 1 << 20, 10, nil},
		{"middle", 3, 6, 1 << 20, 3, nil},
		{"empty range", 4, 4, 1 << 20, 0, nil},
		{"size limit keeps one", 1, 11, 0, 1, nil},
		{"size limit", 1, 11, 10, 2, nil}, // each Data is 5 bytes ("e1-t1"): two fit in 10
		{"past last", 5, 12, 1 << 20, 0, raft.ErrUnavailable},
		{"index 0", 0, 3, 1 << 20, 0, raft.ErrCompacted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.Entries(tc.lo, tc.hi, tc.max)
			if !errors.Is(err, tc.wantErr) || len(got) != tc.wantN {
				t.Fatalf("Entries(%d,%d,%d) = %d entries, %v; want %d, %v", tc.lo, tc.hi, tc.max, len(got), err, tc.wantN, tc.wantErr)
			}
			for i, e := range got {
				if e.Index != tc.lo+pb.Index(i) {
					t.Fatalf("entry %d has index %d", i, e.Index)
				}
			}
		})
	}
	if _, err := l.Term(11); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("Term(11) err = %v", err)
	}
	if tm, err := l.Term(0); err != nil || tm != 0 {
		t.Fatalf("Term(0) = %d, %v", tm, err)
	}
	before, _ := l.Entries(5, 11, 1<<20)
	saved := slices.Clone(before)
	// A new leader overwrites 7.. with term 2.
	mustSave(t, l, pb.HardState{Term: 2, Commit: 3}, ents(2, 7, 9))
	if li, _ := l.LastIndex(); li != 8 {
		t.Fatalf("LastIndex after overwrite = %d, want 8", li)
	}
	if tm, _ := l.Term(7); tm != 2 {
		t.Fatalf("Term(7) = %d, want 2", tm)
	}
	if tm, _ := l.Term(6); tm != 1 {
		t.Fatalf("Term(6) = %d, want 1", tm)
	}
	for i := range before {
		if before[i].Term != saved[i].Term || !bytes.Equal(before[i].Data, saved[i].Data) {
			t.Fatalf("a slice returned before the overwrite changed at %d", i)
		}
	}
	if err := l.Save(pb.HardState{}, ents(2, 10, 11), true); err == nil {
		t.Fatal("Save leaving a gap succeeded")
	}
	if err := l.Save(pb.HardState{}, []pb.Entry{{Index: 9, Term: 2}, {Index: 11, Term: 2}}, true); err == nil {
		t.Fatal("Save of non-contiguous entries succeeded")
	}
	if li, _ := l.LastIndex(); li != 8 {
		t.Fatalf("rejected Saves changed the log: last %d", li)
	}
}

// TestSnapshots checks SaveSnapshot's two cases (a local snapshot keeps the
// entries after it; a received one that disagrees replaces the log), the
// errors around it, and that all of it survives a reopen.
func TestSnapshots(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, fs)
	mustSave(t, l, pb.HardState{Term: 1, Commit: 8}, ents(1, 1, 11))
	cs := pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}
	m5 := pb.SnapshotMeta{Index: 5, Term: 1, ConfState: cs}
	if err := l.SaveSnapshot(m5); err == nil {
		t.Fatal("SaveSnapshot without a snapshot file succeeded")
	}
	commitSnapshot(t, l, m5, []byte("state@5"))
	if err := l.SaveSnapshot(m5); err != nil {
		t.Fatal(err)
	}
	if fi, _ := l.FirstIndex(); fi != 6 {
		t.Fatalf("FirstIndex = %d, want 6", fi)
	}
	if li, _ := l.LastIndex(); li != 10 {
		t.Fatalf("LastIndex = %d, want 10 (entries after a local snapshot are kept)", li)
	}
	if tm, err := l.Term(5); err != nil || tm != 1 {
		t.Fatalf("Term(5) = %d, %v", tm, err)
	}
	if _, err := l.Term(4); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Term(4) err = %v", err)
	}
	if _, err := l.Entries(5, 7, 100); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries(5,7) err = %v", err)
	}
	if err := l.SaveSnapshot(m5); !errors.Is(err, ErrSnapshotOutOfDate) {
		t.Fatalf("repeated SaveSnapshot err = %v", err)
	}
	// A snapshot from a leader whose log disagrees at 8: replaces the log.
	m8 := pb.SnapshotMeta{Index: 8, Term: 3, ConfState: pb.ConfState{Voters: []pb.NodeID{1, 2}}}
	commitSnapshot(t, l, m8, []byte("state@8"))
	if err := l.SaveSnapshot(m8); err != nil {
		t.Fatal(err)
	}
	if li, _ := l.LastIndex(); li != 8 {
		t.Fatalf("LastIndex = %d, want 8 (log replaced)", li)
	}
	_, gotCS, _ := l.InitialState()
	if !confEqual(gotCS, m8.ConfState) {
		t.Fatalf("ConfState = %v, want the snapshot's", gotCS)
	}
	mustSave(t, l, pb.HardState{Term: 3, Commit: 9}, ents(3, 9, 12))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, fs)
	defer l.Close()
	snap, _ := l.Snapshot()
	if snap.Index != 8 || snap.Term != 3 {
		t.Fatalf("Snapshot after reopen = %+v", snap)
	}
	if fi, _ := l.FirstIndex(); fi != 9 {
		t.Fatalf("FirstIndex after reopen = %d", fi)
	}
	got, err := l.Entries(9, 12, 1<<20)
	if err != nil || len(got) != 3 || got[0].Term != 3 {
		t.Fatalf("Entries after reopen: %v, %v", got, err)
	}
	meta, rc, size, err := l.OpenSnapshot(8)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != "state@8" || size != 7 || meta.Term != 3 {
		t.Fatalf("OpenSnapshot(8) = %+v %q %d %v", meta, data, size, err)
	}
}

// TestReopenAfterRotationAndCompaction writes across many small segments,
// snapshots and compacts, and checks that files were removed and that the
// state after a reopen is the same.
func TestReopenAfterRotationAndCompaction(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, fs)
	for i := pb.Index(1); i <= 200; i += 10 {
		mustSave(t, l, pb.HardState{Term: 1, Commit: i}, ents(1, i, i+10))
	}
	if err := l.SetConfState(pb.ConfState{Voters: []pb.NodeID{1, 2, 3}, Learners: []pb.NodeID{4}}); err != nil {
		t.Fatal(err)
	}
	segsBefore := countSegments(t, fs)
	if segsBefore < 10 {
		t.Fatalf("only %d segments: rotation not exercised", segsBefore)
	}
	m := pb.SnapshotMeta{Index: 150, Term: 1, ConfState: pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}}
	commitSnapshot(t, l, m, []byte("s"))
	if err := l.SaveSnapshot(m); err != nil {
		t.Fatal(err)
	}
	if err := l.Compact(151); err == nil {
		t.Fatal("Compact beyond the snapshot succeeded")
	}
	if err := l.Compact(150); err != nil {
		t.Fatal(err)
	}
	if after := countSegments(t, fs); after >= segsBefore {
		t.Fatalf("Compact removed nothing: %d -> %d segments", segsBefore, after)
	}
	want := newModel()
	want.snap, want.last = m, 200
	want.hs = pb.HardState{Term: 1, Commit: 191}
	want.cs = pb.ConfState{Voters: []pb.NodeID{1, 2, 3}, Learners: []pb.NodeID{4}}
	for _, e := range ents(1, 151, 201) {
		want.log[e.Index] = e
	}
	if d := want.diff(l); d != "" {
		t.Fatal(d)
	}
	l.Close()
	l = mustOpen(t, fs)
	defer l.Close()
	if d := want.diff(l); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
}

func countSegments(t *testing.T, fs vfs.FS) int {
	names, err := fs.ReadDir(testDir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		if _, _, ok := parseSegmentName(name); ok {
			n++
		}
	}
	return n
}

func segmentPaths(t *testing.T, fs vfs.FS) []string {
	names, _ := fs.ReadDir(testDir)
	var out []string
	for _, name := range names {
		if _, _, ok := parseSegmentName(name); ok {
			out = append(out, filepath.Join(testDir, name))
		}
	}
	return out
}

func TestLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   vfs.FS
		dir  string
	}{
		{"mem", vfs.NewMem(), testDir},
		{"disk", vfs.Default, t.TempDir()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts(tc.fs)
			l, err := Open(tc.dir, testID, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Open(tc.dir, testID, o); !errors.Is(err, ErrLocked) {
				t.Fatalf("second Open = %v, want ErrLocked", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l, err = Open(tc.dir, testID, o)
			if err != nil {
				t.Fatalf("Open after Close: %v", err)
			}
			l.Close()
		})
	}
}

func TestIdentity(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, fs)
	mustSave(t, l, pb.HardState{Term: 1}, ents(1, 1, 3))
	l.Close()
	for _, id := range []Identity{{ClusterID: testID.ClusterID + 1, MemberID: testID.MemberID}, {ClusterID: testID.ClusterID, MemberID: 8}} {
		if _, err := Open(testDir, id, testOpts(fs)); !errors.Is(err, ErrIdentityMismatch) {
			t.Fatalf("Open as %+v = %v, want ErrIdentityMismatch", id, err)
		}
	}
	// Log files without an identity file: not adopted.
	if err := fs.Remove(filepath.Join(testDir, identityFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(testDir, testID, testOpts(fs)); err == nil {
		t.Fatal("Open of a directory with segments but no identity succeeded")
	}
	// A damaged identity file.
	f, _ := fs.Create(filepath.Join(testDir, identityFile))
	b := encodeIdentity(testID)
	b[15] ^= 1
	f.Write(b)
	f.Close()
	if _, err := Open(testDir, testID, testOpts(fs)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a damaged identity = %v, want ErrCorrupt", err)
	}
}

func appendToFile(t *testing.T, fs vfs.FS, path string, data []byte) {
	t.Helper()
	f, err := fs.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	f.Sync()
	f.Close()
}

func flipByte(t *testing.T, fs vfs.FS, path string, off int64) {
	t.Helper()
	f, err := fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	f.ReadAt(b[:], off)
	b[0] ^= 0x40
	f.Seek(off, io.SeekStart)
	f.Write(b[:])
	f.Sync()
	f.Close()
}

func fileSize(t *testing.T, fs vfs.FS, path string) int64 {
	fi, err := fs.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestTornTailIsTruncated: a partial record at the end of the last segment
// (a crash mid-write) is cut off silently and the log keeps working.
func TestTornTailIsTruncated(t *testing.T) {
	for _, tail := range [][]byte{
		{0x12, 0x34}, // a few bytes of a header
		appendRecord(nil, recEntry, 0, make([]byte, 40))[:50], // a record cut short
		make([]byte, 100), // zeros (preallocated or a hole)
	} {
		fs := vfs.NewMem()
		l := mustOpen(t, fs, func(o *Options) { o.SegmentSize = 1 << 20 })
		mustSave(t, l, pb.HardState{Term: 1}, ents(1, 1, 6))
		l.Close()
		seg := segmentPaths(t, fs)[0]
		good := fileSize(t, fs, seg)
		appendToFile(t, fs, seg, tail)
		l = mustOpen(t, fs, func(o *Options) { o.SegmentSize = 1 << 20 })
		if li, _ := l.LastIndex(); li != 5 {
			t.Fatalf("LastIndex = %d", li)
		}
		want := good
		if allZero(tail) {
			want += int64(len(tail)) // kept as preallocated space, written over next
		}
		if sz := fileSize(t, fs, seg); sz != want {
			t.Fatalf("segment is %d bytes after recovery, want %d", sz, want)
		}
		mustSave(t, l, pb.HardState{}, ents(1, 6, 7))
		l.Close()
		l = mustOpen(t, fs)
		if li, _ := l.LastIndex(); li != 6 {
			t.Fatalf("LastIndex after append = %d", li)
		}
		l.Close()
	}
}

// TestFirstSegmentIsZeroFilledAhead: a segment that was not preallocated
// grows a zeroStep of zeros at a time ahead of its writes (so most
// fdatasyncs change no file size), never past SegmentSize, and reopens to
// the same records, writing on over its zeros.
func TestFirstSegmentIsZeroFilledAhead(t *testing.T) {
	fs := vfs.NewMem()
	prealloc := func(o *Options) { o.NoPreallocate = false; o.SegmentSize = 3*zeroStep + zeroStep/2 }
	l := mustOpen(t, fs, prealloc)
	mustSave(t, l, pb.HardState{Term: 1}, ents(1, 1, 2))
	seg := segmentPaths(t, fs)[0]
	if sz := fileSize(t, fs, seg); sz != zeroStep {
		t.Fatalf("first segment is %d bytes after one small save, want %d", sz, zeroStep)
	}
	big := func(lo, hi pb.Index) []pb.Entry {
		es := ents(1, lo, hi)
		for i := range es {
			es[i].Data = make([]byte, 64<<10)
		}
		return es
	}
	mustSave(t, l, pb.HardState{}, big(2, 20)) // ~1.1 MiB: past the first step
	if sz := fileSize(t, fs, seg); sz != 2*zeroStep {
		t.Fatalf("segment is %d bytes after 1.1 MiB of entries, want %d", sz, 2*zeroStep)
	}
	mustSave(t, l, pb.HardState{}, big(20, 50)) // past SegmentSize: one more segment
	if sz := fileSize(t, fs, seg); sz > 3*zeroStep+zeroStep/2+(64<<10)+1024 {
		t.Fatalf("segment grew to %d bytes, past SegmentSize and its last record", sz)
	}
	l.Close()
	l = mustOpen(t, fs, prealloc)
	if li, _ := l.LastIndex(); li != 49 {
		t.Fatalf("LastIndex after reopen = %d, want 49", li)
	}
	mustSave(t, l, pb.HardState{}, ents(1, 50, 60))
	l.Close()
	l = mustOpen(t, fs, prealloc)
	defer l.Close()
	got, err := l.Entries(45, 60, math.MaxUint64)
	if err != nil || len(got) != 15 || string(got[14].Data) != "e59-t1" {
		t.Fatalf("Entries(45, 60) after two reopens: %d entries, err %v", len(got), err)
	}
}

// TestCorruptionIsReported: damage to durable data is an error naming the
// file and offset, in an older segment or in the last one when a record
// written after the damaged one vouches that it had been synced. Repair
// mode truncates there instead.
func TestCorruptionIsReported(t *testing.T) {
	t.Run("older segment", func(t *testing.T) {
		fs := vfs.NewMem()
		l := mustOpen(t, fs)
		for i := pb.Index(1); i <= 60; i += 5 {
			mustSave(t, l, pb.HardState{Term: 1}, ents(1, i, i+5))
		}
		l.Close()
		segs := segmentPaths(t, fs)
		if len(segs) < 3 {
			t.Fatalf("%d segments", len(segs))
		}
		victim := segs[1]
		off := fileSize(t, fs, victim) - 3
		flipByte(t, fs, victim, off)
		_, err := Open(testDir, testID, testOpts(fs))
		var ce *CorruptionError
		if !errors.As(err, &ce) || ce.File != victim || ce.Offset <= 0 || ce.Offset > off {
			t.Fatalf("Open = %v, want a CorruptionError in %s before %d", err, victim, off)
		}
		l = mustOpen(t, fs, func(o *Options) { o.Repair = true })
		defer l.Close()
		li, _ := l.LastIndex()
		if li < 1 || li >= 60 {
			t.Fatalf("after repair LastIndex = %d, want a truncated log", li)
		}
		if got := len(segmentPaths(t, fs)); got != 2 {
			t.Fatalf("after repair %d segments, want 2", got)
		}
	})
	t.Run("last segment, later record synced", func(t *testing.T) {
		fs := vfs.NewMem()
		l := mustOpen(t, fs, func(o *Options) { o.SegmentSize = 1 << 20 })
		mustSave(t, l, pb.HardState{Term: 1}, ents(1, 1, 4))
		mustSave(t, l, pb.HardState{Term: 2}, ents(2, 4, 8))
		l.Close()
		seg := segmentPaths(t, fs)[0]
		flipByte(t, fs, seg, 60) // inside the first batch
		_, err := Open(testDir, testID, testOpts(fs))
		var ce *CorruptionError
		if !errors.As(err, &ce) || ce.File != seg || ce.Offset > 60 {
			t.Fatalf("Open = %v, want a CorruptionError in %s", err, seg)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatal("CorruptionError does not match ErrCorrupt")
		}
	})
}

// hookFS runs a hook before each file Sync.
type hookFS struct {
	vfs.FS
	beforeSync func()
}

type hookFile struct {
	vfs.File
	h *hookFS
}

func (h *hookFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := h.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return hookFile{f, h}, nil
}

func (f hookFile) Sync() error {
	if f.h.beforeSync != nil {
		f.h.beforeSync()
	}
	return f.File.Sync()
}

// TestGroupCommit: while one fsync is in flight, the Saves that arrive
// share the next one, and none of them returns before that one is done.
func TestGroupCommit(t *testing.T) {
	const n = 16
	h := &hookFS{FS: vfs.NewMem()}
	l := mustOpen(t, h, func(o *Options) { o.SegmentSize = 1 << 20 }) // no rotation
	defer l.Close()
	mustSave(t, l, pb.HardState{Term: 1}, nil) // creates the segment
	var syncs atomic.Int64
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h.beforeSync = func() {
		if syncs.Add(1) == 1 {
			entered <- struct{}{}
			<-release
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	var returnedEarly atomic.Int64
	wg.Add(1)
	go func() { // the first Save becomes the flusher and blocks in fsync
		defer wg.Done()
		errs <- l.Save(pb.HardState{Term: 1, Commit: 1}, nil, true)
	}()
	<-entered
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Save(pb.HardState{Term: 2, Commit: pb.Index(100 + i)}, nil, true)
			if syncs.Load() < 2 {
				returnedEarly.Add(1)
			}
			errs <- err
		}()
	}
	// Wait until all n Saves have appended their records.
	recSize := func(hs pb.HardState) int64 {
		b, _ := hs.AppendBinary(nil)
		return int64(headerSize + len(b))
	}
	want := recSize(pb.HardState{Term: 1, Commit: 1})
	for i := 0; i < n; i++ {
		want += recSize(pb.HardState{Term: 2, Commit: pb.Index(100 + i)})
	}
	waitFor(t, func() bool {
		l.wmu.Lock()
		defer l.wmu.Unlock()
		return l.appended-l.synced == want
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := syncs.Load(); got != 2 {
		t.Fatalf("%d fsyncs for 1+%d concurrent Saves, want 2", got, n)
	}
	if returnedEarly.Load() != 0 {
		t.Fatalf("%d Saves returned before their fsync", returnedEarly.Load())
	}
}

// TestConcurrentReaders runs the Storage readers against a writer that
// appends, overwrites and snapshots, for the race detector, checking each
// answer is self-consistent.
func TestConcurrentReaders(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), func(o *Options) { o.SegmentSize = 64 << 10 })
	defer l.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				fi, _ := l.FirstIndex()
				li, _ := l.LastIndex()
				got, err := l.Entries(fi, li+1, 1<<20)
				if err != nil && !errors.Is(err, raft.ErrCompacted) && !errors.Is(err, raft.ErrUnavailable) {
					t.Error(err)
					return
				}
				for i := 1; i < len(got); i++ {
					if got[i].Index != got[i-1].Index+1 {
						t.Errorf("non-contiguous entries %d, %d", got[i-1].Index, got[i].Index)
						return
					}
				}
				l.Term(li)
				l.InitialState()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	term := pb.Term(1)
	for i := 0; i < 300; i++ {
		li, _ := l.LastIndex()
		fi, _ := l.FirstIndex()
		start := li + 1
		if rng.IntN(4) == 0 && li >= fi+2 {
			start, term = li-1, term+1
		}
		mustSave(t, l, pb.HardState{Term: term}, ents(term, start, start+3))
		if i%50 == 49 {
			li, _ := l.LastIndex()
			tm, _ := l.Term(li - 2)
			m := pb.SnapshotMeta{Index: li - 2, Term: tm}
			commitSnapshot(t, l, m, []byte("x"))
			if err := l.SaveSnapshot(m); err != nil {
				t.Fatal(err)
			}
			if err := l.Compact(m.Index); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached before the deadline")
		}
		runtime.Gosched()
	}
}
