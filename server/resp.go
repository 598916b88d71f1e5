package server

import (
	"context"
	"errors"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/redcon"

	"github.com/raftkv/raftkv/kv"
)

// respServer serves RESP2 clients. Each connection has a reader goroutine
// (parsing with a frameLimiter) and a writer goroutine; commands run on
// their own goroutines so that a pipeline's writes are proposed
// concurrently, and the writer answers them strictly in the order they were
// received.
//
// A client that waits for each reply before sending the next command (most
// of them) takes a shorter path: a command read alone while nothing is in
// flight runs on the reader goroutine, which writes its reply itself. That
// saves two goroutine hand-offs per command, and on a busy machine each
// hand-off is a thread wake-up and a context switch.
//
// Order within a connection: two pipelined commands that share a key, or a
// command that touches the whole keyspace (FLUSHDB, KEYS, SCAN, DBSIZE...),
// run one after the other in arrival order; commands on disjoint keys may
// run concurrently (they were in flight together, so any order between them
// is linearizable and the client cannot tell them apart).
type respServer struct {
	exec   *executor
	logger *slog.Logger
	cfg    Config

	ln      net.Listener
	nextID  atomic.Int64
	running atomic.Int64    // data commands dispatched and not finished
	ctx     context.Context // cancelled on close: aborts commands in flight
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[*clientConn]struct{}
	closing bool

	// idle hands work to a goroutine of runAfter's that is waiting for more
	// (see worker); idleWorkers counts those.
	idle        chan func()
	idleWorkers atomic.Int32
}

// clientConn is one client connection's state.
type clientConn struct {
	id      int64
	nc      net.Conn
	created time.Time

	mu   sync.Mutex
	name string

	// unwritten counts the slots handed to the writer and not yet written
	// out; at zero the writer is idle and the reader may answer a command
	// itself (handle). Only the reader raises it.
	unwritten atomic.Int64

	// Dependency tracking (reader goroutine only).
	byKey   map[uint64]keyDeps // by keyHash
	barrier *slot
	all     []*slot
}

// keyDeps are the in-flight commands of one connection on one key (or on
// the keys that share its keyHash): the latest write, and the reads issued
// since it. Reads of a key run concurrently with each other (one ReadIndex
// round serves them all); a write waits for both.
type keyDeps struct {
	write *slot
	reads []*slot
}

func (k *keyDeps) idle() bool {
	if k.write != nil && !k.write.finished() {
		return false
	}
	for _, r := range k.reads {
		if !r.finished() {
			return false
		}
	}
	return true
}

// slot is one command's place in the reply order.
type slot struct {
	done  chan struct{}
	reply reply
	quit  bool // close the connection after writing this reply
}

func (s *slot) finished() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func newRESPServer(exec *executor, cfg Config, ln net.Listener) *respServer {
	ctx, cancel := context.WithCancel(context.Background())
	return &respServer{exec: exec, cfg: cfg, logger: cfg.Logger, ln: ln, ctx: ctx, cancel: cancel, conns: map[*clientConn]struct{}{},
		idle: make(chan func())}
}

// serve accepts connections until the listener is closed.
func (s *respServer) serve() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logger.Warn("resp: accept", "err", err)
			// Back off briefly on errors such as EMFILE so the loop does not spin.
			select {
			case <-time.After(10 * time.Millisecond):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return
		}
		if len(s.conns) >= s.cfg.MaxConns {
			s.mu.Unlock()
			nc.Write([]byte("-ERR max number of clients reached\r\n"))
			nc.Close()
			s.exec.m.rejectedConns.Inc()
			continue
		}
		cc := &clientConn{id: s.nextID.Add(1), nc: nc, created: time.Now(), byKey: map[uint64]keyDeps{}}
		s.conns[cc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(cc)
	}
}

// stopAccepting closes the listener; connections already open keep being served.
func (s *respServer) stopAccepting() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.ln.Close()
}

// close stops accepting, aborts commands in flight and closes every connection.
func (s *respServer) close() {
	s.stopAccepting()
	s.cancel()
	s.mu.Lock()
	for cc := range s.conns {
		cc.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *respServer) handle(cc *clientConn) {
	defer s.wg.Done()
	s.exec.m.conns.Inc()
	defer s.exec.m.conns.Dec()
	pending := make(chan *slot, s.cfg.MaxPendingPerConn)
	writerDone := make(chan struct{})
	// One reply buffer, used by the writer goroutine, or by this one while
	// cc.unwritten is zero (the writer's decrement after its last use and
	// this goroutine's next send on pending order the two).
	w := redcon.NewWriter(deadlineWriter{cc.nc})
	go s.writeLoop(cc, w, pending, writerDone)

	rd := newFrameLimiter(cc.nc, s.cfg.MaxArgs, s.cfg.MaxValueBytes)
	var readErr error
	var run []batchedWrite // reused: dispatchBatch keeps nothing of it
	for readErr == nil {
		cmds, err := rd.commands()
		if err != nil {
			readErr = err
			break
		}
		if len(cmds) == 1 && cc.unwritten.Load() == 0 {
			r, quit := s.runInline(cc, cmds[0].args)
			r.writeTo(w)
			if err := w.Flush(); err != nil || quit {
				readErr = io.EOF
			}
			continue
		}
		// Consecutive plain writes become one proposal (see batchable);
		// anything else is dispatched on its own, after the run before it.
		runBytes := 0
		enqueue := func(sl *slot) bool {
			cc.unwritten.Add(1)
			select {
			case pending <- sl:
				return true
			case <-writerDone:
				return false
			}
		}
		flush := func() bool {
			if len(run) == 0 {
				return true
			}
			ok := true
			for _, sl := range s.dispatchBatch(cc, run) {
				ok = ok && enqueue(sl)
			}
			run, runBytes = run[:0], 0
			return ok
		}
		for _, cmd := range cmds {
			if w, ok := s.batchable(cmd.args); ok {
				run = append(run, w)
				runBytes += cmd.size
				if (len(run) >= maxBatchCommands || runBytes >= maxBatchBytes) && !flush() {
					readErr = io.EOF
					break
				}
				continue
			}
			if !flush() {
				readErr = io.EOF
				break
			}
			sl := s.dispatch(cc, cmd.args)
			if !enqueue(sl) || sl.quit {
				readErr = io.EOF
				break
			}
		}
		if readErr == nil && !flush() {
			readErr = io.EOF
		}
	}
	if isProtocolError(readErr) {
		// The frame is malformed: answer it after every earlier reply, then
		// close; there is no way to find where the next command starts.
		msg := readErr.Error()
		if !strings.HasPrefix(msg, "ERR ") {
			msg = "ERR " + msg
		}
		sl := &slot{done: make(chan struct{}), reply: errReply(msg), quit: true}
		close(sl.done)
		cc.unwritten.Add(1)
		select {
		case pending <- sl:
		case <-writerDone:
		}
		s.exec.m.protocolErrors.Inc()
	}
	close(pending)
	<-writerDone
	cc.nc.Close()
	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
}

// writeLoop writes replies in command order and flushes whenever it has
// caught up with the commands received, so that a pipeline is answered
// with few writes.
func (s *respServer) writeLoop(cc *clientConn, w *redcon.Writer, pending <-chan *slot, done chan<- struct{}) {
	defer close(done)
	var writeErr error
	for sl := range pending {
		if writeErr == nil {
			writeErr = writeReply(w, sl, pending)
			if writeErr != nil {
				cc.nc.Close()
			}
		}
		// Else drain so the reader never blocks; replies are lost with
		// the connection.
		cc.unwritten.Add(-1)
	}
	if writeErr == nil {
		_ = w.Flush()
	}
}

// writeReply writes sl's reply once its command is done, flushing what is
// ready before waiting for a slow command and after the last reply queued.
// It fails on a write error, and with io.EOF after a reply that closes the
// connection.
func writeReply(w *redcon.Writer, sl *slot, pending <-chan *slot) error {
	select {
	case <-sl.done:
	default:
		if err := w.Flush(); err != nil {
			<-sl.done
			return err
		}
		<-sl.done
	}
	sl.reply.writeTo(w)
	if sl.quit {
		_ = w.Flush()
		return io.EOF
	}
	if len(pending) == 0 {
		return w.Flush()
	}
	return nil
}

// clientWriteTimeout bounds one write of replies to a client.
const clientWriteTimeout = 30 * time.Second

// deadlineWriter sets a write deadline before each write: a client that
// stops reading its replies is disconnected after clientWriteTimeout instead
// of pinning its replies in memory forever.
type deadlineWriter struct{ nc net.Conn }

func (d deadlineWriter) Write(b []byte) (int, error) {
	_ = d.nc.SetWriteDeadline(time.Now().Add(clientWriteTimeout))
	return d.nc.Write(b)
}

// dispatch starts one command and returns its slot. Connection-local
// commands run here, on the reader goroutine, in order; the others run on
// their own goroutine once the earlier commands they depend on are done.
func (s *respServer) dispatch(cc *clientConn, args [][]byte) *slot {
	sl := &slot{done: make(chan struct{})}
	spec, name := s.lookupCounted(args)
	if isLocal(spec) {
		sl.reply, sl.quit = s.exec.runLocal(cc, spec, name, args)
		close(sl.done)
		return sl
	}
	deps := cc.dependencies(spec, args, sl)
	s.runAfter(deps, sl, func(ctx context.Context) {
		sl.reply = s.runData(ctx, spec, name, args)
	})
	return sl
}

// runInline runs one command on the reader goroutine and returns its
// reply. The caller has made sure nothing else of the connection is in
// flight, so the command depends on nothing and nothing depends on it.
func (s *respServer) runInline(cc *clientConn, args [][]byte) (r reply, quit bool) {
	spec, name := s.lookupCounted(args)
	if isLocal(spec) {
		return s.exec.runLocal(cc, spec, name, args)
	}
	s.running.Add(1)
	defer s.running.Add(-1)
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	return s.runData(ctx, spec, name, args), false
}

// lookupCounted finds the command's spec (lookup) and counts the command
// in the per-command metric.
func (s *respServer) lookupCounted(args [][]byte) (*cmdSpec, string) {
	spec, name := lookup(args)
	s.exec.m.commands.WithLabelValues(metricName(spec, name)).Inc()
	return spec, name
}

// isLocal reports whether a command is answered without touching the data
// (and at once): unknown commands, and commands such as PING, ECHO or
// CLIENT that read no key.
func isLocal(spec *cmdSpec) bool {
	return spec == nil || spec.flags&flagConn != 0 || spec.flags&(flagRead|flagWrite|flagKeyspace) == 0
}

// runData runs a data command and observes its latency.
func (s *respServer) runData(ctx context.Context, spec *cmdSpec, name string, args [][]byte) reply {
	start := time.Now()
	r := s.exec.run(ctx, spec, name, args)
	s.exec.m.commandSeconds.WithLabelValues(spec.name).Observe(time.Since(start).Seconds())
	return r
}

// A run of pipelined writes is cut into batches of at most this many
// commands and (about) this many bytes, so one entry stays well below the
// transport's message size and one slow batch holds few replies back.
const (
	maxBatchCommands = 256
	maxBatchBytes    = 1 << 20
)

// batchedWrite is a parsed write waiting to join a batch.
type batchedWrite struct {
	spec *cmdSpec
	args [][]byte
	cmd  kv.Command
}

// batchable reports whether args is a write that can share a proposal with
// the writes around it: a known single- or multi-key write, well formed,
// that does not touch the whole keyspace. Anything else (errors included)
// goes through dispatch, which answers it on its own.
func (s *respServer) batchable(args [][]byte) (batchedWrite, bool) {
	spec, _ := lookup(args)
	if spec == nil || spec.flags&flagWrite == 0 || spec.flags&(flagKeyspace|flagConn) != 0 || !spec.arityOK(args) || hasTooLarge(args) {
		return batchedWrite{}, false
	}
	cmd, r := parseWrite(spec, args)
	if r != nil {
		return batchedWrite{}, false
	}
	return batchedWrite{spec: spec, args: args, cmd: cmd}, true
}

// dispatchBatch proposes a run of pipelined writes as one entry and returns
// their slots, in order. The run waits for the earlier commands its keys
// depend on, as a single command would; later commands depend on the run
// as a whole. Applying the run atomically in arrival order is a valid
// linearization: every command in it was sent before any was answered.
func (s *respServer) dispatchBatch(cc *clientConn, run []batchedWrite) []*slot {
	// One done channel for the whole run: the writer finds every reply of
	// the run ready at once and answers them with one write.
	whole := &slot{done: make(chan struct{})} // what later commands wait for
	slots := make([]*slot, len(run))
	own := make([]slot, len(run)) // one allocation for the run's slots
	cmds := make([]kv.Command, len(run))
	seconds := make([]prometheus.Observer, len(run))
	var deps []*slot
	var count prometheus.Counter
	for i, w := range run {
		if i > 0 && w.spec == run[i-1].spec {
			seconds[i] = seconds[i-1] // pipelines mostly repeat one command
		} else {
			seconds[i] = s.exec.m.commandSeconds.WithLabelValues(w.spec.name)
			count = s.exec.m.commands.WithLabelValues(w.spec.name)
		}
		count.Inc()
		own[i].done = whole.done
		slots[i] = &own[i]
		cmds[i] = w.cmd
		deps = append(deps, cc.dependencies(w.spec, w.args, whole)...)
	}
	s.runAfter(deps, whole, func(ctx context.Context) {
		start := time.Now()
		replies := s.exec.writeBatch(ctx, cmds)
		took := time.Since(start).Seconds()
		for i, sl := range slots {
			sl.reply = replies[i]
			seconds[i].Observe(took)
		}
	})
	return slots
}

// runAfter runs f on a goroutine of its own once every command in deps is
// done (or the server is closing), with the request timeout, and then
// closes sl.done.
func (s *respServer) runAfter(deps []*slot, sl *slot, f func(ctx context.Context)) {
	s.running.Add(1)
	run := func() {
		defer s.running.Add(-1)
		defer close(sl.done)
		for _, d := range deps {
			select {
			case <-d.done:
			case <-s.ctx.Done():
			}
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
		defer cancel()
		f(ctx)
	}
	select {
	case s.idle <- run:
	default:
		s.wg.Add(1) // the caller is a connection's goroutine, itself counted
		go s.worker(run)
	}
}

// maxIdleWorkers bounds the goroutines of runAfter's kept waiting for work
// after a burst (each holds its grown stack).
const maxIdleWorkers = 256

// worker runs f, then whatever runAfter hands it next, until the server
// closes or maxIdleWorkers others are already waiting. Goroutines are
// reused rather than started per command because a fresh one starts with a
// 2 KiB stack and proposing needs more: growing (copying) it cost about 4%
// of the leader's CPU under pipelined writes; a reused goroutine keeps its
// stack.
func (s *respServer) worker(f func()) {
	defer s.wg.Done()
	for {
		f()
		if s.idleWorkers.Add(1) > maxIdleWorkers {
			s.idleWorkers.Add(-1)
			return
		}
		select {
		case f = <-s.idle:
			s.idleWorkers.Add(-1)
		case <-s.ctx.Done():
			return
		}
	}
}

// keySeed seeds keyHash.
var keySeed = maphash.MakeSeed()

// keyHash names a key in the dependency bookkeeping. Two keys that share a
// hash (one chance in 2^64) only make a command wait for one it need not
// wait for; hashing saves copying every pipelined key into a map (two
// allocations per write).
func keyHash(k []byte) uint64 { return maphash.Bytes(keySeed, k) }

// dependencies returns the in-flight commands sl must wait for, and records
// sl as the latest user of its keys.
func (cc *clientConn) dependencies(spec *cmdSpec, args [][]byte, sl *slot) []*slot {
	// Forget finished commands so the bookkeeping stays as small as the pipeline.
	live := cc.all[:0]
	for _, p := range cc.all {
		if !p.finished() {
			live = append(live, p)
		}
	}
	for i := len(live); i < len(cc.all); i++ {
		cc.all[i] = nil
	}
	cc.all = live
	if len(cc.byKey) > 2*len(cc.all)+64 {
		for k, kd := range cc.byKey {
			if kd.idle() {
				delete(cc.byKey, k)
			}
		}
	}
	if cc.barrier != nil && cc.barrier.finished() {
		cc.barrier = nil
	}

	var deps []*slot
	if spec.flags&flagKeyspace != 0 {
		deps = append(deps, cc.all...)
		cc.barrier = sl
		clear(cc.byKey)
	} else {
		if cc.barrier != nil {
			deps = append(deps, cc.barrier)
		}
		write := spec.flags&flagWrite != 0
		for _, k := range spec.keys(args) {
			h := keyHash(k)
			kd := cc.byKey[h]
			if kd.write != nil && kd.write != sl && !kd.write.finished() {
				deps = append(deps, kd.write)
			}
			if !write {
				live := kd.reads[:0]
				for _, r := range kd.reads {
					if !r.finished() {
						live = append(live, r)
					}
				}
				if len(live) == 0 || live[len(live)-1] != sl { // a key named twice
					live = append(live, sl)
				}
				kd.reads = live
				cc.byKey[h] = kd
				continue
			}
			for _, r := range kd.reads {
				if r != sl && !r.finished() {
					deps = append(deps, r)
				}
			}
			kd.write, kd.reads = sl, nil
			cc.byKey[h] = kd
		}
	}
	if len(cc.all) == 0 || cc.all[len(cc.all)-1] != sl { // a batch registers once
		cc.all = append(cc.all, sl)
	}
	return deps
}
