package kv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestSnapshotWhileApplying streams a snapshot on another goroutine while
// Apply keeps writing the same keys and readers read them (run with -race):
// the restored image must be the state at the Snapshot call, dedup table
// included.
func TestSnapshotWhileApplying(t *testing.T) {
	h := newHarness(t)
	h.dedup = true
	for i := range 2000 {
		h.do(fmt.Sprintf("SET k%d v%d", i, i))
		if i%3 == 0 {
			h.do(fmt.Sprintf("EXPIRE k%d %d", i, 100+i))
		}
	}
	h.do("INCR counter")
	want := h.dump()
	fn, err := h.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- fn(&buf) }()
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := []byte("k" + strconv.Itoa((i*7+r)%2000))
				h.s.Get(k, t0)
				h.s.TTL(k, t0)
				if i%500 == 0 {
					h.s.Scan(0, nil, 50, t0)
					h.s.Stats()
				}
			}
		}()
	}
	// Overwrite, delete and add keys while the snapshot streams.
	for i := range 3000 {
		switch i % 3 {
		case 0:
			h.do(fmt.Sprintf("SET k%d changed", i%2000))
		case 1:
			h.do(fmt.Sprintf("DEL k%d", i%2000))
		default:
			h.do(fmt.Sprintf("SET new%d x", i))
		}
	}
	h.do("INCR counter")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(stop)
	readers.Wait()

	s2, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got := dumpStore(t, s2); got != want {
		t.Fatalf("restored state differs from the state at Snapshot()\n got %d bytes\nwant %d bytes", len(got), len(want))
	}
	// The live store kept every later write.
	if v, _ := h.s.Get([]byte("counter"), h.now); string(v) != "2" {
		t.Errorf("counter %q, want 2", v)
	}
	if err := fn(io.Discard); !errors.Is(err, ErrSnapshotUsed) {
		t.Errorf("second call: %v, want ErrSnapshotUsed", err)
	}
	// Once the snapshot is done, later applies merge the overlay back.
	for i := 0; len(h.s.layers) > 1; i++ {
		if i > 100 {
			t.Fatalf("%d layers left after 100 applies", len(h.s.layers))
		}
		h.do("SET x y")
	}
	h.dump()
}

// TestSnapshotNested: a second snapshot taken while the first still streams
// sees its own point in time, and both release their layers.
func TestSnapshotNested(t *testing.T) {
	h := newHarness(t)
	h.do("SET a 1")
	want1 := h.dump()
	fn1, _ := h.s.Snapshot()
	h.do("SET a 2")
	h.do("SET b 2")
	want2 := h.dump()
	fn2, _ := h.s.Snapshot()
	h.do("DEL a")
	h.do("FLUSHDB")
	h.do("SET c 3")
	for _, tc := range []struct {
		fn   func(io.Writer) error
		want string
	}{{fn2, want2}, {fn1, want1}} {
		var buf bytes.Buffer
		if err := tc.fn(&buf); err != nil {
			t.Fatal(err)
		}
		s2, _ := New(Config{})
		if err := s2.Restore(&buf); err != nil {
			t.Fatal(err)
		}
		if got := dumpStore(t, s2); got != tc.want {
			t.Errorf("restored\n%s\nwant\n%s", got, tc.want)
		}
	}
	h.do("SET d 4")
	if got := h.s.Keys([]byte("*"), h.now); len(got) != 2 {
		t.Errorf("keys %v, want c and d", got)
	}
}

// TestRestoreRejectsCorruption: every truncation and every single-byte
// change of a snapshot is rejected, and the store keeps its old state.
func TestRestoreRejectsCorruption(t *testing.T) {
	src := newHarness(t)
	src.dedup = true
	src.run([]string{
		"SET a 1 -> OK",
		"SET b hello EX 100 -> OK",
		"INCR n -> (integer) 1",
		"GETSET a 2 -> \"1\"",
	})
	fn, _ := src.s.Snapshot()
	var buf bytes.Buffer
	if err := fn(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()

	dst := newHarness(t)
	dst.run([]string{"SET keep me -> OK"})
	before := dst.dump()
	try := func(what string, data []byte) {
		t.Helper()
		err := dst.s.Restore(bytes.NewReader(data))
		if err == nil {
			t.Fatalf("%s: restore succeeded", what)
		}
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("%s: error %v does not wrap ErrCorruptSnapshot", what, err)
		}
		if got := dst.dump(); got != before {
			t.Fatalf("%s: state changed by a failed restore", what)
		}
	}
	for n := range len(good) {
		try(fmt.Sprintf("truncated to %d of %d bytes", n, len(good)), good[:n])
	}
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x20
		try(fmt.Sprintf("byte %d flipped", i), bad)
	}
	// A read error is returned as such, not as corruption.
	ioErr := errors.New("disk on fire")
	if err := dst.s.Restore(io.MultiReader(bytes.NewReader(good[:10]), errReader{ioErr})); !errors.Is(err, ioErr) {
		t.Errorf("read error: %v", err)
	}
	// And the intact stream restores.
	if err := dst.s.Restore(bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if got, want := dst.dump(), src.dump(); got != want {
		t.Errorf("restored\n%s\nwant\n%s", got, want)
	}
	// The dedup table came along: a retry of INCR (seq 3) is recognised.
	dst.idx = dst.s.Applied()
	if r := dst.applyCmd(Command{Session: 7, Seq: 3, Now: t0, Op: OpIncrBy, Key: []byte("n"), Int: 1}); r.Int != 1 {
		t.Errorf("retried INCR after restore: %v, want the first result 1", r)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestSnapshotWriteError: a failing writer surfaces the error and still
// releases the frozen layers.
func TestSnapshotWriteError(t *testing.T) {
	h := newHarness(t)
	for i := range 1000 {
		h.do(fmt.Sprintf("SET k%d %0100d", i, i))
	}
	fn, _ := h.s.Snapshot()
	boom := errors.New("boom")
	if err := fn(errWriter{boom}); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	h.do("SET x y")
	if l := len(h.s.layers); l != 1 {
		t.Errorf("%d layers after a failed snapshot and an apply", l)
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

// TestApplyRejectsBadEntries: undecodable data and replayed indexes are
// errors (fatal to the member), not silently skipped.
func TestApplyRejectsBadEntries(t *testing.T) {
	s, _ := New(Config{})
	if _, err := s.Apply([]pb.Entry{{Index: 1, Data: []byte{0x7f, 1, 2}}}); !errors.Is(err, ErrMalformedCommand) {
		t.Errorf("garbage entry: %v", err)
	}
	c := Command{Op: OpSet, Key: []byte("k"), Value: []byte("v"), Now: t0}
	data, _ := c.Encode()
	res, err := s.Apply([]pb.Entry{{Index: 1, Data: data}, {Index: 2}, {Index: 3, Type: pb.EntryConfChange, Data: []byte{1}}})
	if err != nil || res[1] != nil || res[2] != nil {
		t.Fatalf("apply: %v %v", res, err)
	}
	if s.Applied() != 3 {
		t.Errorf("applied %d, want 3", s.Applied())
	}
	if _, err := s.Apply([]pb.Entry{{Index: 3, Data: data}}); err == nil {
		t.Error("re-applying index 3 succeeded")
	}
}

// TestSnapshotCopyOnWrite checks the memory claim: taking a snapshot copies
// nothing, and a pending snapshot costs one overlay entry per key written
// since, not a second copy of the keyspace.
func TestSnapshotCopyOnWrite(t *testing.T) {
	h := newHarness(t)
	for i := range 1000 {
		h.do(fmt.Sprintf("SET k%d v", i))
	}
	base := h.s.layers[0]
	fn, _ := h.s.Snapshot()
	if len(h.s.layers) != 2 || h.s.layers[0] != base || len(h.s.layers[1].m) != 0 {
		t.Fatalf("after Snapshot: %d layers, overlay of %d", len(h.s.layers), len(h.s.layers[1].m))
	}
	for i := range 10 {
		h.do(fmt.Sprintf("SET k%d w", i))
		h.do(fmt.Sprintf("DEL k%d", 500+i))
	}
	if n := len(h.s.layers[1].m); n != 20 {
		t.Errorf("overlay holds %d entries for 20 keys written", n)
	}
	if n := len(base.m); n != 1000 {
		t.Errorf("frozen layer changed: %d keys", n)
	}
	if err := fn(io.Discard); err != nil {
		t.Fatal(err)
	}
	h.do("SET x y")
	if len(h.s.layers) != 1 || h.s.layers[0] != base || len(base.m) != 1000-10+1 {
		t.Errorf("after merge: %d layers, %d keys in base", len(h.s.layers), len(base.m))
	}
}

// FuzzRestore: no input makes Restore panic or allocate beyond what it
// reads; every rejection wraps ErrCorruptSnapshot; an accepted stream
// re-snapshots to the same bytes.
func FuzzRestore(f *testing.F) {
	h := newHarness(f)
	h.dedup = true
	h.run([]string{"SET a 1 -> OK", "SET b 2 EX 10 -> OK", "INCR n -> (integer) 1", "GETDEL a -> \"1\""})
	fn, _ := h.s.Snapshot()
	var buf bytes.Buffer
	if err := fn(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("RKVS\x01\x00\x00\x00\xff\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _ := New(Config{})
		err := s.Restore(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("error %v does not wrap ErrCorruptSnapshot", err)
			}
			return
		}
		dumpStore(t, s) // counters and indexes agree
		fn, _ := s.Snapshot()
		var out bytes.Buffer
		if err := fn(&out); err != nil {
			t.Fatal(err)
		}
		s2, _ := New(Config{})
		if err := s2.Restore(&out); err != nil {
			t.Fatalf("re-snapshot does not restore: %v", err)
		}
		if a, b := dumpStore(t, s), dumpStore(t, s2); a != b {
			t.Fatalf("round trip changed the state\n%s\n---\n%s", a, b)
		}
	})
}
