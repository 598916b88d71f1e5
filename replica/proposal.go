package replica

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// A proposal moves queued -> handed (the loop gave it to Raft) or
// queued -> canceled (its caller gave up first). Only a handed proposal can
// commit, so only its caller may be told ErrOutcomeUnknown.
const (
	stateQueued int32 = iota
	stateHanded
	stateCanceled
)

// proposal is the future of one Propose or ProposeConfChange call.
type proposal struct {
	// data is the enveloped payload of a normal proposal, or nil. It is
	// built by the caller's goroutine, so the caller may reuse its buffer as
	// soon as Propose returns, whatever the loop is doing.
	data      []byte
	cc        *pb.ConfChange // set for a conf change proposal (Context enveloped)
	seq       uint64         // unique in this incarnation; keys r.pending
	state     atomic.Int32
	abandoned atomic.Bool // the caller stopped waiting after it was handed
	resolved  atomic.Bool
	done      chan proposalResult // buffered 1: resolving never blocks
}

type proposalResult struct {
	val any
	err error
}

// finish resolves p once; later calls do nothing.
func (p *proposal) finish(r *Replica, val any, err error) {
	if p.resolved.CompareAndSwap(false, true) {
		r.pendingProps.Add(-1)
		p.done <- proposalResult{val: val, err: err}
	}
}

// Propose replicates data and returns the state machine's result for it
// once this member has applied it. On a follower the proposal is forwarded
// to the leader by the core; the result still comes from this member's
// state machine.
//
// Errors: ErrBusy (too many pending; nothing proposed), ErrProposalDropped
// (Raft refused it, possibly together with ErrNoLeader; nothing proposed,
// safe to retry), ErrOutcomeUnknown (handed to Raft, then leadership or the
// term changed, or ctx expired (wrapping ctx.Err()), or the replica stopped:
// it may or may not be applied), ctx.Err() alone if ctx expired before the
// proposal reached Raft, ErrStopped.
//
// Give ctx a deadline: a proposal forwarded to a leader that drops it
// (its uncommitted budget full, a transfer under way) resolves only when
// the leader changes or ctx expires. data is copied before Propose returns.
// Propose may be called from any goroutine except the replica's own (that
// is, not from StateMachine or OnConfChange callbacks).
func (r *Replica) Propose(ctx context.Context, data []byte) (any, error) {
	if len(data) == 0 {
		return nil, ErrEmptyProposal
	}
	seq := r.nextSeq.Add(1)
	env := appendEnvelope(make([]byte, 0, len(data)+envelopeMaxHeader), r.proposalID(seq), data)
	p, err := r.admit(&proposal{data: env, seq: seq})
	if err != nil {
		return nil, err
	}
	return r.wait(ctx, p)
}

// proposalID names the proposal seq of this incarnation.
func (r *Replica) proposalID(seq uint64) proposalID {
	return proposalID{member: uint64(r.id), incarnation: r.incarnation, seq: seq}
}

// ProposeConfChange proposes one membership change and returns once this
// member has applied it. cc.Context is opaque to Raft and handed back to
// OnConfChange on every member (raftkv puts the new member's peer address
// there). Errors as for Propose, plus raft.ErrConfChangePending (wrapped)
// when another change is still in flight.
func (r *Replica) ProposeConfChange(ctx context.Context, cc pb.ConfChange) error {
	if cc.NodeID == pb.None {
		return errors.New("replica: conf change names node 0")
	}
	seq := r.nextSeq.Add(1)
	c := cc
	c.Context = appendEnvelope(nil, r.proposalID(seq), cc.Context)
	p, err := r.admit(&proposal{cc: &c, seq: seq})
	if err != nil {
		return err
	}
	_, err = r.wait(ctx, p)
	return err
}

// admit queues p for the loop, or refuses it at once when the replica is
// stopped or too much is pending.
func (r *Replica) admit(p *proposal) (*proposal, error) {
	select {
	case <-r.stopc:
		return nil, r.stoppedErr()
	default:
	}
	if r.pendingProps.Add(1) > r.maxPending {
		r.pendingProps.Add(-1)
		return nil, ErrBusy
	}
	p.done = make(chan proposalResult, 1)
	select {
	case r.propc <- p:
		return p, nil
	default:
		r.pendingProps.Add(-1)
		return nil, ErrBusy
	}
}

// wait blocks until p is resolved, ctx expires or the replica stops.
func (r *Replica) wait(ctx context.Context, p *proposal) (any, error) {
	select {
	case res := <-p.done:
		return res.val, res.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(stateQueued, stateCanceled) {
			p.finish(r, nil, ctx.Err())
			return nil, ctx.Err()
		}
		select {
		case res := <-p.done:
			return res.val, res.err
		default:
		}
		p.abandoned.Store(true)
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-r.donec:
		select {
		case res := <-p.done:
			return res.val, res.err
		default:
		}
		if p.state.CompareAndSwap(stateQueued, stateCanceled) {
			return nil, r.stoppedErr()
		}
		return nil, fmt.Errorf("%w: %w", r.stoppedErr(), ErrOutcomeUnknown)
	}
}

// propose hands a queued proposal to the core (loop goroutine).
func (r *Replica) propose(p *proposal) {
	if !p.state.CompareAndSwap(stateQueued, stateHanded) {
		return // its caller gave up while it was queued
	}
	var err error
	if p.cc != nil && p.cc.Type != pb.ConfChangeRemove && r.removed[p.cc.NodeID] {
		err = fmt.Errorf("%w: member %d", ErrMemberRemoved, p.cc.NodeID)
		p.finish(r, nil, err)
		return
	} else if p.cc != nil {
		err = r.rn.ProposeConfChange(*p.cc)
	} else {
		err = r.rn.Propose(p.data)
	}
	if err != nil {
		p.finish(r, nil, r.proposeError(err))
		return
	}
	r.pending[p.seq] = p
}

// proposeError maps the core's refusal to the replica's errors.
func (r *Replica) proposeError(err error) error {
	if errors.Is(err, raft.ErrProposalDropped) {
		if r.lead == pb.None {
			return fmt.Errorf("%w: %w", ErrNoLeader, ErrProposalDropped)
		}
		return fmt.Errorf("%w: %w", ErrProposalDropped, err)
	}
	return fmt.Errorf("replica: propose: %w", err)
}

// resolveApplied resolves the future of an applied entry that this
// incarnation proposed.
func (r *Replica) resolveApplied(id proposalID, val any) {
	if id.member != uint64(r.id) || id.incarnation != r.incarnation {
		return
	}
	p, ok := r.pending[id.seq]
	if !ok {
		return
	}
	delete(r.pending, id.seq)
	p.finish(r, val, nil)
}

// failPending resolves every proposal handed to Raft with err; called when
// this member can no longer tell whether they will commit.
func (r *Replica) failPending(err error) {
	for seq, p := range r.pending {
		delete(r.pending, seq)
		p.finish(r, nil, err)
	}
}

// sweepAbandoned forgets proposals whose callers stopped waiting, so that
// abandoned futures do not hold admission slots until the next leader change.
func (r *Replica) sweepAbandoned() {
	for seq, p := range r.pending {
		if p.abandoned.Load() {
			delete(r.pending, seq)
			p.finish(r, nil, ErrOutcomeUnknown)
		}
	}
}
