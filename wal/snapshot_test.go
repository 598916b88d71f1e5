package wal

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/internal/vfs"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestSnapshotFiles: streamed in many writes and read back whole; Abort
// leaves nothing; only the newest KeepSnapshots (plus the one the log
// records) are kept; leftovers of an interrupted write are removed on
// Open; damaged data is reported when the reader reaches the end.
func TestSnapshotFiles(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, fs)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	m1 := pb.SnapshotMeta{Index: 10, Term: 2, ConfState: pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}}
	w, err := l.CreateSnapshot(m1)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(big); off += 1000 {
		if _, err := w.Write(big[off:min(off+1000, len(big))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	meta, rc, size, err := l.OpenSnapshot(10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, big) || size != int64(len(big)) || !confEqual(meta.ConfState, m1.ConfState) {
		t.Fatalf("read back %d bytes (size %d), meta %+v, err %v", len(got), size, meta, err)
	}
	if _, ok := l.LatestSnapshot(); ok {
		t.Fatal("LatestSnapshot reports a snapshot not recorded with SaveSnapshot")
	}

	// Abort leaves no file.
	w, _ = l.CreateSnapshot(pb.SnapshotMeta{Index: 11, Term: 2})
	w.Write([]byte("partial"))
	w.Abort()
	if _, _, _, err := l.OpenSnapshot(11); err == nil {
		t.Fatal("aborted snapshot can be opened")
	}
	if names, _ := fs.ReadDir(filepath.Join(testDir, snapDirName)); len(names) != 1 {
		t.Fatalf("snap dir after Abort: %v", names)
	}

	// Record 10, then commit 20, 30, 40 with KeepSnapshots 2: 10 stays (recorded), 20 goes.
	mustSave(t, l, pb.HardState{Term: 2}, ents(2, 1, 11))
	if err := l.SaveSnapshot(m1); err != nil {
		t.Fatal(err)
	}
	for _, i := range []pb.Index{20, 30, 40} {
		commitSnapshot(t, l, pb.SnapshotMeta{Index: i, Term: 2}, []byte("s"))
	}
	for i, want := range map[pb.Index]bool{10: true, 20: false, 30: true, 40: true} {
		if _, err := l.findSnapshot(i); (err == nil) != want {
			t.Errorf("snapshot %d present = %v, want %v", i, err == nil, want)
		}
	}
	// An interrupted write leaves a temp file: Open removes it.
	w, _ = l.CreateSnapshot(pb.SnapshotMeta{Index: 50, Term: 2})
	w.Write([]byte("never committed"))
	l.Close()
	l = mustOpen(t, fs)
	if names, _ := fs.ReadDir(filepath.Join(testDir, snapDirName)); len(names) != 3 {
		t.Fatalf("snap dir after reopen: %v", names)
	}
	if m, ok := l.LatestSnapshot(); !ok || m.Index != 10 {
		t.Fatalf("LatestSnapshot = %+v, %v", m, ok)
	}
	l.Close()

	// Damage one data byte of snapshot 10: the reader fails at the end.
	path := filepath.Join(testDir, snapDirName, snapName(10, 2))
	flipByte(t, fs, path, 1000)
	l = mustOpen(t, fs)
	defer l.Close()
	_, rc, _, err = l.OpenSnapshot(10)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a damaged snapshot = %v, want ErrCorrupt", err)
	}
}

// TestMissingSnapshotFile: a log that records a snapshot whose file is gone
// refuses to open rather than start without the state it needs.
func TestMissingSnapshotFile(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, fs)
	m := pb.SnapshotMeta{Index: 5, Term: 1}
	commitSnapshot(t, l, m, []byte("x"))
	if err := l.SaveSnapshot(m); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := fs.Remove(filepath.Join(testDir, snapDirName, snapName(5, 1))); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(testDir, testID, testOpts(fs)); err == nil {
		t.Fatal("Open succeeded without the recorded snapshot's file")
	}
}
