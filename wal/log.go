package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/raftkv/raftkv/internal/vfs"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Errors returned by the log; match them with errors.Is.
var (
	// ErrCorrupt is wrapped by every error about damaged on-disk data
	// (see *CorruptionError for where).
	ErrCorrupt = errors.New("wal: corrupt data")
	// ErrLocked: another process (or another Log in this one) has the
	// data directory open.
	ErrLocked = errors.New("wal: data directory is locked by another process")
	// ErrIdentityMismatch: the data directory belongs to another cluster or member.
	ErrIdentityMismatch = errors.New("wal: data directory belongs to another cluster or member")
	// ErrFailed: a write or fsync failed earlier. The log refuses all
	// further writes: after a failed fsync the kernel may have dropped the
	// dirty pages and a retry could report success for data that is gone
	// ("fsyncgate"). Restart (reopen) to recover from what is on disk.
	ErrFailed = errors.New("wal: log failed after an I/O error; reopen to recover")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("wal: log is closed")
	// ErrSnapshotOutOfDate: SaveSnapshot of a snapshot not newer than the
	// one already recorded.
	ErrSnapshotOutOfDate = errors.New("wal: snapshot is older than the one recorded")
)

// CorruptionError says where damaged data was found. Open returns it for
// corruption anywhere but a torn tail, unless Options.Repair is set.
type CorruptionError struct {
	File   string // path of the damaged file
	Offset int64  // byte offset of the first bad record
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt data in %s at offset %d: %s (reopen with repair mode to truncate the log there, losing what follows)",
		e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

// Options configure a Log. The zero value is usable: defaults are filled by
// withDefaults.
type Options struct {
	// FS is the filesystem (default vfs.Default).
	FS vfs.FS
	// SegmentSize is the size at which the log moves on to a new segment
	// file (default 64 MiB; at least 256 bytes).
	SegmentSize int64
	// KeepSnapshots is how many snapshot files to keep (default 2).
	KeepSnapshots int
	// Repair makes Open truncate the log at the first corrupt record,
	// dropping everything after it, instead of refusing to open. It may
	// lose acknowledged entries: an operator's decision, never a default.
	Repair bool
	// Logger receives recovery and repair events (nil: discard).
	Logger *slog.Logger
	// NoPreallocate turns off segment preallocation. By default, once the
	// active segment is half full, the next segment file is zero-filled to
	// SegmentSize and fsynced in the background, so that appends overwrite
	// allocated blocks without changing the file's size and each fdatasync
	// flushes data only, not the filesystem journal (a segment that was not
	// preallocated, such as a new log's first, is zero-filled a MiB ahead of
	// its writes instead). Turn it off to save the disk bandwidth and space,
	// or on an in-memory filesystem.
	NoPreallocate bool
}

const (
	defaultSegmentSize = 64 << 20
	minSegmentSize     = 256
	// flushThreshold: unsynced Saves are written out once this much is
	// buffered, so memory stays bounded when the caller never syncs.
	flushThreshold = 4 << 20
)

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = defaultSegmentSize
	}
	if o.KeepSnapshots == 0 {
		o.KeepSnapshots = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.SegmentSize != 0 && o.SegmentSize < minSegmentSize {
		errs = append(errs, fmt.Errorf("wal: SegmentSize %d is below the minimum %d", o.SegmentSize, minSegmentSize))
	}
	if o.KeepSnapshots < 0 {
		errs = append(errs, fmt.Errorf("wal: KeepSnapshots %d is negative", o.KeepSnapshots))
	}
	return errors.Join(errs...)
}

// segment is one segment file. Fields marked (w) are guarded by Log.wmu;
// fields marked (f) belong to whichever goroutine holds the flushing role
// (or to Open/Close, when no flush can run).
type segment struct {
	seq      uint64
	first    pb.Index // lastIndex+1 when the segment was started (in its name)
	size     int64    // (w) bytes appended, written or still pending
	synced   int64    // (w) bytes known durable: the watermark put in new records
	maxIndex pb.Index // (w) largest entry index written into it (for Compact)

	f         vfs.File // (f) open handle, nil until the flusher creates the file
	written   int64    // (f) bytes written to the file
	syncedOut int64    // (f) bytes written and fsynced
	zeroed    int64    // (f) the file's size: past written it holds zeros (see zeroAhead)
}

func segmentName(seq uint64, first pb.Index) string {
	return fmt.Sprintf("%016x-%016x.wal", seq, uint64(first))
}

func parseSegmentName(name string) (seq uint64, first pb.Index, ok bool) {
	var f uint64
	if len(name) != 16+1+16+4 || !strings.HasSuffix(name, ".wal") {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(name, "%016x-%016x.wal", &seq, &f); err != nil {
		return 0, 0, false
	}
	return seq, pb.Index(f), segmentName(seq, pb.Index(f)) == name
}

// chunk is bytes appended to a segment but not yet written to its file.
type chunk struct {
	seg  *segment
	data []byte
}

// Log is a write-ahead log of Raft entries, hard state, membership and
// snapshot metadata, and the raft.Storage the core reads from.
//
// Concurrency contract: Save, SaveSnapshot, SetConfState, Compact and
// Close may be called from any goroutines (concurrent Save calls share
// fsyncs: group commit); the raft.Storage methods, IsNew, LatestSnapshot and
// OpenSnapshot may run concurrently with them and with each other. The
// in-memory state the readers see is updated when a record is appended,
// before it is durable: the core must (and by the Ready contract does) only
// read entries it has been told are persisted.
type Log struct {
	dir    string
	fs     vfs.FS
	opts   Options
	logger *slog.Logger
	lock   io.Closer
	isNew  bool

	// mu guards st for readers; the writer holds wmu and takes mu only to
	// change st, so the writer may read st under wmu alone.
	mu sync.RWMutex
	st state

	wmu      sync.Mutex
	cond     *sync.Cond // on wmu: signalled when a flush ends
	segs     []*segment // all segments, oldest first; the last is the tail
	pending  []chunk    // appended, not yet written
	spare    []byte     // a buffer to reuse for the next chunk
	appended int64      // bytes appended since Open (a log sequence number)
	synced   int64      // appended bytes known durable
	flushing bool       // a goroutine is writing or syncing (it owns the (f) fields)
	closing  bool
	err      error // sticky: set by the first failed write or sync

	// flusher-owned
	active   *segment      // the segment whose file is open for writing
	dirDirty bool          // a segment file was created since the last SyncDir
	prep     chan prepared // the next segment file being preallocated, if any
	prepSeq  uint64
	snapMu   sync.Mutex
	snapSeq  uint64
}

// Open opens (creating if needed) the log in dir for the member id.
//
// It takes an exclusive lock on the directory, checks or writes its
// identity file, and replays the segments. A torn tail, the signature of a
// crash mid-write, is truncated. Any other damage is a *CorruptionError
// naming the file and offset, unless opts.Repair is set, in which case the
// log is truncated there and the loss is logged. Open returns errors,
// never panics, whatever the directory holds.
func Open(dir string, id Identity, opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	fs := opts.FS
	if err := mkdirDurable(fs, dir); err != nil {
		return nil, err
	}
	lock, err := fs.Lock(filepath.Join(dir, lockFile))
	if err != nil {
		if errors.Is(err, vfs.ErrLocked) {
			return nil, fmt.Errorf("%w: %s: %w", ErrLocked, dir, err)
		}
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	l := &Log{dir: dir, fs: fs, opts: opts, logger: opts.Logger, lock: lock}
	l.cond = sync.NewCond(&l.wmu)
	if err := l.open(id); err != nil {
		l.discardPrepared()
		l.closeFiles()
		lock.Close()
		return nil, err
	}
	return l, nil
}

// mkdirDurable creates dir and its missing parents and makes their
// names durable: each directory created is synced into its parent.
func mkdirDurable(fs vfs.FS, dir string) error {
	var created []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if filepath.Dir(d) == d {
			break // the root exists
		}
		if _, err := fs.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: stat %s: %w", d, err)
		}
		created = append(created, d)
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("wal: create %s: %w", dir, err)
	}
	for i := len(created) - 1; i >= 0; i-- {
		if err := fs.SyncDir(filepath.Dir(created[i])); err != nil {
			return fmt.Errorf("wal: sync parent of %s: %w", created[i], err)
		}
	}
	return nil
}

func (l *Log) open(id Identity) error {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", l.dir, err)
	}
	snaps, err := l.listSnapshots()
	if err != nil {
		return err
	}
	hasState := len(snaps) > 0
	for _, n := range names {
		hasState = hasState || strings.HasSuffix(n, ".wal")
	}
	// Identity first: a directory of another member is refused as such,
	// whatever else is wrong with it.
	if err := checkIdentity(l.fs, l.dir, id, hasState); err != nil {
		return err
	}
	segs, err := l.parseSegments(names)
	if err != nil {
		return err
	}
	if err := mkdirDurable(l.fs, l.snapDir()); err != nil {
		return err
	}
	if err := l.removePreallocTemps(); err != nil {
		return err
	}
	if err := l.removeSnapshotTemps(); err != nil {
		return err
	}
	for {
		err := l.replay(segs)
		var ce *CorruptionError
		if err == nil || !l.opts.Repair || !errors.As(err, &ce) || ce.Offset < 0 {
			if err != nil {
				return err
			}
			break
		}
		if segs, err = l.repair(segs, ce); err != nil {
			return err
		}
	}
	l.isNew = l.st.isEmpty()
	if !l.st.snap.IsEmpty() {
		if _, err := l.findSnapshot(l.st.snap.Index); err != nil {
			return fmt.Errorf("wal: snapshot at index %d is recorded in the log but its file is missing: %w", l.st.snap.Index, err)
		}
	}
	l.maybePrepare()
	l.logger.Info("wal opened", "dir", l.dir, "segments", len(l.segs), "snapshot", l.st.snap.Index,
		"first", l.st.snap.Index+1, "last", l.st.lastIndex(), "term", l.st.hs.Term)
	return nil
}

func (l *Log) segPath(s *segment) string { return filepath.Join(l.dir, segmentName(s.seq, s.first)) }

// parseSegments picks the segment files out of a directory listing and
// checks that their sequence numbers are consecutive: a missing segment in
// the middle is corruption (compaction removes only a prefix, one file at
// a time, each removal made durable before the next).
func (l *Log) parseSegments(names []string) ([]*segment, error) {
	var segs []*segment
	for _, name := range names {
		if !strings.HasSuffix(name, ".wal") {
			continue
		}
		seq, first, ok := parseSegmentName(name)
		if !ok {
			return nil, &CorruptionError{File: filepath.Join(l.dir, name), Offset: -1, Reason: "not a valid segment file name"}
		}
		segs = append(segs, &segment{seq: seq, first: first})
	}
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, &CorruptionError{File: l.segPath(segs[i]), Offset: -1,
				Reason: fmt.Sprintf("segment %d is missing (found %d then %d)", segs[i-1].seq+1, segs[i-1].seq, segs[i].seq)}
		}
	}
	return segs, nil
}

// readSegment reads a whole segment file. The allocation is bounded by the
// file's actual size, never by a length field inside it.
func (l *Log) readSegment(path string) ([]byte, error) {
	f, err := l.fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

// segmentHeader is the payload of the first record of every segment:
//
//	version(1) | seq(8, little-endian) | first index(8, little-endian)
func encodeSegmentHeader(b []byte, s *segment) []byte {
	b = append(b, FormatVersion)
	b = binary.LittleEndian.AppendUint64(b, s.seq)
	return binary.LittleEndian.AppendUint64(b, uint64(s.first))
}

// replay rebuilds the state from segs, truncating a torn tail of the last
// one. On success it has set l.st and each segment's sizes, and opened the
// last segment for appending.
func (l *Log) replay(segs []*segment) error {
	var st state
	for i := 0; i < len(segs); i++ {
		s := segs[i]
		path := l.segPath(s)
		b, err := l.readSegment(path)
		if err != nil {
			return fmt.Errorf("wal: read segment %d: %w", s.seq, err)
		}
		scan := scanSegment(b)
		last := i == len(segs)-1
		s.maxIndex = 0
		if scan.bad && (!last || scan.synced) {
			why := "record after it was written once this one was durable"
			if !last {
				why = "in a segment that was complete and synced"
			}
			return &CorruptionError{File: path, Offset: scan.end, Reason: fmt.Sprintf("%v (%s)", scan.badErr, why)}
		}
		if !last && len(scan.recs) == 0 {
			return &CorruptionError{File: path, Offset: 0, Reason: "empty segment before the last one"}
		}
		for j, r := range scan.recs {
			if err := l.applyRecord(&st, s, r, j); err != nil {
				return &CorruptionError{File: path, Offset: r.off, Reason: err.Error()}
			}
		}
		s.size, s.synced = scan.end, scan.end
		s.written, s.syncedOut = scan.end, scan.end
		if !last {
			continue
		}
		if scan.bad {
			l.logger.Warn("wal: truncating torn tail", "file", path, "offset", scan.end,
				"bytes", int64(len(b))-scan.end, "reason", scan.badErr)
		}
		if scan.end == 0 {
			// Nothing valid, not even the header: a segment whose
			// creation was interrupted. Drop it; the next write starts a
			// new one.
			if err := l.fs.Remove(path); err != nil {
				return fmt.Errorf("wal: remove empty segment %d: %w", s.seq, err)
			}
			if err := l.fs.SyncDir(l.dir); err != nil {
				return fmt.Errorf("wal: sync %s: %w", l.dir, err)
			}
			segs = segs[:i]
			if i > 0 {
				// The one before, complete and synced, takes writes again.
				if err := l.openActive(segs[i-1], false); err != nil {
					return err
				}
			}
			break
		}
		if err := l.openActive(s, scan.bad); err != nil {
			return err
		}
	}
	if err := st.valid(); err != nil {
		f := l.dir
		if len(segs) > 0 {
			f = l.segPath(segs[0])
		}
		return &CorruptionError{File: f, Offset: -1, Reason: err.Error()}
	}
	l.st = st
	// replay may have dropped an empty tail segment.
	l.segs = segs
	return nil
}

// openActive opens segment s, valid up to s.size, for appending after its
// last valid record. If torn, what follows that record is truncated; an
// all-zero remainder (a preallocated segment) is kept and written over.
func (l *Log) openActive(s *segment, torn bool) error {
	f, err := l.fs.OpenFile(l.segPath(s), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: open segment %d: %w", s.seq, err)
	}
	l.active = s
	s.f = f
	if torn {
		if err := f.Truncate(s.size); err != nil {
			return fmt.Errorf("wal: truncate segment %d: %w", s.seq, err)
		}
	}
	// Sync even without a truncation: what was just replayed may have been
	// in the page cache only (the process died, the machine did not), and
	// the member must not act on state that a power loss could still take
	// away. With a truncation, the sync also keeps a later crash from
	// bringing stale bytes back after the records appended next.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal: sync segment %d: %w", s.seq, err)
	}
	if _, err := f.Seek(s.size, io.SeekStart); err != nil {
		return fmt.Errorf("wal: seek segment %d: %w", s.seq, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("wal: stat segment %d: %w", s.seq, err)
	}
	s.zeroed = max(fi.Size(), s.size) // replay found only zeros past s.size
	return nil
}

// applyRecord applies record j of segment s to st during replay.
func (l *Log) applyRecord(st *state, s *segment, r record, j int) error {
	if (j == 0) != (r.typ == recSegment) {
		return fmt.Errorf("%s record at position %d (a segment starts with, and only with, its header)", r.typ, j)
	}
	switch r.typ {
	case recSegment:
		if len(r.payload) != 17 || r.payload[0] != FormatVersion {
			return errors.New("bad segment header")
		}
		seq := binary.LittleEndian.Uint64(r.payload[1:9])
		first := pb.Index(binary.LittleEndian.Uint64(r.payload[9:17]))
		if seq != s.seq || first != s.first {
			return fmt.Errorf("segment header says seq %d first %d, the file name seq %d first %d", seq, first, s.seq, s.first)
		}
	case recEntry:
		var e pb.Entry
		if err := e.UnmarshalBinary(r.payload); err != nil {
			return err
		}
		if e.Index == 0 {
			return errors.New("entry at index 0")
		}
		e.Data = cloneBytes(e.Data) // the segment buffer is not kept
		if err := st.appendEntry(e, true); err != nil {
			return err
		}
		s.maxIndex = max(s.maxIndex, e.Index)
	case recHardState:
		var hs pb.HardState
		if err := hs.UnmarshalBinary(r.payload); err != nil {
			return err
		}
		st.hs = hs
	case recConfState:
		var cs pb.ConfState
		if err := cs.UnmarshalBinary(r.payload); err != nil {
			return err
		}
		st.cs = cloneConfState(cs)
	case recSnapshot:
		if len(r.payload) < 1 || r.payload[0] > 1 {
			return errors.New("bad snapshot record flags")
		}
		var m pb.SnapshotMeta
		if err := m.UnmarshalBinary(r.payload[1:]); err != nil {
			return err
		}
		st.applySnapshot(m, r.payload[0] == 1)
	}
	return nil
}

// snapshotPayload encodes a snapshot record: keep(1: 0 or 1) | SnapshotMeta.
// keep says whether the entries after the snapshot survive it.
func snapshotPayload(m pb.SnapshotMeta, keep bool) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) {
		flag := byte(0)
		if keep {
			flag = 1
		}
		return m.AppendBinary(append(b, flag))
	}
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// repair truncates the log at a corruption: the damaged segment is cut at
// the bad record and every later segment removed.
func (l *Log) repair(segs []*segment, ce *CorruptionError) ([]*segment, error) {
	l.closeFiles()
	idx := -1
	for i, s := range segs {
		if l.segPath(s) == ce.File {
			idx = i
		}
	}
	if idx < 0 {
		return nil, ce
	}
	l.logger.Warn("wal: repair: truncating the log at a corruption; later records are lost",
		"file", ce.File, "offset", ce.Offset, "reason", ce.Reason, "segments_removed", len(segs)-idx-1)
	for i := len(segs) - 1; i > idx; i-- {
		if err := l.fs.Remove(l.segPath(segs[i])); err != nil {
			return nil, fmt.Errorf("wal: repair: remove segment %d: %w", segs[i].seq, err)
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return nil, fmt.Errorf("wal: repair: sync %s: %w", l.dir, err)
		}
	}
	segs = segs[:idx+1]
	f, err := l.fs.OpenFile(ce.File, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: repair: %w", err)
	}
	err = f.Truncate(ce.Offset)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("wal: repair: truncate %s: %w", ce.File, err)
	}
	return segs, nil
}

func (l *Log) closeFiles() {
	for _, s := range l.segs {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
	if l.active != nil && l.active.f != nil {
		l.active.f.Close()
		l.active.f = nil
	}
	l.active = nil
}

// IsNew reports whether the directory held no state when opened: the
// runtime bootstraps the member then.
func (l *Log) IsNew() bool { return l.isNew }

// Dir returns the data directory.
func (l *Log) Dir() string { return l.dir }

// usable is called with wmu held.
func (l *Log) usable() error {
	if l.closing {
		return ErrClosed
	}
	return l.err
}

func (l *Log) tail() *segment {
	if len(l.segs) == 0 {
		return nil
	}
	return l.segs[len(l.segs)-1]
}

// appendRec frames one record into the pending buffer of the tail segment,
// starting a new segment first if the tail is full. Called with wmu held.
func (l *Log) appendRec(typ recordType, enc func([]byte) ([]byte, error)) error {
	t := l.tail()
	if t == nil || t.size >= l.opts.SegmentSize {
		if err := l.rotate(); err != nil {
			return err
		}
		t = l.tail()
	}
	return l.appendTo(t, typ, enc)
}

func (l *Log) appendTo(t *segment, typ recordType, enc func([]byte) ([]byte, error)) error {
	if n := len(l.pending); n == 0 || l.pending[n-1].seg != t {
		l.pending = append(l.pending, chunk{seg: t, data: l.spare})
		l.spare = nil
	}
	c := &l.pending[len(l.pending)-1]
	before := len(c.data)
	var err error
	c.data, err = appendRecordFunc(c.data, typ, t.synced, enc)
	if err != nil {
		return err
	}
	n := int64(len(c.data) - before)
	t.size += n
	l.appended += n
	return nil
}

// rotate starts a new segment. Its first records restate the hard state,
// membership and snapshot, so that any suffix of segments replays to the
// full state and Compact can drop whole segments freely.
func (l *Log) rotate() error {
	s := &segment{first: l.st.lastIndex() + 1, seq: 1}
	if t := l.tail(); t != nil {
		s.seq = t.seq + 1
	}
	l.segs = append(l.segs, s)
	if err := l.appendTo(s, recSegment, func(b []byte) ([]byte, error) { return encodeSegmentHeader(b, s), nil }); err != nil {
		return err
	}
	// The snapshot first: replaying it sets the membership to the
	// snapshot's, which the conf state record after it then overrides.
	if !l.st.snap.IsEmpty() {
		if err := l.appendTo(s, recSnapshot, snapshotPayload(l.st.snap, true)); err != nil {
			return err
		}
	}
	if !l.st.hs.IsEmpty() {
		if err := l.appendTo(s, recHardState, l.st.hs.AppendBinary); err != nil {
			return err
		}
	}
	// Restated even when empty if a snapshot was: the snapshot record just
	// set the membership to the snapshot's.
	if cs := l.st.cs; len(cs.Voters)+len(cs.Learners) > 0 || !l.st.snap.IsEmpty() {
		if err := l.appendTo(s, recConfState, cs.AppendBinary); err != nil {
			return err
		}
	}
	return nil
}

// Save appends ents and records hs (if not empty). An entry at an index at
// or below LastIndex first truncates the log from that index (a new leader
// overwriting a follower's tail); entries at or below the snapshot index are
// ignored. ents must be contiguous and must not leave a gap after
// LastIndex. Save keeps ents' Data slices: the caller must not modify them.
//
// With sync true, Save returns only once everything it appended (and
// everything appended before) is durable. Concurrent callers share fsyncs:
// one goroutine writes and fsyncs all that is buffered while the others
// wait, and each is released once its own bytes are covered.
//
// An error means nothing about durability can be assumed; a write or sync
// error also fails the log for good (ErrFailed).
func (l *Log) Save(hs pb.HardState, ents []pb.Entry, sync bool) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if err := l.checkEntries(ents); err != nil {
		return err
	}
	for i := range ents {
		e := &ents[i]
		if e.Index <= l.st.snap.Index {
			continue
		}
		if err := l.appendRec(recEntry, e.AppendBinary); err != nil {
			return l.fail(err)
		}
		l.mu.Lock()
		err := l.st.appendEntry(*e, false)
		l.mu.Unlock()
		if err != nil {
			return l.fail(err) // checkEntries rules this out
		}
		t := l.tail()
		t.maxIndex = max(t.maxIndex, e.Index)
	}
	if !hs.IsEmpty() && hs != l.st.hs {
		if err := l.appendRec(recHardState, hs.AppendBinary); err != nil {
			return l.fail(err)
		}
		l.mu.Lock()
		l.st.hs = hs
		l.mu.Unlock()
	}
	if !sync {
		if l.appended-l.synced >= flushThreshold && !l.flushing {
			return l.flushLocked(false)
		}
		return nil
	}
	return l.waitDurable(l.appended)
}

// checkEntries validates a batch before any of it is appended, so that a
// rejected batch leaves the log untouched.
func (l *Log) checkEntries(ents []pb.Entry) error {
	for i := range ents {
		if ents[i].Index == 0 {
			return errors.New("wal: entry at index 0")
		}
		if i > 0 && ents[i].Index != ents[i-1].Index+1 {
			return fmt.Errorf("wal: entries not contiguous: %d follows %d", ents[i].Index, ents[i-1].Index)
		}
		if len(ents[i].Data) > MaxRecordSize-64 {
			return fmt.Errorf("wal: entry %d of %d bytes exceeds the maximum record size %d", ents[i].Index, len(ents[i].Data), MaxRecordSize)
		}
	}
	for i := range ents {
		if ents[i].Index > l.st.snap.Index {
			if last := l.st.lastIndex(); ents[i].Index > last+1 {
				return fmt.Errorf("wal: entry %d would leave a gap after last index %d", ents[i].Index, last)
			}
			break
		}
	}
	return nil
}

// fail records err as the log's sticky error: the pending buffer and
// in-memory state may now disagree with the disk, so nothing more may be
// written. Called with wmu held.
func (l *Log) fail(err error) error {
	if l.err == nil {
		l.err = fmt.Errorf("%w: %w", ErrFailed, err)
		l.logger.Error("wal failed", "err", err)
		l.cond.Broadcast()
	}
	return l.err
}

// waitDurable returns once the first target appended bytes are durable,
// becoming the flusher if no one else is. Called with wmu held.
func (l *Log) waitDurable(target int64) error {
	for {
		switch {
		case l.synced >= target:
			return nil
		case l.err != nil:
			return l.err
		case !l.flushing:
			l.flushLocked(true)
		default:
			l.cond.Wait()
		}
	}
}

// flushLocked writes out everything pending and, if sync, makes it durable.
// It is called with wmu held and !l.flushing, releases wmu during the I/O
// so that other goroutines keep appending (their bytes go into the next
// group), and returns with wmu held.
func (l *Log) flushLocked(sync bool) error {
	l.flushing = true
	chunks, target := l.pending, l.appended
	l.pending = nil
	l.wmu.Unlock()
	err := l.writeOut(chunks, sync)
	l.wmu.Lock()
	l.flushing = false
	defer l.cond.Broadcast()
	if err != nil {
		return l.fail(err)
	}
	if len(chunks) == 1 && l.spare == nil {
		l.spare = chunks[0].data[:0]
	}
	if sync {
		l.synced = target
		for _, s := range l.segs {
			s.synced = s.syncedOut
		}
	}
	return nil
}

// writeOut writes chunks to their segment files, creating files as the log
// rotates. A segment is fsynced before the next one is created, so every
// segment but the last is complete and durable: recovery treats damage in
// one as corruption, never as a torn tail. Runs in the flusher role.
func (l *Log) writeOut(chunks []chunk, sync bool) error {
	for _, c := range chunks {
		if c.seg != l.active {
			if err := l.finishActive(); err != nil {
				return err
			}
			// The previous segment's name must be durable before the next
			// one exists, or a crash could keep a later segment and lose
			// an earlier one.
			if l.dirDirty {
				if err := l.fs.SyncDir(l.dir); err != nil {
					return fmt.Errorf("wal: sync %s: %w", l.dir, err)
				}
				l.dirDirty = false
			}
			f, err := l.createSegment(c.seg)
			if err != nil {
				return err
			}
			c.seg.f = f
			l.active = c.seg
			l.dirDirty = true
		}
		if err := l.zeroAhead(c.seg, c.seg.written+int64(len(c.data))); err != nil {
			return err
		}
		if _, err := c.seg.f.Write(c.data); err != nil {
			return fmt.Errorf("wal: write segment %d: %w", c.seg.seq, err)
		}
		c.seg.written += int64(len(c.data))
	}
	l.maybePrepare()
	if !sync || l.active == nil {
		return nil
	}
	a := l.active
	if a.written > a.syncedOut {
		if err := a.f.Sync(); err != nil {
			return fmt.Errorf("wal: sync segment %d: %w", a.seq, err)
		}
		a.syncedOut = a.written
	}
	if l.dirDirty {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("wal: sync %s: %w", l.dir, err)
		}
		l.dirDirty = false
	}
	return nil
}

// finishActive syncs and closes the active segment before the log moves on.
func (l *Log) finishActive() error {
	a := l.active
	if a == nil {
		return nil
	}
	if a.written > a.syncedOut {
		if err := a.f.Sync(); err != nil {
			return fmt.Errorf("wal: sync segment %d: %w", a.seq, err)
		}
		a.syncedOut = a.written
	}
	err := a.f.Close()
	a.f, l.active = nil, nil
	if err != nil {
		return fmt.Errorf("wal: close segment %d: %w", a.seq, err)
	}
	return nil
}

// Sync makes everything saved so far durable.
func (l *Log) Sync() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	return l.waitDurable(l.appended)
}

// SaveSnapshot records that the snapshot described by meta is durably in
// place (its file committed with CreateSnapshot/Commit: it must exist) and
// drops the entries it covers from memory. Entries after meta.Index are
// kept if the log holds meta.Index at meta.Term; otherwise the snapshot
// replaces the whole log. Returns once the record is durable.
func (l *Log) SaveSnapshot(meta pb.SnapshotMeta) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if meta.IsEmpty() {
		return errors.New("wal: SaveSnapshot of an empty snapshot")
	}
	if meta.Index <= l.st.snap.Index {
		return fmt.Errorf("%w: %d, recorded %d", ErrSnapshotOutOfDate, meta.Index, l.st.snap.Index)
	}
	if _, err := l.findSnapshot(meta.Index); err != nil {
		return fmt.Errorf("wal: SaveSnapshot %d: commit its file first: %w", meta.Index, err)
	}
	keep := l.st.snapshotKeeps(meta)
	if err := l.appendRec(recSnapshot, snapshotPayload(meta, keep)); err != nil {
		return l.fail(err)
	}
	l.mu.Lock()
	l.st.applySnapshot(meta, keep)
	l.mu.Unlock()
	return l.waitDurable(l.appended)
}

// SetConfState durably records cs as the latest applied membership; the
// runtime calls it when it applies a conf change, and InitialState returns
// it after a restart.
func (l *Log) SetConfState(cs pb.ConfState) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if err := l.appendRec(recConfState, cs.AppendBinary); err != nil {
		return l.fail(err)
	}
	l.mu.Lock()
	l.st.cs = cloneConfState(cs)
	l.mu.Unlock()
	return l.waitDurable(l.appended)
}

// Compact removes whole segment files all of whose entries are at or below
// index, which must not exceed the recorded snapshot's index. The segment
// being written is never removed. In-memory entries are unaffected
// (SaveSnapshot drops those).
func (l *Log) Compact(index pb.Index) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if index > l.st.snap.Index {
		return fmt.Errorf("wal: compact to %d beyond the snapshot at %d", index, l.st.snap.Index)
	}
	// Everything, the snapshot record above all, must be durable before the
	// segments that hold what it covers go.
	if err := l.waitDurable(l.appended); err != nil {
		return err
	}
	for l.flushing {
		l.cond.Wait()
	}
	if err := l.usable(); err != nil {
		return err
	}
	n := 0
	for n < len(l.segs)-1 && l.segs[n].maxIndex <= index {
		n++
	}
	if n == 0 {
		return nil
	}
	drop := l.segs[:n]
	l.flushing = true // keep flushers out while the directory changes
	l.wmu.Unlock()
	removed, err := l.removeSegments(drop)
	l.wmu.Lock()
	l.flushing = false
	l.cond.Broadcast()
	l.segs = l.segs[removed:]
	return err
}

// removeSegments removes segments oldest first, making each removal durable
// before the next so that a crash leaves a contiguous run of segments.
func (l *Log) removeSegments(drop []*segment) (int, error) {
	for i, s := range drop {
		if err := l.fs.Remove(l.segPath(s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return i, fmt.Errorf("wal: compact: remove segment %d: %w", s.seq, err)
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return i + 1, fmt.Errorf("wal: compact: sync %s: %w", l.dir, err)
		}
		l.logger.Debug("wal: removed segment", "seq", s.seq, "max_index", s.maxIndex)
	}
	return len(drop), nil
}

// Close makes everything saved durable, closes the files and releases the
// directory lock.
func (l *Log) Close() error {
	l.wmu.Lock()
	if l.closing {
		l.wmu.Unlock()
		return ErrClosed
	}
	// A failed log reports its failure: what it buffered is not durable.
	err := l.err
	if err == nil {
		err = l.waitDurable(l.appended)
	}
	l.closing = true
	for l.flushing {
		l.cond.Wait()
	}
	l.wmu.Unlock()
	l.discardPrepared()
	if a := l.active; a != nil && a.f != nil {
		if cerr := a.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("wal: close segment %d: %w", a.seq, cerr)
		}
		a.f, l.active = nil, nil
	}
	if cerr := l.lock.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wal: unlock %s: %w", l.dir, cerr)
	}
	return err
}
