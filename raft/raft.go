package raft

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/raft/tracker"
)

// campaignTransfer is the Context of the vote requests of a campaign that a
// leader asked for (MsgTimeoutNow). Voters grant it even while they still
// hear from a leader: the leader itself wants to be replaced (thesis §3.10).
var campaignTransfer = []byte("CampaignTransfer")

// raft is the protocol state machine behind a RawNode.
type raft struct {
	id     pb.NodeID
	cfg    Config // with defaults
	logger *slog.Logger
	rand   Rand

	term pb.Term
	vote pb.NodeID
	log  *raftLog
	trk  *tracker.Tracker

	role Role // follower, candidate, pre-candidate or leader (never RoleLearner)
	lead pb.NodeID

	// leadTransferee is the member leadership is being handed to, if any.
	leadTransferee pb.NodeID
	// timeoutNowTicks, on a follower, counts down the ticks for which a
	// MsgTimeoutNow that came while a committed conf change was unapplied
	// still stands: the campaign it asked for starts once that change is
	// applied (see campaignDeferred). It lapses when the leader's transfer
	// would have timed out, so that a late campaign does not unseat a leader
	// that no longer wants to go. 0: none.
	timeoutNowTicks int
	// pendingConfIndex is the index of the last conf change the leader
	// appended (or its last index when it was elected); a new one may be
	// proposed only once it has been applied.
	pendingConfIndex pb.Index
	// uncommittedSize is the entry data the leader holds uncommitted.
	uncommittedSize uint64
	// needBcast: entries were appended since the last Ready, or the commit
	// index moved; one broadcast at Ready time batches them all.
	needBcast bool

	reads readOnly

	// confKnown is the log index through which the configuration in trk is
	// known to reflect every conf change: the applied index, or the founding
	// log's end (its ConfState is given).
	confKnown pb.Index

	electionElapsed           int // ticks since the last election timeout or, on followers, contact with the leader
	heartbeatElapsed          int
	randomizedElectionTimeout int

	msgs       []pb.Message
	readStates []ReadState
}

func newRaft(c Config) (*raft, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	hs, cs, err := c.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: storage initial state: %w", err)
	}
	log, err := newLog(c.Storage, c.MaxCommittedSizePerReady)
	if err != nil {
		return nil, err
	}
	r := &raft{
		id:     c.ID,
		cfg:    c,
		logger: c.Logger.With("raft", c.ID),
		rand:   c.Rand,
		log:    log,
		trk:    tracker.New(c.MaxInflightMsgs),
	}
	if r.rand == nil {
		// A generator of our own, seeded from the ID: deterministic, and
		// distinct per node so that timeouts differ.
		r.rand = rand.New(rand.NewPCG(uint64(c.ID), 0x9e3779b97f4a7c15))
	}
	hs, cs, err = r.founding(hs, cs)
	if err != nil {
		return nil, err
	}
	if err := validConfState(cs); err != nil {
		return nil, fmt.Errorf("raft: storage initial conf state: %w", err)
	}
	if err := r.loadState(hs); err != nil {
		return nil, err
	}
	if err := r.loadApplied(c.Applied); err != nil {
		return nil, err
	}
	r.trk.SetConfig(cs, r.log.lastIndex()+1)
	r.becomeFollower(r.term, pb.None)
	r.logger.Info("raft node started", "term", r.term, "commit", r.log.committed,
		"applied", r.log.applied, "last_index", r.log.lastIndex(), "voters", r.trk.Voters, "learners", r.trk.Learners)
	return r, nil
}

// loadState adopts the durable HardState, rejecting one that contradicts
// the log (a corrupted or mismatched Storage).
func (r *raft) loadState(hs pb.HardState) error {
	last := r.log.lastIndex()
	first := r.log.firstIndex()
	if hs.Commit > last {
		return fmt.Errorf("raft: storage: HardState commit %d is beyond the last index %d", hs.Commit, last)
	}
	lastTerm, err := r.log.term(last)
	if err != nil {
		return fmt.Errorf("raft: storage: term of last index %d: %w", last, err)
	}
	if hs.Term < lastTerm {
		return fmt.Errorf("raft: storage: HardState term %d is below the last entry's term %d", hs.Term, lastTerm)
	}
	r.term = hs.Term
	r.vote = hs.Vote
	r.log.commitTo(max(hs.Commit, first-1))
	return nil
}

// loadApplied adopts the state machine's applied index.
func (r *raft) loadApplied(applied pb.Index) error {
	snap := r.log.firstIndex() - 1
	if applied < snap {
		// The state machine would jump from applied to the first entry after
		// the snapshot: it must restore the snapshot first.
		return fmt.Errorf("raft: config: Applied %d is below the storage's snapshot index %d; restore the snapshot into the state machine first", applied, snap)
	}
	if applied > r.log.lastIndex() {
		return fmt.Errorf("raft: config: Applied %d is beyond the last index %d in storage", applied, r.log.lastIndex())
	}
	if applied > r.log.committed {
		// The commit index moves without fsync (Ready.MustSync is false for
		// it), so a crash can leave it behind what was applied. Applied
		// entries were committed, and committed entries are never truncated:
		// the log holds them, so the commit index can be raised to match.
		r.log.commitTo(applied)
	}
	r.log.appliedTo(applied)
	return nil
}

// founding recognises a log written by Bootstrap and not yet started: an
// empty HardState over term-1 ConfChange entries from index 1. Every founder
// holds exactly these entries, so they are committed by construction; the
// runtime applies them like any other entries (ApplyConfChange is idempotent).
func (r *raft) founding(hs pb.HardState, cs pb.ConfState) (pb.HardState, pb.ConfState, error) {
	if !hs.IsEmpty() || r.log.firstIndex() != 1 {
		return hs, cs, nil
	}
	last := r.log.lastIndex()
	if last == 0 {
		return hs, cs, nil
	}
	ents, err := r.log.slice(1, last+1, noLimit)
	if err != nil {
		return hs, cs, fmt.Errorf("raft: storage: read founding log: %w", err)
	}
	var voters []pb.NodeID
	for _, e := range ents {
		if e.Term != 1 || e.Type != pb.EntryConfChange {
			return hs, cs, nil
		}
		var cc pb.ConfChange
		if err := cc.UnmarshalBinary(e.Data); err != nil || cc.Type != pb.ConfChangeAddVoter {
			return hs, cs, nil
		}
		voters = append(voters, cc.NodeID)
	}
	if len(cs.Voters) == 0 && len(cs.Learners) == 0 {
		_, cs = Bootstrap(voters)
	}
	r.confKnown = last
	return pb.HardState{Term: 1, Commit: last}, cs, nil
}

const noLimit = ^uint64(0)

func validConfState(cs pb.ConfState) error {
	seen := map[pb.NodeID]bool{}
	for _, id := range cs.Voters {
		if id == pb.None || seen[id] {
			return fmt.Errorf("raft: conf state %v: voter %d is zero or repeated", cs, id)
		}
		seen[id] = true
	}
	for _, id := range cs.Learners {
		if id == pb.None || seen[id] {
			return fmt.Errorf("raft: conf state %v: learner %d is zero, repeated or also a voter", cs, id)
		}
		seen[id] = true
	}
	return nil
}

func (r *raft) hardState() pb.HardState {
	return pb.HardState{Term: r.term, Vote: r.vote, Commit: r.log.committed}
}

func (r *raft) softState() SoftState {
	role := r.role
	if role == RoleFollower && r.isLearner() {
		role = RoleLearner
	}
	return SoftState{Lead: r.lead, Role: role}
}

func (r *raft) isLearner() bool {
	pr := r.trk.Progress[r.id]
	return pr != nil && pr.IsLearner
}

// promotable reports whether this node may campaign: it is a voter and is
// not in the middle of installing a snapshot.
func (r *raft) promotable() bool {
	return r.trk.IsVoter(r.id) && !r.log.hasNextOrInProgressSnapshot()
}

// send queues m for the next Ready, stamping sender and term. Proposals and
// read requests forwarded to the leader carry no term: they are requests,
// valid in whatever term the leader is in.
func (r *raft) send(m pb.Message) {
	if m.From == pb.None {
		m.From = r.id
	}
	switch m.Type {
	case pb.MsgVote, pb.MsgVoteResp, pb.MsgPreVote, pb.MsgPreVoteResp:
		// Term set by the caller: a pre-vote carries the term it would
		// campaign in, responses the term they answer.
	case pb.MsgProp, pb.MsgReadIndex:
		m.Term = 0
	default:
		m.Term = r.term
	}
	r.msgs = append(r.msgs, m)
}

// reset moves to term (forgetting the vote if the term changes) and clears
// the per-term volatile state.
func (r *raft) reset(term pb.Term) {
	if r.term != term {
		r.term = term
		r.vote = pb.None
		r.dropStalePromises()
	}
	r.lead = pb.None
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.resetRandomizedElectionTimeout()
	r.leadTransferee = pb.None
	r.timeoutNowTicks = 0
	r.trk.ResetVotes()
	last := r.log.lastIndex()
	for _, id := range r.trk.IDs() {
		pr := r.trk.Progress[id]
		*pr = tracker.Progress{Next: last + 1, Inflights: pr.Inflights, IsLearner: pr.IsLearner}
		pr.Inflights.Reset()
		if id == r.id {
			pr.Match = r.log.stableLastIndex()
		}
	}
	r.pendingConfIndex = 0
	r.uncommittedSize = 0
	r.needBcast = false
	r.reads.reset()
}

// dropStalePromises removes granted votes and append acknowledgements of
// earlier terms not yet handed out. Each promises state that this Ready may
// no longer persist: the vote is replaced in the HardState, and the new
// term's leader may overwrite the acknowledged entries before they reach
// the disk. Sent anyway, they would promise what is not durable (Raft
// Figure 2); unsent, they are just lost messages to a deposed leader.
func (r *raft) dropStalePromises() {
	r.msgs = slices.DeleteFunc(r.msgs, func(m pb.Message) bool {
		return (m.Type == pb.MsgVoteResp || m.Type == pb.MsgAppResp) && !m.Reject && m.Term < r.term
	})
}

// resetRandomizedElectionTimeout draws the timeout from
// [ElectionTick, 2*ElectionTick): randomness makes split votes rare (Raft §5.2).
func (r *raft) resetRandomizedElectionTimeout() {
	r.randomizedElectionTimeout = r.cfg.ElectionTick + r.rand.IntN(r.cfg.ElectionTick)
}

func (r *raft) becomeFollower(term pb.Term, lead pb.NodeID) {
	r.reset(term)
	r.role = RoleFollower
	r.lead = lead
	r.logger.Debug("became follower", "term", r.term, "lead", lead)
}

func (r *raft) becomePreCandidate() {
	// A pre-candidate keeps its term and vote: the pre-vote changes nothing
	// durable (thesis §9.6). It forgets the leader, though: it has given up on it.
	r.trk.ResetVotes()
	r.lead = pb.None
	r.role = RolePreCandidate
	r.logger.Info("became pre-candidate", "term", r.term)
}

func (r *raft) becomeCandidate() {
	r.reset(r.term + 1)
	r.vote = r.id
	r.role = RoleCandidate
	r.logger.Info("became candidate", "term", r.term)
}

func (r *raft) becomeLeader() {
	r.reset(r.term)
	r.role = RoleLeader
	r.lead = r.id
	self := r.trk.Progress[r.id]
	self.BecomeReplicate()
	self.Match = r.log.stableLastIndex()
	self.Next = r.log.lastIndex() + 1
	self.RecentActive = true
	// Conservatively treat the whole uncommitted tail as possibly holding a
	// conf change: no new one until all of it is applied.
	r.pendingConfIndex = r.log.lastIndex()
	// Append an empty entry of the new term: the leader can commit (and
	// learn the commit index of earlier terms) only through an entry of its
	// own term (Raft §5.4.2, §8).
	r.appendEntries([]pb.Entry{{}})
	r.logger.Info("became leader", "term", r.term, "last_index", r.log.lastIndex())
}

// Step is the entry point for every message, local or remote.
func (r *raft) Step(m pb.Message) error {
	switch {
	case m.Term == 0:
		// Local message, or a termless request (MsgProp, MsgReadIndex).
	case m.Term > r.term:
		if m.Type == pb.MsgVote || m.Type == pb.MsgPreVote {
			force := bytes.Equal(m.Context, campaignTransfer)
			// Leader stickiness (thesis §4.2.3): while we hear from a leader,
			// a vote request is from a disruptive server (partitioned, or
			// removed from the group): ignore it without adopting its term.
			inLease := r.lead != pb.None && r.electionElapsed < r.cfg.ElectionTick
			if !force && inLease {
				r.logger.Debug("ignored vote request within lease", "from", m.From, "msg_term", m.Term, "type", m.Type)
				return nil
			}
		}
		switch {
		case m.Type == pb.MsgPreVote:
			// A pre-vote never changes our term.
		case m.Type == pb.MsgPreVoteResp && !m.Reject:
			// Granted pre-votes carry the future term; we move to it only if
			// we win the pre-vote and start the real election.
		case m.Type == pb.MsgApp || m.Type == pb.MsgHeartbeat || m.Type == pb.MsgSnap:
			r.becomeFollower(m.Term, m.From)
		default:
			r.becomeFollower(m.Term, pb.None)
		}
	case m.Term < r.term:
		switch m.Type {
		case pb.MsgApp, pb.MsgHeartbeat:
			// A stale leader (e.g. after a partition). Tell it our term so
			// that it steps down: with check-quorum or pre-vote, nobody else
			// would (they ignore its messages and never raise their term).
			r.send(pb.Message{To: m.From, Type: pb.MsgAppResp})
		case pb.MsgPreVote:
			// Reject with our term so the pre-candidate learns it is behind.
			r.send(pb.Message{To: m.From, Type: pb.MsgPreVoteResp, Term: r.term, Reject: true})
		}
		return nil
	}

	switch m.Type {
	case pb.MsgHup:
		r.hup(false)
		return nil
	case pb.MsgVote, pb.MsgPreVote:
		r.handleVoteRequest(m)
		return nil
	}
	switch r.role {
	case RoleLeader:
		return r.stepLeader(m)
	case RoleCandidate, RolePreCandidate:
		return r.stepCandidate(m)
	default:
		return r.stepFollower(m)
	}
}

// tick advances the logical clock by one.
func (r *raft) tick() {
	if r.role == RoleLeader {
		r.tickHeartbeat()
	} else {
		r.tickElection()
	}
}

func (r *raft) tickElection() {
	r.electionElapsed++
	if r.timeoutNowTicks > 0 {
		r.timeoutNowTicks--
	}
	if r.promotable() && r.electionElapsed >= r.randomizedElectionTimeout {
		r.electionElapsed = 0
		r.hup(false)
	}
}

func (r *raft) tickHeartbeat() {
	r.heartbeatElapsed++
	r.electionElapsed++
	if r.electionElapsed >= r.cfg.ElectionTick {
		r.electionElapsed = 0
		if !r.cfg.DisableCheckQuorum {
			r.checkQuorum()
			if r.role != RoleLeader {
				return
			}
		}
		if r.leadTransferee != pb.None {
			// The transferee did not take over within an election timeout.
			r.logger.Info("leadership transfer timed out", "transferee", r.leadTransferee)
			r.abortLeaderTransfer()
		}
	}
	if r.heartbeatElapsed >= r.cfg.HeartbeatTick {
		r.heartbeatElapsed = 0
		r.bcastHeartbeat()
	}
}

func (r *raft) stepFollower(m pb.Message) error {
	switch m.Type {
	case pb.MsgProp:
		return r.forwardProposal(m)
	case pb.MsgApp:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleAppendEntries(m)
	case pb.MsgHeartbeat:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleHeartbeat(m)
	case pb.MsgSnap:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleSnapshot(m)
	case pb.MsgTransferLeader:
		if r.lead == pb.None {
			r.logger.Info("no leader to forward a transfer request to", "transferee", m.From)
			return nil
		}
		m.To = r.lead
		r.send(m)
	case pb.MsgTimeoutNow:
		if m.From != r.lead {
			return nil
		}
		// The leader is handing over: campaign at once, skipping pre-vote
		// and the voters' lease (thesis §3.10). A committed conf change not
		// yet applied here forbids campaigning for now (hup); the commit
		// index that announced it and this message often arrive together,
		// so rather than lose the transfer, campaign once it is applied.
		if r.hasUnappliedConfChanges() {
			r.logger.Info("transfer campaign deferred until committed conf changes are applied", "applied", r.log.applied, "commit", r.log.committed)
			r.timeoutNowTicks = r.cfg.ElectionTick
			return nil
		}
		r.hup(true)
	case pb.MsgReadIndex:
		if r.lead == pb.None {
			r.logger.Info("no leader to forward a read index request to")
			return nil
		}
		// Our own request carries our term: it vouches that we had voted in
		// no later term when we sent it (see handleReadIndex). A request we
		// only pass on vouches for nothing of ours.
		m.LogTerm = 0
		if m.From == pb.None || m.From == r.id {
			m.LogTerm = r.term
		}
		m.To = r.lead
		r.send(m)
	case pb.MsgReadIndexResp:
		if m.From != r.lead {
			return nil
		}
		r.readStates = append(r.readStates, ReadState{Index: m.Index, RequestCtx: m.Context})
	}
	return nil
}

func (r *raft) forwardProposal(m pb.Message) error {
	if r.lead == pb.None {
		return fmt.Errorf("raft: no leader known: %w", ErrProposalDropped)
	}
	if r.cfg.DisableProposalForwarding {
		return &NotLeaderError{Leader: r.lead}
	}
	m.To = r.lead
	r.send(m)
	return nil
}

// errMalformed reports a message no correct peer sends.
var errMalformed = errors.New("raft: malformed message")
