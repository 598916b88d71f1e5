package transport

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// Counts is a number of messages and their encoded bytes (frame overhead
// not included).
type Counts struct {
	Msgs  uint64
	Bytes uint64
}

// PeerStats is a snapshot of one peer's connection state and counters, for
// metrics and the UI. Counters start at zero when the peer is added.
type PeerStats struct {
	Addr string
	// Connected: the outbound message stream is up (Send queues rather than drops).
	Connected bool
	// Inbound: an accepted message stream from the peer is open.
	Inbound bool
	// Connects counts outbound streams that passed the handshake.
	Connects uint64
	// Queued is the number of messages waiting in the outbound queue.
	Queued int

	Sent     map[raftpb.MessageType]Counts
	Received map[raftpb.MessageType]Counts
	// FramesSent/FramesReceived count message frames; Flushes counts flushed
	// batches (about one write syscall each). Messages per frame measures
	// batching.
	FramesSent     uint64
	FramesReceived uint64
	Flushes        uint64
	// Dropped counts messages Send dropped (not connected, queue full) or
	// that were queued on a connection that died.
	Dropped uint64

	SnapshotsSent          uint64
	SnapshotsSendFailed    uint64
	SnapshotsReceived      uint64
	SnapshotsReceiveFailed uint64
	SnapshotBytesSent      uint64
	SnapshotBytesReceived  uint64

	// LastError is the most recent connection or protocol error about this
	// peer, "" if none; LastErrorAt is when it happened.
	LastError   string
	LastErrorAt time.Time
}

// TotalSent sums Sent over all message types.
func (s PeerStats) TotalSent() Counts { return total(s.Sent) }

// TotalReceived sums Received over all message types.
func (s PeerStats) TotalReceived() Counts { return total(s.Received) }

func total(m map[raftpb.MessageType]Counts) Counts {
	var c Counts
	for _, v := range m {
		c.Msgs += v.Msgs
		c.Bytes += v.Bytes
	}
	return c
}

// PeerStats returns the stats of every current peer.
func (t *Transport) PeerStats() map[raftpb.NodeID]PeerStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[raftpb.NodeID]PeerStats, len(t.peers))
	for id, p := range t.peers {
		out[id] = p.snapshotStats()
	}
	return out
}

type counter struct{ msgs, bytes atomic.Uint64 }

func (c *counter) add(n int) {
	c.msgs.Add(1)
	c.bytes.Add(uint64(n))
}

// counters are a peer's statistics, updated lock-free from the writer,
// inbound readers and snapshot goroutines.
type counters struct {
	sent, received [256]counter // indexed by MessageType

	framesSent, framesReceived, flushes, dropped, connects atomic.Uint64
	inbound                                                atomic.Int32

	snapSent, snapSendFailed, snapRecv, snapRecvFailed atomic.Uint64
	snapBytesSent, snapBytesRecv                       atomic.Uint64

	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time
}

func (c *counters) setErr(err error) {
	c.errMu.Lock()
	c.lastErr = err.Error()
	c.lastErrAt = time.Now()
	c.errMu.Unlock()
}

func (p *peer) snapshotStats() PeerStats {
	c := &p.stats
	s := PeerStats{
		Addr:                   p.getAddr(),
		Connected:              p.connected.Load(),
		Inbound:                c.inbound.Load() > 0,
		Connects:               c.connects.Load(),
		Queued:                 len(p.queue),
		Sent:                   make(map[raftpb.MessageType]Counts),
		Received:               make(map[raftpb.MessageType]Counts),
		FramesSent:             c.framesSent.Load(),
		FramesReceived:         c.framesReceived.Load(),
		Flushes:                c.flushes.Load(),
		Dropped:                c.dropped.Load(),
		SnapshotsSent:          c.snapSent.Load(),
		SnapshotsSendFailed:    c.snapSendFailed.Load(),
		SnapshotsReceived:      c.snapRecv.Load(),
		SnapshotsReceiveFailed: c.snapRecvFailed.Load(),
		SnapshotBytesSent:      c.snapBytesSent.Load(),
		SnapshotBytesReceived:  c.snapBytesRecv.Load(),
	}
	for i := range c.sent {
		if n := c.sent[i].msgs.Load(); n > 0 {
			s.Sent[raftpb.MessageType(i)] = Counts{Msgs: n, Bytes: c.sent[i].bytes.Load()}
		}
		if n := c.received[i].msgs.Load(); n > 0 {
			s.Received[raftpb.MessageType(i)] = Counts{Msgs: n, Bytes: c.received[i].bytes.Load()}
		}
	}
	c.errMu.Lock()
	s.LastError, s.LastErrorAt = c.lastErr, c.lastErrAt
	c.errMu.Unlock()
	return s
}
