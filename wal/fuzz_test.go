package wal

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/internal/vfs"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// FuzzDecodeRecord: decoding arbitrary bytes never panics, never accepts a
// record it could not have written, and agrees with the encoder on every
// record it accepts (the naive property: re-encoding gives the same bytes).
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, recEntry, 0, []byte("hello")))
	f.Add(appendRecord(nil, recHardState, 0, nil))
	f.Add(appendRecord(appendRecord(nil, recSegment, 0, make([]byte, 17)), recEntry, 37, []byte{1, 2, 3}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 2}) // a huge length
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := decodeRecord(b, 1<<40)
		if err != nil {
			return
		}
		if n > len(b) || n != headerSize+len(r.payload) {
			t.Fatalf("decoded size %d of %d bytes", n, len(b))
		}
		if again := appendRecord(nil, r.typ, r.synced, r.payload); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
		s := scanSegment(b)
		if s.end > int64(len(b)) || (len(s.recs) > 0 && s.recs[0].off != 0) {
			t.Fatalf("scan end %d of %d", s.end, len(b))
		}
	})
}

// validSegment returns the bytes of a real segment, for fuzz seeds.
func validSegment(t testing.TB) []byte {
	mem := vfs.NewMem()
	l, err := Open(testDir, testID, Options{FS: mem, NoPreallocate: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := pb.Index(1); i <= 6; i += 3 {
		if err := l.Save(pb.HardState{Term: 1, Commit: i}, ents(1, i, i+3), true); err != nil {
			t.Fatal(err)
		}
	}
	l.SetConfState(pb.ConfState{Voters: []pb.NodeID{1, 2}})
	l.Close()
	f, err := mem.Open(filepath.Join(testDir, segmentName(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	return b
}

// FuzzOpen: Open of a directory holding arbitrary segment files (one or
// two, under valid names) never panics and allocates no more than the
// files' sizes; when it succeeds the Storage answers are consistent and the
// log takes a write.
func FuzzOpen(f *testing.F) {
	seg := validSegment(f)
	f.Add(seg, []byte(nil))
	f.Add(seg[:len(seg)-5], []byte(nil))
	f.Add(seg, seg)
	mid := bytes.Clone(seg)
	mid[len(mid)/2] ^= 1
	f.Add(mid, []byte(nil))
	f.Add([]byte{}, []byte{1})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		mem := vfs.NewMem()
		mem.MkdirAll(testDir, 0o755)
		write := func(name string, data []byte) {
			w, _ := mem.Create(filepath.Join(testDir, name))
			w.Write(data)
			w.Close()
		}
		write(identityFile, encodeIdentity(testID))
		write(segmentName(1, 1), a)
		if b != nil {
			write(segmentName(2, 5), b)
		}
		for _, repair := range []bool{false, true} {
			l, err := Open(testDir, testID, Options{FS: mem, Repair: repair, NoPreallocate: true})
			if err != nil {
				continue
			}
			fi, _ := l.FirstIndex()
			li, _ := l.LastIndex()
			if li+1 < fi {
				t.Fatalf("first %d, last %d", fi, li)
			}
			got, err := l.Entries(fi, li+1, 1<<62)
			if err != nil || len(got) != int(li+1-fi) {
				t.Fatalf("Entries(%d, %d) = %d entries, %v", fi, li+1, len(got), err)
			}
			if _, err := l.Term(li); err != nil {
				t.Fatalf("Term(last %d): %v", li, err)
			}
			hs, _, _ := l.InitialState()
			if err := l.Save(hs, []pb.Entry{{Term: hs.Term, Index: li + 1}}, true); err != nil {
				t.Fatalf("Save after Open: %v", err)
			}
			l.Close()
			break
		}
	})
}

// FuzzSnapshotFile: reading an arbitrary snapshot file never panics and
// allocates no more than the file holds; a file it accepts reads back to
// EOF or to a checksum error, never past its stated size.
func FuzzSnapshotFile(f *testing.F) {
	mem := vfs.NewMem()
	l, err := Open(testDir, testID, Options{FS: mem, NoPreallocate: true})
	if err != nil {
		f.Fatal(err)
	}
	m := pb.SnapshotMeta{Index: 3, Term: 2, ConfState: pb.ConfState{Voters: []pb.NodeID{1, 2}}}
	w, _ := l.CreateSnapshot(m)
	w.Write([]byte("snapshot data"))
	w.Commit()
	l.Close()
	g, _ := mem.Open(filepath.Join(testDir, snapDirName, snapName(3, 2)))
	valid, _ := io.ReadAll(g)
	g.Close()
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add([]byte(snapMagic + "\xff\xff\xff\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := vfs.NewMem()
		w, _ := fs.Create("/s")
		w.Write(b)
		w.Close()
		r, _ := fs.Open("/s")
		_, rc, size, err := readSnapshotFile(r, "/s")
		if err != nil {
			r.Close()
			return
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if int64(len(data)) != size && err == nil {
			t.Fatalf("read %d bytes of a %d-byte snapshot without error", len(data), size)
		}
		if size > int64(len(b)) {
			t.Fatalf("size %d exceeds the file's %d bytes", size, len(b))
		}
	})
}
