package kv

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestDedupSameBytesApplyOnce: a proposal that reaches the log twice (the
// proposer retried after a timeout, or the replica re-proposed it after a
// leader change) is applied once and both entries return the first result.
// This is the bug Jepsen found in redisraft with INCR.
func TestDedupSameBytesApplyOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  Command
		want string
	}{
		{"incr", Command{Op: OpIncrBy, Key: []byte("n"), Int: 1}, "1"},
		{"append", Command{Op: OpAppend, Key: []byte("n"), Value: []byte("x")}, "x"},
		{"getset", Command{Op: OpGetSet, Key: []byte("n"), Value: []byte("v")}, "v"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{})
			if err != nil {
				t.Fatal(err)
			}
			c := tc.cmd
			c.Session, c.Seq, c.Now = 99, 1, t0
			data, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Apply([]pb.Entry{{Index: 1, Data: data}, {Index: 2, Data: bytes.Clone(data)}})
			if err != nil {
				t.Fatal(err)
			}
			if !res[0].(Result).equal(res[1].(Result)) {
				t.Errorf("results differ: %v then %v", res[0], res[1])
			}
			// Much later (but inside the window), a third copy.
			c.Now = t0 + 60_000
			data3, _ := c.Encode()
			res3, err := s.Apply([]pb.Entry{{Index: 3, Data: data3}})
			if err != nil {
				t.Fatal(err)
			}
			if !res3[0].(Result).equal(res[0].(Result)) {
				t.Errorf("third copy: %v, want the first result %v", res3[0], res[0])
			}
			if v, _ := s.Get([]byte("n"), t0); string(v) != tc.want {
				t.Errorf("value %q, want %q (applied more than once?)", v, tc.want)
			}
			// A different Seq is a different proposal.
			c.Seq = 2
			data4, _ := c.Encode()
			if _, err := s.Apply([]pb.Entry{{Index: 4, Data: data4}}); err != nil {
				t.Fatal(err)
			}
			if v, _ := s.Get([]byte("n"), t0); string(v) == tc.want && tc.name != "getset" {
				t.Errorf("seq 2 was not applied")
			}
		})
	}
}

// TestDedupEviction: records leave by entry time (not wall clock) and by
// cap; a retry of a forgotten proposal is refused rather than applied again;
// Session 0 is never deduplicated.
func TestDedupEviction(t *testing.T) {
	s, err := New(Config{DedupWindow: time.Minute, DedupMaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, s: s, now: t0}
	incr := func(session, seq uint64) Result {
		return h.applyCmd(Command{Session: session, Seq: seq, Now: h.now, Op: OpIncrBy, Key: []byte("n"), Int: 1})
	}
	for seq := uint64(1); seq <= 3; seq++ {
		incr(1, seq)
	}
	if got := s.Stats().DedupEntries; got != 3 {
		t.Fatalf("dedup entries %d, want 3", got)
	}
	incr(1, 4) // over the cap: seq 1 is forgotten
	if got := s.Stats().DedupEntries; got != 3 {
		t.Fatalf("dedup entries %d after cap, want 3", got)
	}
	if r := incr(1, 1); r.Err != ErrMsgDedupExpired {
		t.Errorf("retry of a forgotten proposal: %v, want %q", r, ErrMsgDedupExpired)
	}
	if r := incr(1, 4); r.Int != 4 {
		t.Errorf("retry of a remembered proposal: %v, want its first result 4", r)
	}
	// Another session is unaffected by session 1's floor.
	if r := incr(2, 1); r.Int != 5 {
		t.Errorf("session 2 seq 1: %v, want 5", r)
	}
	// Entry time passes the window: everything is forgotten, floors too.
	h.now += time.Minute.Milliseconds() + 1
	incr(3, 1)
	if got := s.Stats().DedupEntries; got != 1 {
		t.Errorf("dedup entries %d after the window, want 1", got)
	}
	h.now += time.Minute.Milliseconds() + 1
	incr(3, 2)
	if r := incr(1, 1); r.IsError() {
		t.Errorf("after two windows a session's floor is gone; got %v", r)
	}
	// Session 0: no dedup.
	a := h.applyCmd(Command{Now: h.now, Op: OpIncrBy, Key: []byte("z"), Int: 1})
	b := h.applyCmd(Command{Now: h.now, Op: OpIncrBy, Key: []byte("z"), Int: 1})
	if a.Int != 1 || b.Int != 2 {
		t.Errorf("session 0 applied %v, %v; want 1, 2", a, b)
	}
}

// TestDedupChunks drives the chunked queue across many chunk boundaries and
// checks lookups and eviction against the cap.
func TestDedupChunks(t *testing.T) {
	tab := newDedupTable(1<<40, 3000)
	for seq := uint64(1); seq <= 10*dedupChunk+7; seq++ {
		tab.add(5, seq, int64(seq), Int(int64(seq)))
		tab.evict(int64(seq))
		if tab.len() > 3000 {
			t.Fatalf("len %d over cap", tab.len())
		}
	}
	last := uint64(10*dedupChunk + 7)
	for seq := last - 2999; seq <= last; seq++ {
		res, ok, _ := tab.lookup(5, seq, int64(last))
		if !ok || res.Int != int64(seq) {
			t.Fatalf("lookup %d: %v %v", seq, res, ok)
		}
	}
	if _, ok, tooOld := tab.lookup(5, last-3000, int64(last)); ok || !tooOld {
		t.Fatalf("evicted seq: ok %v tooOld %v", ok, tooOld)
	}
	if len(tab.chunks) > 3000/dedupChunk+2 {
		t.Errorf("%d chunks kept for 3000 records", len(tab.chunks))
	}
}

// TestDedupIndexSlabs: records of several sessions, added out of seq
// order across slab boundaries, are found by their own (session, seq) and
// no other, and the index holds no slab once every record is evicted.
func TestDedupIndexSlabs(t *testing.T) {
	tab := newDedupTable(1000, 1<<20)
	var seqs []uint64
	for base := uint64(0); base < 5*seqsPerSlab; base += 10 {
		for i := uint64(10); i > 0; i-- { // each run of ten backwards
			seqs = append(seqs, base+i)
		}
	}
	for _, seq := range seqs {
		for session := uint64(1); session <= 2; session++ {
			tab.add(session, seq, 1, Int(int64(seq*10+session)))
		}
	}
	for _, seq := range seqs {
		for session := uint64(1); session <= 2; session++ {
			res, ok, _ := tab.lookup(session, seq, 1)
			if !ok || res.Int != int64(seq*10+session) {
				t.Fatalf("lookup (%d, %d) = %v, %v", session, seq, res, ok)
			}
		}
	}
	if _, ok, _ := tab.lookup(3, seqs[0], 1); ok {
		t.Fatal("found a record of a session never added")
	}
	if _, ok, _ := tab.lookup(1, 5*seqsPerSlab+1, 1); ok {
		t.Fatal("found a seq never added")
	}
	tab.evict(2000) // past the window: everything goes
	if tab.len() != 0 || len(tab.index) != 0 {
		t.Fatalf("after evicting everything: %d records, %d index slabs", tab.len(), len(tab.index))
	}
}

// TestAppendSizeLimit: APPEND cannot grow a value past MaxStringSize (Redis
// checkStringLength), and the refused APPEND changes nothing.
func TestAppendSizeLimit(t *testing.T) {
	s, err := New(Config{MaxStringSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, s: s, now: t0}
	h.run([]string{
		"APPEND k 12345 -> (integer) 5",
		"APPEND k 67890 -> (integer) 10",
		"APPEND k x -> (error) " + ErrMsgStringTooLong,
		"GET k -> \"1234567890\"",
	})
	if _, err := New(Config{MaxStringSize: -1, DedupMaxEntries: -1, DedupWindow: -1}); err == nil ||
		strings.Count(err.Error(), "kv:") != 3 {
		t.Errorf("Validate: %v, want three problems", err)
	}
}

// TestBatchAppliesInOrderAndDedupsEach: a batch applies its commands in
// order in one entry and answers each; the same batch reaching the log again
// (a retry after a leader change) applies none of them twice and answers
// with the first results, and a batch that shares some commands with an
// applied one applies only the new ones.
func TestBatchAppliesInOrderAndDedupsEach(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	incr := func(seq uint64) Command {
		return Command{Session: 5, Seq: seq, Now: t0, Op: OpIncrBy, Key: []byte("n"), Int: 1}
	}
	set := Command{Session: 5, Seq: 1, Now: t0, Op: OpSet, Key: []byte("n"), Value: []byte("10")}
	b := Command{Op: OpBatch, Batch: []Command{set, incr(2), incr(3)}}
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b2 := Command{Op: OpBatch, Batch: []Command{incr(3), incr(4)}}
	data2, err := b2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Apply([]pb.Entry{{Index: 1, Data: data}, {Index: 2, Data: bytes.Clone(data)}, {Index: 3, Data: data2}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Result{{OK(), Int(11), Int(12)}, {OK(), Int(11), Int(12)}, {Int(12), Int(13)}}
	for i, w := range want {
		got, ok := res[i].([]Result)
		if !ok || len(got) != len(w) {
			t.Fatalf("entry %d: result %#v, want %v", i+1, res[i], w)
		}
		for j := range w {
			if !got[j].equal(w[j]) {
				t.Errorf("entry %d command %d: %v, want %v", i+1, j, got[j], w[j])
			}
		}
	}
	if v, _ := s.Get([]byte("n"), t0); string(v) != "13" {
		t.Errorf("n = %q, want 13 (each increment applied once)", v)
	}
}

// TestDedupAcks: a proposer that acknowledges keeps the table as small as
// what it has in flight; a retry below the ack is refused (never applied
// again), one above it is answered from the table; and a store restored
// from a snapshot taken mid-stream goes on exactly like the original.
func TestDedupAcks(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, s: s, now: t0}
	incr := func(h *harness, seq, ack uint64) Result {
		return h.applyCmd(Command{Session: 9, Seq: seq, Ack: ack, Now: h.now, Op: OpIncrBy, Key: []byte("n"), Int: 1})
	}
	// Seqs apply slightly out of order (two connections racing), with the
	// ack trailing what is in flight.
	var snap bytes.Buffer
	var snapIdx pb.Index
	first := map[uint64]Result{}
	for seq := uint64(1); seq <= 1000; seq += 2 {
		first[seq+1] = incr(h, seq+1, max(seq, 2)-1)
		first[seq] = incr(h, seq, max(seq, 2)-1)
		if seq == 501 {
			snapIdx = h.idx
			fn, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if err := fn(&snap); err != nil {
				t.Fatal(err)
			}
		}
	}
	afterLoop := s.Stats().DedupEntries
	if afterLoop > 4 {
		t.Fatalf("dedup entries %d with acks trailing by 2, want at most 4", afterLoop)
	}
	if r := incr(h, 10, 999); r.Err != ErrMsgDedupExpired {
		t.Errorf("retry of an acknowledged seq: %v, want %q", r, ErrMsgDedupExpired)
	}
	if r := incr(h, 1000, 999); !r.equal(first[1000]) {
		t.Errorf("retry of an unacknowledged seq: %v, want its first result %v", r, first[1000])
	}
	if v, _ := s.Get([]byte("n"), h.now); string(v) != "1000" {
		t.Fatalf("n = %q, want 1000 (a retry applied again?)", v)
	}

	// The restored store evicts and answers exactly as the original did
	// from the same point on.
	s2, _ := New(Config{})
	if err := s2.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	h2 := &harness{t: t, s: s2, now: t0, idx: snapIdx}
	for seq := uint64(503); seq <= 1000; seq += 2 {
		incr(h2, seq+1, max(seq, 2)-1)
		incr(h2, seq, max(seq, 2)-1)
	}
	if got := s2.Stats().DedupEntries; got != afterLoop {
		t.Errorf("restored store holds %d dedup entries, the original held %d", got, afterLoop)
	}
	for seq, want := range map[uint64]Result{10: Error(ErrMsgDedupExpired), 1000: first[1000]} {
		if r := incr(h2, seq, 999); !r.equal(want) {
			t.Errorf("restored store answers seq %d with %v, want %v", seq, r, want)
		}
	}
	if got, want := s2.Stats().DedupEntries, s.Stats().DedupEntries; got != want {
		t.Errorf("after the same retries: restored %d dedup entries, original %d", got, want)
	}
}

// TestBatchesOfEverySizeApplyAsSingleCommands: batches decoded into the
// Store's reused array (sizes up and down, one past maxBatchBuf) answer and
// leave the data exactly as the same commands applied one entry each, and
// the array keeps no command (nor the entry data it aliases) once Apply
// returns.
func TestBatchesOfEverySizeApplyAsSingleCommands(t *testing.T) {
	batched, _ := New(Config{})
	single, _ := New(Config{})
	var seq uint64
	cmd := func(i int) Command {
		seq++
		key := []byte(fmt.Sprintf("k%d", i%7))
		switch i % 3 {
		case 0:
			return Command{Session: 9, Seq: seq, Now: t0, Op: OpSet, Key: key, Value: []byte(fmt.Sprintf("v%d", i))}
		case 1:
			return Command{Session: 9, Seq: seq, Now: t0, Op: OpAppend, Key: key, Value: []byte("+")}
		}
		return Command{Session: 9, Seq: seq, Now: t0, Op: OpGetSet, Key: key, Value: []byte(fmt.Sprintf("g%d", i))}
	}
	var bi, si pb.Index
	n := 0
	for _, size := range []int{3, 16, 2, maxBatchBuf + 1, 1, 16, 40} {
		b := Command{Op: OpBatch}
		var want []Result
		for range size {
			c := cmd(n)
			n++
			b.Batch = append(b.Batch, c)
			data, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			si++
			res, err := single.Apply([]pb.Entry{{Index: si, Data: data}})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, res[0].(Result))
		}
		data, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		bi++
		res, err := batched.Apply([]pb.Entry{{Index: bi, Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		got := res[0].([]Result)
		if len(got) != size {
			t.Fatalf("batch of %d: %d results", size, len(got))
		}
		for j := range got {
			if !got[j].equal(want[j]) {
				t.Errorf("batch of %d, command %d: %v, want %v", size, j, got[j], want[j])
			}
		}
		for j, c := range batched.batchBuf[:cap(batched.batchBuf)] {
			if c.Key != nil || c.Value != nil || c.Op != 0 {
				t.Fatalf("after a batch of %d, the reused array still holds command %d: %+v", size, j, c)
			}
		}
	}
	if cap(batched.batchBuf) == 0 || cap(batched.batchBuf) > maxBatchBuf {
		t.Errorf("reused array of capacity %d, want 1..%d", cap(batched.batchBuf), maxBatchBuf)
	}
	for i := range 7 {
		k := []byte(fmt.Sprintf("k%d", i))
		a, aok := batched.Get(k, t0)
		b, bok := single.Get(k, t0)
		if aok != bok || string(a) != string(b) {
			t.Errorf("%s: batched %q (%v), one by one %q (%v)", k, a, aok, b, bok)
		}
	}
}

// TestBadBatchLeavesNothingInTheReusedArray: a batch whose second command is
// malformed fails Apply, and the commands decoded before the failure do not
// stay behind in the reused array.
func TestBadBatchLeavesNothingInTheReusedArray(t *testing.T) {
	s, _ := New(Config{})
	good := Command{Op: OpBatch, Batch: []Command{{Now: t0, Op: OpSet, Key: []byte("a"), Value: []byte("1")}, {Now: t0, Op: OpSet, Key: []byte("b"), Value: []byte("2")}}}
	data, err := good.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply([]pb.Entry{{Index: 1, Data: data}}); err != nil {
		t.Fatal(err)
	}
	sub, err := (&Command{Now: t0, Op: OpSet, Key: []byte("c"), Value: []byte("3")}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	bad := appendBytes(appendBytes([]byte{1, 0, 0, 0, byte(OpBatch), 0, 2}, sub), []byte{0xff})
	if _, err := s.Apply([]pb.Entry{{Index: 2, Data: bad}}); err == nil || !strings.Contains(err.Error(), "batch command 1") {
		t.Fatalf("Apply of a batch with a malformed command: %v, want a decode error naming command 1", err)
	}
	for j, c := range s.batchBuf[:cap(s.batchBuf)] {
		if c.Key != nil || c.Op != 0 {
			t.Fatalf("the reused array still holds command %d: %+v", j, c)
		}
	}
}
