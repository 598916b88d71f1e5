package replica

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// A snapshot file, as the replica writes it through Storage.CreateSnapshot
// and streams it to peers, is a member table followed by the state
// machine's own stream:
//
//	+------------+---------+-----------------+-------------------------------------------+------------------+
//	| "rksn" (4) | version | uvarint members | members x (uvarint id, uvarint n, n bytes) | state machine... |
//	+------------+---------+-----------------+-------------------------------------------+------------------+
//
// Version 2 inserts, between the member table and the state machine's
// stream, the ids removed from the group so far: uvarint count, then count
// uvarint ids (so that a removed id is refused even after the log that
// removed it is compacted). Version 1 (no such list) is still read.
//
// The member table keeps every member's peer address across log compaction:
// the conf change entries that carried the addresses are folded into the
// snapshot, so a member restored from it would otherwise not know whom to
// dial.
//
// Written to disk and to the wire: never renumber.
var snapshotMagic = [4]byte{'r', 'k', 's', 'n'}

const (
	snapshotVersion    byte = 2 // 2 adds the removed ids; 1 is still read
	maxSnapshotMembers      = 1 << 16
	maxPeerAddrLen          = 1 << 12
)

// snapState is the loop's bookkeeping of snapshots.
type snapState struct {
	meta       pb.SnapshotMeta // newest snapshot saved in Storage
	inProgress bool
	waiters    []*snapWaiter
}

type snapWaiter struct {
	min  pb.Index // the applied index when TakeSnapshot was called
	done chan snapOutcome
}

type snapOutcome struct {
	meta pb.SnapshotMeta
	err  error
}

type snapResult struct {
	meta pb.SnapshotMeta
	err  error
}

func (s *snapState) failWaiters(err error) {
	for _, w := range s.waiters {
		w.done <- snapOutcome{err: err}
	}
	s.waiters = nil
}

// resolveWaiters releases the TakeSnapshot calls the newest snapshot covers.
func (s *snapState) resolveWaiters() {
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if w.min <= s.meta.Index {
			w.done <- snapOutcome{meta: s.meta}
			continue
		}
		kept = append(kept, w)
	}
	clear(s.waiters[len(kept):])
	s.waiters = kept
}

// TakeSnapshot takes a snapshot now (covering at least every entry applied
// when it was called), saves it, compacts the log below it, and returns its
// metadata.
func (r *Replica) TakeSnapshot(ctx context.Context) (pb.SnapshotMeta, error) {
	w := &snapWaiter{done: make(chan snapOutcome, 1)}
	err := r.do(ctx, func() {
		if r.applied == 0 {
			w.done <- snapOutcome{err: errors.New("replica: take snapshot: nothing applied yet")}
			return
		}
		w.min = r.applied
		r.snap.waiters = append(r.snap.waiters, w)
		r.snap.resolveWaiters()
	})
	if err != nil {
		return pb.SnapshotMeta{}, err
	}
	select {
	case out := <-w.done:
		return out.meta, out.err
	case <-ctx.Done():
		return pb.SnapshotMeta{}, ctx.Err()
	case <-r.donec:
		select {
		case out := <-w.done:
			return out.meta, out.err
		default:
		}
		return pb.SnapshotMeta{}, r.stoppedErr()
	}
}

// maybeSnapshot starts writing a snapshot when one is asked for or due.
func (r *Replica) maybeSnapshot() error {
	s := &r.snap
	if s.inProgress || r.applied <= s.meta.Index {
		return nil
	}
	due := r.cfg.SnapshotEntries > 0 && r.applied-s.meta.Index >= pb.Index(r.cfg.SnapshotEntries)
	if !due && len(s.waiters) == 0 {
		return nil
	}
	// Snapshot runs on this goroutine, between Apply calls, so it captures
	// exactly the state as of r.applied; the returned function streams it
	// concurrently with later Apply calls.
	fn, err := r.sm.Snapshot()
	if err != nil {
		return fmt.Errorf("replica: snapshot state machine at %d: %w", r.applied, err)
	}
	meta := pb.SnapshotMeta{Index: r.applied, Term: r.appliedTerm, ConfState: cloneConfState(r.confState)}
	header := appendSnapshotHeader(nil, r.members, meta.ConfState, r.removedIDs())
	s.inProgress = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.snapDonec <- snapResult{meta: meta, err: r.writeSnapshot(meta, header, fn)}
	}()
	return nil
}

// writeSnapshot streams a snapshot into Storage (its own goroutine).
func (r *Replica) writeSnapshot(meta pb.SnapshotMeta, header []byte, fn SnapshotFunc) (err error) {
	w, err := r.st.CreateSnapshot(meta)
	if err != nil {
		return fmt.Errorf("replica: create snapshot %d: %w", meta.Index, err)
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := bw.Write(header); err != nil {
		return fmt.Errorf("replica: write snapshot %d: %w", meta.Index, err)
	}
	if err := fn(bw); err != nil {
		return fmt.Errorf("replica: write snapshot %d: %w", meta.Index, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("replica: write snapshot %d: %w", meta.Index, err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("replica: commit snapshot %d: %w", meta.Index, err)
	}
	return nil
}

// finishSnapshot records a snapshot written by writeSnapshot and compacts
// the log below it.
func (r *Replica) finishSnapshot(res snapResult) error {
	s := &r.snap
	s.inProgress = false
	if res.err != nil {
		return res.err
	}
	if res.meta.Index > s.meta.Index { // else a newer one was installed meanwhile
		if err := r.st.SaveSnapshot(res.meta); err != nil {
			return fmt.Errorf("replica: save snapshot %d: %w", res.meta.Index, err)
		}
		if err := r.st.Compact(res.meta.Index); err != nil {
			return fmt.Errorf("replica: compact log to %d: %w", res.meta.Index, err)
		}
		s.meta = res.meta
		r.log.Info("snapshot saved", "index", uint64(res.meta.Index), "term", uint64(res.meta.Term))
	}
	s.resolveWaiters()
	return nil
}

// sendSnapshot streams the snapshot a MsgSnap names to its follower.
func (r *Replica) sendSnapshot(m pb.Message) {
	if m.Snapshot == nil || m.Snapshot.IsEmpty() {
		r.log.Warn("MsgSnap without snapshot metadata", "to", uint64(m.To))
		r.queueReport(report{id: m.To, snapshot: true})
		return
	}
	_, rc, size, err := r.st.OpenSnapshot(m.Snapshot.Index)
	if err != nil {
		r.log.Warn("open snapshot to send", "index", uint64(m.Snapshot.Index), "to", uint64(m.To), "err", err)
		r.queueReport(report{id: m.To, snapshot: true})
		return
	}
	r.tr.SendSnapshot(m, rc, size)
}

// ReceiveSnapshot implements transport.Handler: it writes a snapshot
// streamed by the leader into Storage (durably) and then steps the MsgSnap,
// so that the core only ever installs a snapshot whose data is on disk.
func (r *Replica) ReceiveSnapshot(m pb.Message, data io.Reader) error {
	if m.Type != pb.MsgSnap || m.Snapshot == nil || m.Snapshot.IsEmpty() {
		return fmt.Errorf("replica: receive snapshot: %s carries no snapshot metadata", m.Type)
	}
	select {
	case <-r.stopc:
		return r.stoppedErr()
	default:
	}
	meta := *m.Snapshot
	meta.ConfState = cloneConfState(meta.ConfState)
	w, err := r.st.CreateSnapshot(meta)
	if err != nil {
		return fmt.Errorf("replica: receive snapshot %d: %w", meta.Index, err)
	}
	if _, err := io.Copy(w, data); err != nil {
		w.Abort()
		return fmt.Errorf("replica: receive snapshot %d: %w", meta.Index, err)
	}
	if err := w.Commit(); err != nil {
		w.Abort()
		return fmt.Errorf("replica: receive snapshot %d: commit: %w", meta.Index, err)
	}
	m.Snapshot = &meta
	select {
	case r.recvc <- m:
		return nil
	case <-r.stopc:
		return r.stoppedErr()
	}
}

// installSnapshot restores the state machine from a snapshot the core
// handed out in a Ready (its file and metadata are already durable).
func (r *Replica) installSnapshot(meta pb.SnapshotMeta) error {
	if err := r.restoreFile(meta); err != nil {
		return err
	}
	// Proposals this member forwarded may be inside the snapshot: their
	// entries will never be applied here one by one.
	if len(r.pending) > 0 {
		r.failPending(fmt.Errorf("%w: a snapshot at %d replaced the log", ErrOutcomeUnknown, meta.Index))
	}
	r.log.Info("installed snapshot", "index", uint64(meta.Index), "term", uint64(meta.Term))
	return nil
}

// restoreFromStorage restores the state machine from the newest snapshot in
// Storage, if any (New, before the core starts).
func (r *Replica) restoreFromStorage() error {
	meta, err := r.st.Snapshot()
	if err != nil {
		return fmt.Errorf("replica: read snapshot: %w", err)
	}
	if meta.IsEmpty() {
		return nil
	}
	return r.restoreFile(meta)
}

// restoreFile replaces the state machine and member table with the
// snapshot file at meta.Index.
func (r *Replica) restoreFile(meta pb.SnapshotMeta) error {
	got, rc, _, err := r.st.OpenSnapshot(meta.Index)
	if err != nil {
		return fmt.Errorf("replica: open snapshot %d: %w", meta.Index, err)
	}
	defer rc.Close()
	if got.Index != meta.Index || got.Term != meta.Term {
		return fmt.Errorf("replica: snapshot file is at %d (term %d), want %d (term %d)", got.Index, got.Term, meta.Index, meta.Term)
	}
	br := bufio.NewReaderSize(rc, 256<<10)
	members, removed, err := readSnapshotHeader(br)
	if err != nil {
		return fmt.Errorf("replica: snapshot %d: %w", meta.Index, err)
	}
	if err := r.sm.Restore(br); err != nil {
		return fmt.Errorf("replica: restore state machine from snapshot %d: %w", meta.Index, err)
	}
	r.applied, r.appliedTerm = meta.Index, meta.Term
	r.confState = cloneConfState(meta.ConfState)
	if meta.Index > r.snap.meta.Index {
		r.snap.meta = meta
	}
	r.removed = make(map[pb.NodeID]bool, len(removed))
	for _, id := range removed {
		r.removed[id] = true
	}
	known := r.members
	r.members = make(map[pb.NodeID]string)
	for _, id := range slices.Concat(meta.ConfState.Voters, meta.ConfState.Learners) {
		if members[id] == "" {
			members[id] = known[id] // keep an address learned otherwise (e.g. Peers)
		}
		r.members[id] = members[id]
	}
	if r.cfg.OnConfChange != nil {
		for _, id := range meta.ConfState.Voters {
			r.cfg.OnConfChange(pb.ConfChange{Type: pb.ConfChangeAddVoter, NodeID: id, Context: []byte(members[id])}, cloneConfState(meta.ConfState))
		}
		for _, id := range meta.ConfState.Learners {
			r.cfg.OnConfChange(pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: id, Context: []byte(members[id])}, cloneConfState(meta.ConfState))
		}
	}
	return nil
}

// removedIDs returns the removed ids, sorted.
func (r *Replica) removedIDs() []pb.NodeID {
	ids := make([]pb.NodeID, 0, len(r.removed))
	for id := range r.removed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// appendSnapshotHeader appends the member table of the members in cs, then
// the removed ids.
func appendSnapshotHeader(b []byte, addrs map[pb.NodeID]string, cs pb.ConfState, removed []pb.NodeID) []byte {
	ids := slices.Concat(cs.Voters, cs.Learners)
	slices.Sort(ids)
	b = append(b, snapshotMagic[:]...)
	b = append(b, snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		addr := addrs[id]
		b = binary.AppendUvarint(b, uint64(id))
		b = binary.AppendUvarint(b, uint64(len(addr)))
		b = append(b, addr...)
	}
	b = binary.AppendUvarint(b, uint64(len(removed)))
	for _, id := range removed {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return b
}

// readSnapshotHeader reads the member table and (version 2) the removed
// ids, leaving br at the state machine's stream. Lengths are checked before
// anything is allocated.
func readSnapshotHeader(br *bufio.Reader) (map[pb.NodeID]string, []pb.NodeID, error) {
	var head [5]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, nil, fmt.Errorf("read header: %w", err)
	}
	if [4]byte(head[:4]) != snapshotMagic {
		return nil, nil, fmt.Errorf("not a replica snapshot (magic %x)", head[:4])
	}
	version := head[4]
	if version != 1 && version != snapshotVersion {
		return nil, nil, fmt.Errorf("unsupported snapshot version %d", version)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, nil, fmt.Errorf("read member count: %w", err)
	}
	if n > maxSnapshotMembers {
		return nil, nil, fmt.Errorf("member count %d over the limit %d", n, maxSnapshotMembers)
	}
	members := make(map[pb.NodeID]string, n)
	for range n {
		id, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, nil, fmt.Errorf("read member id: %w", err)
		}
		l, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, nil, fmt.Errorf("read member %d address length: %w", id, err)
		}
		if l > maxPeerAddrLen {
			return nil, nil, fmt.Errorf("member %d address length %d over the limit %d", id, l, maxPeerAddrLen)
		}
		addr := make([]byte, l)
		if _, err := io.ReadFull(br, addr); err != nil {
			return nil, nil, fmt.Errorf("read member %d address: %w", id, err)
		}
		members[pb.NodeID(id)] = string(addr)
	}
	if version == 1 {
		return members, nil, nil
	}
	n, err = binary.ReadUvarint(br)
	if err != nil {
		return nil, nil, fmt.Errorf("read removed count: %w", err)
	}
	if n > maxSnapshotMembers {
		return nil, nil, fmt.Errorf("removed count %d over the limit %d", n, maxSnapshotMembers)
	}
	removed := make([]pb.NodeID, 0, n)
	for range n {
		id, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, nil, fmt.Errorf("read removed id: %w", err)
		}
		removed = append(removed, pb.NodeID(id))
	}
	return members, removed, nil
}
