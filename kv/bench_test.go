package kv

import (
	"fmt"
	"io"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

const benchKeys = 100_000

func benchEntries(b *testing.B, n int, valueSize int, dedup bool) []pb.Entry {
	b.Helper()
	val := make([]byte, valueSize)
	entries := make([]pb.Entry, n)
	for i := range entries {
		c := Command{Now: t0, Op: OpSet, Key: []byte(fmt.Sprintf("key:%012d", i%benchKeys)), Value: val}
		if dedup {
			c.Session, c.Seq = 1, uint64(i+1)
		}
		data, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = pb.Entry{Index: pb.Index(i + 1), Data: data}
	}
	return entries
}

// BenchmarkApplySet: SETs of 256-byte values over 100k keys, applied in
// batches of 64 entries, each with its own (Session, Seq) as the server
// proposes them. Encoding is included (it is a small part).
func BenchmarkApplySet(b *testing.B) {
	// unacked: the proposer never acknowledges, so the dedup table fills to
	// its cap; acked: it acknowledges all but the last 64 proposals.
	for _, acked := range []bool{false, true} {
		name := "unacked"
		if acked {
			name = "acked"
		}
		b.Run(name, func(b *testing.B) { benchApplySet(b, acked) })
	}
}

func benchApplySet(b *testing.B, acked bool) {
	s, _ := New(Config{})
	const batch = 64
	val := make([]byte, 256)
	entries := make([]pb.Entry, batch)
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%012d", i))
	}
	b.SetBytes(256)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for j := range n {
			seq := uint64(i + j + 1)
			c := Command{Session: 1, Seq: seq, Now: t0 + int64(i+j)/1000, Op: OpSet, Key: keys[(i+j)%benchKeys], Value: val}
			if acked && seq > batch {
				c.Ack = seq - batch
			}
			data, err := c.AppendBinary(entries[j].Data[:0])
			if err != nil {
				b.Fatal(err)
			}
			entries[j] = pb.Entry{Index: pb.Index(i + j + 1), Data: data}
		}
		if _, err := s.Apply(entries[:n]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyBatch: what a -P 16 pipeline becomes, one OpBatch entry of
// 16 SETs (256-byte values over 10,000 keys), applied 4 entries at a time as
// a follower receives them. Reported per SET.
func BenchmarkApplyBatch(b *testing.B) {
	const perEntry, perApply, keys = 16, 4, 10_000
	s, _ := New(Config{})
	val := make([]byte, 256)
	keyNames := make([][]byte, keys)
	for i := range keyNames {
		keyNames[i] = []byte(fmt.Sprintf("key:%012d", i))
	}
	entries := make([]pb.Entry, perApply)
	sub := make([]Command, perEntry)
	seq := uint64(0)
	b.SetBytes(256)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += perEntry * perApply {
		for j := range entries {
			for k := range sub {
				seq++
				sub[k] = Command{Session: 1, Seq: seq, Now: t0, Op: OpSet, Key: keyNames[int(seq)%keys], Value: val}
			}
			c := Command{Op: OpBatch, Batch: sub}
			data, err := c.AppendBinary(entries[j].Data[:0])
			if err != nil {
				b.Fatal(err)
			}
			entries[j] = pb.Entry{Index: pb.Index(i/perEntry + j + 1), Data: data}
		}
		if _, err := s.Apply(entries); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s, _ := New(Config{})
	if _, err := s.Apply(benchEntries(b, benchKeys, 256, false)); err != nil {
		b.Fatal(err)
	}
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%012d", i*97%benchKeys))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := s.Get(keys[i&1023], t0); !ok {
				b.Fatal("missing key")
			}
			i++
		}
	})
}

// BenchmarkSnapshot: streaming a snapshot of 100k keys with 256-byte
// values to io.Discard (MB/s is of the stream).
func BenchmarkSnapshot(b *testing.B) {
	s, _ := New(Config{})
	if _, err := s.Apply(benchEntries(b, benchKeys, 256, false)); err != nil {
		b.Fatal(err)
	}
	var size countWriter
	fn, _ := s.Snapshot()
	if err := fn(&size); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		fn, err := s.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := fn(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestore: reading back the same snapshot.
func BenchmarkRestore(b *testing.B) {
	s, _ := New(Config{})
	if _, err := s.Apply(benchEntries(b, benchKeys, 256, false)); err != nil {
		b.Fatal(err)
	}
	var buf bytesBuffer
	fn, _ := s.Snapshot()
	if err := fn(&buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s2, _ := New(Config{})
		if err := s2.Restore(&bytesReader{b: buf}); err != nil {
			b.Fatal(err)
		}
	}
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

type bytesBuffer []byte

func (w *bytesBuffer) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

type bytesReader struct{ b []byte }

func (r *bytesReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
