package wal

import (
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/internal/vfs"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// benchSegmentSize is smaller than the default so that the warm-up
// reaches a second (preallocated) segment quickly; rotation and
// preallocation costs per byte logged are the same.
const benchSegmentSize = 8 << 20

func (l *Log) tailSeq() uint64 {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if t := l.tail(); t != nil {
		return t.seq
	}
	return 0
}

// BenchmarkAppend measures durable appends (Save with sync) of 256-byte
// entries on the real disk under b.TempDir() (check it is not tmpfs:
// stat -f). One op is one Save of a batch; it reports entries/s and the
// fsyncs per op (1 means no extra fsyncs for rotation or metadata). The
// "first" cases append to a new log's first segment, where every member
// starts (it is not preallocated); the others to a later one.
//
//	go test ./wal -run '^$' -bench 'Append|RawFdatasync' -benchtime 2000x
func BenchmarkAppend(b *testing.B) {
	for _, cfg := range []struct {
		batch    int
		prealloc bool
		first    bool
	}{{1, true, false}, {16, true, false}, {256, true, false}, {1, false, false}, {16, false, false}, {256, false, false},
		{1, true, true}, {16, true, true}} {
		name := fmt.Sprintf("batch=%d", cfg.batch)
		if !cfg.prealloc {
			name += "/noprealloc"
		}
		if cfg.first {
			name += "/first"
		}
		batch := cfg.batch
		b.Run(name, func(b *testing.B) {
			in := vfs.NewInjector(vfs.Default)
			l, err := Open(b.TempDir(), testID, Options{FS: in, NoPreallocate: !cfg.prealloc, SegmentSize: benchSegmentSize})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := make([]byte, 256)
			es := make([]pb.Entry, batch)
			next := pb.Index(1)
			// Warm up outside the timing: fill the first segment (never
			// preallocated) so the timed appends run in steady state, on a
			// preallocated segment when preallocation is on.
			big := make([]pb.Entry, 256)
			for !cfg.first && l.tailSeq() < 2 {
				for j := range big {
					big[j] = pb.Entry{Term: 1, Index: next, Data: make([]byte, 1024)}
					next++
				}
				if err := l.Save(pb.HardState{Term: 1}, big, true); err != nil {
					b.Fatal(err)
				}
			}
			syncs0 := in.Count(vfs.OpSync) + in.Count(vfs.OpSyncDir)
			b.SetBytes(int64(batch * len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range es {
					es[j] = pb.Entry{Term: 1, Index: next, Data: data}
					next++
				}
				if err := l.Save(pb.HardState{Term: 1, Commit: next - 1}, es, true); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			syncs := in.Count(vfs.OpSync) + in.Count(vfs.OpSyncDir) - syncs0
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(syncs)/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkRawFdatasync is the floor BenchmarkAppend/batch=1 is compared
// with: one 256-byte write plus fdatasync, appending to a growing file
// (the size changes, so the journal commits too) and rewriting the same
// block in place (the cheapest durable write there is).
func BenchmarkRawFdatasync(b *testing.B) {
	for _, mode := range []string{"append", "overwrite"} {
		b.Run(mode, func(b *testing.B) {
			f, err := vfs.Default.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 256)
			if mode == "overwrite" {
				f.Write(buf)
				f.Sync()
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if mode == "overwrite" {
					f.Seek(0, io.SeekStart)
				}
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
