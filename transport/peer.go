package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
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

	// Writer state, touched only by the run goroutine.
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
		addr:   addr,
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
	defer func() {
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

	bw := newBufWriter(conn)
	for {
		var m raftpb.Message
		select {
		case <-p.ctx.Done():
			return nil
		case err := <-dead:
			return fmt.Errorf("transport: stream to %d closed: %w", p.id, err)
		case m = <-p.queue:
		}
		p.batch = append(p.batch[:0], m)
	drain:
		for len(p.batch) < maxBatchMsgs {
			select {
			case m := <-p.queue:
				p.batch = append(p.batch, m)
			default:
				break drain
			}
		}
		err := p.writeBatch(conn, bw, p.batch)
		clear(p.batch) // release entry data to the GC
		if err != nil {
			if p.ctx.Err() != nil {
				return nil
			}
			p.drop(0)
			return err
		}
	}
}

// writeBatch encodes batch into frames of about softFrameSize and flushes
// them with one deadline: many messages per frame, many frames per syscall.
func (p *peer) writeBatch(conn net.Conn, bw *bufio.Writer, batch []raftpb.Message) error {
	maxFrame := p.t.cfg.MaxFrameSize
	soft := min(softFrameSize, maxFrame)
	if err := conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout)); err != nil {
		return fmt.Errorf("transport: write to %d: %w", p.id, err)
	}
	body := p.frame[:0]
	p.sizes = p.sizes[:0]
	frames := 0
	for i := range batch {
		before := len(body)
		var n int
		var err error
		body, n, err = appendMessage(body, &batch[i])
		if err == nil && n+msgLenSize > maxFrame {
			err = fmt.Errorf("transport: %s to %d is %d bytes, above MaxFrameSize %d: %w", batch[i].Type, p.id, n, maxFrame, ErrFrameTooLarge)
			body = body[:before]
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
		if len(body) > soft && before > 0 {
			if err := writeFrame(bw, frameMessages, body[:before]); err != nil {
				return fmt.Errorf("transport: write to %d: %w", p.id, err)
			}
			frames++
			body = body[:copy(body, body[before:])]
		}
	}
	if len(body) > 0 {
		if err := writeFrame(bw, frameMessages, body); err != nil {
			return fmt.Errorf("transport: write to %d: %w", p.id, err)
		}
		frames++
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("transport: write to %d: %w", p.id, err)
	}
	// Keep the frame buffer for the next batch unless one huge message grew it.
	if cap(body) <= 4*softFrameSize {
		p.frame = body[:0]
	} else {
		p.frame = nil
	}
	p.stats.framesSent.Add(uint64(frames))
	p.stats.flushes.Add(1)
	for i, n := range p.sizes {
		if n >= 0 {
			p.stats.sent[batch[i].Type].add(n)
		}
	}
	return nil
}

// writeFrame writes one frame to w.
func writeFrame(w *bufio.Writer, typ frameType, body []byte) error {
	var hdr [frameHeaderSize]byte
	if _, err := w.Write(appendFrameHeader(hdr[:0], typ, len(body))); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}
