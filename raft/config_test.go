package raft

import (
	"errors"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestNewRawNodeReportsEveryConfigProblem checks that a bad Config is one
// error listing every problem, never a panic.
func TestNewRawNodeReportsEveryConfigProblem(t *testing.T) {
	_, err := NewRawNode(Config{ElectionTick: 1, HeartbeatTick: 2, MaxInflightMsgs: -1})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"ID", "Storage", "ElectionTick", "MaxInflightMsgs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// TestNewRawNodeRejectsCorruptStorage checks that a Storage contradicting
// itself is an error, not a panic.
func TestNewRawNodeRejectsCorruptStorage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(ms *MemoryStorage)
		cfg   func(c *Config)
	}{
		{"commit beyond last index", func(ms *MemoryStorage) {
			_ = ms.Append([]pb.Entry{{Index: 1, Term: 1}})
			ms.SetHardState(pb.HardState{Term: 1, Commit: 5})
		}, nil},
		{"term below last entry's", func(ms *MemoryStorage) {
			_ = ms.Append([]pb.Entry{{Index: 1, Term: 3}})
			ms.SetHardState(pb.HardState{Term: 2, Commit: 1})
		}, nil},
		{"duplicate voter", func(ms *MemoryStorage) {
			ms.SetConfState(pb.ConfState{Voters: []pb.NodeID{1, 1}})
		}, nil},
		{"applied beyond last index", func(ms *MemoryStorage) {
			_ = ms.Append([]pb.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}})
			ms.SetHardState(pb.HardState{Term: 1, Commit: 1})
		}, func(c *Config) { c.Applied = 3 }},
		{"applied below snapshot", func(ms *MemoryStorage) {
			_ = ms.ApplySnapshot(pb.SnapshotMeta{Index: 5, Term: 1, ConfState: pb.ConfState{Voters: []pb.NodeID{1}}})
		}, func(c *Config) { c.Applied = 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := NewMemoryStorage()
			tc.setup(ms)
			cfg := Config{ID: 1, Storage: ms}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			if _, err := NewRawNode(cfg); err == nil {
				t.Fatal("corrupt storage accepted")
			}
		})
	}
}

// TestStepRejectsBadInput checks the errors Step returns for messages it
// must not act on.
func TestStepRejectsBadInput(t *testing.T) {
	nw := newNetwork(t, 3, nil)
	nw.campaign(1)
	rn := nw.nodes[1].rn
	for _, tc := range []struct {
		name string
		m    pb.Message
		want error
	}{
		{"local", pb.Message{Type: pb.MsgHup, From: 2}, ErrStepLocalMsg},
		{"unknown peer response", pb.Message{Type: pb.MsgAppResp, From: 9, Term: 2}, ErrStepPeerNotFound},
		{"from nobody", pb.Message{Type: pb.MsgApp, Term: 2}, errMalformed},
		{"append from itself", pb.Message{Type: pb.MsgApp, From: 1, Term: 2}, errMalformed},
		{"transfer to itself, forwarded", pb.Message{Type: pb.MsgTransferLeader, From: 1, Term: 2}, nil},
		{"unknown type", pb.Message{Type: 99, From: 2, Term: 2}, errMalformed},
		{"no term", pb.Message{Type: pb.MsgHeartbeat, From: 2}, errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := rn.Step(tc.m); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestBootstrap checks the founding entries.
func TestBootstrap(t *testing.T) {
	ents, cs := Bootstrap([]pb.NodeID{3, 1, 2, 2, 0})
	if len(ents) != 3 || len(cs.Voters) != 3 || cs.Voters[0] != 1 {
		t.Fatalf("entries %v conf %v", ents, cs)
	}
	for i, e := range ents {
		var cc pb.ConfChange
		if err := cc.UnmarshalBinary(e.Data); err != nil {
			t.Fatal(err)
		}
		if e.Index != pb.Index(i+1) || e.Term != 1 || e.Type != pb.EntryConfChange || cc.Type != pb.ConfChangeAddVoter || cc.NodeID != cs.Voters[i] {
			t.Fatalf("entry %d: %+v %+v", i, e, cc)
		}
	}
}

// TestAppliedBeyondDurableCommit checks that a restart with Applied above the
// durable commit index (commit changes are not fsynced) raises the commit
// index instead of failing: applied entries were committed.
func TestAppliedBeyondDurableCommit(t *testing.T) {
	ms := NewMemoryStorage()
	_ = ms.Append([]pb.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 1}})
	ms.SetHardState(pb.HardState{Term: 1, Commit: 1})
	ms.SetConfState(pb.ConfState{Voters: []pb.NodeID{1}})
	rn, err := NewRawNode(Config{ID: 1, Storage: ms, Applied: 2})
	if err != nil {
		t.Fatal(err)
	}
	if s := rn.Status(); s.HardState.Commit != 2 || s.Applied != 2 {
		t.Fatalf("commit %d applied %d, want 2 and 2", s.HardState.Commit, s.Applied)
	}
}
