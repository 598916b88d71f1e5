package raft

import pb "github.com/raftkv/raftkv/raft/raftpb"

// unstable holds what the core has accepted but the runtime has not yet
// made durable: log entries after the storage's last index, and possibly a
// snapshot received from the leader.
//
// Entries handed out in a Ready but not yet acknowledged by Advance are "in
// progress": they are not handed out again, and stableTo drops them once the
// write is done. entries[i] has index offset+i.
type unstable struct {
	snapshot           *pb.SnapshotMeta
	snapshotInProgress bool

	entries          []pb.Entry
	offset           pb.Index
	offsetInProgress pb.Index // entries below it are being written
}

// maybeFirstIndex returns the first index of the log if a snapshot is pending.
func (u *unstable) maybeFirstIndex() (pb.Index, bool) {
	if u.snapshot != nil {
		return u.snapshot.Index + 1, true
	}
	return 0, false
}

// maybeLastIndex returns the last index held here, if any.
func (u *unstable) maybeLastIndex() (pb.Index, bool) {
	if n := len(u.entries); n != 0 {
		return u.offset + pb.Index(n) - 1, true
	}
	if u.snapshot != nil {
		return u.snapshot.Index, true
	}
	return 0, false
}

// maybeTerm returns the term of entry i if it is held here.
func (u *unstable) maybeTerm(i pb.Index) (pb.Term, bool) {
	if i < u.offset {
		if u.snapshot != nil && u.snapshot.Index == i {
			return u.snapshot.Term, true
		}
		return 0, false
	}
	last, ok := u.maybeLastIndex()
	if !ok || i > last {
		return 0, false
	}
	return u.entries[i-u.offset].Term, true
}

// nextEntries returns the entries not yet handed out for writing.
func (u *unstable) nextEntries() []pb.Entry {
	in := int(u.offsetInProgress - u.offset)
	if in >= len(u.entries) {
		return nil
	}
	// Cap: the runtime may append to the slice it gets.
	return u.entries[in:len(u.entries):len(u.entries)]
}

// nextSnapshot returns the snapshot not yet handed out, if any.
func (u *unstable) nextSnapshot() *pb.SnapshotMeta {
	if u.snapshot == nil || u.snapshotInProgress {
		return nil
	}
	return u.snapshot
}

// acceptInProgress marks everything returned by nextEntries and
// nextSnapshot as being written.
func (u *unstable) acceptInProgress() {
	if n := len(u.entries); n > 0 {
		u.offsetInProgress = u.entries[n-1].Index + 1
	}
	if u.snapshot != nil {
		u.snapshotInProgress = true
	}
}

// stableTo drops entries through i once they are durable. It does nothing
// if entry i was since replaced by one of another term (the write that
// finished is of an overwritten tail, which the runtime also replaces).
func (u *unstable) stableTo(i pb.Index, t pb.Term) {
	gt, ok := u.maybeTerm(i)
	if !ok || i < u.offset || gt != t {
		return
	}
	num := int(i + 1 - u.offset)
	u.entries = u.entries[num:]
	u.offset = i + 1
	u.offsetInProgress = max(u.offsetInProgress, u.offset)
	// Release the array's consumed prefix once most of it is dead.
	if len(u.entries) == 0 {
		u.entries = nil
	} else if cap(u.entries) > 1024 && len(u.entries)*4 < cap(u.entries) {
		u.entries = append([]pb.Entry(nil), u.entries...)
	}
}

// stableSnapTo drops the pending snapshot once it is durable.
func (u *unstable) stableSnapTo(i pb.Index) {
	if u.snapshot != nil && u.snapshot.Index == i {
		u.snapshot = nil
		u.snapshotInProgress = false
	}
}

// restore resets the log to the snapshot s.
func (u *unstable) restore(s pb.SnapshotMeta) {
	u.offset = s.Index + 1
	u.offsetInProgress = u.offset
	u.entries = nil
	u.snapshot = &s
	u.snapshotInProgress = false
}

// truncateAndAppend appends ents (contiguous), replacing anything held at
// their indexes or after.
func (u *unstable) truncateAndAppend(ents []pb.Entry) {
	from := ents[0].Index
	switch {
	case from == u.offset+pb.Index(len(u.entries)):
		u.entries = append(u.entries, ents...)
	case from <= u.offset:
		// Replace everything; the write in progress (if any) is obsolete.
		u.offset = from
		u.offsetInProgress = u.offset
		u.entries = append([]pb.Entry(nil), ents...)
	default:
		// Keep [offset, from): copy it so slices handed out stay intact.
		keep := u.entries[:from-u.offset]
		u.entries = append(append(make([]pb.Entry, 0, len(keep)+len(ents)), keep...), ents...)
		u.offsetInProgress = min(u.offsetInProgress, from)
	}
}

// slice returns entries [lo, hi), which must be held here.
func (u *unstable) slice(lo, hi pb.Index) []pb.Entry {
	return u.entries[lo-u.offset : hi-u.offset : hi-u.offset]
}
