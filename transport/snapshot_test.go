package transport

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// genReader yields n deterministic pseudo-random bytes without holding them.
type genReader struct {
	n, off int64
	state  uint64
	failAt int64 // if > 0, Read fails once off reaches it
	closed atomic.Bool
}

func newGen(n int64) *genReader { return &genReader{n: n, state: 0x9E3779B97F4A7C15} }

func (g *genReader) Read(p []byte) (int, error) {
	if g.failAt > 0 && g.off >= g.failAt {
		return 0, errors.New("disk on fire")
	}
	if g.off >= g.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.n-g.off)]
	// Position-derived bytes (8 at a time) keep generation cheap under -race.
	var w [8]byte
	for i := 0; i < len(p); i += 8 {
		x := (uint64(g.off) + uint64(i)) / 8 * g.state
		binary.LittleEndian.PutUint64(w[:], x^x>>29)
		copy(p[i:], w[:])
	}
	g.off += int64(len(p))
	return len(p), nil
}

func (g *genReader) Close() error { g.closed.Store(true); return nil }

func snapMsg(from, to raftpb.NodeID) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgSnap, From: from, To: to, Term: 4,
		Snapshot: &raftpb.SnapshotMeta{Index: 1000, Term: 3, ConfState: raftpb.ConfState{Voters: []raftpb.NodeID{1, 2}}}}
}

func crcOf(r io.Reader) (uint32, int64, error) {
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, r)
	return h.Sum32(), n, err
}

// TestSnapshotStreamBoundedMemory streams 64 MiB and checks that it arrives
// intact, is reported ok, and that neither side buffers it: the heap grows
// by a few chunks at most.
func TestSnapshotStreamBoundedMemory(t *testing.T) {
	const size = 64 << 20
	a, b := newNode(t, 1), newNode(t, 2)
	mesh(t, a, b)
	want, _, _ := crcOf(newGen(size))

	var peakHeap atomic.Uint64
	var gotSum uint32
	var gotN int64
	b.rec.onSnap = func(m raftpb.Message, data io.Reader) error {
		h := crc32.New(castagnoli)
		buf := make([]byte, 256<<10)
		var ms runtime.MemStats
		for i := 0; ; i++ {
			n, err := data.Read(buf)
			h.Write(buf[:n])
			gotN += int64(n)
			if i%64 == 0 {
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > peakHeap.Load() {
					peakHeap.Store(ms.HeapAlloc)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		gotSum = h.Sum32()
		return nil
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	data := newGen(size)
	a.SendSnapshot(snapMsg(1, 2), data, size)
	waitFor(t, "snapshot report", func() bool { return len(a.rec.reports()) == 1 })
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	if r := a.rec.reports()[0]; !r.ok || r.id != 2 {
		t.Fatalf("report = %+v, want ok for 2", r)
	}
	if gotN != size || gotSum != want {
		t.Fatalf("received %d bytes crc %08x, want %d crc %08x", gotN, gotSum, size, want)
	}
	if !data.closed.Load() {
		t.Fatal("data not closed")
	}
	m := b.rec.snapshots[0]
	if m.Snapshot == nil || m.Snapshot.Index != 1000 || len(m.Snapshot.ConfState.Voters) != 2 {
		t.Fatalf("snapshot metadata not delivered: %+v", m)
	}
	growth := int64(peakHeap.Load()) - int64(before.HeapAlloc)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("64 MiB snapshot: peak heap growth %d KiB, total allocated %d KiB", growth/1024, allocated/1024)
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d bytes while streaming %d", growth, size)
	}
	if allocated > 32<<20 {
		t.Fatalf("allocated %d bytes to stream %d: data is being copied or buffered", allocated, size)
	}
	sa, sb := a.PeerStats()[2], b.PeerStats()[1]
	if sa.SnapshotsSent != 1 || sa.SnapshotBytesSent != size || sb.SnapshotsReceived != 1 || sb.SnapshotBytesReceived != size {
		t.Fatalf("snapshot stats: sender %+v receiver %+v", sa, sb)
	}
}

// TestSnapshotFailures checks that every way a snapshot can go wrong ends in
// ReportSnapshot(false) for the sender, with data closed.
func TestSnapshotFailures(t *testing.T) {
	tests := []struct {
		name     string
		data     func() *genReader
		size     int64
		onSnap   func(m raftpb.Message, data io.Reader) error
		recvErr  string // substring of the error the receiving handler saw
		noRecv   bool   // the receiver's handler is never called
		mesh     bool
		snapSend func(a *node, g *genReader)
	}{
		{
			name:    "sender data breaks mid-stream",
			data:    func() *genReader { g := newGen(8 << 20); g.failAt = 3 << 20; return g },
			size:    8 << 20,
			recvErr: "unexpected EOF",
		},
		{
			name:    "data shorter than declared",
			data:    func() *genReader { return newGen(2 << 20) },
			size:    3 << 20,
			recvErr: "unexpected EOF",
		},
		{
			name:    "receiver handler refuses",
			data:    func() *genReader { return newGen(1 << 20) },
			size:    1 << 20,
			onSnap:  func(raftpb.Message, io.Reader) error { return errors.New("no space left") },
			recvErr: "no space left",
		},
		{
			name: "receiver handler ignores a broken stream",
			data: func() *genReader { g := newGen(8 << 20); g.failAt = 2 << 20; return g },
			size: 8 << 20,
			onSnap: func(_ raftpb.Message, r io.Reader) error {
				io.Copy(io.Discard, r)
				return nil
			},
		},
		{
			name:   "unknown peer",
			data:   func() *genReader { return newGen(10) },
			size:   10,
			noRecv: true,
			snapSend: func(a *node, g *genReader) {
				a.SendSnapshot(snapMsg(1, 9), g, 10)
			},
		},
		{
			name:   "not a MsgSnap",
			data:   func() *genReader { return newGen(10) },
			size:   10,
			noRecv: true,
			snapSend: func(a *node, g *genReader) {
				m := snapMsg(1, 2)
				m.Snapshot = nil
				a.SendSnapshot(m, g, 10)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newNode(t, 1, func(c *Config) { c.SnapshotChunkSize = 256 << 10 }), newNode(t, 2)
			mesh(t, a, b)
			b.rec.onSnap = tc.onSnap
			g := tc.data()
			if tc.snapSend != nil {
				tc.snapSend(a, g)
			} else {
				a.SendSnapshot(snapMsg(1, 2), g, tc.size)
			}
			waitFor(t, "snapshot report", func() bool { return len(a.rec.reports()) == 1 })
			if r := a.rec.reports()[0]; r.ok {
				t.Fatalf("report = %+v, want failure", r)
			}
			if !g.closed.Load() {
				t.Fatal("data not closed")
			}
			if tc.noRecv {
				if len(b.rec.snapErrors()) != 0 {
					t.Fatal("receiver handler called")
				}
				return
			}
			waitFor(t, "receiver finished", func() bool { return b.PeerStats()[1].SnapshotsReceiveFailed == 1 })
			errs := b.rec.snapErrors()
			if len(errs) != 1 {
				t.Fatalf("receiver handler called %d times", len(errs))
			}
			if tc.recvErr != "" && (errs[0] == nil || !strings.Contains(errs[0].Error(), tc.recvErr)) {
				t.Fatalf("receiver saw %v, want %q", errs[0], tc.recvErr)
			}
			if a.PeerStats()[2].SnapshotsSendFailed != 1 {
				t.Fatal("send failure not counted")
			}
		})
	}
}

// TestSnapshotViaSendReportsFailure checks that a MsgSnap wrongly given to
// Send is not silently lost: Raft hears the snapshot failed and retries.
func TestSnapshotViaSendReportsFailure(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	mesh(t, a, b)
	a.Send([]raftpb.Message{snapMsg(1, 2)})
	waitFor(t, "snapshot failure report", func() bool { return len(a.rec.reports()) == 1 })
	if r := a.rec.reports()[0]; r.ok || r.id != 2 {
		t.Fatalf("report = %+v", r)
	}
}

// TestSnapshotReaderRejectsCorruption feeds the receiver's reader streams
// whose end frame disagrees with the data.
func TestSnapshotReaderRejectsCorruption(t *testing.T) {
	// An honest sender cannot produce these; drive the reader directly.
	for _, tc := range []struct {
		name  string
		total uint64
		crc   func(uint32) uint32
		size  int64
		want  string
	}{
		{"bad crc", 5, func(c uint32) uint32 { return c ^ 1 }, 5, "checksum"},
		{"bad total", 6, func(c uint32) uint32 { return c }, 5, "sender counted"},
		{"size mismatch", 5, func(c uint32) uint32 { return c }, 7, "declared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stream []byte
			stream = append(appendFrameHeader(stream, frameSnapChunk, 5), "hello"...)
			c := tc.crc(crc32.Checksum([]byte("hello"), castagnoli))
			end := binary.BigEndian.AppendUint64(nil, tc.total)
			end = binary.BigEndian.AppendUint32(end, c)
			stream = append(appendFrameHeader(stream, frameSnapEnd, len(end)), end...)
			sr := &snapReader{conn: noDeadline{}, br: newBufReader(strings.NewReader(string(stream))),
				max: 1 << 20, timeout: 1, crc: crc32.New(castagnoli), size: tc.size}
			_, err := io.ReadAll(sr)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

type noDeadline struct{}

func (noDeadline) SetReadDeadline(time.Time) error { return nil }
