package replica

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// readWaiter is the future of one ReadIndex call.
type readWaiter struct {
	resolved atomic.Bool
	done     chan error // buffered 1
}

func (w *readWaiter) finish(r *Replica, err error) {
	if w.resolved.CompareAndSwap(false, true) {
		r.pendingReads.Add(-1)
		w.done <- err
	}
}

// readBatch is the set of ReadIndex calls served by one RawNode.ReadIndex
// request (one heartbeat round on the leader).
type readBatch struct {
	waiters []*readWaiter
	sent    uint64   // tick at which it was handed to the core
	index   pb.Index // the confirmed read index, once known
}

// readQueue is the loop's bookkeeping of ReadIndex calls: collected (not
// yet handed to the core), sent (waiting for the core's ReadState) and
// confirmed (waiting for the state machine to reach their index).
type readQueue struct {
	ctxSeq    uint64
	collected []*readWaiter
	sent      map[uint64]*readBatch
	confirmed []*readBatch
}

func (q *readQueue) init() { q.sent = make(map[uint64]*readBatch) }

func (q *readQueue) add(w *readWaiter) { q.collected = append(q.collected, w) }

// ReadIndex is a linearizable barrier: it returns once this member has
// applied every entry committed before the call began, as confirmed by the
// leader with a heartbeat round (Raft thesis §6.4). A read of the state
// machine after it returns sees every write acknowledged before ReadIndex
// was called. Concurrent calls share one confirmation round.
//
// It works on followers (the core forwards the request). With no leader
// known it fails with ErrNoLeader at once; if the leader does not confirm
// within two election timeouts (for example it was cut off from its
// majority) it fails with ErrNoLeader too. Other errors: ErrBusy, ctx.Err(),
// ErrStopped.
func (r *Replica) ReadIndex(ctx context.Context) error {
	select {
	case <-r.stopc:
		return r.stoppedErr()
	default:
	}
	if r.pendingReads.Add(1) > r.maxPending {
		r.pendingReads.Add(-1)
		return ErrBusy
	}
	w := &readWaiter{done: make(chan error, 1)}
	select {
	case r.readc <- w:
	default:
		r.pendingReads.Add(-1)
		return ErrBusy
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.donec:
		select {
		case err := <-w.done:
			return err
		default:
		}
		return r.stoppedErr()
	}
}

// flushReads hands the collected reads to the core as one request.
func (r *Replica) flushReads() {
	q := &r.reads
	if len(q.collected) == 0 {
		return
	}
	if r.lead == pb.None {
		for _, w := range q.collected {
			w.finish(r, fmt.Errorf("%w: cannot confirm a read", ErrNoLeader))
		}
		q.collected = nil
		return
	}
	q.ctxSeq++
	ctx := binary.BigEndian.AppendUint64(make([]byte, 0, 16), r.incarnation)
	ctx = binary.BigEndian.AppendUint64(ctx, q.ctxSeq)
	q.sent[q.ctxSeq] = &readBatch{waiters: q.collected, sent: r.ticks}
	q.collected = nil
	r.rn.ReadIndex(ctx)
}

// handleReadStates records the read indexes the core confirmed.
func (r *Replica) handleReadStates(rss []raft.ReadState) {
	q := &r.reads
	for _, rs := range rss {
		if len(rs.RequestCtx) != 16 || binary.BigEndian.Uint64(rs.RequestCtx) != r.incarnation {
			continue
		}
		seq := binary.BigEndian.Uint64(rs.RequestCtx[8:])
		b, ok := q.sent[seq]
		if !ok {
			continue
		}
		delete(q.sent, seq)
		b.index = rs.Index
		q.confirmed = append(q.confirmed, b)
	}
	r.resolveReads()
}

// resolveReads releases the confirmed reads whose index has been applied.
func (r *Replica) resolveReads() {
	q := &r.reads
	kept := q.confirmed[:0]
	for _, b := range q.confirmed {
		if b.index <= r.applied {
			for _, w := range b.waiters {
				w.finish(r, nil)
			}
			continue
		}
		kept = append(kept, b)
	}
	clear(q.confirmed[len(kept):])
	q.confirmed = kept
}

// failUnconfirmed fails the reads the core has not confirmed yet: after a
// leader change the request may have been lost with the old leader.
// Confirmed reads stay valid: their index was confirmed by a quorum.
func (q *readQueue) failUnconfirmed(r *Replica, err error) {
	for seq, b := range q.sent {
		delete(q.sent, seq)
		for _, w := range b.waiters {
			w.finish(r, err)
		}
	}
}

// expire fails sent reads not confirmed within limit ticks: a leader cut
// off from its majority never confirms them, and the caller must hear so in
// bounded time.
func (q *readQueue) expire(r *Replica, now, limit uint64) {
	for seq, b := range q.sent {
		if now-b.sent < limit {
			continue
		}
		delete(q.sent, seq)
		for _, w := range b.waiters {
			w.finish(r, fmt.Errorf("%w: read not confirmed by a quorum within %d ticks", ErrNoLeader, limit))
		}
	}
}

// failAll resolves every read with err (shutdown).
func (q *readQueue) failAll(r *Replica, err error) {
	for _, w := range q.collected {
		w.finish(r, err)
	}
	q.collected = nil
	q.failUnconfirmed(r, err)
	for _, b := range q.confirmed {
		for _, w := range b.waiters {
			w.finish(r, err)
		}
	}
	q.confirmed = nil
}
