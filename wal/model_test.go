package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// model is the naive reference the crash and error-injection tests check
// the log against: the Raft state a stream of records adds up to, kept
// with the plainest data structures.
type model struct {
	hs   pb.HardState
	cs   pb.ConfState
	snap pb.SnapshotMeta
	log  map[pb.Index]pb.Entry
	last pb.Index
}

func newModel() *model { return &model{log: map[pb.Index]pb.Entry{}} }

// mrec is one record of the reference stream.
type mrec struct {
	kind recordType
	e    pb.Entry
	hs   pb.HardState
	cs   pb.ConfState
	meta pb.SnapshotMeta
}

func (m *model) apply(r mrec) {
	switch r.kind {
	case recEntry:
		if r.e.Index <= m.snap.Index {
			return
		}
		for i := r.e.Index; i <= m.last; i++ {
			delete(m.log, i)
		}
		m.log[r.e.Index] = r.e
		m.last = r.e.Index
	case recHardState:
		m.hs = r.hs
	case recConfState:
		m.cs = r.cs
	case recSnapshot:
		if r.meta.Index <= m.snap.Index {
			return
		}
		e, ok := m.log[r.meta.Index]
		kept := ok && e.Term == r.meta.Term
		for i := range m.log {
			if !kept || i <= r.meta.Index {
				delete(m.log, i)
			}
		}
		if !kept {
			m.last = r.meta.Index
		}
		if !kept || len(m.cs.Voters)+len(m.cs.Learners) == 0 {
			m.cs = r.meta.ConfState
		}
		m.snap = r.meta
	}
}

// records returns what Save(hs, ents) appends given the model's state.
func (m *model) saveRecords(hs pb.HardState, ents []pb.Entry) []mrec {
	var rs []mrec
	cur := m.hs
	for _, e := range ents {
		if e.Index > m.snap.Index {
			rs = append(rs, mrec{kind: recEntry, e: e})
		}
	}
	if !hs.IsEmpty() && hs != cur {
		rs = append(rs, mrec{kind: recHardState, hs: hs})
	}
	return rs
}

func confEqual(a, b pb.ConfState) bool {
	return slices.Equal(a.Voters, b.Voters) && slices.Equal(a.Learners, b.Learners)
}

// matches reports (as a non-empty string) how the log's state differs from the model's.
func (m *model) diff(l *Log) string {
	hs, cs, _ := l.InitialState()
	snap, _ := l.Snapshot()
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	switch {
	case hs != m.hs:
		return fmt.Sprintf("hardstate %+v, want %+v", hs, m.hs)
	case !confEqual(cs, m.cs):
		return fmt.Sprintf("confstate %+v, want %+v", cs, m.cs)
	case snap.Index != m.snap.Index || snap.Term != m.snap.Term || !confEqual(snap.ConfState, m.snap.ConfState):
		return fmt.Sprintf("snapshot %+v, want %+v", snap, m.snap)
	case first != m.snap.Index+1 || last != m.last:
		return fmt.Sprintf("log (%d..%d), want (%d..%d)", first, last, m.snap.Index+1, m.last)
	}
	if last >= first {
		ents, err := l.Entries(first, last+1, 1<<62)
		if err != nil {
			return fmt.Sprintf("Entries(%d, %d): %v", first, last+1, err)
		}
		for _, e := range ents {
			w := m.log[e.Index]
			if e.Term != w.Term || e.Type != w.Type || !bytes.Equal(e.Data, w.Data) {
				return fmt.Sprintf("entry %d = %+v, want %+v", e.Index, e, w)
			}
		}
	}
	return ""
}

// wop is one operation of a generated workload.
type wop struct {
	kind    string // save, conf, snap, compact
	hs      pb.HardState
	ents    []pb.Entry
	sync    bool
	cs      pb.ConfState
	meta    pb.SnapshotMeta
	snapLen int
}

func snapData(m pb.SnapshotMeta, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(uint64(m.Index)*31 + uint64(m.Term)*7 + uint64(i))
	}
	return b
}

// genWorkload makes a random workload of n operations: appends, tail
// overwrites by a new term, hard-state changes, membership changes, local
// and received snapshots, compactions.
func genWorkload(rng *rand.Rand, n int) []wop {
	m := newModel()
	term := pb.Term(1)
	var ops []wop
	for len(ops) < n {
		var op wop
		switch r := rng.IntN(20); {
		case r < 13:
			op.kind = "save"
			start := m.last + 1
			if rng.IntN(5) == 0 && m.last > m.snap.Index {
				start = pb.Index(max(int(m.snap.Index)+1, int(m.last)-rng.IntN(4)))
				term++
			}
			cnt := rng.IntN(6)
			for i := 0; i < cnt; i++ {
				d := make([]byte, rng.IntN(60))
				for j := range d {
					d[j] = byte(rng.Uint32())
				}
				op.ents = append(op.ents, pb.Entry{Term: term, Index: start + pb.Index(i), Type: pb.EntryType(rng.IntN(2)), Data: d})
			}
			if rng.IntN(2) == 0 {
				if rng.IntN(4) == 0 {
					term++
				}
				op.hs = pb.HardState{Term: term, Vote: pb.NodeID(rng.IntN(4)), Commit: pb.Index(rng.IntN(int(m.last) + 1))}
			}
			op.sync = rng.IntN(10) < 7
		case r < 15:
			op.kind = "conf"
			for id := pb.NodeID(1); id <= 5; id++ {
				switch rng.IntN(3) {
				case 0:
					op.cs.Voters = append(op.cs.Voters, id)
				case 1:
					op.cs.Learners = append(op.cs.Learners, id)
				}
			}
		case r < 18:
			op.kind = "snap"
			op.meta.ConfState = pb.ConfState{Voters: []pb.NodeID{1, pb.NodeID(2 + rng.IntN(3))}}
			if m.last > m.snap.Index && rng.IntN(3) > 0 {
				op.meta.Index = m.snap.Index + 1 + pb.Index(rng.IntN(int(m.last-m.snap.Index)))
				op.meta.Term = m.log[op.meta.Index].Term
			} else {
				term++
				op.meta.Index = m.last + 1 + pb.Index(rng.IntN(4))
				op.meta.Term = term
			}
			op.snapLen = rng.IntN(3000)
		default:
			op.kind = "compact"
		}
		for _, r := range op.records(m) {
			m.apply(r)
		}
		ops = append(ops, op)
	}
	return ops
}

// records returns the records op appends, given the state before it.
func (op *wop) records(m *model) []mrec {
	switch op.kind {
	case "save":
		return m.saveRecords(op.hs, op.ents)
	case "conf":
		return []mrec{{kind: recConfState, cs: op.cs}}
	case "snap":
		return []mrec{{kind: recSnapshot, meta: op.meta}}
	}
	return nil
}

// durable reports whether op's success means all before it is durable.
func (op *wop) durable() bool { return op.kind != "save" || op.sync }

// run executes op against l.
func (op *wop) run(l *Log) error {
	switch op.kind {
	case "save":
		return l.Save(op.hs, slices.Clone(op.ents), op.sync)
	case "conf":
		return l.SetConfState(op.cs)
	case "snap":
		w, err := l.CreateSnapshot(op.meta)
		if err != nil {
			return err
		}
		if _, err := w.Write(snapData(op.meta, op.snapLen)); err != nil {
			w.Abort()
			return err
		}
		if err := w.Commit(); err != nil {
			return err
		}
		return l.SaveSnapshot(op.meta)
	case "compact":
		snap, _ := l.Snapshot()
		return l.Compact(snap.Index)
	}
	panic("unknown op " + op.kind)
}

// runResult is what a workload run against a log observed.
type runResult struct {
	stream  []mrec // every record of every op attempted, in order
	durable int    // records known durable (a prefix of stream)
	err     error  // the first error, if any
	failed  int    // index of the op that failed
}

func runWorkload(l *Log, ops []wop) runResult {
	var res runResult
	m := newModel()
	for i := range ops {
		op := &ops[i]
		rs := op.records(m)
		for _, r := range rs {
			m.apply(r)
		}
		res.stream = append(res.stream, rs...)
		if err := op.run(l); err != nil {
			res.err, res.failed = err, i
			return res
		}
		if op.durable() {
			res.durable = len(res.stream)
		}
	}
	res.failed = len(ops)
	return res
}

// checkRecovered checks that the reopened log l holds exactly the state of
// some prefix of the record stream at least res.durable long: everything
// reported durable is there, and nothing was invented.
func checkRecovered(t *testing.T, l *Log, res runResult, ctx string) {
	t.Helper()
	m := newModel()
	var firstDiff string
	for p := 0; p <= len(res.stream); p++ {
		if p > 0 {
			m.apply(res.stream[p-1])
		}
		if p < res.durable {
			continue
		}
		d := m.diff(l)
		if d == "" {
			checkSnapshotFile(t, l, ctx)
			return
		}
		if firstDiff == "" {
			firstDiff = d
		}
	}
	t.Fatalf("%s: recovered state matches no prefix of the %d records with at least the %d durable ones; vs the durable prefix: %s",
		ctx, len(res.stream), res.durable, firstDiff)
}

func checkSnapshotFile(t *testing.T, l *Log, ctx string) {
	t.Helper()
	meta, ok := l.LatestSnapshot()
	if !ok {
		return
	}
	got, rc, size, err := l.OpenSnapshot(meta.Index)
	if err != nil {
		t.Fatalf("%s: OpenSnapshot(%d): %v", ctx, meta.Index, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("%s: read snapshot %d: %v", ctx, meta.Index, err)
	}
	if got.Index != meta.Index || got.Term != meta.Term || int64(len(data)) != size || !bytes.Equal(data, snapData(meta, len(data))) {
		t.Fatalf("%s: snapshot %d file holds meta %+v and %d bytes (size %d), not what was written", ctx, meta.Index, got, len(data), size)
	}
}

// must be usable after recovery: append one more entry durably, reopen, see it.
func checkWritable(t *testing.T, l *Log, reopen func() *Log, ctx string) {
	t.Helper()
	last, _ := l.LastIndex()
	hs, _, _ := l.InitialState()
	e := pb.Entry{Term: hs.Term + 100, Index: last + 1, Data: []byte("after recovery")}
	if err := l.Save(pb.HardState{Term: e.Term, Commit: hs.Commit}, []pb.Entry{e}, true); err != nil {
		t.Fatalf("%s: Save after recovery: %v", ctx, err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("%s: Close after recovery: %v", ctx, err)
	}
	l2 := reopen()
	defer l2.Close()
	got, err := l2.Entries(last+1, last+2, 0)
	if err != nil || len(got) != 1 || string(got[0].Data) != "after recovery" || got[0].Term != e.Term {
		t.Fatalf("%s: entry saved after recovery: %v, %v", ctx, got, err)
	}
}

var _ = errors.Is
var _ = raft.ErrCompacted
