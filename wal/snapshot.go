package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/raftkv/raftkv/internal/vfs"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Snapshot files live in <dir>/snap, named <index>-<term>.snap (16 hex
// digits each, so names sort by index). Layout (little-endian):
//
//	0        8         12             12+n     16+n            16+n+d   24+n+d   28+n+d   32+n+d
//	+--------+---------+--------------+--------+----------------+--------+--------+--------+
//	| magic  | n (u32) | SnapshotMeta | CRC32C | data (d bytes) | d (u64)| CRC32C | magic2 |
//	|        |         | (n bytes)    | of meta| streamed       |        | of data|        |
//	+--------+---------+--------------+--------+----------------+--------+--------+--------+
//
// The header is written first and the trailer last, so the writer never
// needs the data's size in advance, and the reader finds the size in the
// trailer. A file is written under a .tmp name and renamed into place only
// after an fsync: a committed name always has complete content.
//
// Written to disk: never change.
const (
	snapDirName   = "snap"
	snapMagic     = "RKVSNAP1"
	snapEndMagic  = "SEND"
	snapTrailer   = 8 + 4 + 4
	maxSnapMeta   = 16 << 20 // a ConfState of a few million members
	snapExt       = ".snap"
	snapTmpSuffix = ".tmp"
)

func (l *Log) snapDir() string { return filepath.Join(l.dir, snapDirName) }

func snapName(index pb.Index, term pb.Term) string {
	return fmt.Sprintf("%016x-%016x%s", uint64(index), uint64(term), snapExt)
}

func parseSnapName(name string) (pb.Index, pb.Term, bool) {
	var i, t uint64
	if len(name) != 33+len(snapExt) || !strings.HasSuffix(name, snapExt) {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(name, "%016x-%016x"+snapExt, &i, &t); err != nil {
		return 0, 0, false
	}
	return pb.Index(i), pb.Term(t), snapName(pb.Index(i), pb.Term(t)) == name
}

// listSnapshots returns the committed snapshot file names, oldest first.
// A missing snap directory has none.
func (l *Log) listSnapshots() ([]string, error) {
	names, err := l.fs.ReadDir(l.snapDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: list snapshots: %w", err)
	}
	var out []string
	for _, n := range names {
		if _, _, ok := parseSnapName(n); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// removeSnapshotTemps deletes snapshot files whose writing never finished.
func (l *Log) removeSnapshotTemps() error {
	names, err := l.fs.ReadDir(l.snapDir())
	if err != nil {
		return fmt.Errorf("wal: list snapshots: %w", err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, snapTmpSuffix) {
			if err := l.fs.Remove(filepath.Join(l.snapDir(), n)); err != nil {
				return fmt.Errorf("wal: remove unfinished snapshot %s: %w", n, err)
			}
		}
	}
	return nil
}

// findSnapshot returns the path of the committed snapshot file at index.
func (l *Log) findSnapshot(index pb.Index) (string, error) {
	names, err := l.listSnapshots()
	if err != nil {
		return "", err
	}
	for i := len(names) - 1; i >= 0; i-- {
		if idx, _, _ := parseSnapName(names[i]); idx == index {
			return filepath.Join(l.snapDir(), names[i]), nil
		}
	}
	return "", fmt.Errorf("wal: no snapshot file at index %d: %w", index, os.ErrNotExist)
}

// SnapshotWriter streams one snapshot's data into a temporary file. Call
// Commit to make it durable and visible, or Abort to discard it. Not safe
// for concurrent use.
type SnapshotWriter struct {
	l         *Log
	meta      pb.SnapshotMeta
	f         vfs.File
	w         *bufio.Writer
	crc       hash.Hash32
	n         uint64
	tmp, path string
	done      bool
	err       error
}

// CreateSnapshot starts writing the data of the snapshot described by meta.
func (l *Log) CreateSnapshot(meta pb.SnapshotMeta) (*SnapshotWriter, error) {
	if meta.IsEmpty() {
		return nil, errors.New("wal: CreateSnapshot of an empty snapshot (index 0)")
	}
	l.snapMu.Lock()
	l.snapSeq++
	seq := l.snapSeq
	l.snapMu.Unlock()
	path := filepath.Join(l.snapDir(), snapName(meta.Index, meta.Term))
	tmp := fmt.Sprintf("%s.%d%s", path, seq, snapTmpSuffix)
	f, err := l.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("wal: create snapshot %d: %w", meta.Index, err)
	}
	metaBytes, _ := meta.AppendBinary(nil)
	hdr := append([]byte(snapMagic), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(hdr[8:12], uint32(len(metaBytes)))
	hdr = append(hdr, metaBytes...)
	hdr = binary.LittleEndian.AppendUint32(hdr, crc32.Checksum(metaBytes, castagnoli))
	w := &SnapshotWriter{l: l, meta: meta, f: f, w: bufio.NewWriterSize(f, 256<<10),
		crc: crc32.New(castagnoli), tmp: tmp, path: path}
	if _, err := w.w.Write(hdr); err != nil {
		w.Abort()
		return nil, fmt.Errorf("wal: write snapshot %d: %w", meta.Index, err)
	}
	return w, nil
}

// Write appends snapshot data.
func (w *SnapshotWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("wal: write to a finished snapshot")
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.w.Write(p)
	w.crc.Write(p[:n])
	w.n += uint64(n)
	if err != nil {
		w.err = fmt.Errorf("wal: write snapshot %d: %w", w.meta.Index, err)
		return n, w.err
	}
	return n, nil
}

// Commit makes the snapshot durable and visible: trailer, fsync, rename
// into place, fsync the directory. It then removes the oldest snapshot
// files beyond Options.KeepSnapshots (never the one the log records). On
// error the temporary file is removed.
func (w *SnapshotWriter) Commit() error {
	if w.done {
		return errors.New("wal: snapshot already committed or aborted")
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	tr := binary.LittleEndian.AppendUint64(nil, w.n)
	tr = binary.LittleEndian.AppendUint32(tr, w.crc.Sum32())
	tr = append(tr, snapEndMagic...)
	err := func() error {
		if _, err := w.w.Write(tr); err != nil {
			return err
		}
		if err := w.w.Flush(); err != nil {
			return err
		}
		if err := w.f.Sync(); err != nil {
			return err
		}
		err := w.f.Close()
		w.f = nil
		if err != nil {
			return err
		}
		if err := w.l.fs.Rename(w.tmp, w.path); err != nil {
			return err
		}
		return w.l.fs.SyncDir(w.l.snapDir())
	}()
	if err != nil {
		w.Abort()
		return fmt.Errorf("wal: commit snapshot %d: %w", w.meta.Index, err)
	}
	w.done = true
	return w.l.pruneSnapshots()
}

// Abort discards the snapshot being written.
func (w *SnapshotWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.l.fs.Remove(w.tmp)
}

// pruneSnapshots keeps the newest KeepSnapshots files and the one recorded
// in the log.
func (l *Log) pruneSnapshots() error {
	l.snapMu.Lock()
	defer l.snapMu.Unlock()
	names, err := l.listSnapshots()
	if err != nil {
		return err
	}
	l.mu.RLock()
	recorded := l.st.snap.Index
	l.mu.RUnlock()
	removed := false
	for i := 0; i < len(names)-l.opts.KeepSnapshots; i++ {
		if idx, _, _ := parseSnapName(names[i]); idx == recorded {
			continue
		}
		if err := l.fs.Remove(filepath.Join(l.snapDir(), names[i])); err != nil {
			return fmt.Errorf("wal: remove old snapshot %s: %w", names[i], err)
		}
		removed = true
	}
	if removed {
		if err := l.fs.SyncDir(l.snapDir()); err != nil {
			return fmt.Errorf("wal: sync %s: %w", l.snapDir(), err)
		}
	}
	return nil
}

// LatestSnapshot returns the metadata of the newest snapshot recorded in
// the log (by SaveSnapshot), whose file OpenSnapshot can open.
func (l *Log) LatestSnapshot() (pb.SnapshotMeta, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.st.snap.IsEmpty() {
		return pb.SnapshotMeta{}, false
	}
	m := l.st.snap
	m.ConfState = cloneConfState(m.ConfState)
	return m, true
}

// OpenSnapshot opens the committed snapshot file at index and returns its
// metadata, a reader of its data and the data's size. The reader verifies
// the data's checksum as it reaches the end and then fails with an error
// wrapping ErrCorrupt if it does not match: a consumer must read to io.EOF
// before trusting what it read.
func (l *Log) OpenSnapshot(index pb.Index) (pb.SnapshotMeta, io.ReadCloser, int64, error) {
	path, err := l.findSnapshot(index)
	if err != nil {
		return pb.SnapshotMeta{}, nil, 0, err
	}
	f, err := l.fs.Open(path)
	if err != nil {
		return pb.SnapshotMeta{}, nil, 0, fmt.Errorf("wal: open snapshot %d: %w", index, err)
	}
	meta, rc, size, err := readSnapshotFile(f, path)
	if err != nil {
		f.Close()
		return pb.SnapshotMeta{}, nil, 0, err
	}
	return meta, rc, size, nil
}

func readSnapshotFile(f vfs.File, path string) (pb.SnapshotMeta, io.ReadCloser, int64, error) {
	corrupt := func(off int64, why string) error {
		return &CorruptionError{File: path, Offset: off, Reason: why}
	}
	fi, err := f.Stat()
	if err != nil {
		return pb.SnapshotMeta{}, nil, 0, fmt.Errorf("wal: stat snapshot: %w", err)
	}
	size := fi.Size()
	var hdr [12]byte
	if size < 12+4+snapTrailer {
		return pb.SnapshotMeta{}, nil, 0, corrupt(0, "snapshot file too short")
	}
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return pb.SnapshotMeta{}, nil, 0, fmt.Errorf("wal: read snapshot: %w", err)
	}
	if string(hdr[:8]) != snapMagic {
		return pb.SnapshotMeta{}, nil, 0, corrupt(0, "not a snapshot file")
	}
	n := int64(binary.LittleEndian.Uint32(hdr[8:12]))
	if n > maxSnapMeta || 12+n+4+snapTrailer > size {
		return pb.SnapshotMeta{}, nil, 0, corrupt(8, "metadata length out of range")
	}
	mb := make([]byte, n+4)
	if _, err := f.ReadAt(mb, 12); err != nil {
		return pb.SnapshotMeta{}, nil, 0, fmt.Errorf("wal: read snapshot: %w", err)
	}
	if crc32.Checksum(mb[:n], castagnoli) != binary.LittleEndian.Uint32(mb[n:]) {
		return pb.SnapshotMeta{}, nil, 0, corrupt(12, "metadata checksum mismatch")
	}
	var meta pb.SnapshotMeta
	if err := meta.UnmarshalBinary(mb[:n]); err != nil {
		return pb.SnapshotMeta{}, nil, 0, corrupt(12, err.Error())
	}
	meta.ConfState = cloneConfState(meta.ConfState)
	var tr [snapTrailer]byte
	if _, err := f.ReadAt(tr[:], size-snapTrailer); err != nil {
		return pb.SnapshotMeta{}, nil, 0, fmt.Errorf("wal: read snapshot: %w", err)
	}
	dataOff := 12 + n + 4
	d := binary.LittleEndian.Uint64(tr[0:8])
	if string(tr[12:16]) != snapEndMagic || d != uint64(size-snapTrailer-dataOff) {
		return pb.SnapshotMeta{}, nil, 0, corrupt(size-snapTrailer, "bad trailer (incomplete snapshot file)")
	}
	r := &snapReader{f: f, r: io.NewSectionReader(f, dataOff, int64(d)), crc: crc32.New(castagnoli),
		want: binary.LittleEndian.Uint32(tr[8:12]), path: path, off: dataOff}
	return meta, r, int64(d), nil
}

type snapReader struct {
	f    vfs.File
	r    *io.SectionReader
	crc  hash.Hash32
	want uint32
	path string
	off  int64
}

func (r *snapReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.crc.Write(p[:n])
	if err == io.EOF && r.crc.Sum32() != r.want {
		return n, &CorruptionError{File: r.path, Offset: r.off, Reason: "snapshot data checksum mismatch"}
	}
	return n, err
}

func (r *snapReader) Close() error { return r.f.Close() }
