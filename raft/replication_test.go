package raft

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestReplicationAndApply checks §5.3: entries proposed on the leader reach
// every log and are applied everywhere in the same order.
func TestReplicationAndApply(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprint("e", i))
		if err := nw.propose(1, want[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range nw.ids() {
		if got := appliedData(nw.nodes[id]); !slices.Equal(got, want) {
			t.Fatalf("node %d applied %v", id, got)
		}
	}
}

// TestProposalsBatchedPerReady checks batching (thesis §10.2): all proposals
// made between two Readys travel in one MsgApp per follower.
func TestProposalsBatchedPerReady(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	rn := nw.nodes[1].rn
	for i := range 100 {
		if err := rn.Propose([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	rd := rn.Ready()
	var apps int
	for _, m := range rd.Messages {
		if m.Type == pb.MsgApp {
			apps++
			if len(m.Entries) != 100 {
				t.Fatalf("MsgApp to %d carries %d entries, want 100", m.To, len(m.Entries))
			}
		}
	}
	if apps != 2 || len(rd.Entries) != 100 {
		t.Fatalf("%d MsgApps, %d entries to persist", apps, len(rd.Entries))
	}
}

// TestMaxSizePerMsg checks that a MsgApp carries at most MaxSizePerMsg bytes
// of entry data (but at least one entry), and that pipelining keeps sending.
func TestMaxSizePerMsg(t *testing.T) {
	nw := newNetwork(t, 3, func(c *Config) { c.MaxSizePerMsg = 1000 })
	nw.campaign(1)
	nw.isolate(2) // 2 falls behind by 50 KB
	for range 50 {
		if err := nw.nodes[1].rn.Propose(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	nw.stabilize()
	nw.heal()
	nw.sent = nil
	nw.tickAll(3)
	for _, m := range nw.sent {
		if m.Type == pb.MsgApp && entsSize(m.Entries) > 1000 {
			t.Fatalf("MsgApp with %d bytes", entsSize(m.Entries))
		}
	}
	if got := len(nw.nodes[2].applied); got != 50 {
		t.Fatalf("node 2 applied %d entries, want 50", got)
	}
}

// TestInflightWindow checks flow control: a follower that does not answer
// gets at most MaxInflightMsgs MsgApps.
func TestInflightWindow(t *testing.T) {
	nw := newNetwork(t, 3, func(c *Config) { c.MaxInflightMsgs = 4 })
	nw.campaign(1)
	nw.filter = func(m pb.Message) bool { return !(m.From == 2 && m.Type == pb.MsgAppResp) }
	nw.sent = nil
	for i := range 20 {
		if err := nw.propose(1, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, m := range nw.sent {
		if m.Type == pb.MsgApp && m.To == 2 && len(m.Entries) > 0 {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d MsgApps with entries to a silent follower, want 4", n)
	}
	if pr := nw.status(1).Progress[2]; pr.State != "replicate" {
		t.Fatalf("progress %+v", pr)
	}
	nw.filter = nil
	nw.tickAll(2)
	if got := len(nw.nodes[2].applied); got != 20 {
		t.Fatalf("node 2 applied %d, want 20", got)
	}
}

// TestUncommittedSizeLimit checks flow control on the leader: past
// MaxUncommittedEntriesSize, proposals are dropped with ErrProposalDropped.
func TestUncommittedSizeLimit(t *testing.T) {
	nw := newNetwork(t, 3, func(c *Config) { c.MaxUncommittedEntriesSize = 100 })
	nw.campaign(1)
	nw.isolate(2)
	nw.isolate(3)
	rn := nw.nodes[1].rn
	for range 10 {
		if err := rn.Propose(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rn.Propose(make([]byte, 10)); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("err = %v, want ErrProposalDropped", err)
	}
	nw.heal()
	nw.tickAll(3)
	if err := rn.Propose(make([]byte, 10)); err != nil {
		t.Fatalf("after commit: %v", err)
	}
}

// TestLeaderCountsOwnLogOnlyWhenDurable checks the persistence contract: a
// single-voter leader commits its entries only after Advance acknowledges
// they are written (thesis §10.2.1).
func TestLeaderCountsOwnLogOnlyWhenDurable(t *testing.T) {
	nw := newNetwork(t, 1, nil)
	nw.campaign(1)
	tn := nw.nodes[1]
	if err := tn.rn.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rd := tn.rn.Ready()
	if len(rd.Entries) != 1 || len(rd.CommittedEntries) != 0 {
		t.Fatalf("entries %d committed %d: nothing may commit before the write", len(rd.Entries), len(rd.CommittedEntries))
	}
	commit := tn.rn.Status().HardState.Commit
	if err := tn.st.Append(rd.Entries); err != nil {
		t.Fatal(err)
	}
	tn.rn.Advance(rd)
	if got := tn.rn.Status().HardState.Commit; got != commit+1 {
		t.Fatalf("commit %d after Advance, want %d", got, commit+1)
	}
	rd = tn.rn.Ready()
	if len(rd.CommittedEntries) != 1 || string(rd.CommittedEntries[0].Data) != "x" {
		t.Fatalf("committed %v", rd.CommittedEntries)
	}
}

// TestFollowerAcksAfterPersist checks the persistence contract on a
// follower: its MsgAppResp is in the same Ready as the entries it covers,
// to be sent only once they are durable.
func TestFollowerAcksAfterPersist(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	term := nw.term(1)
	n2 := nw.nodes[2]
	err := n2.rn.Step(pb.Message{Type: pb.MsgApp, From: 1, To: 2, Term: term, Index: 4, LogTerm: term,
		Entries: []pb.Entry{{Index: 5, Term: term, Data: []byte("y")}}, Commit: 4})
	if err != nil {
		t.Fatal(err)
	}
	rd := n2.rn.Ready()
	if len(rd.Entries) != 1 || !rd.MustSync || len(rd.Messages) != 1 || rd.Messages[0].Index != 5 {
		t.Fatalf("ready: entries %v sync %v msgs %+v", rd.Entries, rd.MustSync, rd.Messages)
	}
}

// TestFollowerDropsAckOverwrittenBeforePersist checks the same contract when
// a new term's leader overwrites acknowledged entries before the Ready that
// would persist them: the old term's acknowledgement is not sent, since what
// it promises never reaches the disk (found by the simulator, seed 12778).
func TestFollowerDropsAckOverwrittenBeforePersist(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	term := nw.term(1)
	n2 := nw.nodes[2]
	for _, m := range []pb.Message{
		{Type: pb.MsgApp, From: 1, To: 2, Term: term, Index: 4, LogTerm: term,
			Entries: []pb.Entry{{Index: 5, Term: term, Data: []byte("old")}}, Commit: 4},
		{Type: pb.MsgApp, From: 3, To: 2, Term: term + 1, Index: 4, LogTerm: term,
			Entries: []pb.Entry{{Index: 5, Term: term + 1, Data: []byte("new")}}, Commit: 4},
	} {
		if err := n2.rn.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	rd := n2.rn.Ready()
	if len(rd.Entries) != 1 || rd.Entries[0].Term != term+1 {
		t.Fatalf("persisting %v, want only 5/%d", rd.Entries, term+1)
	}
	if len(rd.Messages) != 1 || rd.Messages[0].To != 3 || rd.Messages[0].Term != term+1 || rd.Messages[0].Index != 5 {
		t.Fatalf("messages %+v, want only the new term's acknowledgement", rd.Messages)
	}
}

// TestFastBacktracking checks log matching with the conflict-term
// optimisation (§5.3, thesis §5.3): a follower holding 60 entries of a
// deposed leader's term is brought in line in a handful of round trips,
// not one per entry, and its divergent entries are replaced.
func TestFastBacktracking(t *testing.T) {
	nw := newNetwork(t, 5, nil)
	nw.campaign(1)
	// 1 and 2 get 60 entries the others never see.
	nw.partition([]pb.NodeID{1, 2}, []pb.NodeID{3, 4, 5})
	for i := range 60 {
		_ = nw.nodes[1].rn.Propose([]byte(fmt.Sprint("old", i)))
	}
	nw.stabilize()
	if nw.status(2).LastIndex < 60 {
		t.Fatalf("setup: node 2 last index %d", nw.status(2).LastIndex)
	}
	// 3 leads the majority and writes 70 entries over two terms.
	nw.tickAll(30)
	l := nw.leader()
	if l == 1 || l == 2 || l == pb.None {
		// node 1 may still think it leads (stale), pick the majority leader
		l = pb.None
		for _, id := range []pb.NodeID{3, 4, 5} {
			if nw.role(id) == RoleLeader {
				l = id
			}
		}
	}
	if l == pb.None {
		t.Fatalf("no majority leader\n%s", nw.dump())
	}
	for i := range 70 {
		_ = nw.nodes[l].rn.Propose([]byte(fmt.Sprint("new", i)))
	}
	nw.stabilize()
	nw.heal()
	nw.sent = nil
	nw.tickAll(30)
	rejects := 0
	for _, m := range nw.sent {
		if m.Type == pb.MsgAppResp && m.Reject && m.From == 2 {
			rejects++
		}
	}
	if rejects > 3 {
		t.Fatalf("%d rejections to backtrack over 60 divergent entries; conflict hints not used", rejects)
	}
	want := appliedData(nw.nodes[3])
	for _, id := range nw.ids() {
		if got := appliedData(nw.nodes[id]); !slices.Equal(got, want) {
			t.Fatalf("node %d applied %d entries, node 3 %d; logs diverge", id, len(got), len(want))
		}
	}
	if len(want) != 70 {
		t.Fatalf("applied %d entries, want 70 (the old term's were never committed)", len(want))
	}
}

// TestLeaderCommitsOnlyCurrentTerm checks §5.4.2 with the Figure 8
// scenario: an entry of an earlier term stored on a majority is not committed
// by counting, and indeed a later leader may overwrite it.
func TestLeaderCommitsOnlyCurrentTerm(t *testing.T) {
	nw := newNetwork(t, 5, func(c *Config) { c.DisablePreVote = true })
	nw.campaign(1) // term 2; founding entries 1-5, no-op at 6
	// (a) S1 replicates "t2" (index 7, term 2) to S2 only.
	nw.partition([]pb.NodeID{1, 2}, []pb.NodeID{3, 4, 5})
	_ = nw.propose(1, "t2")
	// (b) S5 is elected in term 3 by S3, S4 and appends "t3" at index 7-8
	// (no-op + entry) that no one else receives.
	nw.isolate(1)
	nw.isolate(2)
	nw.expireLease(3, 4)
	nw.filter = func(m pb.Message) bool { return !(m.From == 5 && m.Type == pb.MsgApp) }
	nw.campaign(5)
	if nw.role(5) != RoleLeader {
		t.Fatalf("setup (b)\n%s", nw.dump())
	}
	_ = nw.propose(5, "t3")
	// (c) S5 crashes; S1 is elected (term 4) and replicates index 7 (term 2)
	// to S3, but not its own term-4 no-op.
	nw.heal()
	nw.filter = nil
	nw.isolate(5)
	nw.start(1, nw.nodes[1].st, func(c *Config) { c.DisablePreVote = true; c.Applied = 6 })
	nw.expireLease(2, 3, 4)
	nw.mutate = func(m *pb.Message) {
		if m.From == 1 && m.Type == pb.MsgApp {
			m.Entries = slices.DeleteFunc(slices.Clone(m.Entries), func(e pb.Entry) bool { return e.Term != 2 })
		}
	}
	for i := 0; i < 3 && nw.role(1) != RoleLeader; i++ {
		nw.campaign(1)
	}
	if nw.role(1) != RoleLeader {
		t.Fatalf("setup (c)\n%s", nw.dump())
	}
	for _, id := range []pb.NodeID{1, 2, 3} {
		if tm, _ := nw.nodes[id].rn.r.log.term(7); tm != 2 {
			t.Fatalf("setup (c): node %d has term %d at index 7\n%s", id, tm, nw.dump())
		}
	}
	// Index 7 is on a majority (S1, S2, S3) but of term 2: not committed.
	if c := nw.status(1).HardState.Commit; c != 6 {
		t.Fatalf("S1 committed %d; an earlier term's entry was committed by counting", c)
	}
	// (d) S1 crashes; S5 wins term 5 with S2, S3, S4 (its last term 3 beats
	// their 2) and overwrites index 7 everywhere. Safe: it was never committed.
	nw.mutate = nil
	nw.heal()
	nw.isolate(1)
	nw.start(5, nw.nodes[5].st, func(c *Config) { c.DisablePreVote = true; c.Applied = 6 })
	nw.expireLease(2, 3, 4)
	for i := 0; i < 3 && nw.role(5) != RoleLeader; i++ {
		nw.campaign(5)
	}
	if nw.role(5) != RoleLeader {
		t.Fatalf("setup (d)\n%s", nw.dump())
	}
	for _, id := range []pb.NodeID{2, 3, 4, 5} {
		if got := appliedData(nw.nodes[id]); !slices.Equal(got, []string{"t3"}) {
			t.Fatalf("node %d applied %v, want [t3]", id, got)
		}
	}
	if got := appliedData(nw.nodes[1]); len(got) != 0 {
		t.Fatalf("S1 applied %v", got)
	}
}

// TestFigure8Counting is the unit form of §5.4.2: quorum match on an entry of
// an earlier term moves nothing.
func TestFigure8Counting(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	r := nw.nodes[1].rn.r
	// Pretend a new term began with an old-term entry matched everywhere.
	r.term++
	r.becomeLeader() // appends the no-op at index 5, term = new term
	for _, id := range r.trk.IDs() {
		r.trk.Progress[id].Match = 4
	}
	r.log.committed = 3
	if r.maybeCommit() {
		t.Fatal("committed an earlier term's entry by counting")
	}
	nw.stabilize()
	if c := nw.status(1).HardState.Commit; c != 5 {
		t.Fatalf("commit = %d, want 5 once the no-op is matched", c)
	}
}

// TestFollowerCatchesUp checks that a follower that missed entries is
// brought up to date (probe, then replicate).
func TestFollowerCatchesUp(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	nw.isolate(3)
	for i := range 30 {
		_ = nw.propose(1, fmt.Sprint(i))
	}
	nw.heal()
	nw.tickAll(2)
	if got := len(nw.nodes[3].applied); got != 30 {
		t.Fatalf("node 3 applied %d, want 30", got)
	}
	if pr := nw.status(1).Progress[3]; pr.State != "replicate" || pr.Match != nw.status(1).LastIndex {
		t.Fatalf("progress %+v", pr)
	}
}

// TestRestartResumes checks that a node restarted from its Storage resumes
// with its term, vote, log and commit index, and re-applies nothing it
// reported applied.
func TestRestartResumes(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	for i := range 5 {
		_ = nw.propose(1, fmt.Sprint(i))
	}
	old := nw.status(2)
	tn := nw.start(2, nw.nodes[2].st, func(c *Config) { c.Applied = old.Applied })
	s := tn.rn.Status()
	if s.HardState != old.HardState || s.LastIndex != old.LastIndex || s.Applied != old.Applied {
		t.Fatalf("restart: %+v, before %+v", s, old)
	}
	_ = nw.propose(1, "after")
	if got := appliedData(tn); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("restarted node applied %v", got)
	}
}

// TestProposalForwarding checks that a follower forwards proposals to the
// leader, or names it when forwarding is disabled.
func TestProposalForwarding(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	if err := nw.propose(2, "fwd"); err != nil {
		t.Fatal(err)
	}
	if got := appliedData(nw.nodes[3]); !slices.Equal(got, []string{"fwd"}) {
		t.Fatalf("applied %v", got)
	}

	nw2 := newNetwork(t, 3, func(c *Config) { c.DisableProposalForwarding = true })
	if err := nw2.nodes[2].rn.Propose([]byte("x")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("no leader: err = %v, want ErrProposalDropped", err)
	}
	nw2.campaign(1)
	err := nw2.nodes[2].rn.Propose([]byte("x"))
	var nle *NotLeaderError
	if !errors.As(err, &nle) || nle.Leader != 1 || !errors.Is(err, ErrNotLeader) {
		t.Fatalf("err = %v, want NotLeaderError{1}", err)
	}
}

// TestStatusProgress checks that the leader reports each member's progress.
func TestStatusProgress(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	s := nw.status(1)
	if len(s.Progress) != 3 {
		t.Fatalf("progress %+v", s.Progress)
	}
	for id, pr := range s.Progress {
		if pr.Match != s.LastIndex || pr.Next != s.LastIndex+1 || pr.State != "replicate" || !pr.RecentActive || pr.IsLearner {
			t.Fatalf("node %d: %+v", id, pr)
		}
	}
	if nw.status(2).Progress != nil {
		t.Fatal("followers report no progress")
	}
}

// TestReportUnreachableProbes checks that a transport failure report moves a
// replicating follower back to probing (one message per round trip) so
// that the window does not fill with messages that were never sent.
func TestReportUnreachableProbes(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	if pr := nw.status(1).Progress[2]; pr.State != "replicate" {
		t.Fatalf("setup: %+v", pr)
	}
	nw.nodes[1].rn.ReportUnreachable(2)
	if pr := nw.status(1).Progress[2]; pr.State != "probe" {
		t.Fatalf("after unreachable: %+v", pr)
	}
	_ = nw.propose(1, "x")
	if pr := nw.status(1).Progress[2]; pr.State != "replicate" || pr.Match != nw.status(1).LastIndex {
		t.Fatalf("did not recover: %+v", pr)
	}
}

// TestProposalReturnedToOriginator checks that a proposal forwarded back to
// the node that made it (which has since become leader) is accepted.
func TestProposalReturnedToOriginator(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	err := nw.nodes[1].rn.Step(pb.Message{Type: pb.MsgProp, From: 1, To: 1, Entries: []pb.Entry{{Data: []byte("back")}}})
	if err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	if got := appliedData(nw.nodes[3]); !slices.Equal(got, []string{"back"}) {
		t.Fatalf("applied %v", got)
	}
}
