package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// peer is the outbound side of one member: its queue, and the goroutine that
// dials it and writes batches. Inbound connections from the member are
// served by the Transport and only share the peer's counters.
type peer struct {
	t      *Transport
	id     raftpb.NodeID
	queue  chan raftpb.Message
	ctx    context.Context // cancelled when the peer is removed or the transport closes
	cancel context.CancelFunc
	kick   chan struct{} // cap 1: the address changed, redial without waiting

	mu   sync.Mutex
	addr string
	conn net.Conn // the current outbound message connection, nil if none

	// connected is true while an outbound stream has passed the handshake;
	// Send drops (rather than queues) while it is false.
	connected atomic.Bool
	stats     counters

	// Writes to the connection come from the run goroutine or, when it is
	// idle and nothing is queued, straight from Send (see sendDirect): the
	// caller writes what the socket takes at once, saving a goroutine
	// hand-off per batch, and leaves the rest to the run goroutine. Whoever
	// writes holds wmu; the fields below it are guarded by it.
	wmu   sync.Mutex
	raw   syscall.RawConn // of the current connection if it is plain TCP, else nil
	carry []byte          // the unwritten rest of a direct write, written next
	werr  error           // a direct write failed: the connection is done
	wake  chan struct{}   // cap 1: the queue, carry or werr wants the run goroutine
	batch []raftpb.Message
	sizes []int
	frame []byte
}

func newPeer(t *Transport, id raftpb.NodeID, addr string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:      t,
		id:     id,
		queue:  make(chan raftpb.Message, t.cfg.QueueSize),
		ctx:    ctx,
		cancel: cancel,
		kick:   make(chan struct{}, 1),
		wake:   make(chan struct{}, 1),
		addr:   addr,
	}
}

// signal wakes the run goroutine.
func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *peer) getAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// setAddr changes where the peer is dialed; a live connection to the old
// address is closed so that the next one goes to the new address.
func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addr == addr {
		return
	}
	p.t.log.Info("peer address changed", "peer", p.id, "old", p.addr, "addr", addr)
	p.addr = addr
	if p.conn != nil {
		p.conn.Close()
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// stop ends the peer's goroutine; it does not wait for it.
func (p *peer) stop() {
	p.cancel()
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
}

// drop counts n dropped messages and schedules a ReportUnreachable.
func (p *peer) drop(n int) {
	if n > 0 {
		p.stats.dropped.Add(uint64(n))
	}
	p.t.rep.unreach(p.id)
}

// dropQueued empties the queue: messages queued for a connection that died
// are stale by the time a new one is up, and Raft resends what matters.
func (p *peer) dropQueued() {
	n := 0
	for {
		select {
		case <-p.queue:
			n++
		default:
			if n > 0 {
				p.drop(n)
			}
			return
		}
	}
}

// run dials the peer and streams its queue until the peer is stopped,
// redialing with jittered exponential backoff.
func (p *peer) run() {
	defer p.t.wg.Done()
	var backoff time.Duration
	failing := false
	for {
		conn, err := p.dial()
		if err == nil {
			backoff, failing = 0, false
			err = p.stream(conn)
		}
		p.connected.Store(false)
		if p.ctx.Err() != nil {
			return // removed or closing: nobody needs to hear about drops
		}
		p.dropQueued()
		if err != nil {
			p.stats.setErr(err)
			// The first failure in a row is news; the retries that follow
			// (up to one per MaxBackoff) are not.
			if !failing {
				p.t.log.Warn("peer connection failed; redialing", "peer", p.id, "addr", p.getAddr(), "err", err)
			} else {
				p.t.log.Debug("peer redial failed", "peer", p.id, "addr", p.getAddr(), "err", err)
			}
			failing = true
		}
		backoff = nextBackoff(backoff, p.t.cfg.MaxBackoff)
		timer := time.NewTimer(jitter(backoff))
		select {
		case <-p.ctx.Done():
			timer.Stop()
			return
		case <-p.kick:
			timer.Stop()
			backoff = 0
		case <-timer.C:
		}
	}
}

// minBackoff is the first redial delay.
const minBackoff = 20 * time.Millisecond

// nextBackoff doubles prev within [minBackoff, max].
func nextBackoff(prev, max time.Duration) time.Duration {
	d := 2 * prev
	if d < minBackoff {
		d = minBackoff
	}
	if d > max {
		d = max
	}
	return d
}

// jitter returns a duration in [d/2, d]: peers that lost each other at the
// same moment do not redial in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// dial opens and registers an outbound message stream.
func (p *peer) dial() (net.Conn, error) {
	addr := p.getAddr()
	ctx, cancel := context.WithTimeout(p.ctx, p.t.cfg.DialTimeout)
	defer cancel()
	conn, err := p.t.dialPeer(ctx, addr, handshake{kind: kindMessages, to: p.id})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ctx.Err(); err != nil {
		conn.Close()
		return nil, err
	}
	if p.addr != addr {
		conn.Close()
		return nil, fmt.Errorf("transport: peer %d moved from %s to %s while dialing", p.id, addr, p.addr)
	}
	p.conn = conn
	return conn, nil
}

// dialPeer dials addr, runs TLS if configured, and exchanges the handshake.
// ctx bounds all of it.
func (t *Transport) dialPeer(ctx context.Context, addr string, hs handshake) (net.Conn, error) {
	hs.version, hs.clusterID, hs.from = wireVersion, t.cfg.ClusterID, t.cfg.ID
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %d at %s: %w", hs.to, addr, err)
	}
	// Closing the socket is the one way to interrupt every step below.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		raw.SetDeadline(deadline)
	}
	conn := raw
	if t.cfg.TLS != nil {
		cfg := t.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("transport: tls handshake with %d at %s: %w", hs.to, addr, err)
		}
		conn = tc
	}
	fail := func(err error) (net.Conn, error) {
		raw.Close()
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return nil, fmt.Errorf("transport: handshake with %d at %s: %w", hs.to, addr, err)
	}
	if _, err := conn.Write(hs.append(make([]byte, 0, handshakeSize))); err != nil {
		return fail(err)
	}
	status, err := readStatus(conn)
	if err != nil {
		return fail(err)
	}
	if status != statusOK {
		return fail(fmt.Errorf("%w: %s", ErrRejected, status))
	}
	if !stop() {
		raw.Close()
		return nil, fmt.Errorf("transport: dial %d at %s: %w", hs.to, addr, ctx.Err())
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		raw.Close()
		return nil, fmt.Errorf("transport: dial %d at %s: %w", hs.to, addr, err)
	}
	return conn, nil
}

// maxBatchMsgs bounds how many queued messages one flush carries.
const maxBatchMsgs = 1024

// softFrameSize is the body size at which a batch is cut into another frame.
// Received messages alias their frame's buffer, so smaller frames let the
// receiver free memory sooner; one large message still gets a frame of its
// own up to MaxFrameSize.
const softFrameSize = 256 << 10

// stream writes the queue to conn until conn fails or the peer stops. The
// acceptor never writes after the handshake, so a reader goroutine only
// watches for the connection closing (peer restarted, removed us, or died),
// which the writer would otherwise learn only on a later write.
func (p *peer) stream(conn net.Conn) error {
	var raw syscall.RawConn
	if tc, ok := conn.(*net.TCPConn); ok {
		raw, _ = tc.SyscallConn() // nil on error: no direct writes
	}
	p.wmu.Lock()
	p.raw, p.carry, p.werr = raw, nil, nil
	p.wmu.Unlock()
	defer func() {
		p.wmu.Lock()
		p.raw, p.carry, p.werr = nil, nil, nil
		p.wmu.Unlock()
		p.mu.Lock()
		p.conn = nil
		p.mu.Unlock()
		conn.Close()
	}()
	dead := make(chan error, 1)
	p.t.wg.Add(1)
	go func() {
		defer p.t.wg.Done()
		var b [1]byte
		_, err := conn.Read(b[:])
		if err == nil {
			err = fmt.Errorf("%w: peer wrote on a one-way stream", ErrMalformed)
		}
		dead <- err
	}()
	p.connected.Store(true)
	p.stats.connects.Add(1)
	p.t.log.Info("connected to peer", "peer", p.id, "addr", conn.RemoteAddr().String())

	for {
		select {
		case <-p.ctx.Done():
			return nil
		case err := <-dead:
			return fmt.Errorf("transport: stream to %d closed: %w", p.id, err)
		case <-p.wake:
		}
		p.wmu.Lock()
		err := p.flushLocked(conn)
		p.wmu.Unlock()
		if err != nil {
			if p.ctx.Err() != nil {
				return nil
			}
			p.drop(0)
			return err
		}
	}
}

// flushLocked writes the rest of a direct write, then the queue, batch by
// batch, until the queue is empty. Called by the run goroutine with wmu held.
func (p *peer) flushLocked(conn net.Conn) error {
	if p.werr != nil {
		return p.werr
	}
	if len(p.carry) > 0 {
		if err := p.write(conn, p.carry); err != nil {
			return err
		}
		p.carry = nil
	}
	for {
		p.batch = p.batch[:0]
	drain:
		for len(p.batch) < maxBatchMsgs {
			select {
			case m := <-p.queue:
				p.batch = append(p.batch, m)
			default:
				break drain
			}
		}
		if len(p.batch) == 0 {
			return nil
		}
		frames, n := p.encode(p.frame[:0], p.batch)
		err := p.write(conn, frames)
		if err == nil {
			p.sent(p.batch, n)
		}
		p.keepFrame(frames)
		clear(p.batch) // release entry data to the GC
		if err != nil {
			return err
		}
	}
}

// write writes b to conn within WriteTimeout.
func (p *peer) write(conn net.Conn, b []byte) error {
	if err := conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout)); err != nil {
		return fmt.Errorf("transport: write to %d: %w", p.id, err)
	}
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("transport: write to %d: %w", p.id, err)
	}
	return nil
}

// send hands msgs, all to this peer, to the connection: written at once if
// the connection is idle, else queued for the run goroutine.
func (p *peer) send(msgs []raftpb.Message) {
	if p.sendDirect(msgs) {
		return
	}
	for _, m := range msgs {
		select {
		case p.queue <- m:
		default:
			p.drop(1)
		}
	}
	p.signal()
}

// sendDirect writes msgs on the caller's goroutine if the run goroutine is
// idle, nothing is queued and the connection is plain TCP. It never waits:
// one non-blocking write takes what the socket buffer has room for, and
// the run goroutine writes the rest before anything else. It reports
// whether it took the messages.
func (p *peer) sendDirect(msgs []raftpb.Message) bool {
	if !p.wmu.TryLock() {
		return false
	}
	defer p.wmu.Unlock()
	if p.raw == nil || p.werr != nil || len(p.carry) > 0 || len(p.queue) > 0 {
		return false
	}
	frames, n := p.encode(p.frame[:0], msgs)
	defer p.keepFrame(frames)
	if len(frames) == 0 {
		return true
	}
	written, err := writeNonblocking(p.raw, frames)
	if err != nil {
		p.werr = fmt.Errorf("transport: write to %d: %w", p.id, err)
		p.signal()
		return true // lost with the connection, as on any failed write
	}
	if written < len(frames) {
		p.carry = append([]byte(nil), frames[written:]...)
		p.signal()
	}
	p.sent(msgs, n)
	p.stats.direct.Add(1)
	return true
}

// writeNonblocking writes as much of b as the socket takes without
// waiting and returns how much that was.
func writeNonblocking(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, err := syscall.Write(int(fd), b[n:])
			if k > 0 {
				n += k
			}
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return true // full: the rest goes through the run goroutine
			case err != nil:
				werr = err
				return true
			case k <= 0:
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err
}

// encode appends batch to b as frames of about softFrameSize (many
// messages per frame), leaving out (and counting as dropped) any message
// that cannot be sent. It returns the frames and how many frames that is;
// p.sizes gets each message's encoded size, -1 for one left out.
func (p *peer) encode(b []byte, batch []raftpb.Message) ([]byte, int) {
	maxFrame := p.t.cfg.MaxFrameSize
	soft := min(softFrameSize, maxFrame)
	p.sizes = p.sizes[:0]
	frames := 0
	start := len(b) // the current frame's header
	b = append(b, make([]byte, frameHeaderSize)...)
	closeFrame := func(end int) {
		appendFrameHeader(b[start:start], frameMessages, end-start-frameHeaderSize)
		frames++
	}
	for i := range batch {
		before := len(b)
		var n int
		var err error
		b, n, err = appendMessage(b, &batch[i])
		if err == nil && n+msgLenSize > maxFrame {
			err = fmt.Errorf("transport: %s to %d is %d bytes, above MaxFrameSize %d: %w", batch[i].Type, p.id, n, maxFrame, ErrFrameTooLarge)
			b = b[:before]
		}
		if err != nil {
			// The message can never be sent; say so loudly once per message.
			p.t.log.Error("dropping unsendable message", "peer", p.id, "type", batch[i].Type, "err", err)
			p.stats.setErr(err)
			p.stats.dropped.Add(1)
			p.sizes = append(p.sizes, -1)
			continue
		}
		p.sizes = append(p.sizes, n)
		if len(b)-start-frameHeaderSize > soft && before > start+frameHeaderSize {
			// Too big with this message: end the frame before it and start
			// the next frame with it.
			closeFrame(before)
			b = append(b, make([]byte, frameHeaderSize)...)
			copy(b[before+frameHeaderSize:], b[before:len(b)-frameHeaderSize])
			start = before
		}
	}
	if len(b) == start+frameHeaderSize {
		return b[:start], frames // nothing after the last header
	}
	closeFrame(len(b))
	return b, frames
}

// sent counts a batch that was written (p.sizes from its encode).
func (p *peer) sent(batch []raftpb.Message, frames int) {
	p.stats.framesSent.Add(uint64(frames))
	p.stats.flushes.Add(1)
	for i, n := range p.sizes {
		if n >= 0 {
			p.stats.sent[batch[i].Type].add(n)
		}
	}
}

// keepFrame keeps the encoding buffer for the next batch unless one huge
// message grew it.
func (p *peer) keepFrame(b []byte) {
	if cap(b) <= 4*softFrameSize {
		p.frame = b[:0]
	} else {
		p.frame = nil
	}
}
