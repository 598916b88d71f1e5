package sim

import (
	"errors"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

func ents(term pb.Term, from, to pb.Index) []pb.Entry {
	var out []pb.Entry
	for i := from; i <= to; i++ {
		out = append(out, pb.Entry{Term: term, Index: i, Data: []byte{byte(i), byte(term)}})
	}
	return out
}

func mustAppend(t *testing.T, s *storage, e []pb.Entry) {
	t.Helper()
	if err := s.appendEntries(e); err != nil {
		t.Fatal(err)
	}
}

// A crash keeps exactly what was synced.
func TestStorageCrashDropsUnsynced(t *testing.T) {
	s := newStorage()
	mustAppend(t, s, ents(1, 1, 3))
	s.setHardState(pb.HardState{Term: 1, Vote: 2, Commit: 2})
	s.sync()
	mustAppend(t, s, ents(1, 4, 5))
	s.setHardState(pb.HardState{Term: 2, Vote: 3, Commit: 4})
	s.crash()
	if li, _ := s.LastIndex(); li != 3 {
		t.Fatalf("last index after crash = %d, want 3", li)
	}
	if hs, _, _ := s.InitialState(); hs != (pb.HardState{Term: 1, Vote: 2, Commit: 2}) {
		t.Fatalf("hard state after crash = %+v", hs)
	}
}

// Overwriting a tail must not change the synced version (entries are
// copied, never mutated in place), and the prefix hashes follow the log.
func TestStorageOverwriteKeepsDurableIntact(t *testing.T) {
	s := newStorage()
	mustAppend(t, s, ents(1, 1, 5))
	s.sync()
	before, _ := s.durable.chainAt(5)
	mustAppend(t, s, ents(2, 3, 4))
	if li, _ := s.LastIndex(); li != 4 {
		t.Fatalf("last index after overwrite = %d, want 4", li)
	}
	if tm, _ := s.Term(3); tm != 2 {
		t.Fatalf("term at 3 = %d, want 2", tm)
	}
	if h, _ := s.cur.chainAt(2); h != s.durable.chains[2] {
		t.Fatal("prefix hash of the unchanged prefix differs")
	}
	if h, _ := s.cur.chainAt(3); h == s.durable.chains[3] {
		t.Fatal("prefix hash did not change with the entry at 3")
	}
	s.crash()
	if after, _ := s.cur.chainAt(5); after != before {
		t.Fatal("the durable log changed under an unsynced overwrite")
	}
	if tm, _ := s.Term(3); tm != 1 {
		t.Fatalf("term at 3 after crash = %d, want 1", tm)
	}
}

func TestStorageReadErrors(t *testing.T) {
	s := newStorage()
	mustAppend(t, s, ents(1, 1, 10))
	s.sync()
	if err := s.compact(4, pb.ConfState{Voters: []pb.NodeID{1}}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := s.FirstIndex(); fi != 5 {
		t.Fatalf("first index = %d, want 5", fi)
	}
	if _, err := s.Entries(4, 6, 1<<20); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries below the snapshot: %v, want ErrCompacted", err)
	}
	if _, err := s.Entries(5, 12, 1<<20); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("Entries past the end: %v, want ErrUnavailable", err)
	}
	if tm, err := s.Term(4); err != nil || tm != 1 {
		t.Fatalf("Term(snapshot index) = %d, %v", tm, err)
	}
	if _, err := s.Term(3); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Term below the snapshot: %v", err)
	}
	// maxSize: each entry has 2 bytes of data; always at least one entry.
	if e, _ := s.Entries(5, 11, 3); len(e) != 1 {
		t.Fatalf("Entries with maxSize 3 returned %d entries, want 1", len(e))
	}
	if e, _ := s.Entries(5, 11, 0); len(e) != 1 {
		t.Fatalf("Entries with maxSize 0 returned %d entries, want 1", len(e))
	}
	if e, _ := s.Entries(5, 11, 100); len(e) != 6 {
		t.Fatalf("Entries with maxSize 100 returned %d entries, want 6", len(e))
	}
}

func TestStorageRejectsBadAppends(t *testing.T) {
	s := newStorage()
	mustAppend(t, s, ents(2, 1, 3))
	for name, e := range map[string][]pb.Entry{
		"gap":             ents(2, 5, 6),
		"not contiguous":  {{Term: 2, Index: 4}, {Term: 2, Index: 6}},
		"term backwards":  {{Term: 2, Index: 4}, {Term: 1, Index: 5}},
		"below prev term": ents(1, 4, 4),
	} {
		if err := s.appendEntries(e); err == nil {
			t.Errorf("%s: append accepted", name)
		}
	}
}

// The injected bugs do what they say.
func TestStorageInjectedBugs(t *testing.T) {
	s := newStorage()
	s.forgetVote = true
	s.setHardState(pb.HardState{Term: 3, Vote: 2})
	s.sync()
	s.crash()
	if hs, _, _ := s.InitialState(); hs.Term != 3 || hs.Vote != pb.None {
		t.Fatalf("forgetVote: durable hard state %+v, want term 3 and no vote", hs)
	}

	s = newStorage()
	s.lagSync = true
	mustAppend(t, s, ents(1, 1, 2))
	s.sync()
	mustAppend(t, s, ents(1, 3, 3))
	s.sync()
	s.crash()
	if li, _ := s.LastIndex(); li != 2 {
		t.Fatalf("lagSync: last index after crash = %d, want 2 (the last sync lags)", li)
	}
}

func TestCheckerCatchesViolations(t *testing.T) {
	mk := func(id pb.NodeID, e []pb.Entry, commit pb.Index) *node {
		n := newNode(id)
		if err := n.st.appendEntries(e); err != nil {
			t.Fatal(err)
		}
		n.st.setHardState(pb.HardState{Term: e[len(e)-1].Term, Commit: commit})
		return n
	}
	t.Run("two leaders in a term", func(t *testing.T) {
		c := newChecker()
		a, b := mk(1, ents(1, 1, 2), 0), mk(2, ents(1, 1, 2), 0)
		if err := c.observeLeader(a, 2); err != nil {
			t.Fatal(err)
		}
		if err := c.observeLeader(b, 2); err == nil || !strings.Contains(err.Error(), "election safety") {
			t.Fatalf("got %v, want an election safety violation", err)
		}
	})
	t.Run("committed entry changed", func(t *testing.T) {
		c := newChecker()
		a := mk(1, ents(1, 1, 3), 3)
		b := mk(2, append(ents(1, 1, 2), ents(2, 3, 3)...), 3)
		if err := c.observeCommit(a, 3); err != nil {
			t.Fatal(err)
		}
		if err := c.observeCommit(b, 3); err == nil || !strings.Contains(err.Error(), "committed entry lost or changed") {
			t.Fatalf("got %v, want a commit violation", err)
		}
	})
	t.Run("leader missing a committed entry", func(t *testing.T) {
		c := newChecker()
		a := mk(1, ents(1, 1, 3), 3)
		if err := c.observeCommit(a, 3); err != nil {
			t.Fatal(err)
		}
		b := mk(2, ents(1, 1, 2), 2)
		if err := c.observeLeader(b, 2); err == nil || !strings.Contains(err.Error(), "leader completeness") {
			t.Fatalf("got %v, want a leader completeness violation", err)
		}
	})
	t.Run("applied a different entry", func(t *testing.T) {
		c := newChecker()
		a := mk(1, ents(1, 1, 2), 2)
		if err := c.observeCommit(a, 2); err != nil {
			t.Fatal(err)
		}
		bad := pb.Entry{Term: 1, Index: 1, Data: []byte("other")}
		if _, err := c.observeApply(a, &bad); err == nil || !strings.Contains(err.Error(), "state machine safety") {
			t.Fatalf("got %v, want a state machine safety violation", err)
		}
		skip := ents(1, 2, 2)[0]
		if _, err := c.observeApply(a, &skip); err == nil || !strings.Contains(err.Error(), "gap") {
			t.Fatalf("got %v, want a gap violation", err)
		}
	})
	t.Run("log matching", func(t *testing.T) {
		c := newChecker()
		a := mk(1, ents(1, 1, 3), 0)
		b := mk(2, append([]pb.Entry{{Term: 1, Index: 1, Data: []byte("x")}}, ents(1, 2, 3)[0:2]...), 0)
		if err := c.observeStored(a, 1, 3); err != nil {
			t.Fatal(err)
		}
		if err := c.observeStored(b, 3, 3); err == nil || !strings.Contains(err.Error(), "log matching") {
			t.Fatalf("got %v, want a log matching violation", err)
		}
	})
	t.Run("stale read", func(t *testing.T) {
		c := newChecker()
		a := mk(1, ents(1, 1, 2), 2)
		r := &readRec{node: 1, mustSee: 2}
		if err := c.serveRead(a, "r1", r, 1, 1); err == nil || !strings.Contains(err.Error(), "stale read") {
			t.Fatalf("got %v, want a stale read", err)
		}
		if err := c.serveRead(a, "r1", r, 2, 2); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ack before durable", func(t *testing.T) {
		c := newChecker()
		a := mk(1, ents(1, 1, 2), 2) // written, not synced
		m := pb.Message{Type: pb.MsgAppResp, From: 1, To: 2, Term: 1, Index: 2}
		if err := c.checkDurable(a, &m); err == nil || !strings.Contains(err.Error(), "persistence") {
			t.Fatalf("got %v, want a persistence violation", err)
		}
		a.st.sync()
		if err := c.checkDurable(a, &m); err != nil {
			t.Fatal(err)
		}
	})
}
