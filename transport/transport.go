package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// Handler receives what arrives from peers. The replica implements it.
//
// Concurrency contract: every method is called from transport goroutines,
// never from inside Send or SendSnapshot, and possibly from several
// goroutines at once (one per connected peer). Handler methods may call back
// into the Transport. No method is called after Close returns.
type Handler interface {
	// Step delivers one message from a peer. It must not block for long: the
	// connection from that peer stops being read while it runs, which backs
	// up into the sender's queue (and from there into drops, not stalls).
	// Entry data and Context alias a buffer that the transport never reuses,
	// so m may be retained.
	Step(m raftpb.Message)
	// ReceiveSnapshot delivers a MsgSnap and its streamed data. It must
	// consume data (to io.EOF) before returning nil; a non-nil error, or a
	// data stream that breaks (data.Read returns a non-EOF error), makes the
	// sender see ReportSnapshot(false).
	ReceiveSnapshot(m raftpb.Message, data io.Reader) error
	// ReportUnreachable says that messages to id were dropped (peer not
	// connected, queue full, or a write failed). Reports are coalesced.
	ReportUnreachable(id raftpb.NodeID)
	// ReportSnapshot says whether a snapshot sent with SendSnapshot was taken
	// by the receiver.
	ReportSnapshot(id raftpb.NodeID, ok bool)
}

// Config configures a Transport. Zero values of the optional fields take the
// documented defaults.
type Config struct {
	ID        raftpb.NodeID
	ClusterID uint64
	// Listener is already bound (the caller binds --peer-addr so that a taken
	// port fails early). Close closes it.
	Listener net.Listener
	Handler  Handler
	// TLS, if set, turns on TLS for every peer connection, both accepted and
	// dialed; it must hold both the server and the client side (LoadTLS
	// builds a mutual-TLS config). nil means plaintext.
	TLS *tls.Config
	// QueueSize bounds each peer's outbound message queue; default 4096.
	QueueSize int
	// Logger receives connection events; nil discards.
	Logger *slog.Logger

	// MaxFrameSize is the largest frame body accepted on read and built on
	// write; default 64 MiB. A single message larger than this is dropped.
	// Keep it equal across the cluster (a receiver with a smaller limit
	// closes the stream on every oversized frame).
	MaxFrameSize int
	// SnapshotChunkSize is the size of each snapshot data chunk, which bounds
	// the sender's memory per stream; default 1 MiB.
	SnapshotChunkSize int
	// DialTimeout bounds dial, TLS and handshake of one connection attempt;
	// default 1s.
	DialTimeout time.Duration
	// WriteTimeout bounds one flush of a batch; a peer that does not read for
	// this long loses its connection (and is redialed). Default 5s.
	WriteTimeout time.Duration
	// SnapshotTimeout bounds each wait on a snapshot stream: the receiver
	// waiting for the next chunk, the sender waiting for the receiver's
	// verdict. Default 1 minute.
	SnapshotTimeout time.Duration
	// MaxBackoff caps the jittered exponential redial backoff; default 1s so
	// that a restarted peer is back within about a second (fast failover).
	MaxBackoff time.Duration
}

// Defaults.
const (
	DefaultQueueSize         = 4096
	DefaultMaxFrameSize      = 64 << 20
	DefaultSnapshotChunkSize = 1 << 20
	DefaultDialTimeout       = time.Second
	DefaultWriteTimeout      = 5 * time.Second
	DefaultSnapshotTimeout   = time.Minute
	DefaultMaxBackoff        = time.Second
)

// withDefaults returns a copy of c with zero optional fields filled in.
func (c Config) withDefaults() Config {
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.SnapshotChunkSize == 0 {
		c.SnapshotChunkSize = DefaultSnapshotChunkSize
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.SnapshotTimeout == 0 {
		c.SnapshotTimeout = DefaultSnapshotTimeout
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.ID == raftpb.None {
		errs = append(errs, errors.New("transport: config: ID must not be zero"))
	}
	if c.Listener == nil {
		errs = append(errs, errors.New("transport: config: Listener is required"))
	}
	if c.Handler == nil {
		errs = append(errs, errors.New("transport: config: Handler is required"))
	}
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("transport: config: QueueSize %d is negative", c.QueueSize))
	}
	if c.MaxFrameSize < 0 || c.MaxFrameSize > 1<<31 {
		errs = append(errs, fmt.Errorf("transport: config: MaxFrameSize %d outside [0, 2 GiB]", c.MaxFrameSize))
	}
	if c.SnapshotChunkSize < 0 || (c.SnapshotChunkSize > c.MaxFrameSize && c.MaxFrameSize > 0) {
		errs = append(errs, fmt.Errorf("transport: config: SnapshotChunkSize %d negative or above MaxFrameSize", c.SnapshotChunkSize))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"DialTimeout", c.DialTimeout}, {"WriteTimeout", c.WriteTimeout},
		{"SnapshotTimeout", c.SnapshotTimeout}, {"MaxBackoff", c.MaxBackoff},
	} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("transport: config: %s %v is negative", f.name, f.d))
		}
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by operations on a closed Transport.
var ErrClosed = errors.New("transport: closed")

// Transport connects this member to its peers. All methods are safe for
// concurrent use.
//
// Goroutines: one accept loop (after Start), one reporter, one writer per
// peer (plus one reader per outbound connection that only watches for the
// peer closing it), one per accepted connection and one per outgoing
// snapshot. Close stops and waits for all of them.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	rep    reporter

	mu      sync.RWMutex
	closed  bool
	started bool
	peers   map[raftpb.NodeID]*peer
	// conns holds every accepted connection and the member it says it is
	// from (None until the handshake is read), so that Close and RemovePeer
	// can close them.
	conns map[net.Conn]raftpb.NodeID
	// inbound is the current accepted message stream from each member: a
	// newer one replaces (and closes) an older, half-dead one.
	inbound map[raftpb.NodeID]net.Conn
	// snapConns holds outgoing snapshot connections, closed by Close.
	snapConns map[net.Conn]struct{}
}

// New checks cfg and returns a Transport. Call Start to accept connections
// and AddPeer to dial peers.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:       cfg,
		log:       cfg.Logger.With("local", cfg.ID),
		ctx:       ctx,
		cancel:    cancel,
		peers:     make(map[raftpb.NodeID]*peer),
		conns:     make(map[net.Conn]raftpb.NodeID),
		inbound:   make(map[raftpb.NodeID]net.Conn),
		snapConns: make(map[net.Conn]struct{}),
	}
	t.rep.init()
	t.wg.Add(1)
	go t.rep.run(t)
	return t, nil
}

// Addr returns the listener's address.
func (t *Transport) Addr() net.Addr { return t.cfg.Listener.Addr() }

// Start starts the accept loop. It is idempotent.
func (t *Transport) Start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.started {
		return
	}
	t.started = true
	t.wg.Add(1)
	go t.acceptLoop()
}

// AddPeer adds a member to dial at addr and to accept connections from. It
// is idempotent; a changed address makes the next connection use the new one
// at once.
func (t *Transport) AddPeer(id raftpb.NodeID, addr string) {
	if id == raftpb.None || id == t.cfg.ID {
		t.log.Warn("ignoring AddPeer for an invalid peer id", "peer", id, "addr", addr)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.setAddr(addr)
		return
	}
	p := newPeer(t, id, addr)
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
	t.log.Info("peer added", "peer", id, "addr", addr)
}

// RemovePeer forgets a member: its connections are closed, queued messages
// dropped, and later connections from it are rejected (and logged).
func (t *Transport) RemovePeer(id raftpb.NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok {
		return
	}
	delete(t.peers, id)
	p.stop()
	for c, from := range t.conns {
		if from == id {
			c.Close()
		}
	}
	t.log.Info("peer removed", "peer", id)
}

// Send queues msgs for their destinations (m.To) and returns at once: it
// NEVER blocks. A message to a peer that is not connected, or whose queue is
// full, is dropped and Handler.ReportUnreachable(to) is called soon after
// from a transport goroutine (Raft retries). Messages for unknown peers and
// local message types are dropped and logged. Queued messages keep
// references to their Entries' Data and Context until written: the caller
// must not modify them.
//
// MsgSnap must go through SendSnapshot; one given to Send is dropped and
// reported as a failed snapshot.
func (t *Transport) Send(msgs []raftpb.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return
	}
	for i := range msgs {
		m := &msgs[i]
		p, ok := t.peers[m.To]
		switch {
		case !ok:
			t.log.Debug("dropping message to unknown peer", "peer", m.To, "type", m.Type)
			continue
		case m.Type.IsLocal():
			t.log.Error("dropping local message given to Send", "peer", m.To, "type", m.Type)
			continue
		case m.Type == raftpb.MsgSnap:
			t.log.Error("dropping MsgSnap given to Send instead of SendSnapshot", "peer", m.To)
			t.rep.snapshot(m.To, false)
			continue
		}
		if !p.connected.Load() {
			p.drop(1)
			continue
		}
		select {
		case p.queue <- *m:
		default:
			p.drop(1)
		}
	}
}

// Close stops the accept loop, closes the listener and every connection,
// and waits for every goroutine the Transport started. Handler methods are
// not called after Close returns, but Close waits for any Handler call in
// progress (a Step that never returns makes Close hang).
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.cancel()
	for _, p := range t.peers {
		p.stop()
	}
	for c := range t.conns {
		c.Close()
	}
	for c := range t.snapConns {
		c.Close()
	}
	t.mu.Unlock()
	err := t.cfg.Listener.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	t.wg.Wait()
	if err != nil {
		return fmt.Errorf("transport: close listener: %w", err)
	}
	return nil
}

// isClosing reports whether Close has begun.
func (t *Transport) isClosing() bool { return t.ctx.Err() != nil }

// reporter calls Handler.ReportUnreachable and ReportSnapshot from its own
// goroutine, so that Send never calls into the Handler (the replica may call
// Send from the very goroutine its Handler methods hand work to), and
// coalesces a burst of drops to one peer into one report.
type reporter struct {
	mu          sync.Mutex
	unreachable map[raftpb.NodeID]struct{}
	snaps       []snapReport
	wake        chan struct{}
}

type snapReport struct {
	id raftpb.NodeID
	ok bool
}

func (r *reporter) init() {
	r.unreachable = make(map[raftpb.NodeID]struct{})
	r.wake = make(chan struct{}, 1)
}

func (r *reporter) unreach(id raftpb.NodeID) {
	r.mu.Lock()
	r.unreachable[id] = struct{}{}
	r.mu.Unlock()
	r.signal()
}

func (r *reporter) snapshot(id raftpb.NodeID, ok bool) {
	r.mu.Lock()
	r.snaps = append(r.snaps, snapReport{id, ok})
	r.mu.Unlock()
	r.signal()
}

func (r *reporter) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reporter) run(t *Transport) {
	defer t.wg.Done()
	var ids []raftpb.NodeID
	var snaps []snapReport
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-r.wake:
		}
		r.mu.Lock()
		ids = ids[:0]
		for id := range r.unreachable {
			ids = append(ids, id)
		}
		clear(r.unreachable)
		snaps = append(snaps[:0], r.snaps...)
		r.snaps = r.snaps[:0]
		r.mu.Unlock()
		for _, id := range ids {
			if t.isClosing() {
				return
			}
			t.cfg.Handler.ReportUnreachable(id)
		}
		for _, s := range snaps {
			if t.isClosing() {
				return
			}
			t.cfg.Handler.ReportSnapshot(s.id, s.ok)
		}
	}
}
