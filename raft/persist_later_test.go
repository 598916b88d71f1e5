package raft

import (
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestPersistLaterOnlyOnLeaderAppends checks which Readys may be written
// after the fact: a leader's, and neither a follower's (its acknowledgements
// vouch for its log) nor one that changes the term or vote.
func TestPersistLaterOnlyOnLeaderAppends(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	if err := nw.nodes[1].rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	if rd := nw.nodes[1].rn.Ready(); rd.PersistLater {
		t.Fatalf("a candidate's Ready (term %d, vote %d) has PersistLater", rd.HardState.Term, rd.HardState.Vote)
	}
	nw = newNetwork(t, 3, nil)
	nw.campaign(1)
	if err := nw.nodes[1].rn.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if rd := nw.nodes[1].rn.Ready(); !rd.PersistLater || len(rd.Entries) != 1 {
		t.Fatalf("leader's Ready: PersistLater %v with %d entries, want true with 1", rd.PersistLater, len(rd.Entries))
	}
	term := nw.term(2)
	err := nw.nodes[2].rn.Step(pb.Message{Type: pb.MsgApp, From: 1, To: 2, Term: term, Index: 4, LogTerm: term,
		Entries: []pb.Entry{{Index: 5, Term: term, Data: []byte("y")}}, Commit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rd := nw.nodes[2].rn.Ready(); rd.PersistLater {
		t.Fatal("a follower's Ready has PersistLater")
	}
}

// TestPersistedCountsLeaderLog checks a leader whose write finishes after
// AdvanceUnpersisted: alone, it commits its entry only once Persisted
// reports it durable, and a report about a replaced entry changes nothing.
func TestPersistedCountsLeaderLog(t *testing.T) {
	nw := newNetwork(t, 1, nil)
	nw.campaign(1)
	tn := nw.nodes[1]
	if err := tn.rn.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rd := tn.rn.Ready()
	if !rd.PersistLater || len(rd.Entries) != 1 {
		t.Fatalf("PersistLater %v with %d entries", rd.PersistLater, len(rd.Entries))
	}
	e := rd.Entries[0]
	if err := tn.st.Append(rd.Entries); err != nil {
		t.Fatal(err)
	}
	commit := tn.rn.Status().HardState.Commit
	tn.rn.AdvanceUnpersisted(rd)
	if tn.rn.HasReady() {
		t.Fatalf("a Ready before the write is durable: %+v", tn.rn.Ready())
	}
	tn.rn.Persisted(e.Index, e.Term+1) // not the entry written: ignored
	if got := tn.rn.Status().HardState.Commit; got != commit {
		t.Fatalf("commit %d after a report about another term's entry, want %d", got, commit)
	}
	tn.rn.Persisted(e.Index, e.Term)
	if got := tn.rn.Status().HardState.Commit; got != e.Index {
		t.Fatalf("commit %d after Persisted, want %d", got, e.Index)
	}
	rd = tn.rn.Ready()
	if len(rd.CommittedEntries) != 1 || string(rd.CommittedEntries[0].Data) != "x" {
		t.Fatalf("committed %v", rd.CommittedEntries)
	}
}

// TestNoApplyBeforeLocalWrite checks that entries a quorum of followers
// holds, but whose write on the leader is still in progress, are applied
// only once that write is reported durable: the state machine never runs
// ahead of the member's own log.
func TestNoApplyBeforeLocalWrite(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	ld := nw.nodes[1]
	if err := ld.rn.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rd := ld.rn.Ready()
	if !rd.PersistLater || len(rd.Entries) != 1 {
		t.Fatalf("PersistLater %v with %d entries", rd.PersistLater, len(rd.Entries))
	}
	e := rd.Entries[0]
	if err := ld.st.Append(rd.Entries); err != nil {
		t.Fatal(err)
	}
	ld.rn.AdvanceUnpersisted(rd)
	nw.queue = append(nw.queue, rd.Messages...)
	nw.stabilize() // both followers store and acknowledge the entry
	if got := nw.status(1).HardState.Commit; got != e.Index {
		t.Fatalf("leader's commit %d, want %d (acknowledged by both followers)", got, e.Index)
	}
	for _, a := range ld.applied {
		if a.Index == e.Index {
			t.Fatalf("leader applied entry %d before its own write was durable", e.Index)
		}
	}
	ld.rn.Persisted(e.Index, e.Term)
	nw.stabilize()
	if got := appliedData(ld); len(got) != 1 || got[0] != "x" {
		t.Fatalf("leader applied %v after Persisted, want [x]", got)
	}
}
