package wal

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/raftkv/raftkv/internal/vfs"
)

// Segment preallocation. Appending to a file changes its size, and then
// fdatasync must commit the filesystem journal as well as the data: on
// ext4 that makes a small durable append about 1.5x slower than rewriting
// allocated blocks. So the next segment is prepared ahead of time, in the
// background: a temporary file zero-filled to SegmentSize and fsynced. At
// rotation the flusher renames it into place (the rename is made durable
// with the directory sync that already follows a segment's creation) and
// writes over the zeros. Recovery reads an all-zero remainder as a clean
// end of segment, so a preallocated tail needs no special case.
//
// A segment that was not preallocated (a new log's first, or one created
// when preallocation failed) is zero-filled ahead of its writes instead, a
// zeroStep at a time (zeroAhead): the same gain for all but one fdatasync
// in a zeroStep of log, without paying a whole segment of zeros up front
// for a log that stays small (a test, a dev cluster).

const preallocSuffix = ".prealloc.tmp"

type prepared struct {
	path string
	f    vfs.File
	err  error
}

// maybePrepare starts preparing the next segment file if preallocation is
// on, none is being prepared, and the active segment is half full. Waiting
// until then keeps the zero-filling out of the way of the writes right
// after a rotation, and off the disk of a small log: a new log's first
// segment is never preallocated (a member that writes little, a test, a
// dev cluster, pays no 64 MiB of zeros). Called by Open and the flusher.
func (l *Log) maybePrepare() {
	if l.opts.NoPreallocate || l.prep != nil || l.active == nil || l.active.written < l.opts.SegmentSize/2 {
		return
	}
	l.prepSeq++
	path := filepath.Join(l.dir, fmt.Sprintf("%d%s", l.prepSeq, preallocSuffix))
	ch := make(chan prepared, 1)
	l.prep = ch
	fs, size := l.fs, l.opts.SegmentSize
	go func() {
		f, err := preallocate(fs, path, size)
		ch <- prepared{path: path, f: f, err: err}
	}()
}

func preallocate(fs vfs.FS, path string, size int64) (vfs.File, error) {
	f, err := fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := writeZeros(f, size); err != nil {
		f.Close()
		fs.Remove(path)
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		fs.Remove(path)
		return nil, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		fs.Remove(path)
		return nil, err
	}
	return f, nil
}

// createSegment creates the file of segment s: the preallocated one if it
// is ready (waiting for it if it is being made), else an empty file. Runs
// in the flusher role.
func (l *Log) createSegment(s *segment) (vfs.File, error) {
	path := l.segPath(s)
	if l.prep != nil {
		p := <-l.prep
		l.prep = nil
		if p.err == nil {
			if err := l.fs.Rename(p.path, path); err != nil {
				p.f.Close()
				l.fs.Remove(p.path)
				return nil, fmt.Errorf("wal: create segment %d: %w", s.seq, err)
			}
			s.zeroed = l.opts.SegmentSize
			return p.f, nil
		}
		// Preallocation is an optimisation: log it and carry on without.
		l.logger.Warn("wal: segment preallocation failed", "err", p.err)
	}
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment %d: %w", s.seq, err)
	}
	return f, nil
}

// zeroStep is how far ahead of its writes zeroAhead fills a segment: one
// fdatasync in that many bytes of log carries the file's growth (and the
// step's zeros) to disk; a larger step would make that one sync slower.
const zeroStep = 1 << 20

// zeroAhead makes sure that segment s's file extends, zero-filled, past
// end (the offset its next write reaches), growing it up to the next
// multiple of zeroStep, but not past SegmentSize. Runs in the flusher role.
func (l *Log) zeroAhead(s *segment, end int64) error {
	if l.opts.NoPreallocate || end <= s.zeroed {
		return nil
	}
	target := min((end+zeroStep-1)/zeroStep*zeroStep, l.opts.SegmentSize)
	if from := max(s.zeroed, end); target > from {
		if _, err := s.f.Seek(from, io.SeekStart); err != nil {
			return fmt.Errorf("wal: seek segment %d: %w", s.seq, err)
		}
		if err := writeZeros(s.f, target-from); err != nil {
			return fmt.Errorf("wal: zero-fill segment %d: %w", s.seq, err)
		}
		if _, err := s.f.Seek(s.written, io.SeekStart); err != nil {
			return fmt.Errorf("wal: seek segment %d: %w", s.seq, err)
		}
	}
	s.zeroed = max(target, end)
	return nil
}

// zeros is the source of writeZeros: read-only, shared by every log.
var zeros [zeroStep]byte

// writeZeros writes n zero bytes to f at its offset.
func writeZeros(f vfs.File, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := f.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// discardPrepared waits for a segment file being prepared and removes it.
func (l *Log) discardPrepared() {
	if l.prep == nil {
		return
	}
	p := <-l.prep
	l.prep = nil
	if p.err == nil {
		p.f.Close()
		l.fs.Remove(p.path)
	}
}

// removePreallocTemps deletes preallocated files a crash left behind.
func (l *Log) removePreallocTemps() error {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", l.dir, err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, preallocSuffix) {
			if err := l.fs.Remove(filepath.Join(l.dir, n)); err != nil {
				return fmt.Errorf("wal: remove %s: %w", n, err)
			}
		}
	}
	return nil
}
