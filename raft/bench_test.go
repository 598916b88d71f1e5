package raft

import (
	"fmt"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// benchCluster is a bare 3-node in-memory cluster for benchmarks: no
// partitions or logging of messages, only the Ready loop.
type benchCluster struct {
	nodes   []*RawNode
	stores  []*MemoryStorage
	queue   []pb.Message
	spare   []pb.Message
	applied []pb.Index
}

func newBenchCluster(b *testing.B, n int) *benchCluster {
	c := &benchCluster{applied: make([]pb.Index, n)}
	var ids []pb.NodeID
	for i := 1; i <= n; i++ {
		ids = append(ids, pb.NodeID(i))
	}
	for _, id := range ids {
		st := NewMemoryStorage()
		ents, cs := Bootstrap(ids)
		if err := st.Append(ents); err != nil {
			b.Fatal(err)
		}
		st.SetConfState(cs)
		rn, err := NewRawNode(Config{ID: id, Storage: st, MaxInflightMsgs: 1024, MaxSizePerMsg: 4 << 20})
		if err != nil {
			b.Fatal(err)
		}
		c.nodes = append(c.nodes, rn)
		c.stores = append(c.stores, st)
	}
	c.run()
	if err := c.nodes[0].Campaign(); err != nil {
		b.Fatal(err)
	}
	c.run()
	if c.nodes[0].Status().SoftState.Role != RoleLeader {
		b.Fatal("node 1 did not become leader")
	}
	return c
}

// run handles Readys and delivers messages until quiet.
func (c *benchCluster) run() {
	for {
		moved := false
		for i, rn := range c.nodes {
			if !rn.HasReady() {
				continue
			}
			moved = true
			rd := rn.Ready()
			st := c.stores[i]
			if err := st.Append(rd.Entries); err != nil {
				panic(err)
			}
			if !rd.HardState.IsEmpty() {
				st.SetHardState(rd.HardState)
			}
			c.queue = append(c.queue, rd.Messages...)
			for _, e := range rd.CommittedEntries {
				if e.Type == pb.EntryConfChange {
					var cc pb.ConfChange
					if err := cc.UnmarshalBinary(e.Data); err != nil {
						panic(err)
					}
					st.SetConfState(rn.ApplyConfChange(cc))
				}
			}
			if n := len(rd.CommittedEntries); n > 0 {
				c.applied[i] = rd.CommittedEntries[n-1].Index
			}
			rn.Advance(rd)
		}
		if len(c.queue) > 0 {
			q := c.queue
			c.queue = c.spare[:0]
			for _, m := range q {
				_ = c.nodes[m.To-1].Step(m)
			}
			c.spare = q[:0]
			moved = true
		}
		if !moved {
			return
		}
	}
}

// compact keeps the in-memory logs short, as a runtime would after snapshots.
func (c *benchCluster) compact() {
	for i, st := range c.stores {
		a := c.applied[i]
		if fi, _ := st.FirstIndex(); a > fi+1 {
			if _, err := st.CreateSnapshot(a, nil); err != nil {
				panic(err)
			}
			if err := st.Compact(a); err != nil {
				panic(err)
			}
		}
	}
}

// BenchmarkPropose measures proposing and committing on a 3-node cluster:
// each op proposes `batch` 16-byte entries on the leader and runs the
// cluster until they are committed and applied everywhere.
func BenchmarkPropose(b *testing.B) {
	for _, batch := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			c := newBenchCluster(b, 3)
			data := make([]byte, 16)
			leader := c.nodes[0]
			b.ReportAllocs()
			b.ResetTimer()
			total := 0
			for b.Loop() {
				for range batch {
					if err := leader.Propose(data); err != nil {
						b.Fatal(err)
					}
				}
				c.run()
				total += batch
				if total%(1<<16) < batch {
					c.compact()
				}
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "entries/s")
			last := leader.Status().LastIndex
			for i, a := range c.applied {
				if a != last {
					b.Fatalf("node %d applied %d, leader last index %d", i+1, a, last)
				}
			}
		})
	}
}

// BenchmarkStepApp measures a follower taking a MsgApp of 64 entries and
// handing out the Ready with its acknowledgement.
func BenchmarkStepApp(b *testing.B) {
	st := NewMemoryStorage()
	ents, cs := Bootstrap([]pb.NodeID{1, 2, 3})
	_ = st.Append(ents)
	st.SetConfState(cs)
	rn, err := NewRawNode(Config{ID: 2, Storage: st})
	if err != nil {
		b.Fatal(err)
	}
	const n = 64
	data := make([]byte, 16)
	batch := make([]pb.Entry, n)
	index := pb.Index(3)
	const term = 2
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i] = pb.Entry{Index: index + 1 + pb.Index(i), Term: term, Data: data}
		}
		m := pb.Message{Type: pb.MsgApp, From: 1, To: 2, Term: term, Index: index, LogTerm: rn.r.log.termOr0(index), Entries: batch, Commit: index}
		if err := rn.Step(m); err != nil {
			b.Fatal(err)
		}
		rd := rn.Ready()
		_ = st.Append(rd.Entries)
		st.SetHardState(rd.HardState)
		rn.Advance(rd)
		index += n
		if index%(1<<16) < n {
			a := rn.Status().Applied
			if _, err := st.CreateSnapshot(a, nil); err == nil {
				_ = st.Compact(a)
			}
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}
