// Package transport carries Raft messages between the members of a raftkv
// cluster over TCP (optionally mutual TLS).
//
// Each member keeps one long-lived connection to every peer per direction:
// the dialer writes, the acceptor reads. A connection opens with a handshake
// (magic, wire version, cluster id, from and to member ids; see wire.go) that
// the acceptor checks: a wrong cluster, a wrong target or a member not in the
// peer set is refused and logged. Messages then travel in length-prefixed
// frames, many messages per frame and many frames per flush, pipelined: the
// sender never waits for replies.
//
// What it guarantees the replica:
//   - Send never blocks. Each peer has a bounded queue; a message for a peer
//     that is not connected, or whose queue is full, is dropped and
//     Handler.ReportUnreachable is called (from a transport goroutine). Raft
//     resends what matters, so a slow or dead peer costs messages, never the
//     raft loop's time or another peer's delivery.
//   - Dropped connections are redialed with jittered exponential backoff,
//     capped at Config.MaxBackoff (1s) for fast failover.
//   - Snapshots stream on connections of their own in chunks, with memory
//     bounded by one chunk on each side, a length and CRC-32C check at the
//     end, and Handler.ReportSnapshot with the receiver's verdict.
//   - Frame sizes are checked before allocation; a malformed frame closes
//     only that connection.
//
// What it leaves to the caller: binding the listener, deciding the peer set
// (AddPeer/RemovePeer as membership changes), and message semantics — it
// neither reorders nor deduplicates, and it may drop any message.
//
// Usage:
//
//	ln, _ := net.Listen("tcp", peerAddr)
//	t, err := transport.New(transport.Config{ID: 1, ClusterID: cid, Listener: ln, Handler: replica})
//	t.Start()
//	t.AddPeer(2, "10.0.0.2:7000")
//	t.Send(rd.Messages) // from the replica loop, never blocks
//	defer t.Close()
//
// See Example for a runnable version.
package transport
