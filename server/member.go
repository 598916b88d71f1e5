package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/replica"
	"github.com/raftkv/raftkv/transport"
)

// ErrStopped is returned by Start after Stop, and by Start called twice.
var ErrStopped = errors.New("server: member stopped")

// ErrInvalidDataDir is wrapped by Start's error when the data dir cannot be
// used as configured: unreadable, or written by another cluster or another
// member id. Retrying cannot help; the operator must fix the flags.
var ErrInvalidDataDir = errors.New("server: invalid data dir")

// Addrs are the addresses a started member listens on (with port 0 in the
// config resolved to the port actually bound).
type Addrs struct {
	Peer  string
	Redis string
	HTTP  string
}

// Member is one running raftkv member: WAL, transport, replica, kv state
// machine, and the RESP and HTTP front doors.
type Member struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	started bool
	stopped bool
	addrs   Addrs
	err     error
	done    chan struct{}

	clusterID uint64
	storage   storageCloser
	store     *kv.Store
	sm        *stateMachine // store plus the member attribute table
	tr        *transport.Transport
	rep       *replica.Replica
	exec      *executor
	resp      *respServer
	httpSrv   *http.Server
	httpLn    net.Listener

	// book holds what this member knows of every member's addresses, from
	// --initial-cluster and from the log's ConfChange contexts.
	bookMu sync.Mutex
	book   map[pb.NodeID]memberContext

	bg       sync.WaitGroup
	bgCancel context.CancelFunc
	stopOnce sync.Once
	stopErr  error
}

// storageCloser is the WAL as the member uses it.
type storageCloser interface {
	replica.Storage
	io.Closer
}

// New validates cfg and prepares a member. Nothing is opened or bound until Start.
func New(cfg Config) (*Member, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	m := &Member{cfg: cfg, logger: cfg.Logger, done: make(chan struct{}), book: map[pb.NodeID]memberContext{}}
	m.metrics = newMetrics(m.status)
	return m, nil
}

// listen binds addr, naming the flag and address in the error.
func listen(flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server: cannot listen on %s %s: %w", flag, addr, errors.Unwrap(err))
	}
	return ln, nil
}

// Start binds the peer, RESP and HTTP listeners, opens the data dir (WAL and
// its identity), and starts the replica and the front doors. A taken port
// fails with one error naming the address; a data dir of another cluster or
// member fails with an error wrapping ErrInvalidDataDir.
func (m *Member) Start() (err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.stopped {
		return ErrStopped
	}
	m.started = true
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
			m.stopped = true
			close(m.done)
		}
	}()

	peerLn, err := listen("--peer-addr", m.cfg.PeerAddr)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() { peerLn.Close() })
	redisLn, err := listen("--redis-addr", m.cfg.RedisAddr)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() { redisLn.Close() })
	httpLn, err := listen("--http-addr", m.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() { httpLn.Close() })
	m.addrs = Addrs{Peer: peerLn.Addr().String(), Redis: redisLn.Addr().String(), HTTP: httpLn.Addr().String()}

	_, hasState, err := storedClusterID(m.cfg.DataDir)
	if err != nil {
		return err
	}
	var peers []replica.Peer
	var joinMembers []memberEntry
	wantCluster := ClusterID(m.cfg.InitialClusterToken, m.cfg.InitialCluster)
	switch {
	case m.cfg.Join != "" && hasState:
		wantCluster = 0 // restart of a member that joined: the data dir knows its cluster
		if err := m.checkNotRemoved(); err != nil {
			return err
		}
	case m.cfg.Join != "":
		wantCluster, joinMembers, err = m.joinCluster()
		if err != nil {
			return err
		}
	default:
		for _, p := range m.cfg.InitialCluster {
			peers = append(peers, replica.Peer{ID: p.ID, Addr: p.PeerAddr})
		}
	}
	storage, clusterID, fresh, err := openStorage(m.cfg, wantCluster)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() { storage.Close() })
	m.storage, m.clusterID = storage, clusterID
	if !fresh {
		peers = nil // restart: membership comes from the data dir
	}

	m.store, err = kv.New(kv.Config{Logger: m.logger})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	m.sm = newStateMachine(m.store, m.logger, m.onAttrs)
	proxy := &handlerProxy{}
	var tlsCfg = m.peerTLS
	tc, err := tlsCfg()
	if err != nil {
		return err
	}
	m.tr, err = transport.New(transport.Config{ID: m.cfg.ID, ClusterID: clusterID, Listener: peerLn, Handler: proxy, TLS: tc, Logger: m.logger})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	cleanup = append(cleanup, func() { m.tr.Close() })
	m.metrics.reg.MustRegister(&peerCollector{stats: m.tr.PeerStats})
	m.rep, err = replica.New(replica.Config{
		ID:              m.cfg.ID,
		StateMachine:    m.sm,
		Storage:         storage,
		Transport:       m.tr,
		Peers:           peers,
		TickInterval:    m.cfg.TickInterval,
		ElectionTicks:   m.cfg.ElectionTicks,
		HeartbeatTicks:  m.cfg.HeartbeatTicks,
		SnapshotEntries: int(m.cfg.SnapshotEvery),
		OnConfChange:    m.onConfChange,
		Logger:          m.logger,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	proxy.set(m.rep)
	if fresh {
		for _, p := range m.cfg.InitialCluster {
			m.learn(p.ID, memberContext{PeerAddr: p.PeerAddr})
		}
	}
	for _, e := range joinMembers {
		m.learn(e.ID, memberContext{PeerAddr: e.PeerAddr, HTTPAddr: e.HTTPAddr, RedisAddr: e.RedisAddr})
	}
	m.learn(m.cfg.ID, memberContext{PeerAddr: m.addrs.Peer, HTTPAddr: m.addrs.HTTP, RedisAddr: m.addrs.Redis})

	m.exec = newExecutor(m.rep, m.store, m.cfg, randomSession(), m.metrics)
	m.exec.info = m.info
	m.resp = newRESPServer(m.exec, m.cfg, redisLn)
	m.httpLn = httpLn
	m.httpSrv = &http.Server{Handler: (&httpAPI{m: m}).handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(m.logger.Handler(), slog.LevelWarn)}

	m.tr.Start()
	m.rep.Start()
	bgCtx, cancel := context.WithCancel(context.Background())
	m.bgCancel = cancel
	m.resp.wg.Add(1)
	go m.resp.serve()
	if m.cfg.Join != "" {
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			m.promoteWhenCaughtUp(bgCtx)
		}()
	}
	m.bg.Add(4)
	go func() {
		defer m.bg.Done()
		m.publishAttrs(bgCtx)
	}()
	go func() {
		defer m.bg.Done()
		if err := m.httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("http server", "err", err)
		}
	}()
	go func() {
		defer m.bg.Done()
		m.sweepExpired(bgCtx)
	}()
	go func() {
		defer m.bg.Done()
		select {
		case <-m.rep.Done():
			if err := m.rep.Err(); err != nil {
				m.logger.Error("replica stopped on a fatal error", "err", err)
				m.mu.Lock()
				m.err = err
				m.mu.Unlock()
				go m.Stop(context.Background())
			}
		case <-bgCtx.Done():
		}
	}()
	m.logger.Info("member running", "cluster_id", fmt.Sprintf("%016x", clusterID), "fresh", fresh,
		"peer_addr", m.addrs.Peer, "redis_addr", m.addrs.Redis, "http_addr", m.addrs.HTTP)
	return nil
}

// randomSession picks this process's dedup session: random, so that two
// incarnations of a member never share one.
func randomSession() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano()) | 1
	}
	s := binary.LittleEndian.Uint64(b[:])
	if s == 0 {
		s = 1 // 0 means "do not deduplicate"
	}
	return s
}

// handlerProxy lets the transport be built before the replica it delivers to.
type handlerProxy struct {
	mu sync.RWMutex
	h  transport.Handler
}

func (p *handlerProxy) set(h transport.Handler) {
	p.mu.Lock()
	p.h = h
	p.mu.Unlock()
}

func (p *handlerProxy) get() transport.Handler {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.h
}

func (p *handlerProxy) Step(msg pb.Message) {
	if h := p.get(); h != nil {
		h.Step(msg)
	}
}

func (p *handlerProxy) ReceiveSnapshot(msg pb.Message, data io.Reader) error {
	if h := p.get(); h != nil {
		return h.ReceiveSnapshot(msg, data)
	}
	return errors.New("server: member not started")
}

func (p *handlerProxy) ReportUnreachable(id pb.NodeID) {
	if h := p.get(); h != nil {
		h.ReportUnreachable(id)
	}
}

func (p *handlerProxy) ReportSnapshot(id pb.NodeID, ok bool) {
	if h := p.get(); h != nil {
		h.ReportSnapshot(id, ok)
	}
}

// learn records a member's addresses and makes sure the transport can dial it.
func (m *Member) learn(id pb.NodeID, mc memberContext) {
	m.bookMu.Lock()
	old := m.book[id]
	if mc.HTTPAddr == "" {
		mc.HTTPAddr = old.HTTPAddr
	}
	if mc.RedisAddr == "" {
		mc.RedisAddr = old.RedisAddr
	}
	if mc.PeerAddr == "" {
		mc.PeerAddr = old.PeerAddr
	}
	m.book[id] = mc
	m.bookMu.Unlock()
	if id != m.cfg.ID && mc.PeerAddr != "" && m.tr != nil {
		m.tr.AddPeer(id, mc.PeerAddr)
	}
}

// onAttrs runs on the replica goroutine for each member-attributes record
// applied or restored: the record is that member's own word on its addresses.
func (m *Member) onAttrs(r attrRecord) {
	if r.ID == m.cfg.ID {
		return // this process knows its own addresses
	}
	m.bookMu.Lock()
	_, member := m.book[r.ID]
	m.bookMu.Unlock()
	if member { // else: not (or no longer) a member; onConfChange picks the record up if it joins
		m.learn(r.ID, r.context())
	}
}

// onConfChange runs on the replica goroutine after each applied membership
// change (and on replay): keep the transport's peers and the address book in
// step with the log.
func (m *Member) onConfChange(cc pb.ConfChange, cs pb.ConfState) {
	switch cc.Type {
	case pb.ConfChangeAddLearner, pb.ConfChangeAddVoter:
		m.learn(cc.NodeID, parseMemberContext(cc.Context))
		if r, ok := m.sm.attr(cc.NodeID); ok && cc.NodeID != m.cfg.ID {
			m.learn(cc.NodeID, r.context()) // the member's own, newer word on its addresses
		}
	case pb.ConfChangeRemove:
		m.bookMu.Lock()
		delete(m.book, cc.NodeID)
		m.bookMu.Unlock()
		m.sm.forget(cc.NodeID)
		if cc.NodeID != m.cfg.ID {
			m.tr.RemovePeer(cc.NodeID)
		} else {
			m.logger.Warn("this member was removed from the cluster")
		}
	}
	m.logger.Info("membership changed", "change", cc.Type.String(), "node", uint64(cc.NodeID), "voters", fmt.Sprint(cs.Voters), "learners", fmt.Sprint(cs.Learners))
}

// sweepExpired runs on every member and acts on the leader: every 100ms it
// proposes the deletion of keys whose deadline has passed. The sweep carries
// the leader's clock in the entry, so every replica deletes the same keys at
// the same log position; reads already hide expired keys meanwhile.
func (m *Member) sweepExpired(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m.rep.Status().Role != raft.RoleLeader {
			continue
		}
		now := time.Now().UnixMilli()
		keys := m.store.ExpiredKeys(now, 1000)
		if len(keys) == 0 {
			continue
		}
		c := kv.Command{Op: kv.OpExpireSweep, Now: now, Keys: make([][]byte, len(keys))}
		for i, k := range keys {
			c.Keys[i] = []byte(k)
		}
		data, err := c.Encode()
		if err != nil {
			m.logger.Error("encode expiry sweep", "err", err)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
		_, err = m.rep.Propose(pctx, data)
		cancel()
		if err != nil {
			m.logger.Debug("expiry sweep not applied", "keys", len(keys), "err", err)
			continue
		}
		m.metrics.expirySweeps.Inc()
		m.metrics.expiredKeys.Add(float64(len(keys)))
	}
}

// Stop stops the member gracefully: stop accepting clients, hand leadership
// to a caught-up member if this one leads, drain in-flight commands (until
// ctx expires), then stop the replica and close the WAL. Safe to call twice
// and concurrently; later calls wait for the first and return its result.
func (m *Member) Stop(ctx context.Context) error {
	m.mu.Lock()
	if !m.started {
		m.stopped = true
		m.mu.Unlock()
		m.stopOnce.Do(func() { close(m.done) })
		return nil
	}
	m.mu.Unlock()
	m.stopOnce.Do(func() { m.stopErr = m.stop(ctx) })
	<-m.done
	return m.stopErr
}

func (m *Member) stop(ctx context.Context) error {
	m.mu.Lock()
	if m.stopped { // Start failed and cleaned up
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	m.mu.Unlock()
	defer close(m.done)

	m.resp.stopAccepting()
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		_ = m.httpSrv.Shutdown(ctx)
	}()

	// Hand leadership over first, so the cluster does not wait an election
	// timeout for a new leader.
	if st := m.rep.Status(); st.Role == raft.RoleLeader && len(st.Members) > 1 {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Duration(m.cfg.ElectionTicks)*m.cfg.TickInterval)
		err := m.rep.TransferLeadership(tctx, pb.None)
		cancel()
		if err != nil {
			m.logger.Warn("leadership transfer before stop failed", "err", err)
		} else {
			m.logger.Info("handed leadership over", "to", uint64(m.rep.Status().Leader))
		}
	}

	// Drain: let commands in flight finish (their replies reach clients).
	m.resp.drain(ctx)
	m.resp.close()
	<-httpDone
	m.httpSrv.Close()
	m.bgCancel()
	m.bg.Wait()

	var errs []error
	if err := m.rep.Stop(); err != nil && !errors.Is(err, replica.ErrStopped) {
		errs = append(errs, fmt.Errorf("server: stop replica: %w", err))
	}
	if err := m.tr.Close(); err != nil {
		errs = append(errs, fmt.Errorf("server: close transport: %w", err))
	}
	if err := m.storage.Close(); err != nil {
		errs = append(errs, fmt.Errorf("server: close wal: %w", err))
	}
	m.logger.Info("member stopped")
	return errors.Join(errs...)
}

// Done is closed when the member has stopped, by Stop or on its own after a
// fatal error (see Err).
func (m *Member) Done() <-chan struct{} { return m.done }

// Err returns the fatal error that stopped the member, or nil.
func (m *Member) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Addrs returns the addresses the member listens on (valid after Start).
func (m *Member) Addrs() Addrs {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addrs
}

// ID returns the member's id.
func (m *Member) ID() pb.NodeID { return m.cfg.ID }

// status builds /status: the replica's view plus the address book.
func (m *Member) status() memberStatus {
	m.mu.Lock()
	rep, tr, addrs, cid := m.rep, m.tr, m.addrs, m.clusterID
	m.mu.Unlock()
	st := memberStatus{ID: m.cfg.ID, Role: "follower", Members: []memberEntry{}, ClusterID: fmt.Sprintf("%016x", cid),
		PeerAddr: addrs.Peer, RedisAddr: addrs.Redis, HTTPAddr: addrs.HTTP, StaleReads: m.cfg.StaleReads}
	if rep == nil {
		return st
	}
	rs := rep.Status()
	st.Role = roleName(rs.Role)
	st.Term = uint64(rs.Term)
	st.Leader = rs.Leader
	st.CommitIndex = uint64(rs.Commit)
	st.AppliedIndex = uint64(rs.Applied)
	st.LastIndex = uint64(rs.LastIndex)
	st.FirstIndex = uint64(rs.FirstIndex)
	st.SnapshotIndex = uint64(rs.SnapshotIndex)
	st.LeadTransferee = rs.LeadTransferee
	st.Stopped = rs.Stopped
	st.Removed = rs.Removed
	if m.store != nil {
		st.Keys = m.store.DBSize()
	}
	st.ProposalsTotal = m.metrics.proposalsTotal.Load()
	st.CommitLatencyP99Ms = m.metrics.latency.p99()
	progress := map[pb.NodeID]replica.PeerStatus{}
	for _, p := range rs.Progress {
		progress[p.ID] = p
	}
	st.Peers = peerViews(m.cfg.ID, tr, rs.Progress)
	self := m.advertised().context() // before bookMu: Start holds m.mu while it learns
	m.bookMu.Lock()
	defer m.bookMu.Unlock()
	for _, mem := range rs.Members {
		// Whose word counts, best first: the member's own record from the log
		// (this process, for itself), then the address book (--initial-cluster,
		// --join and ConfChange contexts), then the ConfChange that added it.
		var known []memberContext
		if mem.ID == m.cfg.ID {
			known = append(known, memberContext{PeerAddr: addrs.Peer, HTTPAddr: self.HTTPAddr, RedisAddr: self.RedisAddr})
		} else if r, ok := m.sm.attr(mem.ID); ok {
			known = append(known, r.context())
		}
		known = append(known, m.book[mem.ID], parseMemberContext([]byte(mem.Addr)))
		e := memberEntry{ID: mem.ID, Voter: mem.Voter}
		for _, mc := range known {
			e.PeerAddr = cmp.Or(e.PeerAddr, mc.PeerAddr)
			e.HTTPAddr = cmp.Or(e.HTTPAddr, mc.HTTPAddr)
			e.RedisAddr = cmp.Or(e.RedisAddr, mc.RedisAddr)
		}
		if p, ok := progress[mem.ID]; ok {
			match, lag := uint64(p.Match), p.Lag
			e.Match, e.Lag, e.State = &match, &lag, p.State
		}
		st.Members = append(st.Members, e)
	}
	return st
}

// peerViews builds /status's "peers": for each other member, the Raft
// messages sent to it by type (from the transport), and on the leader its
// replication progress.
func peerViews(self pb.NodeID, tr *transport.Transport, progress []replica.PeerStatus) map[string]peerView {
	out := map[string]peerView{}
	get := func(id pb.NodeID) peerView {
		pv, ok := out[id.String()]
		if !ok {
			pv.MsgsSent = map[string]uint64{}
		}
		return pv
	}
	if tr != nil {
		for id, ps := range tr.PeerStats() {
			if id == self {
				continue
			}
			pv := get(id)
			for typ, c := range ps.Sent {
				pv.MsgsSent[typ.String()] += c.Msgs
			}
			pv.Connected = ps.Connected
			out[id.String()] = pv
		}
	}
	for _, p := range progress {
		if p.ID == self {
			continue
		}
		pv := get(p.ID)
		match, next, lag := uint64(p.Match), uint64(p.Next), p.Lag
		pv.Match, pv.Next, pv.Lag, pv.State = &match, &next, &lag, p.State
		out[p.ID.String()] = pv
	}
	return out
}

// roleName maps a raft role to the contract's words.
func roleName(r raft.Role) string {
	switch r {
	case raft.RoleLeader:
		return "leader"
	case raft.RoleCandidate, raft.RolePreCandidate:
		return "candidate"
	case raft.RoleLearner:
		return "learner"
	}
	return "follower"
}

// info builds INFO's text: server, replication and keyspace sections.
func (m *Member) info() string {
	st := m.status()
	var b []byte
	line := func(k, v string) { b = append(b, k+":"+v+"\r\n"...) }
	b = append(b, "# Server\r\n"...)
	line("redis_version", redisVersion)
	line("raftkv_member_id", st.ID.String())
	line("raftkv_cluster_id", st.ClusterID)
	line("redis_mode", "standalone")
	line("tcp_port", portOf(st.RedisAddr))
	line("process_id", strconv.Itoa(pid()))
	b = append(b, "\r\n# Replication\r\n"...)
	role := "slave"
	if st.Role == "leader" {
		role = "master"
	}
	line("role", role)
	line("raft_role", st.Role)
	line("raft_term", strconv.FormatUint(st.Term, 10))
	line("raft_leader", st.Leader.String())
	line("raft_commit_index", strconv.FormatUint(st.CommitIndex, 10))
	line("raft_applied_index", strconv.FormatUint(st.AppliedIndex, 10))
	line("raft_last_index", strconv.FormatUint(st.LastIndex, 10))
	line("raft_snapshot_index", strconv.FormatUint(st.SnapshotIndex, 10))
	line("raft_members", strconv.Itoa(len(st.Members)))
	line("stale_reads", strconv.FormatBool(st.StaleReads))
	b = append(b, "\r\n# Keyspace\r\n"...)
	if m.store != nil {
		s := m.store.Stats()
		if s.Keys > 0 {
			line("db0", fmt.Sprintf("keys=%d,expires=%d,avg_ttl=0", s.Keys, s.KeysWithTTL))
		}
	}
	return string(b)
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "0"
	}
	return p
}

// drain waits until no command is in flight on any connection, or ctx ends.
func (s *respServer) drain(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.running.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
