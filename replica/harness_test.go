package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// waitFor polls cond until it holds or timeout passes: tests wait on
// conditions, never on sleeps.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not synchronisation
	}
}

// testSM is a state machine that records every applied payload in order.
// Apply returns the 1-based position of the payload in the record.
type testSM struct {
	mu       sync.Mutex
	log      []string
	restores int
	failNext atomic.Bool
}

func (s *testSM) Apply(ents []pb.Entry) ([]any, error) {
	if s.failNext.Load() {
		return nil, errors.New("injected apply failure")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make([]any, len(ents))
	for i, e := range ents {
		if len(e.Data) == 0 {
			return nil, fmt.Errorf("state machine got an empty entry at %d", e.Index)
		}
		s.log = append(s.log, string(e.Data))
		res[i] = len(s.log)
	}
	return res, nil
}

func (s *testSM) Snapshot() (SnapshotFunc, error) {
	s.mu.Lock()
	snap := s.log[:len(s.log):len(s.log)] // later appends never touch these elements
	s.mu.Unlock()
	return func(w io.Writer) error {
		var b []byte
		b = binary.AppendUvarint(b, uint64(len(snap)))
		for _, v := range snap {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
		_, err := w.Write(b)
		return err
	}, nil
}

func (s *testSM) Restore(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	n, k := binary.Uvarint(data)
	if k <= 0 {
		return errors.New("bad snapshot")
	}
	data = data[k:]
	var log []string
	for range n {
		l, k := binary.Uvarint(data)
		if k <= 0 || uint64(len(data)-k) < l {
			return errors.New("bad snapshot entry")
		}
		log = append(log, string(data[k:k+int(l)]))
		data = data[k+int(l):]
	}
	s.mu.Lock()
	s.log = log
	s.restores++
	s.mu.Unlock()
	return nil
}

func (s *testSM) values() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func (s *testSM) contains(v string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.log, v)
}

// memStorage is a durable-by-fiat Storage: everything saved survives a
// "crash" (the harness keeps the object across restarts). The raft.Storage
// half is used by the replica goroutine only; snapshot files are shared.
type memStorage struct {
	ms *raft.MemoryStorage

	mu      sync.Mutex
	files   map[pb.Index]memSnap
	saveErr error // injected into the next Save
	saves   int
}

type memSnap struct {
	meta pb.SnapshotMeta
	data []byte
}

func newMemStorage() *memStorage {
	return &memStorage{ms: raft.NewMemoryStorage(), files: make(map[pb.Index]memSnap)}
}

func (s *memStorage) InitialState() (pb.HardState, pb.ConfState, error) { return s.ms.InitialState() }
func (s *memStorage) Entries(lo, hi pb.Index, max uint64) ([]pb.Entry, error) {
	return s.ms.Entries(lo, hi, max)
}
func (s *memStorage) Term(i pb.Index) (pb.Term, error)   { return s.ms.Term(i) }
func (s *memStorage) FirstIndex() (pb.Index, error)      { return s.ms.FirstIndex() }
func (s *memStorage) LastIndex() (pb.Index, error)       { return s.ms.LastIndex() }
func (s *memStorage) Snapshot() (pb.SnapshotMeta, error) { return s.ms.Snapshot() }

func (s *memStorage) Save(hs pb.HardState, ents []pb.Entry, sync bool) error {
	s.mu.Lock()
	err := s.saveErr
	s.saves++
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.ms.Append(ents); err != nil {
		return err
	}
	if !hs.IsEmpty() {
		s.ms.SetHardState(hs)
	}
	return nil
}

func (s *memStorage) injectSaveError(err error) {
	s.mu.Lock()
	s.saveErr = err
	s.mu.Unlock()
}

func (s *memStorage) SaveSnapshot(meta pb.SnapshotMeta) error {
	last, _ := s.ms.LastIndex()
	if t, err := s.ms.Term(meta.Index); err == nil && t == meta.Term && meta.Index <= last {
		if _, err := s.ms.CreateSnapshot(meta.Index, &meta.ConfState); err != nil {
			return err
		}
		return s.ms.Compact(meta.Index)
	}
	return s.ms.ApplySnapshot(meta)
}

func (s *memStorage) Compact(index pb.Index) error {
	first, _ := s.ms.FirstIndex()
	if index < first {
		return nil
	}
	return s.ms.Compact(index)
}

func (s *memStorage) SetConfState(cs pb.ConfState) error { s.ms.SetConfState(cs); return nil }

func (s *memStorage) CreateSnapshot(meta pb.SnapshotMeta) (SnapshotWriter, error) {
	return &memSnapWriter{s: s, meta: meta}, nil
}

func (s *memStorage) OpenSnapshot(index pb.Index) (pb.SnapshotMeta, io.ReadCloser, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[index]
	if !ok {
		return pb.SnapshotMeta{}, nil, 0, fmt.Errorf("memstorage: no snapshot at %d", index)
	}
	return f.meta, io.NopCloser(bytes.NewReader(f.data)), int64(len(f.data)), nil
}

func (s *memStorage) snapshotFiles() []pb.Index {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.files))
}

type memSnapWriter struct {
	s    *memStorage
	meta pb.SnapshotMeta
	buf  bytes.Buffer
}

func (w *memSnapWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }
func (w *memSnapWriter) Abort()                      {}
func (w *memSnapWriter) Commit() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.files[w.meta.Index] = memSnap{meta: w.meta, data: bytes.Clone(w.buf.Bytes())}
	return nil
}

// handlerProxy lets a transport be created before the replica it delivers to.
type handlerProxy struct {
	self pb.NodeID
	c    *cluster
	r    atomic.Pointer[Replica]
}

func (h *handlerProxy) Step(m pb.Message) {
	if r := h.r.Load(); r != nil && !h.c.blocked(m.From, h.self) {
		r.Step(m)
	}
}

func (h *handlerProxy) ReceiveSnapshot(m pb.Message, data io.Reader) error {
	r := h.r.Load()
	if r == nil || h.c.blocked(m.From, h.self) {
		return errors.New("test: member not running or cut off")
	}
	return r.ReceiveSnapshot(m, data)
}

func (h *handlerProxy) ReportUnreachable(id pb.NodeID) {
	if r := h.r.Load(); r != nil {
		r.ReportUnreachable(id)
	}
}

func (h *handlerProxy) ReportSnapshot(id pb.NodeID, ok bool) {
	if r := h.r.Load(); r != nil {
		r.ReportSnapshot(id, ok)
	}
}

// filterSender drops what its owner sends over cut links: a partition.
type filterSender struct {
	self  pb.NodeID
	c     *cluster
	inner Sender
	proxy *handlerProxy
}

func (f *filterSender) Send(msgs []pb.Message) {
	kept := make([]pb.Message, 0, len(msgs))
	for _, m := range msgs {
		if !f.c.blocked(f.self, m.To) {
			kept = append(kept, m)
		} else {
			// As a real transport does once its connection breaks.
			f.proxy.ReportUnreachable(m.To)
		}
	}
	if len(kept) > 0 {
		f.inner.Send(kept)
	}
}

func (f *filterSender) SendSnapshot(m pb.Message, data io.ReadCloser, size int64) {
	if f.c.blocked(f.self, m.To) {
		data.Close()
		f.proxy.ReportSnapshot(m.To, false)
		return
	}
	f.inner.SendSnapshot(m, data, size)
}

// memNet delivers messages in process, for tests of the replica alone.
type memNet struct {
	mu       sync.Mutex
	handlers map[pb.NodeID]*handlerProxy
	wg       sync.WaitGroup
}

type memSender struct {
	n    *memNet
	self pb.NodeID
}

func (s *memSender) Send(msgs []pb.Message) {
	for _, m := range msgs {
		s.n.mu.Lock()
		h, self := s.n.handlers[m.To], s.n.handlers[s.self]
		s.n.mu.Unlock()
		if h == nil {
			if self != nil { // as a real transport does when it cannot dial
				self.ReportUnreachable(m.To)
			}
			continue
		}
		// Copy what a real transport would have encoded: the receiver must
		// not share memory with the sender's log.
		m.Entries = slices.Clone(m.Entries)
		for i := range m.Entries {
			m.Entries[i].Data = bytes.Clone(m.Entries[i].Data)
		}
		m.Context = bytes.Clone(m.Context)
		if m.Snapshot != nil {
			sn := *m.Snapshot
			sn.ConfState = cloneConfState(sn.ConfState)
			m.Snapshot = &sn
		}
		h.Step(m)
	}
}

func (s *memSender) SendSnapshot(m pb.Message, data io.ReadCloser, size int64) {
	s.n.mu.Lock()
	h, from := s.n.handlers[m.To], s.n.handlers[s.self]
	s.n.mu.Unlock()
	s.n.wg.Add(1)
	go func() {
		defer s.n.wg.Done()
		defer data.Close()
		ok := h != nil && h.ReceiveSnapshot(m, data) == nil
		if from != nil {
			from.ReportSnapshot(m.To, ok)
		}
	}()
}

// node is one member of a test cluster.
type node struct {
	id    pb.NodeID
	r     *Replica
	sm    *testSM
	st    Storage
	proxy *handlerProxy
	close func() // closes what the network side opened (transport)
	cc    []pb.ConfChange
	ccMu  sync.Mutex
}

// cluster runs members in process; by default over memNet and memStorage.
type cluster struct {
	t      testing.TB
	peers  []Peer
	cfg    func(*Config) // tweaks each member's config
	mu     sync.Mutex
	cut    map[[2]pb.NodeID]bool
	nodes  map[pb.NodeID]*node
	stores map[pb.NodeID]Storage
	net    *memNet

	// newStorage and attach are overridden for the TCP/WAL cluster.
	newStorage func(id pb.NodeID) Storage
	// reopen makes each start open the member's storage afresh (a process
	// restart reading its data dir) instead of reusing the object.
	reopen bool
	attach func(n *node) (Sender, error)
}

func newMemCluster(t testing.TB, size int, tweak func(*Config)) *cluster {
	c := &cluster{t: t, cfg: tweak, cut: make(map[[2]pb.NodeID]bool),
		nodes: make(map[pb.NodeID]*node), stores: make(map[pb.NodeID]Storage),
		net: &memNet{handlers: make(map[pb.NodeID]*handlerProxy)}}
	for i := 1; i <= size; i++ {
		c.peers = append(c.peers, Peer{ID: pb.NodeID(i), Addr: fmt.Sprintf("mem-%d", i)})
	}
	c.newStorage = func(pb.NodeID) Storage { return newMemStorage() }
	c.attach = func(n *node) (Sender, error) {
		c.net.mu.Lock()
		c.net.handlers[n.id] = n.proxy
		c.net.mu.Unlock()
		n.close = func() {
			c.net.mu.Lock()
			delete(c.net.handlers, n.id)
			c.net.mu.Unlock()
		}
		return &memSender{n: c.net, self: n.id}, nil
	}
	return c
}

func (c *cluster) blocked(from, to pb.NodeID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut[[2]pb.NodeID{from, to}]
}

// isolate cuts every link to and from id.
func (c *cluster) isolate(id pb.NodeID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.peers {
		if p.ID != id {
			c.cut[[2]pb.NodeID{id, p.ID}] = true
			c.cut[[2]pb.NodeID{p.ID, id}] = true
		}
	}
}

func (c *cluster) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cut)
}

func (c *cluster) startAll() {
	for _, p := range c.peers {
		c.start(p.ID)
	}
}

// start starts member id on its storage (created on first start).
func (c *cluster) start(id pb.NodeID) *node {
	c.t.Helper()
	st, ok := c.stores[id]
	if !ok || c.reopen {
		st = c.newStorage(id)
		c.stores[id] = st
	}
	n := &node{id: id, sm: &testSM{}, st: st}
	n.proxy = &handlerProxy{self: id, c: c}
	inner, err := c.attach(n)
	if err != nil {
		c.t.Fatalf("attach member %d: %v", id, err)
	}
	cfg := Config{
		ID: id, StateMachine: n.sm, Storage: st,
		Transport:     &filterSender{self: id, c: c, inner: inner, proxy: n.proxy},
		Peers:         c.peers,
		TickInterval:  10 * time.Millisecond,
		ElectionTicks: 10,
		OnConfChange: func(cc pb.ConfChange, _ pb.ConfState) {
			n.ccMu.Lock()
			n.cc = append(n.cc, cc)
			n.ccMu.Unlock()
		},
	}
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		c.t.Fatalf("new member %d: %v", id, err)
	}
	n.r = r
	n.proxy.r.Store(r)
	r.Start()
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return n
}

// kill stops member id abruptly: its network goes first, then the replica.
func (c *cluster) kill(id pb.NodeID) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n == nil {
		return
	}
	n.proxy.r.Store(nil)
	if n.close != nil {
		n.close()
	}
	n.r.Stop()
}

func (c *cluster) stopAll() {
	for _, p := range c.peers {
		c.kill(p.ID)
	}
	c.mu.Lock()
	ids := slices.Collect(maps.Keys(c.nodes))
	c.mu.Unlock()
	for _, id := range ids {
		c.kill(id)
	}
	c.net.wg.Wait()
}

func (c *cluster) node(id pb.NodeID) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *cluster) live() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := slices.Collect(maps.Values(c.nodes))
	slices.SortFunc(ns, func(a, b *node) int { return cmpID(a.id, b.id) })
	return ns
}

// waitLeader waits until the given members (default: all live) agree on a
// leader that is one of them, and returns it.
func (c *cluster) waitLeader(ids ...pb.NodeID) pb.NodeID {
	c.t.Helper()
	var lead pb.NodeID
	waitFor(c.t, 10*time.Second, "a leader", func() bool {
		var ns []*node
		if len(ids) == 0 {
			ns = c.live()
		} else {
			for _, id := range ids {
				if n := c.node(id); n != nil {
					ns = append(ns, n)
				}
			}
		}
		lead = pb.None
		for _, n := range ns {
			l := n.r.Leader()
			if l == pb.None || (lead != pb.None && l != lead) {
				return false
			}
			lead = l
		}
		for _, n := range ns {
			if n.id == lead {
				return n.r.IsLeader()
			}
		}
		return false
	})
	return lead
}

// propose proposes v through member id, retrying while there is no leader.
func (c *cluster) propose(id pb.NodeID, v string) any {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := c.node(id).r.Propose(ctx, []byte(v))
		cancel()
		if err == nil {
			return res
		}
		// Retry what did not commit or may not have: an early election can
		// cut the first proposals short. A retried value may be applied twice;
		// the checks only need every member to apply the same sequence.
		if time.Now().After(deadline) || !(errors.Is(err, ErrProposalDropped) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrOutcomeUnknown)) {
			c.t.Fatalf("propose %q via %d: %v", v, id, err)
		}
		c.waitLeader()
	}
}

// waitApplied waits until every live member has applied all of vs.
func (c *cluster) waitApplied(vs ...string) {
	c.t.Helper()
	defer func() {
		if c.t.Failed() {
			c.dump()
		}
	}()
	waitFor(c.t, 15*time.Second, "every member to apply", func() bool {
		for _, n := range c.live() {
			for _, v := range vs {
				if !n.sm.contains(v) {
					return false
				}
			}
		}
		return true
	})
}

// checkSameLog checks that every live member applied the same sequence.
func (c *cluster) checkSameLog() {
	c.t.Helper()
	var want []string
	var from pb.NodeID
	for _, n := range c.live() {
		got := n.sm.values()
		if want == nil {
			want, from = got, n.id
			continue
		}
		if !slices.Equal(got, want) {
			c.t.Fatalf("member %d applied %d values, member %d applied %d; they differ:\n%v\n%v", n.id, len(got), from, len(want), got, want)
		}
	}
}

// dump logs every live member's status (on failure).
func (c *cluster) dump() {
	for _, n := range c.live() {
		st := n.r.Status()
		c.t.Logf("member %d: role=%s term=%d lead=%d commit=%d applied=%d first=%d last=%d snap=%d values=%d progress=%+v",
			n.id, st.Role, st.Term, st.Leader, st.Commit, st.Applied, st.FirstIndex, st.LastIndex, st.SnapshotIndex, len(n.sm.values()), st.Progress)
	}
}
