package sim

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// chainNext extends a log-prefix hash by one entry. Two logs have the same
// chain value at index i exactly when their entries 1..i are identical (up to
// 64-bit hash collisions), so comparing one number checks the whole Log
// Matching property (Raft paper §5.3) up to i. FNV-1a over the entry's term,
// type and data, seeded with the previous value.
func chainNext(prev uint64, e *pb.Entry) uint64 {
	const prime = 1099511628211
	h := prev ^ 14695981039346656037
	for v, n := uint64(e.Term), 0; n < 8; v, n = v>>8, n+1 {
		h = (h ^ (v & 0xff)) * prime
	}
	h = (h ^ uint64(e.Type)) * prime
	for _, c := range e.Data {
		h = (h ^ uint64(c)) * prime
	}
	// Mix in the length so that data boundaries cannot alias.
	h = (h ^ uint64(len(e.Data))) * prime
	return h
}

// logState is one version of a node's disk: what the core may read (the
// written view) or what survives a crash (the synced view).
//
// Invariants: len(chains) == len(ents)+1; ents[k].Index == snap.Index+1+k;
// chains[k] is the chain hash of the log prefix ending at snap.Index+k.
type logState struct {
	hs     pb.HardState
	snap   pb.SnapshotMeta
	ents   []pb.Entry
	chains []uint64

	// The state machine's durable checkpoint: it is written synchronously on
	// every apply (like a store that records its applied index with its data),
	// so it lives outside the write/sync split of the log.
	smApplied pb.Index
	smChain   uint64
	smConf    pb.ConfState
}

func (l *logState) lastIndex() pb.Index { return l.snap.Index + pb.Index(len(l.ents)) }

// chainAt returns the chain hash at i, if i is in [snap.Index, lastIndex].
func (l *logState) chainAt(i pb.Index) (uint64, bool) {
	if i < l.snap.Index || i > l.lastIndex() {
		return 0, false
	}
	return l.chains[i-l.snap.Index], true
}

func (l *logState) termAt(i pb.Index) (pb.Term, bool) {
	switch {
	case i == l.snap.Index:
		return l.snap.Term, true
	case i < l.snap.Index || i > l.lastIndex():
		return 0, false
	}
	return l.ents[i-l.snap.Index-1].Term, true
}

// capped returns l with every slice capped at its length, so that a later
// append to one version never writes into an array another version sees.
func (l logState) capped() logState {
	l.ents = l.ents[:len(l.ents):len(l.ents)]
	l.chains = l.chains[:len(l.chains):len(l.chains)]
	return l
}

// storage is a node's simulated disk and the raft.Storage the core reads.
// Writes land in cur (the OS page cache, so to speak); sync makes them
// durable; a crash throws away everything written since the last sync.
//
// Entries are never mutated in place: truncation copies, so the synced
// version and any slice already handed to the core stay intact.
type storage struct {
	cur, durable logState

	// forgetVote is an injected bug: sync never makes a changed vote durable,
	// so a crash lets the node vote twice in one term.
	forgetVote bool
	// lagSync is an injected bug: sync only makes the previous sync's writes
	// durable, so everything a Ready promised (acks, votes) can still be lost
	// to a crash after its messages went out.
	lagSync bool
	lagged  *logState

	// ms, if set, is a raft.MemoryStorage kept identical to cur and served
	// to the core instead of this model, so that the simulator also proves
	// the library's own Storage (its Append, ApplySnapshot, CreateSnapshot
	// and Compact). A disagreement with the model is reported by check.
	ms *raft.MemoryStorage
}

var _ raft.Storage = (*storage)(nil)

func newStorage() *storage {
	s := &storage{}
	s.cur.chains = []uint64{0}
	s.durable = s.cur.capped()
	return s
}

// InitialState implements raft.Storage. The ConfState is the state machine's:
// the membership as of the applied index the node restarts from.
func (s *storage) InitialState() (pb.HardState, pb.ConfState, error) {
	if s.ms != nil {
		return s.ms.InitialState()
	}
	return s.cur.hs, s.cur.smConf, nil
}

// Entries implements raft.Storage.
func (s *storage) Entries(lo, hi pb.Index, maxSize uint64) ([]pb.Entry, error) {
	if s.ms != nil {
		return s.ms.Entries(lo, hi, maxSize)
	}
	l := &s.cur
	if lo <= l.snap.Index {
		return nil, raft.ErrCompacted
	}
	if hi > l.lastIndex()+1 || lo > hi {
		return nil, fmt.Errorf("sim: entries [%d, %d) with last index %d: %w", lo, hi, l.lastIndex(), raft.ErrUnavailable)
	}
	if lo == hi {
		return nil, nil
	}
	off := l.snap.Index + 1
	ents := l.ents[lo-off : hi-off : hi-off]
	var size uint64
	for k := range ents {
		size += uint64(len(ents[k].Data))
		if k > 0 && size > maxSize {
			return ents[:k:k], nil
		}
	}
	return ents, nil
}

// Term implements raft.Storage.
func (s *storage) Term(i pb.Index) (pb.Term, error) {
	if s.ms != nil {
		return s.ms.Term(i)
	}
	if i < s.cur.snap.Index {
		return 0, raft.ErrCompacted
	}
	t, ok := s.cur.termAt(i)
	if !ok {
		return 0, raft.ErrUnavailable
	}
	return t, nil
}

// FirstIndex implements raft.Storage.
func (s *storage) FirstIndex() (pb.Index, error) {
	if s.ms != nil {
		return s.ms.FirstIndex()
	}
	return s.cur.snap.Index + 1, nil
}

// LastIndex implements raft.Storage.
func (s *storage) LastIndex() (pb.Index, error) {
	if s.ms != nil {
		return s.ms.LastIndex()
	}
	return s.cur.lastIndex(), nil
}

// Snapshot implements raft.Storage.
func (s *storage) Snapshot() (pb.SnapshotMeta, error) {
	if s.ms != nil {
		return s.ms.Snapshot()
	}
	return s.cur.snap, nil
}

// appendEntries writes ents, replacing any entries at the same indexes or
// after (Ready.Entries semantics). Entries at or below the snapshot are
// skipped. A gap or a non-contiguous batch is a core bug and an error.
func (s *storage) appendEntries(ents []pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	l := &s.cur
	for k := 1; k < len(ents); k++ {
		if ents[k].Index != ents[k-1].Index+1 {
			return fmt.Errorf("Ready.Entries not contiguous: index %d follows %d", ents[k].Index, ents[k-1].Index)
		}
		if ents[k].Term < ents[k-1].Term {
			return fmt.Errorf("Ready.Entries terms go backwards: term %d at index %d follows term %d", ents[k].Term, ents[k].Index, ents[k-1].Term)
		}
	}
	if ents[0].Index > l.lastIndex()+1 {
		return fmt.Errorf("Ready.Entries start at %d, leaving a gap after last index %d", ents[0].Index, l.lastIndex())
	}
	for len(ents) > 0 && ents[0].Index <= l.snap.Index {
		ents = ents[1:]
	}
	if len(ents) == 0 {
		return nil
	}
	k := int(ents[0].Index - l.snap.Index - 1)
	if prev, ok := l.termAt(ents[0].Index - 1); ok && prev > ents[0].Term {
		return fmt.Errorf("Ready.Entries: term %d at index %d is below the term %d of the entry before it", ents[0].Term, ents[0].Index, prev)
	}
	// Cap before appending: the synced version may share this array.
	l.ents = append(l.ents[:k:k], ents...)
	l.chains = l.chains[: k+1 : k+1]
	for i := range ents {
		l.chains = append(l.chains, chainNext(l.chains[len(l.chains)-1], &ents[i]))
	}
	if s.ms != nil {
		if err := s.ms.Append(ents); err != nil {
			return fmt.Errorf("MemoryStorage.Append [%d..%d]: %w", ents[0].Index, ents[len(ents)-1].Index, err)
		}
		return s.check()
	}
	return nil
}

// check compares the MemoryStorage with the model.
func (s *storage) check() error {
	if s.ms == nil {
		return nil
	}
	l := &s.cur
	fi, _ := s.ms.FirstIndex()
	li, _ := s.ms.LastIndex()
	snap, _ := s.ms.Snapshot()
	if fi != l.snap.Index+1 || li != l.lastIndex() || snap.Index != l.snap.Index || snap.Term != l.snap.Term {
		return fmt.Errorf("MemoryStorage disagrees with the model: first %d last %d snapshot %d/%d, want %d %d %d/%d",
			fi, li, snap.Index, snap.Term, l.snap.Index+1, l.lastIndex(), l.snap.Index, l.snap.Term)
	}
	for _, i := range []pb.Index{l.snap.Index, l.lastIndex()} {
		want, _ := l.termAt(i)
		if got, err := s.ms.Term(i); err != nil || got != want {
			return fmt.Errorf("MemoryStorage.Term(%d) = %d, %v; the model has %d", i, got, err, want)
		}
	}
	if li > l.snap.Index {
		got, err := s.ms.Entries(li, li+1, 1<<30)
		if err != nil || len(got) != 1 || chainNext(l.chains[len(l.chains)-2], &got[0]) != l.chains[len(l.chains)-1] {
			return fmt.Errorf("MemoryStorage.Entries(%d, %d) = %d entries, %v; differs from the model", li, li+1, len(got), err)
		}
	}
	return nil
}

// rebuildMemory rebuilds the MemoryStorage from the durable state, as a
// runtime reloads its in-memory tail from disk on restart.
func (s *storage) rebuildMemory() error {
	if s.ms == nil {
		return nil
	}
	s.ms = raft.NewMemoryStorage()
	d := &s.cur
	if !d.snap.IsEmpty() {
		if err := s.ms.ApplySnapshot(d.snap); err != nil {
			return fmt.Errorf("MemoryStorage.ApplySnapshot on reload: %w", err)
		}
	}
	if err := s.ms.Append(d.ents); err != nil {
		return fmt.Errorf("MemoryStorage.Append on reload: %w", err)
	}
	s.ms.SetHardState(d.hs)
	s.ms.SetConfState(d.smConf)
	return s.check()
}

// setHardState writes hs (not yet durable).
func (s *storage) setHardState(hs pb.HardState) {
	s.cur.hs = hs
	if s.ms != nil {
		s.ms.SetHardState(hs)
	}
}

// applySnapshot replaces the log with a snapshot whose prefix hash is chain.
func (s *storage) applySnapshot(meta pb.SnapshotMeta, chain uint64) error {
	if meta.Index <= s.cur.snap.Index {
		return fmt.Errorf("Ready.Snapshot at index %d is not newer than the stored snapshot at %d", meta.Index, s.cur.snap.Index)
	}
	s.cur.snap = meta
	s.cur.ents = nil
	s.cur.chains = []uint64{chain}
	if s.ms != nil {
		if err := s.ms.ApplySnapshot(meta); err != nil {
			return fmt.Errorf("MemoryStorage.ApplySnapshot(%d): %w", meta.Index, err)
		}
		s.ms.SetHardState(s.cur.hs) // the model's, not ApplySnapshot's guess
		return s.check()
	}
	return nil
}

// sync makes everything written durable.
func (s *storage) sync() {
	old := s.durable.hs
	if s.lagSync {
		next := s.cur.capped()
		if s.lagged != nil {
			s.durable = *s.lagged
		}
		s.lagged = &next
		return
	}
	s.durable = s.cur.capped()
	if s.forgetVote && s.durable.hs.Vote != old.Vote {
		if s.durable.hs.Term == old.Term {
			s.durable.hs.Vote = old.Vote
		} else {
			s.durable.hs.Vote = pb.None
		}
	}
}

// crash drops everything not synced.
func (s *storage) crash() {
	s.cur = s.durable.capped()
	s.lagged = nil
}

// setApplied records the state machine's durable checkpoint.
func (s *storage) setApplied(i pb.Index, chain uint64, conf pb.ConfState) {
	for _, l := range []*logState{&s.cur, &s.durable} {
		l.smApplied, l.smChain, l.smConf = i, chain, conf
	}
	if s.ms != nil {
		s.ms.SetConfState(conf)
	}
}

// compact folds the log up to i into a snapshot with membership conf. It is
// called only between Readys, when everything written is synced, and is
// itself durable at once (as a snapshot file plus a log truncation would be).
func (s *storage) compact(i pb.Index, conf pb.ConfState) error {
	l := &s.cur
	if i <= l.snap.Index || i > l.lastIndex() {
		return fmt.Errorf("compact to %d outside (%d, %d]", i, l.snap.Index, l.lastIndex())
	}
	t, _ := l.termAt(i)
	k := i - l.snap.Index
	l.ents = l.ents[k:]
	l.chains = l.chains[k:]
	l.snap = pb.SnapshotMeta{Index: i, Term: t, ConfState: cloneConf(conf)}
	s.durable, s.lagged = s.cur.capped(), nil
	if s.ms != nil {
		if _, err := s.ms.CreateSnapshot(i, &conf); err != nil {
			return fmt.Errorf("MemoryStorage.CreateSnapshot(%d): %w", i, err)
		}
		if err := s.ms.Compact(i); err != nil {
			return fmt.Errorf("MemoryStorage.Compact(%d): %w", i, err)
		}
		return s.check()
	}
	return nil
}

func cloneConf(c pb.ConfState) pb.ConfState {
	return pb.ConfState{
		Voters:   append([]pb.NodeID(nil), c.Voters...),
		Learners: append([]pb.NodeID(nil), c.Learners...),
	}
}
