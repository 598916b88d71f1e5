package replica

import (
	"slices"
	"sync"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Status is a point-in-time view of a replica, for /status, metrics and
// `raftkv status`.
type Status struct {
	ID             pb.NodeID
	Role           raft.Role
	Term           pb.Term
	Vote           pb.NodeID
	Leader         pb.NodeID // pb.None when no leader is known
	Commit         pb.Index
	Applied        pb.Index
	FirstIndex     pb.Index
	LastIndex      pb.Index
	SnapshotIndex  pb.Index // newest snapshot saved
	LeadTransferee pb.NodeID
	// Progress is each member's replication state, on the leader only,
	// sorted by ID.
	Progress []PeerStatus
	// Members are the voters and learners, sorted by ID, with the peer
	// addresses learned from the log.
	Members []Member
	// Removed are the ids removed from the group so far (sorted): they can
	// never be added back (ErrMemberRemoved).
	Removed []pb.NodeID
	// PendingProposals and PendingReads count futures not yet resolved.
	PendingProposals int
	PendingReads     int
	// DroppedMessages counts messages from peers dropped because the
	// replica's inbound queue was full (Raft retries them).
	DroppedMessages uint64
	// Stopped is set once the replica has stopped.
	Stopped bool
}

// PeerStatus is the leader's view of one member's replication.
type PeerStatus struct {
	ID           pb.NodeID
	Match        pb.Index
	Next         pb.Index
	Lag          uint64 // leader's last index minus Match
	State        string // "probe", "replicate" or "snapshot"
	RecentActive bool
	IsLearner    bool
}

// Member is one member of the group.
type Member struct {
	ID    pb.NodeID
	Addr  string
	Voter bool
}

// Status returns the replica's current state. It is answered by the replica
// goroutine; before Start and after Stop it returns the last state known.
func (r *Replica) Status() Status {
	r.lifeMu.Lock()
	running := r.started && !r.stopped
	r.lifeMu.Unlock()
	if running {
		var st Status
		ran := make(chan struct{})
		select {
		case r.ctrlc <- func() { st = r.buildStatus(); close(ran) }:
			<-ran
			return st
		case <-r.donec:
		}
	}
	st := r.pub.status()
	st.Stopped = isClosed(r.donec)
	return st
}

// buildStatus assembles a Status (loop goroutine, or New/shutdown).
func (r *Replica) buildStatus() Status {
	rs := r.rn.Status()
	st := Status{
		ID:               r.id,
		Role:             rs.SoftState.Role,
		Term:             rs.HardState.Term,
		Vote:             rs.HardState.Vote,
		Leader:           rs.SoftState.Lead,
		Commit:           rs.HardState.Commit,
		Applied:          r.applied,
		FirstIndex:       rs.FirstIndex,
		LastIndex:        rs.LastIndex,
		SnapshotIndex:    r.snap.meta.Index,
		LeadTransferee:   rs.LeadTransferee,
		PendingProposals: int(r.pendingProps.Load()),
		PendingReads:     int(r.pendingReads.Load()),
		DroppedMessages:  r.dropped.Load(),
	}
	for id, pr := range rs.Progress {
		ps := PeerStatus{ID: id, Match: pr.Match, Next: pr.Next, State: pr.State,
			RecentActive: pr.RecentActive, IsLearner: pr.IsLearner}
		if rs.LastIndex > pr.Match {
			ps.Lag = uint64(rs.LastIndex - pr.Match)
		}
		st.Progress = append(st.Progress, ps)
	}
	slices.SortFunc(st.Progress, func(a, b PeerStatus) int { return cmpID(a.ID, b.ID) })
	cs := r.confState
	if len(rs.ConfState.Voters)+len(rs.ConfState.Learners) > 0 {
		cs = rs.ConfState
	}
	for _, id := range cs.Voters {
		st.Members = append(st.Members, Member{ID: id, Addr: r.members[id], Voter: true})
	}
	for _, id := range cs.Learners {
		st.Members = append(st.Members, Member{ID: id, Addr: r.members[id]})
	}
	slices.SortFunc(st.Members, func(a, b Member) int { return cmpID(a.ID, b.ID) })
	st.Removed = r.removedIDs()
	return st
}

func cmpID(a, b pb.NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Leader returns the leader this member knows of (pb.None if none). It is
// cheap: it reads a value the replica goroutine publishes after each Ready.
func (r *Replica) Leader() pb.NodeID {
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	return r.pub.lead
}

// IsLeader reports whether this member is the leader.
func (r *Replica) IsLeader() bool { return r.Leader() == r.id }

// ID returns this member's id.
func (r *Replica) ID() pb.NodeID { return r.id }

// Term returns the current term (cheap, as Leader).
func (r *Replica) Term() pb.Term {
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	return r.pub.term
}

// AppliedIndex returns the index of the last entry applied (cheap, as Leader).
func (r *Replica) AppliedIndex() pb.Index {
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	return r.pub.applied
}

// LeaderChanged returns a channel closed at the next change of leader (or
// term) seen by this member. Typical use: read Leader, then wait on the
// channel obtained before reading it.
func (r *Replica) LeaderChanged() <-chan struct{} { return r.pub.leaderChanged() }

// published holds what the loop publishes for cheap concurrent reads.
type published struct {
	mu      sync.Mutex
	lead    pb.NodeID
	term    pb.Term
	applied pb.Index
	changed chan struct{}
	last    Status
}

func (p *published) init() { p.changed = make(chan struct{}) }

func (p *published) leaderChanged() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *published) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *published) setStatus(st Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = st
}

// publish makes the loop's view visible to Leader, Term and AppliedIndex.
func (r *Replica) publish() {
	p := &r.pub
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lead != r.lead || p.term != r.term {
		close(p.changed)
		p.changed = make(chan struct{})
	}
	p.lead, p.term, p.applied = r.lead, r.term, r.applied
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
