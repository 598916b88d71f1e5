package raft

import (
	"encoding/binary"

	"github.com/raftkv/raftkv/raft/quorum"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// ReadIndex (thesis §6.4): to serve a linearizable read without writing to
// the log, the leader records its commit index as the read index, then
// confirms it is still the leader by hearing from a majority after the
// request arrived. Once the state machine has applied the read index, the
// read reflects every write acknowledged before the request.
//
// Batching: requests are grouped in rounds. A request joins the next round;
// at Ready time the leader starts that round by broadcasting one heartbeat
// carrying the round number (8 bytes, big-endian) as its Context. Followers
// echo the Context. A follower that echoes round k acknowledged our
// leadership after every request of rounds <= k arrived, so the highest round
// acknowledged by a majority releases all requests up to it at once. Rounds
// restart with each term (responses of other terms are dropped by Step).
// A follower's own request, stamped with the leader's term, needs no round
// when the follower and the leader are a majority (see handleReadIndex).

// readRequest is one pending ReadIndex request.
type readRequest struct {
	index   pb.Index  // the leader's commit index when the request arrived
	ctx     []byte    // the caller's token, returned in the ReadState
	from    pb.NodeID // the requester: this node, or a follower that forwarded it
	round   uint64    // the heartbeat round that confirms it
	vouched bool      // from was in our term when it sent the request
}

type readOnly struct {
	// waitingCommit holds requests received before this leader committed an
	// entry of its term: until then its commit index may be stale (§6.4 step 1).
	waitingCommit []readRequest
	pending       []readRequest // in round order
	sent          uint64        // the last round broadcast
	acked         map[pb.NodeID]uint64
}

func (ro *readOnly) reset() {
	ro.waitingCommit = nil
	ro.pending = nil
	ro.sent = 0
	clear(ro.acked)
}

// needRound reports whether requests wait for a round not yet broadcast.
func (ro *readOnly) needRound() bool {
	return len(ro.pending) > 0 && ro.pending[len(ro.pending)-1].round > ro.sent
}

// startRound returns the heartbeat Context: a new round if requests wait for
// one, else the last round (a heartbeat acknowledged later still confirms it),
// or nil when no read was ever requested this term.
func (ro *readOnly) startRound() []byte {
	if ro.needRound() {
		ro.sent++
	}
	if ro.sent == 0 {
		return nil
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), ro.sent)
}

// ack records that from echoed ctx; it reports whether that may release requests.
func (ro *readOnly) ack(from pb.NodeID, ctx []byte) bool {
	if len(ctx) != 8 {
		return false
	}
	round := binary.BigEndian.Uint64(ctx)
	if round > ro.sent || round <= ro.acked[from] {
		return false
	}
	if ro.acked == nil {
		ro.acked = map[pb.NodeID]uint64{}
	}
	ro.acked[from] = round
	return len(ro.pending) > 0
}

// confirmed returns the highest round a majority of voters acknowledged; the
// leader acknowledges every round it sent.
func (ro *readOnly) confirmed(voters quorum.MajorityConfig, self pb.NodeID) uint64 {
	return uint64(voters.CommittedIndex(roundAcks{ro: ro, self: self}))
}

type roundAcks struct {
	ro   *readOnly
	self pb.NodeID
}

func (a roundAcks) AckedIndex(id pb.NodeID) (pb.Index, bool) {
	if id == a.self {
		return pb.Index(a.ro.sent), true
	}
	r, ok := a.ro.acked[id]
	return pb.Index(r), ok
}

// handleReadIndex is the leader's side of a ReadIndex request.
//
// A follower's own request carries its term (LogTerm). If that is our term,
// the request itself is the follower's acknowledgement, made after the client
// asked: when the follower sent it, it had voted in no later term (a vote
// moves a member to the vote's term, durably, before it answers), and
// neither had we (we are still in that term now). So at that moment no
// leader of a later term existed unless the members other than the two of
// us could elect one; if we two are a majority they could not, every write
// acknowledged before the client asked is at or below our commit index, and
// the read needs no heartbeat round: one round trip instead of two. Only the
// requester's own reads are vouched for this way; a read from anyone else
// that arrived meanwhile may have been asked after the follower sent.
func (r *raft) handleReadIndex(m pb.Message) {
	req := readRequest{ctx: m.Context, from: m.From, vouched: m.From != r.id && m.LogTerm == r.term}
	if !r.committedEntryInCurrentTerm() {
		r.reads.waitingCommit = append(r.reads.waitingCommit, req)
		return
	}
	r.registerRead(req)
}

func (r *raft) registerRead(req readRequest) {
	req.index = r.log.committed
	if r.trk.IsSingleton() && r.trk.IsVoter(r.id) {
		// No one else could have been elected: our leadership needs no
		// confirmation.
		r.answerRead(req)
		return
	}
	if req.vouched && isMajority(r.trk.Voters, r.id, req.from) {
		r.answerRead(req)
		return
	}
	req.round = r.reads.sent + 1
	r.reads.pending = append(r.reads.pending, req)
}

// isMajority reports whether a and b are a majority of voters.
func isMajority(voters quorum.MajorityConfig, a, b pb.NodeID) bool {
	n := 0
	for _, id := range []pb.NodeID{a, b} {
		if voters.Contains(id) {
			n++
		}
	}
	return a != b && n >= len(voters)/2+1
}

// releasePendingReads registers the requests that waited for the first
// commit of this term.
func (r *raft) releasePendingReads() {
	if len(r.reads.waitingCommit) == 0 || !r.committedEntryInCurrentTerm() {
		return
	}
	w := r.reads.waitingCommit
	r.reads.waitingCommit = nil
	for _, req := range w {
		r.registerRead(req)
	}
}

// releaseConfirmedReads answers every request whose round a majority confirmed.
func (r *raft) releaseConfirmedReads() {
	c := r.reads.confirmed(r.trk.Voters, r.id)
	n := 0
	for n < len(r.reads.pending) && r.reads.pending[n].round <= c {
		r.answerRead(r.reads.pending[n])
		n++
	}
	if n > 0 {
		r.reads.pending = append(r.reads.pending[:0:0], r.reads.pending[n:]...)
	}
}

func (r *raft) answerRead(req readRequest) {
	if req.from == pb.None || req.from == r.id {
		r.readStates = append(r.readStates, ReadState{Index: req.index, RequestCtx: req.ctx})
		return
	}
	r.send(pb.Message{To: req.from, Type: pb.MsgReadIndexResp, Index: req.index, Context: req.ctx})
}
