package transport_test

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/transport"
)

// printer is a Handler that forwards what arrives to a channel.
type printer chan raftpb.Message

func (p printer) Step(m raftpb.Message) { p <- m }
func (p printer) ReceiveSnapshot(m raftpb.Message, data io.Reader) error {
	_, err := io.Copy(io.Discard, data)
	return err
}
func (p printer) ReportUnreachable(raftpb.NodeID)    {}
func (p printer) ReportSnapshot(raftpb.NodeID, bool) {}

// Example connects two members over loopback and sends a heartbeat.
func Example() {
	start := func(id raftpb.NodeID, h transport.Handler) *transport.Transport {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		t, err := transport.New(transport.Config{ID: id, ClusterID: 42, Listener: ln, Handler: h})
		if err != nil {
			panic(err)
		}
		t.Start()
		return t
	}
	inbox := make(printer, 1)
	t1 := start(1, make(printer, 1))
	t2 := start(2, inbox)
	defer t1.Close()
	defer t2.Close()
	t1.AddPeer(2, t2.Addr().String())
	t2.AddPeer(1, t1.Addr().String())

	// Messages to a peer that is not connected yet are dropped (Raft
	// retries); wait for the stream before sending.
	for !t1.PeerStats()[2].Connected {
		time.Sleep(time.Millisecond)
	}
	t1.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 5, Commit: 17}})
	m := <-inbox
	fmt.Println(m.Type, "from", m.From, "term", m.Term, "commit", m.Commit)
	// Output: MsgHeartbeat from 1 term 5 commit 17
}
