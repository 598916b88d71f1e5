package sim

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// checker holds the global facts the invariants are checked against. Every
// fact is learned from what some node did (persisted a commit index, applied
// an entry, became leader), never from the core's internals, so a core bug
// shows up as two facts that cannot both be true.
type checker struct {
	// leaders records who led each term (Election Safety, paper §5.2).
	leaders map[pb.Term]pb.NodeID
	// committed[i] is the chain hash of the committed log prefix ending at i;
	// committedTerm[i] its last entry's term. Index 0 is the empty prefix.
	committed     []uint64
	committedTerm []pb.Term
	// committedBy[i] bounds from above the term in which index i became
	// committed: the highest term any node had reached when the commit was
	// first seen. (An old-term entry becomes committed only when a later
	// leader commits an entry of its own term after it, §5.4.2, so the
	// entry's own term is no bound.)
	committedBy []pb.Term
	// maxTerm is the highest term any node has reached.
	maxTerm pb.Term
	// appliedMax is the highest index applied by any node: every entry up to
	// it has been acknowledged to its client, so a read issued now must see it.
	appliedMax pb.Index
	// reads maps a ReadIndex request context to what it must observe.
	reads map[string]*readRec
	// elections counts distinct (term, leader) pairs observed.
	elections int
	// values maps each applied proposal's value to its log index.
	values map[string]pb.Index
	// votes records the vote each node granted in each term.
	votes map[voteKey]pb.NodeID
	// prefixes maps every (index, term) any node ever stored to the hash of
	// the log prefix ending there (Log Matching, paper §5.3).
	prefixes map[entryKey]uint64
}

type entryKey struct {
	index pb.Index
	term  pb.Term
}

type voteKey struct {
	node pb.NodeID
	term pb.Term
}

type readRec struct {
	node      pb.NodeID
	mustSee   pb.Index // appliedMax when the read was issued
	served    int
	issuedAt  int64
	readIndex pb.Index
}

func newChecker() checker {
	return checker{
		leaders:       map[pb.Term]pb.NodeID{},
		committed:     []uint64{0},
		committedTerm: []pb.Term{0},
		committedBy:   []pb.Term{0},
		reads:         map[string]*readRec{},
		values:        map[string]pb.Index{},
		votes:         map[voteKey]pb.NodeID{},
		prefixes:      map[entryKey]uint64{},
	}
}

func (c *checker) committedMax() pb.Index { return pb.Index(len(c.committed) - 1) }

// observeLeader checks Election Safety and Leader Completeness for a node
// that reports itself leader of term t. The node's storage holds its whole
// log except entries it proposed itself in term t (a leader never accepts
// entries from others), so every entry committed in an earlier term must be
// there (paper §5.4, Leader Completeness).
func (c *checker) observeLeader(n *node, t pb.Term) error {
	c.observeTerm(t)
	if prev, ok := c.leaders[t]; ok && prev != n.id {
		return fmt.Errorf("election safety: nodes %d and %d are both leader of term %d", prev, n.id, t)
	} else if !ok {
		c.leaders[t] = n.id
		c.elections++
	}
	l := &n.st.cur
	// c0: the last entry surely committed in a term before t: a leader of
	// term t must hold it. cT: the last committed entry of term t itself
	// (this leader's own). Entries committed in term t or later are no
	// concern of a stale leader that has not heard of them.
	var c0, cT pb.Index
	for i := c.committedMax(); i > 0; i-- {
		if c.committedBy[i] < t {
			c0 = i
			break
		}
		if c.committedTerm[i] == t && cT == 0 {
			cT = i
		}
	}
	if l.lastIndex() < c0 {
		return fmt.Errorf("leader completeness: node %d leads term %d with last index %d, missing index %d (term %d), committed by term %d", n.id, t, l.lastIndex(), c0, c.committedTerm[c0], c.committedBy[c0])
	}
	// One hash comparison checks the whole committed prefix up to c0.
	for _, i := range []pb.Index{c0, cT} {
		if i == 0 {
			continue
		}
		if i < l.snap.Index {
			i = l.snap.Index // the snapshot is a committed prefix too
		}
		if got, ok := l.chainAt(i); ok && got != c.committed[i] {
			return fmt.Errorf("leader completeness: node %d leads term %d but its log up to index %d differs from the committed log", n.id, t, i)
		}
	}
	return nil
}

// observeCommit records that node n persisted commit index ci, extending the
// committed log from n's log, or checks n's log against it (a committed entry
// is never changed or lost: State Machine Safety, paper §5.4.3).
func (c *checker) observeCommit(n *node, ci pb.Index) error {
	l := &n.st.cur
	if ci > l.lastIndex() {
		return fmt.Errorf("commit: node %d persisted commit %d beyond its last index %d", n.id, ci, l.lastIndex())
	}
	if ci < l.snap.Index {
		// Its log starts at a snapshot past ci: the snapshot's own check covers it.
		return nil
	}
	if ci <= c.committedMax() {
		got, _ := l.chainAt(ci)
		if got != c.committed[ci] {
			return fmt.Errorf("committed entry lost or changed: node %d's log up to its commit index %d differs from the committed log", n.id, ci)
		}
		return nil
	}
	// Extend. Check the overlap first, then copy the new part.
	if old := c.committedMax(); old >= l.snap.Index {
		got, _ := l.chainAt(old)
		if got != c.committed[old] {
			return fmt.Errorf("committed entry lost or changed: node %d commits %d but its log up to %d differs from the committed log", n.id, ci, old)
		}
	} else {
		return fmt.Errorf("commit: node %d commits %d from a snapshot at %d past the known commit %d", n.id, ci, l.snap.Index, old)
	}
	for i := c.committedMax() + 1; i <= ci; i++ {
		h, _ := l.chainAt(i)
		t, _ := l.termAt(i)
		c.committed = append(c.committed, h)
		c.committedTerm = append(c.committedTerm, t)
		c.committedBy = append(c.committedBy, c.maxTerm)
	}
	return nil
}

// observeApply checks one applied entry: applied in order with no gap and
// no repeat (the applied index never goes backwards), committed, and equal to
// the committed entry at its index (State Machine Safety).
func (c *checker) observeApply(n *node, e *pb.Entry) (uint64, error) {
	if e.Index != n.applied+1 {
		return 0, fmt.Errorf("apply: node %d applied index %d after %d (gap or repeat)", n.id, e.Index, n.applied)
	}
	if e.Index > n.st.cur.hs.Commit {
		return 0, fmt.Errorf("apply: node %d applies index %d beyond its persisted commit %d", n.id, e.Index, n.st.cur.hs.Commit)
	}
	if e.Index > c.committedMax() {
		return 0, fmt.Errorf("apply: node %d applies index %d but the known commit is %d", n.id, e.Index, c.committedMax())
	}
	h := chainNext(n.smChain, e)
	if h != c.committed[e.Index] {
		return 0, fmt.Errorf("state machine safety: node %d applied a different entry (term %d) at index %d than the committed one (term %d)", n.id, e.Term, e.Index, c.committedTerm[e.Index])
	}
	if e.Index > c.appliedMax {
		c.appliedMax = e.Index
	}
	if e.Type == pb.EntryNormal && len(e.Data) > 0 {
		// A forwarded MsgProp the network duplicated is appended twice: that
		// is Raft's contract (deduplication is the state machine's job), so
		// only the first index is kept.
		if _, ok := c.values[string(e.Data)]; !ok {
			c.values[string(e.Data)] = e.Index
		}
	}
	return h, nil
}

// observeReadState registers a ReadState handed to node n.
func (c *checker) observeReadState(n *node, rs raft.ReadState) (*readRec, error) {
	r, ok := c.reads[string(rs.RequestCtx)]
	if !ok {
		return nil, fmt.Errorf("read: node %d got a ReadState for unknown request %q", n.id, rs.RequestCtx)
	}
	if r.node != n.id {
		return nil, fmt.Errorf("read: node %d got the ReadState for request %q issued at node %d", n.id, rs.RequestCtx, r.node)
	}
	return r, nil
}

// serveRead checks a read served at applied index applied: it must reflect
// every write acknowledged before the read was issued (linearizability of
// ReadIndex, thesis §6.4).
func (c *checker) serveRead(n *node, ctx string, r *readRec, readIndex, applied pb.Index) error {
	r.served++
	r.readIndex = readIndex
	if applied < r.mustSee {
		return fmt.Errorf("stale read: request %q at node %d (read index %d) served at applied index %d, but index %d was acknowledged before it was issued", ctx, n.id, readIndex, applied, r.mustSee)
	}
	return nil
}

// checkDurable checks the persistence contract at the moment node n sends m:
// an acknowledgement of entries or a granted vote may leave only once what it
// promises is durable, so that no crash can take the promise back (Raft
// paper Figure 2: "respond to RPCs only after updating stable storage").
// It also checks, across crashes, that no node grants two votes in one term
// (Election Safety rests on it).
func (c *checker) checkDurable(n *node, m *pb.Message) error {
	d := &n.st.durable
	switch {
	case m.Type == pb.MsgAppResp && !m.Reject:
		if d.lastIndex() < m.Index {
			return fmt.Errorf("persistence: node %d acknowledged index %d to %d, but only %d is durable", n.id, m.Index, m.To, d.lastIndex())
		}
		// The durable log must be the one acknowledged, not an older tail
		// at the same indexes.
		want, ok1 := n.st.cur.chainAt(m.Index)
		got, ok2 := d.chainAt(m.Index)
		if ok1 && ok2 && want != got {
			return fmt.Errorf("persistence: node %d acknowledged index %d to %d, but the durable log up to there is an older version", n.id, m.Index, m.To)
		}
		if d.hs.Term < m.Term {
			return fmt.Errorf("persistence: node %d acknowledged in term %d, but its durable term is %d", n.id, m.Term, d.hs.Term)
		}
	case m.Type == pb.MsgVoteResp && !m.Reject:
		// A vote in an older term than the durable one cannot be recast after
		// a crash (the node's term has moved on), so it is safe either way.
		if d.hs.Term < m.Term || (d.hs.Term == m.Term && d.hs.Vote != m.To) {
			return fmt.Errorf("persistence: node %d granted its term-%d vote to %d, but its durable hard state is %+v", n.id, m.Term, m.To, d.hs)
		}
		k := voteKey{n.id, m.Term}
		if prev, ok := c.votes[k]; ok && prev != m.To {
			return fmt.Errorf("double vote: node %d voted for %d and for %d in term %d", n.id, prev, m.To, m.Term)
		}
		c.votes[k] = m.To
	}
	return nil
}

// observeStored checks Log Matching for the entries node n just stored at
// indexes [lo, hi] of its written log: if two logs contain an entry with the
// same index and term, the logs are identical in all entries up to it.
func (c *checker) observeStored(n *node, lo, hi pb.Index) error {
	l := &n.st.cur
	for i := max(lo, l.snap.Index); i <= hi; i++ {
		t, ok1 := l.termAt(i)
		h, ok2 := l.chainAt(i)
		if !ok1 || !ok2 || i == 0 {
			continue
		}
		k := entryKey{i, t}
		if prev, ok := c.prefixes[k]; !ok {
			c.prefixes[k] = h
		} else if prev != h {
			return fmt.Errorf("log matching: node %d stores an entry at index %d term %d whose log prefix differs from another node's entry at the same index and term", n.id, i, t)
		}
	}
	return nil
}

// observeTerm records that some node reached term t.
func (c *checker) observeTerm(t pb.Term) {
	if t > c.maxTerm {
		c.maxTerm = t
	}
}
