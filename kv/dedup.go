package kv

// dedupChunk is the number of records per chunk of the dedup queue.
const dedupChunk = 1024

// seqsPerSlab is how many consecutive seqs of a session share one entry
// of the dedup index.
const seqsPerSlab = 64

// slabKey names a session's seqs slab*seqsPerSlab ... (slab+1)*seqsPerSlab-1.
type slabKey struct{ session, slab uint64 }

// seqSlab holds the queue positions of a session's live records whose seqs
// share a slabKey: pos[seq%seqsPerSlab] is the position plus one, 0 for none.
type seqSlab struct {
	pos  [seqsPerSlab]uint64
	live int
}

// dedupRec is one remembered proposal. Records are immutable once added.
type dedupRec struct {
	session, seq uint64
	at           int64 // entry time it was applied at
	res          Result
}

// dedupFloor says that proposals of a session with seq <= seq may have been
// applied and forgotten; at is when the latest of them was forgotten.
type dedupFloor struct {
	seq uint64
	at  int64
}

// dedupTable remembers recently applied proposals and their results, so that
// a proposal applied again (retried by its proposer, or re-proposed by the
// replica after a leader change) returns its first result instead of
// running twice (Raft thesis §6.3; the bug Jepsen found in redisraft).
//
// Records sit in a FIFO queue in apply order, which is also entry-time order
// since Apply's clock never runs backwards; eviction pops the front while it
// is older than the window or the table is over its cap. Everything depends
// only on applied entries, so every member evicts identically.
//
// The queue is a list of fixed-size chunks whose filled records never change:
// a snapshot copies the chunk list (not the records) and reads them while
// Apply carries on appending and popping.
//
// A retry of a forgotten proposal must not run again either (it may have
// been applied), so eviction raises a per-session floor and lookups below the
// floor answer ErrMsgDedupExpired. Floors expire after the window too: a
// proposal retried more than a window after its session's last forgotten
// proposal is applied (the window is minutes; proposers retry for seconds).
//
// A proposer that acknowledges (Command.Ack) lets the table forget sooner:
// a record below its session's ack is dead, a lookup below the ack is
// tooOld, and eviction pops dead records from the front of the queue as it
// pops old ones. Dead records still in the middle of the queue stay (and
// stay indexed) until they reach the front, so a member restored from a
// snapshot, which holds the same queue, evicts exactly as the others do.
type dedupTable struct {
	window int64 // ms
	max    int

	chunks     []*[dedupChunk]dedupRec // chunks[0] holds position head/dedupChunk*dedupChunk
	head, tail uint64                  // live records: positions [head, tail)
	index      map[slabKey]*seqSlab    // position of each live record (see indexed)
	floors     map[uint64]dedupFloor
	acks       map[uint64]dedupFloor // per session: seqs below seq are dead; at: when it last rose
	floorsGC   int                   // len(floors)+len(acks) that triggers the next sweep of stale ones
}

func newDedupTable(window int64, max int) dedupTable {
	return dedupTable{
		window:   window,
		max:      max,
		index:    make(map[slabKey]*seqSlab),
		floors:   make(map[uint64]dedupFloor),
		acks:     make(map[uint64]dedupFloor),
		floorsGC: 64,
	}
}

func (t *dedupTable) len() int { return int(t.tail - t.head) }

func (t *dedupTable) rec(pos uint64) *dedupRec {
	return &t.chunks[pos/dedupChunk-t.head/dedupChunk][pos%dedupChunk]
}

// lookup returns the first result of (session, seq) if remembered, or tooOld
// if it may have been applied and forgotten.
func (t *dedupTable) lookup(session, seq uint64, now int64) (res Result, ok, tooOld bool) {
	if t.acked(session, seq, now) {
		return Result{}, false, true
	}
	if pos, found := t.indexed(session, seq); found {
		return t.rec(pos).res, true, false
	}
	if f, found := t.floors[session]; found && seq <= f.seq && f.at > now-t.window {
		return Result{}, false, true
	}
	return Result{}, false, false
}

// acked reports whether the proposer of session has promised never to
// propose seq again. An ack expires a window after it last rose, like a floor.
func (t *dedupTable) acked(session, seq uint64, now int64) bool {
	a, found := t.acks[session]
	return found && seq < a.seq && a.at > now-t.window
}

// ack records that session's proposals below seq are all answered. A
// stale ack counts as absent, whether or not it has been swept yet, so
// that every member ends in the same state.
func (t *dedupTable) ack(session, seq uint64, now int64) {
	a, found := t.acks[session]
	if !found || a.at <= now-t.window || seq > a.seq {
		t.acks[session] = dedupFloor{seq: seq, at: now}
	}
}

// indexed returns the queue position of the live record of (session, seq).
//
// The index keeps a session's seqs in slabs of consecutive ones. A session
// is one proposer, which numbers its proposals in order, so its live seqs
// are dense: a record costs 8 bytes of slab, and adding, finding and
// forgetting it costs a lookup in a map of a few slabs, which stays in
// cache. A map with an entry per record, added at one end of the queue and
// deleted at the other, spent a fifth of Apply in the map (its lookups
// miss the cache and probe past deleted slots).
func (t *dedupTable) indexed(session, seq uint64) (uint64, bool) {
	s := t.index[slabKey{session, seq / seqsPerSlab}]
	if s == nil {
		return 0, false
	}
	p := s.pos[seq%seqsPerSlab]
	return p - 1, p != 0
}

func (t *dedupTable) setIndex(session, seq, pos uint64) {
	k := slabKey{session, seq / seqsPerSlab}
	s := t.index[k]
	if s == nil {
		s = new(seqSlab)
		t.index[k] = s
	}
	if s.pos[seq%seqsPerSlab] == 0 {
		s.live++
	}
	s.pos[seq%seqsPerSlab] = pos + 1
}

func (t *dedupTable) unindex(session, seq uint64) {
	k := slabKey{session, seq / seqsPerSlab}
	s := t.index[k]
	if s == nil || s.pos[seq%seqsPerSlab] == 0 {
		return
	}
	s.pos[seq%seqsPerSlab] = 0
	s.live--
	if s.live == 0 {
		delete(t.index, k)
	}
}

// add remembers a proposal applied at now.
func (t *dedupTable) add(session, seq uint64, now int64, res Result) {
	if int(t.tail/dedupChunk-t.head/dedupChunk) == len(t.chunks) {
		t.chunks = append(t.chunks, new([dedupChunk]dedupRec))
	}
	*t.rec(t.tail) = dedupRec{session: session, seq: seq, at: now, res: res}
	t.setIndex(session, seq, t.tail)
	t.tail++
}

// evict forgets records older than the window, and the oldest records beyond
// the cap.
func (t *dedupTable) evict(now int64) {
	for t.head < t.tail {
		r := t.rec(t.head)
		if r.at > now-t.window && t.len() <= t.max && !t.acked(r.session, r.seq, now) {
			break
		}
		t.unindex(r.session, r.seq)
		f, ok := t.floors[r.session]
		if !ok || f.at <= now-t.window {
			f = dedupFloor{}
		}
		t.floors[r.session] = dedupFloor{seq: max(f.seq, r.seq), at: now}
		t.head++
		if t.head%dedupChunk == 0 {
			t.chunks[0] = nil
			t.chunks = t.chunks[1:]
		}
	}
	if len(t.floors)+len(t.acks) >= t.floorsGC {
		// Stale floors and acks no longer affect lookups or eviction;
		// dropping them is only about memory, so when it happens does not
		// matter for determinism.
		for _, m := range []map[uint64]dedupFloor{t.floors, t.acks} {
			for s, f := range m {
				if f.at <= now-t.window {
					delete(m, s)
				}
			}
		}
		t.floorsGC = max(64, 2*(len(t.floors)+len(t.acks)))
	}
}

// dedupView is a point-in-time copy of a dedupTable for a snapshot: it shares
// the (immutable) filled records.
type dedupView struct {
	chunks     []*[dedupChunk]dedupRec
	head, tail uint64
	floors     []dedupFloorRec
	acks       []dedupFloorRec
}

type dedupFloorRec struct {
	session uint64
	dedupFloor
}

func (v *dedupView) rec(pos uint64) *dedupRec {
	return &v.chunks[pos/dedupChunk-v.head/dedupChunk][pos%dedupChunk]
}

func (t *dedupTable) view() dedupView {
	v := dedupView{
		chunks: append([]*[dedupChunk]dedupRec(nil), t.chunks...),
		head:   t.head,
		tail:   t.tail,
		floors: make([]dedupFloorRec, 0, len(t.floors)),
	}
	for s, f := range t.floors {
		v.floors = append(v.floors, dedupFloorRec{session: s, dedupFloor: f})
	}
	for s, a := range t.acks {
		v.acks = append(v.acks, dedupFloorRec{session: s, dedupFloor: a})
	}
	return v
}
