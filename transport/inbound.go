package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// acceptLoop accepts peer connections until the listener is closed.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.cfg.Listener.Accept()
		if err != nil {
			if t.isClosing() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off rather than spin.
			delay = nextBackoff(delay, time.Second)
			t.log.Error("accept failed; retrying", "err", err, "in", delay)
			timer := time.NewTimer(delay)
			select {
			case <-t.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		delay = 0
		if !t.trackConn(c) {
			c.Close()
			return
		}
		t.wg.Add(1)
		go t.serveConn(c)
	}
}

func (t *Transport) trackConn(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = raftpb.None
	return true
}

func (t *Transport) untrackConn(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	from := t.conns[c]
	delete(t.conns, c)
	if from != raftpb.None && t.inbound[from] == c {
		delete(t.inbound, from)
	}
}

// serveConn runs TLS and the handshake on an accepted connection, then
// serves it as a message stream or a snapshot stream.
func (t *Transport) serveConn(raw net.Conn) {
	defer t.wg.Done()
	defer func() {
		t.untrackConn(raw)
		raw.Close()
	}()
	remote := raw.RemoteAddr().String()
	// The whole TLS + handshake exchange must finish within DialTimeout: a
	// connection that opens and says nothing is not held forever.
	raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	conn := raw
	if t.cfg.TLS != nil {
		tc := tls.Server(raw, t.cfg.TLS)
		if err := tc.HandshakeContext(t.ctx); err != nil {
			t.log.Warn("rejected peer connection: tls handshake failed", "remote", remote, "err", err)
			return
		}
		conn = tc
	}
	br := newBufReader(conn)
	hs, err := readHandshake(br)
	if err != nil {
		if !t.isClosing() {
			t.log.Warn("rejected peer connection: bad handshake", "remote", remote, "err", err)
		}
		return
	}
	status, p := t.admit(raw, hs)
	if status != statusOK {
		conn.Write([]byte{byte(status)})
		t.log.Warn("rejected peer connection", "remote", remote, "reason", status.String(),
			"from", hs.from, "to", hs.to, "cluster", hs.clusterID, "version", hs.version)
		if p != nil {
			p.stats.setErr(fmt.Errorf("transport: rejected connection from %s: %s", remote, status))
		}
		return
	}
	if _, err := conn.Write([]byte{byte(statusOK)}); err != nil {
		t.log.Warn("peer connection lost during handshake", "peer", hs.from, "remote", remote, "err", err)
		return
	}
	raw.SetDeadline(time.Time{})
	switch hs.kind {
	case kindMessages:
		t.readMessages(conn, br, p, hs.from)
	case kindSnapshot:
		t.receiveSnapshot(conn, br, p, hs.from)
	}
}

// admit checks a handshake and, if it is acceptable, records which member
// the connection belongs to. A member is accepted only while it is in the
// peer set, so that a removed member is refused and a member added later
// (AddPeer) can connect. The returned peer is nil when unknown.
func (t *Transport) admit(raw net.Conn, hs handshake) (handshakeStatus, *peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[hs.from]
	switch {
	case t.closed:
		return statusShuttingDown, p
	case hs.version != wireVersion:
		return statusBadVersion, p
	case hs.kind != kindMessages && hs.kind != kindSnapshot:
		return statusBadKind, p
	case hs.clusterID != t.cfg.ClusterID:
		return statusWrongCluster, p
	case hs.to != t.cfg.ID:
		return statusWrongTarget, p
	case p == nil:
		return statusUnknownMember, nil
	}
	t.conns[raw] = hs.from
	if hs.kind == kindMessages {
		// A peer only dials a new stream when it believes the old one is
		// dead; the old one may be half-open on our side, so close it.
		if old, ok := t.inbound[hs.from]; ok {
			old.Close()
		}
		t.inbound[hs.from] = raw
	}
	return statusOK, p
}

// readMessages reads message frames from one peer and hands each message to
// the Handler. A malformed frame, a frame too large, or a message that lies
// about its sender closes the connection (the peer redials).
func (t *Transport) readMessages(conn net.Conn, br *bufio.Reader, p *peer, from raftpb.NodeID) {
	p.stats.inbound.Add(1)
	defer p.stats.inbound.Add(-1)
	t.log.Info("accepted stream from peer", "peer", from, "remote", conn.RemoteAddr().String())
	var (
		msgs  []raftpb.Message
		sizes []int
	)
	for {
		err := t.readFrame(br, from, &msgs, &sizes)
		if err != nil {
			if t.isClosing() {
				return
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				t.log.Info("stream from peer closed", "peer", from)
				return
			}
			p.stats.setErr(err)
			t.log.Warn("closing stream from peer", "peer", from, "err", err)
			return
		}
		p.stats.framesReceived.Add(1)
		for i := range msgs {
			if t.isClosing() {
				return
			}
			p.stats.received[msgs[i].Type].add(sizes[i])
			t.cfg.Handler.Step(msgs[i])
		}
		clear(msgs)
	}
}

// readFrame reads and checks one message frame from peer from.
func (t *Transport) readFrame(br *bufio.Reader, from raftpb.NodeID, msgs *[]raftpb.Message, sizes *[]int) error {
	var err error
	*msgs, *sizes, err = readMessageFrame(br, t.cfg.MaxFrameSize, *msgs, *sizes)
	if err != nil {
		return err
	}
	return t.checkMessages(*msgs, from)
}

// readMessageFrame reads one frameMessages frame of at most max body bytes
// and decodes it (messages alias a fresh buffer).
func readMessageFrame(r io.Reader, max int, msgs []raftpb.Message, sizes []int) ([]raftpb.Message, []int, error) {
	typ, n, err := readFrameHeader(r, max)
	if err != nil {
		return msgs[:0], sizes[:0], err
	}
	if typ != frameMessages {
		return msgs[:0], sizes[:0], fmt.Errorf("%w: frame type %d on a message stream", ErrMalformed, typ)
	}
	body, err := readBody(r, n)
	if err != nil {
		return msgs[:0], sizes[:0], fmt.Errorf("transport: read frame body: %w", err)
	}
	return decodeBatch(body, msgs, sizes)
}

// checkMessages rejects messages that could not have been sent honestly on a
// stream from peer from to this member.
func (t *Transport) checkMessages(msgs []raftpb.Message, from raftpb.NodeID) error {
	for i := range msgs {
		m := &msgs[i]
		switch {
		case m.From != from:
			return fmt.Errorf("%w: %s from %d on the stream of peer %d", ErrMalformed, m.Type, m.From, from)
		case m.To != t.cfg.ID:
			return fmt.Errorf("%w: %s to %d arrived at %d", ErrMalformed, m.Type, m.To, t.cfg.ID)
		case m.Type.IsLocal():
			return fmt.Errorf("%w: local message %s on the wire", ErrMalformed, m.Type)
		case m.Type == raftpb.MsgSnap:
			return fmt.Errorf("%w: MsgSnap on a message stream", ErrMalformed)
		}
	}
	return nil
}
