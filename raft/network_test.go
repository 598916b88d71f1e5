package raft

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// This file is a small synchronous test network: nodes with MemoryStorage,
// a message queue, and partitions. It handles every Ready exactly as the
// Ready contract says (persist, send, apply, Advance).

type testNode struct {
	id      pb.NodeID
	rn      *RawNode
	st      *MemoryStorage
	cfg     Config
	applied []pb.Entry // normal entries with data, in apply order
	reads   []ReadState
	softs   []SoftState
}

type network struct {
	t     testing.TB
	nodes map[pb.NodeID]*testNode
	queue []pb.Message
	// cut[{a,b}] drops messages from a to b.
	cut map[[2]pb.NodeID]bool
	// filter, if set, drops the messages it returns false for.
	filter func(m pb.Message) bool
	// mutate, if set, may change a message before delivery.
	mutate func(m *pb.Message)
	// log of delivered messages, for assertions
	sent []pb.Message
	// trace, if set, receives a line per delivered message and state change.
	trace func(format string, args ...any)
}

// newNetwork founds a group of voters 1..n; mod adjusts each Config.
func newNetwork(t testing.TB, n int, mod func(*Config)) *network {
	t.Helper()
	var ids []pb.NodeID
	for i := 1; i <= n; i++ {
		ids = append(ids, pb.NodeID(i))
	}
	nw := &network{t: t, nodes: map[pb.NodeID]*testNode{}, cut: map[[2]pb.NodeID]bool{}}
	for _, id := range ids {
		st := NewMemoryStorage()
		ents, cs := Bootstrap(ids)
		if err := st.Append(ents); err != nil {
			t.Fatal(err)
		}
		st.SetConfState(cs)
		nw.start(id, st, mod)
	}
	nw.stabilize()
	return nw
}

// start (re)starts node id on st.
func (nw *network) start(id pb.NodeID, st *MemoryStorage, mod func(*Config)) *testNode {
	nw.t.Helper()
	cfg := Config{ID: id, Storage: st, ElectionTick: 10, HeartbeatTick: 1}
	if mod != nil {
		mod(&cfg)
	}
	rn, err := NewRawNode(cfg)
	if err != nil {
		nw.t.Fatalf("NewRawNode(%d): %v", id, err)
	}
	tn := &testNode{id: id, rn: rn, st: st, cfg: cfg}
	nw.nodes[id] = tn
	return tn
}

// addEmpty starts a node with empty storage (a member to be added).
func (nw *network) addEmpty(id pb.NodeID, mod func(*Config)) *testNode {
	return nw.start(id, NewMemoryStorage(), mod)
}

func (nw *network) ids() []pb.NodeID {
	var ids []pb.NodeID
	for id := range nw.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// handle processes one Ready of node id.
func (nw *network) handle(tn *testNode) {
	nw.t.Helper()
	rd := tn.rn.Ready()
	if rd.SoftState != nil {
		tn.softs = append(tn.softs, *rd.SoftState)
		nw.tracef("%d: %s (lead %d)", tn.id, rd.SoftState.Role, rd.SoftState.Lead)
	}
	if !rd.HardState.IsEmpty() {
		nw.tracef("%d: persist term=%d vote=%d commit=%d", tn.id, rd.HardState.Term, rd.HardState.Vote, rd.HardState.Commit)
	}
	if len(rd.Entries) > 0 {
		nw.tracef("%d: persist entries %s", tn.id, fmtEntries(rd.Entries))
	}
	if !rd.Snapshot.IsEmpty() {
		nw.tracef("%d: install snapshot index=%d term=%d", tn.id, rd.Snapshot.Index, rd.Snapshot.Term)
	}
	if len(rd.CommittedEntries) > 0 {
		nw.tracef("%d: apply %s", tn.id, fmtEntries(rd.CommittedEntries))
	}
	for _, rs := range rd.ReadStates {
		nw.tracef("%d: read %q at index %d", tn.id, rs.RequestCtx, rs.Index)
	}
	if !rd.Snapshot.IsEmpty() {
		if err := tn.st.ApplySnapshot(rd.Snapshot); err != nil {
			nw.t.Fatalf("node %d: apply snapshot: %v", tn.id, err)
		}
	}
	if err := tn.st.Append(rd.Entries); err != nil {
		nw.t.Fatalf("node %d: append: %v", tn.id, err)
	}
	if !rd.HardState.IsEmpty() {
		tn.st.SetHardState(rd.HardState)
	}
	nw.queue = append(nw.queue, rd.Messages...)
	for _, e := range rd.CommittedEntries {
		switch e.Type {
		case pb.EntryConfChange:
			var cc pb.ConfChange
			if err := cc.UnmarshalBinary(e.Data); err != nil {
				nw.t.Fatalf("node %d: decode conf change at %d: %v", tn.id, e.Index, err)
			}
			tn.st.SetConfState(tn.rn.ApplyConfChange(cc))
		case pb.EntryNormal:
			if len(e.Data) > 0 {
				tn.applied = append(tn.applied, e)
			}
		}
	}
	tn.reads = append(tn.reads, rd.ReadStates...)
	tn.rn.Advance(rd)
}

// deliver steps m into its destination unless the link is cut.
func (nw *network) deliver(m pb.Message) {
	to := nw.nodes[m.To]
	if to == nil || nw.cut[[2]pb.NodeID{m.From, m.To}] || (nw.filter != nil && !nw.filter(m)) {
		nw.tracef("drop %s", fmtMessage(m))
		return
	}
	nw.tracef("%s", fmtMessage(m))
	if nw.mutate != nil {
		nw.mutate(&m)
	}
	nw.sent = append(nw.sent, m)
	_ = to.rn.Step(m)
}

// stabilize handles Readys and delivers messages until nothing moves.
func (nw *network) stabilize() {
	nw.t.Helper()
	for i := 0; ; i++ {
		if i > 100000 {
			nw.t.Fatal("network did not stabilize")
		}
		moved := false
		for _, id := range nw.ids() {
			if tn := nw.nodes[id]; tn.rn.HasReady() {
				nw.handle(tn)
				moved = true
			}
		}
		if len(nw.queue) > 0 {
			q := nw.queue
			nw.queue = nil
			for _, m := range q {
				nw.deliver(m)
			}
			moved = true
		}
		if !moved {
			return
		}
	}
}

// tick ticks node id k times, stabilizing after each tick.
func (nw *network) tick(id pb.NodeID, k int) {
	for range k {
		nw.nodes[id].rn.Tick()
		nw.stabilize()
	}
}

// tickAll ticks every node k times, stabilizing after each round.
func (nw *network) tickAll(k int) {
	for range k {
		for _, id := range nw.ids() {
			nw.nodes[id].rn.Tick()
		}
		nw.stabilize()
	}
}

// isolate cuts id off from everyone, both ways.
func (nw *network) isolate(id pb.NodeID) {
	for _, o := range nw.ids() {
		if o != id {
			nw.cut[[2]pb.NodeID{id, o}] = true
			nw.cut[[2]pb.NodeID{o, id}] = true
		}
	}
}

// partition cuts every link between the two groups.
func (nw *network) partition(a, b []pb.NodeID) {
	for _, x := range a {
		for _, y := range b {
			nw.cut[[2]pb.NodeID{x, y}] = true
			nw.cut[[2]pb.NodeID{y, x}] = true
		}
	}
}

func (nw *network) heal() { clear(nw.cut) }

func (nw *network) campaign(id pb.NodeID) {
	nw.t.Helper()
	if err := nw.nodes[id].rn.Campaign(); err != nil {
		nw.t.Fatalf("campaign %d: %v", id, err)
	}
	nw.stabilize()
}

func (nw *network) propose(id pb.NodeID, data string) error {
	err := nw.nodes[id].rn.Propose([]byte(data))
	nw.stabilize()
	return err
}

func (nw *network) status(id pb.NodeID) Status { return nw.nodes[id].rn.Status() }

func (nw *network) role(id pb.NodeID) Role { return nw.status(id).SoftState.Role }

func (nw *network) term(id pb.NodeID) pb.Term { return nw.status(id).HardState.Term }

// leader returns the single leader of the highest term, failing on two.
func (nw *network) leader() pb.NodeID {
	nw.t.Helper()
	var lead pb.NodeID
	var term pb.Term
	for _, id := range nw.ids() {
		s := nw.status(id)
		if s.SoftState.Role == RoleLeader {
			if lead != pb.None && s.HardState.Term == term {
				nw.t.Fatalf("two leaders in term %d: %d and %d", term, lead, id)
			}
			if s.HardState.Term >= term {
				lead, term = id, s.HardState.Term
			}
		}
	}
	return lead
}

func appliedData(tn *testNode) []string {
	var out []string
	for _, e := range tn.applied {
		out = append(out, string(e.Data))
	}
	return out
}

func (nw *network) dump() string {
	var b strings.Builder
	for _, id := range nw.ids() {
		s := nw.status(id)
		fmt.Fprintf(&b, "node %d: %s term=%d lead=%d commit=%d last=%d applied=%d\n", id, s.SoftState.Role,
			s.HardState.Term, s.SoftState.Lead, s.HardState.Commit, s.LastIndex, s.Applied)
	}
	return b.String()
}

// countSent counts delivered messages of type t (optionally to `to`).
func (nw *network) countSent(t pb.MessageType, to pb.NodeID) int {
	n := 0
	for _, m := range nw.sent {
		if m.Type == t && (to == pb.None || m.To == to) {
			n++
		}
	}
	return n
}

// expireLease makes the nodes forget they heard from a leader recently, as
// if an election timeout had passed without their own timers firing.
func (nw *network) expireLease(ids ...pb.NodeID) {
	for _, id := range ids {
		r := nw.nodes[id].rn.r
		r.electionElapsed = r.cfg.ElectionTick
	}
}

func (nw *network) tracef(format string, args ...any) {
	if nw.trace != nil {
		nw.trace(format, args...)
	}
}

// fmtEntries prints entries compactly: index/term, plus data or the kind.
func fmtEntries(ents []pb.Entry) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range ents {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d/%d", e.Index, e.Term)
		switch {
		case e.Type == pb.EntryConfChange:
			var cc pb.ConfChange
			if err := cc.UnmarshalBinary(e.Data); err == nil {
				fmt.Fprintf(&b, ":%s%d", cc.Type, cc.NodeID)
			}
		case len(e.Data) > 0:
			fmt.Fprintf(&b, ":%q", e.Data)
		}
	}
	b.WriteByte(']')
	return b.String()
}

func fmtMessage(m pb.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d->%d %s term=%d", m.From, m.To, m.Type, m.Term)
	switch m.Type {
	case pb.MsgApp:
		fmt.Fprintf(&b, " prev=%d/%d commit=%d entries=%s", m.Index, m.LogTerm, m.Commit, fmtEntries(m.Entries))
	case pb.MsgAppResp:
		fmt.Fprintf(&b, " index=%d", m.Index)
		if m.Reject {
			fmt.Fprintf(&b, " reject hint=%d/%d", m.RejectHint, m.LogTerm)
		}
	case pb.MsgVote, pb.MsgPreVote:
		fmt.Fprintf(&b, " last=%d/%d", m.Index, m.LogTerm)
		if len(m.Context) > 0 {
			b.WriteString(" transfer")
		}
	case pb.MsgVoteResp, pb.MsgPreVoteResp:
		if m.Reject {
			b.WriteString(" reject")
		} else {
			b.WriteString(" grant")
		}
	case pb.MsgHeartbeat:
		fmt.Fprintf(&b, " commit=%d", m.Commit)
		if len(m.Context) == 8 {
			fmt.Fprintf(&b, " round=%d", binary.BigEndian.Uint64(m.Context))
		}
	case pb.MsgHeartbeatResp:
		if len(m.Context) == 8 {
			fmt.Fprintf(&b, " round=%d", binary.BigEndian.Uint64(m.Context))
		}
	case pb.MsgSnap:
		if m.Snapshot != nil {
			fmt.Fprintf(&b, " snapshot=%d/%d voters=%v", m.Snapshot.Index, m.Snapshot.Term, m.Snapshot.ConfState.Voters)
		}
	case pb.MsgReadIndex, pb.MsgReadIndexResp:
		fmt.Fprintf(&b, " ctx=%q", m.Context)
		if m.Type == pb.MsgReadIndex && m.LogTerm != 0 {
			fmt.Fprintf(&b, " requester-term=%d", m.LogTerm)
		}
		if m.Type == pb.MsgReadIndexResp {
			fmt.Fprintf(&b, " index=%d", m.Index)
		}
	case pb.MsgProp:
		fmt.Fprintf(&b, " entries=%s", fmtEntries(m.Entries))
	}
	return b.String()
}
