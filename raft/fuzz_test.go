package raft

import (
	"encoding/binary"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// messageFromBytes builds an arbitrary (often nonsensical) message.
func messageFromBytes(data []byte) pb.Message {
	u := func(i int) uint64 {
		var b [8]byte
		copy(b[:], data[min(len(data), i*3):])
		return binary.LittleEndian.Uint64(b[:]) % 64
	}
	m := pb.Message{
		Type:       pb.MessageType(u(0) % 22),
		From:       pb.NodeID(u(1) % 6),
		To:         1,
		Term:       pb.Term(u(2) % 8),
		LogTerm:    pb.Term(u(3) % 8),
		Index:      pb.Index(u(4)),
		Commit:     pb.Index(u(5)),
		Reject:     u(6)%2 == 1,
		RejectHint: pb.Index(u(7)),
	}
	if u(8)%4 == 0 {
		m.Index = ^pb.Index(0) - pb.Index(u(8))
	}
	if u(9)%3 == 0 {
		m.Context = data[:min(len(data), 8)]
	}
	for i := range int(u(10) % 5) {
		m.Entries = append(m.Entries, pb.Entry{
			Index: m.Index + 1 + pb.Index(i) + pb.Index(u(11+i)%2),
			Term:  pb.Term(u(12+i) % 8),
			Type:  pb.EntryType(u(13+i) % 3),
			Data:  data[:min(len(data), i)],
		})
	}
	if u(16)%3 == 0 {
		m.Snapshot = &pb.SnapshotMeta{Index: pb.Index(u(17)), Term: pb.Term(u(18) % 8),
			ConfState: pb.ConfState{Voters: []pb.NodeID{pb.NodeID(u(19) % 4), 2}}}
	}
	return m
}

// FuzzStep checks that no message from the network panics the core, on a
// leader or on a follower, and that Ready/Advance keep working after it.
func FuzzStep(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte("\x02\x00\x00\x02\x00\x00\x03\x00\x00\x01\x00\x00\x30\x00\x00\x01"))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		nw := newNetwork(t, 3, nil)
		nw.campaign(1)
		_ = nw.propose(1, "x")
		for off := 0; off < len(data); off += 24 {
			m := messageFromBytes(data[off:])
			for _, id := range []pb.NodeID{1, 2} {
				m.To = id
				_ = nw.nodes[id].rn.Step(m)
				for nw.nodes[id].rn.HasReady() {
					nw.handle(nw.nodes[id])
				}
			}
		}
		nw.queue = nil
		nw.tickAll(30)
		_ = nw.nodes[1].rn.Status()
	})
}
