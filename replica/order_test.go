package replica

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// durableView records what a member's storage has made durable.
type durableView struct {
	Storage
	mu   sync.Mutex
	last pb.Index
	hs   pb.HardState
}

func (d *durableView) Save(hs pb.HardState, ents []pb.Entry, sync bool) error {
	if err := d.Storage.Save(hs, ents, sync); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(ents); n > 0 {
		d.last = ents[n-1].Index
	}
	if !hs.IsEmpty() {
		d.hs = hs
	}
	return nil
}

func (d *durableView) SaveSnapshot(meta pb.SnapshotMeta) error {
	if err := d.Storage.SaveSnapshot(meta); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = max(d.last, meta.Index)
	return nil
}

// orderChecker fails the test when a member sends a message that vouches
// for state it has not persisted yet (Raft thesis §3.8: persist before
// answering).
type orderChecker struct {
	Sender
	t    *testing.T
	self pb.NodeID
	d    *durableView
	seen *sync.Map
}

func (o *orderChecker) Send(msgs []pb.Message) {
	o.d.mu.Lock()
	last, hs := o.d.last, o.d.hs
	o.d.mu.Unlock()
	for _, m := range msgs {
		switch {
		case m.Type == pb.MsgAppResp && !m.Reject && m.Index > last:
			o.t.Errorf("member %d acknowledged index %d with only %d durable", o.self, m.Index, last)
		case m.Type == pb.MsgVoteResp && !m.Reject && (hs.Vote != m.To || hs.Term < m.Term):
			o.t.Errorf("member %d granted its vote to %d in term %d before persisting it (durable %+v)", o.self, m.To, m.Term, hs)
		}
		o.seen.Store(m.Type, true)
	}
	o.Sender.Send(msgs)
}

func TestPersistBeforeAcknowledging(t *testing.T) {
	var seen sync.Map
	views := make(map[pb.NodeID]*durableView)
	var mu sync.Mutex
	c := newMemCluster(t, 3, func(cfg *Config) {
		mu.Lock()
		defer mu.Unlock()
		d, ok := views[cfg.ID]
		if !ok {
			d = &durableView{Storage: cfg.Storage}
			views[cfg.ID] = d
		}
		cfg.Storage = d
		cfg.Transport = &orderChecker{Sender: cfg.Transport, t: t, self: cfg.ID, d: d, seen: &seen}
	})
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	for i := range 30 {
		c.propose(pb.NodeID(i%3+1), fmt.Sprint(i))
	}
	// A new election, so that votes are granted under the checker too.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(lead).r.TransferLeadership(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c.propose(c.waitLeader(), "after")
	c.waitApplied("after")
	for _, typ := range []pb.MessageType{pb.MsgAppResp, pb.MsgVoteResp} {
		if _, ok := seen.Load(typ); !ok {
			t.Errorf("no %s was sent: the check did not run", typ)
		}
	}
}

func TestRemoveMember(t *testing.T) {
	c := newMemCluster(t, 3, nil)
	c.startAll()
	defer c.stopAll()
	lead := c.waitLeader()
	c.propose(lead, "x")
	victim := pb.NodeID(1)
	if victim == lead {
		victim = 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(lead).r.ProposeConfChange(ctx, pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: victim}); err != nil {
		t.Fatalf("remove %d: %v", victim, err)
	}
	c.kill(victim)
	// Two members left, both needed: writes still commit.
	c.propose(lead, "y")
	c.waitApplied("x", "y")
	st := c.node(lead).r.Status()
	if len(st.Members) != 2 {
		t.Fatalf("members after removal = %+v", st.Members)
	}
	for _, m := range st.Members {
		if m.ID == victim {
			t.Fatalf("removed member %d still listed: %+v", victim, st.Members)
		}
	}
	n := c.node(lead)
	n.ccMu.Lock()
	defer n.ccMu.Unlock()
	last := n.cc[len(n.cc)-1]
	if last.Type != pb.ConfChangeRemove || last.NodeID != victim {
		t.Fatalf("last OnConfChange = %+v, want the removal of %d", last, victim)
	}
}

func TestReportsAreQueuedNotDropped(t *testing.T) {
	r := &Replica{reportc: make(chan struct{}, 1)}
	for range 100 {
		r.ReportUnreachable(2) // collapsed: one is enough
	}
	r.ReportSnapshot(2, true)
	r.ReportSnapshot(3, false)
	r.ReportUnreachable(3)
	r.reportMu.Lock()
	defer r.reportMu.Unlock()
	want := []report{{id: 2}, {id: 2, snapshot: true, snapshotsOK: true}, {id: 3, snapshot: true}, {id: 3}}
	if fmt.Sprint(r.reports) != fmt.Sprint(want) {
		t.Fatalf("reports = %+v, want %+v", r.reports, want)
	}
}
