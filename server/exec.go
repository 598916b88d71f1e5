package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/replica"
)

// node is what the server needs of the replica: proposals and linearizable
// read barriers. *replica.Replica satisfies it; tests use fakes. Propose
// must not keep data once it returns: the executor reuses the buffer.
type node interface {
	Propose(ctx context.Context, data []byte) (any, error)
	ReadIndex(ctx context.Context) error
}

// kvReads is the read side of the state machine, called concurrently with
// Apply. now is the reader's clock in Unix ms: a key whose deadline is <= now
// reads as absent (the sweep that deletes it may not have been applied yet).
// *kv.Store satisfies it.
type kvReads interface {
	Get(key []byte, now int64) ([]byte, bool)
	Exists(keys [][]byte, now int64) int64
	Strlen(key []byte, now int64) int64
	PTTL(key []byte, now int64) int64 // -2: no such key, -1: no TTL, else milliseconds left
	TTL(key []byte, now int64) int64
	Type(key []byte, now int64) string
	Keys(pattern []byte, now int64) []string
	Scan(cursor uint64, match []byte, count int, now int64) (next uint64, keys []string)
	DBSize() int64
}

// executor runs data commands: it parses arguments, proposes writes, serves
// reads after a ReadIndex barrier, and turns results and errors into RESP.
type executor struct {
	node  node
	store kvReads
	cfg   Config
	info  func() string // INFO's text (sections chosen by the member)

	session  uint64 // random per process: the dedup identity of this member's proposals
	seqs     seqTracker
	inflight atomic.Int64 // bytes of proposals in flight
	clock    func() time.Time
	m        *metrics
}

func newExecutor(n node, store kvReads, cfg Config, session uint64, m *metrics) *executor {
	return &executor{node: n, store: store, cfg: cfg, session: session, clock: time.Now, m: m, info: func() string { return "" },
		seqs: seqTracker{low: 1, live: map[uint64]struct{}{}}}
}

// seqTracker hands out the dedup seqs of this member's session and knows
// the lowest one still in flight: every seq below it has been answered or
// given up on and will never be proposed again, which each command tells
// the store (kv.Command.Ack) so that it can forget their results at once.
type seqTracker struct {
	mu   sync.Mutex
	last uint64              // the last seq handed out
	low  uint64              // every seq below low is resolved
	live map[uint64]struct{} // handed out and not yet resolved
}

// take hands out n consecutive seqs, the first of which is returned, and
// the current acknowledgement (<= first).
func (t *seqTracker) take(n int) (first, ack uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	first = t.last + 1
	t.last += uint64(n)
	for seq := first; seq <= t.last; seq++ {
		t.live[seq] = struct{}{}
	}
	return first, t.low
}

// done resolves the n seqs from first: their proposer will not propose
// them again.
func (t *seqTracker) done(first uint64, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for seq := first; seq < first+uint64(n); seq++ {
		delete(t.live, seq)
	}
	for t.low <= t.last {
		if _, ok := t.live[t.low]; ok {
			break
		}
		t.low++
	}
}

// Errors of the cluster, as RESP error replies. Their first word is the
// error code clients switch on.
const (
	msgNoLeader = "CLUSTERDOWN no leader: the cluster has no leader or no quorum right now; retry later"
	msgBusy     = "TRYAGAIN member overloaded; retry later"
	msgTimeout  = "TRYAGAIN the cluster did not answer in time (no leader or no quorum?); retry later"
	msgUnknown  = "UNKNOWN outcome of write is unknown: it may or may not have been applied (leader changed or timed out before the commit was observed)"
	msgStopping = "CLUSTERDOWN member is shutting down; retry on another member"
	msgTooLarge = "ERR value is too large (max %d bytes; see --max-value-size)"
	msgInflight = "TRYAGAIN too many bytes of writes in flight on this member; retry later"
	msgNoProto  = "NOPROTO unsupported protocol version"
)

// runLocal answers commands that do not touch the data (or fail before
// reaching it): unknown commands, arity errors, PING, ECHO, INFO, COMMAND,
// and the connection commands. quit asks the connection to close after the reply.
func (e *executor) runLocal(cc *clientConn, spec *cmdSpec, name string, args [][]byte) (r reply, quit bool) {
	if len(args) == 0 {
		return errReply("ERR empty command"), false
	}
	if spec == nil {
		return unknownCommand(args[0], args[1:]), false
	}
	if !spec.arityOK(args) {
		return wrongArity(spec.name), false
	}
	switch spec.name {
	case "ping":
		switch len(args) {
		case 1:
			return pongReply, false
		case 2:
			return bulkReply(args[1]), false
		}
		return wrongArity("ping"), false
	case "echo":
		return bulkReply(args[1]), false
	case "info":
		return bulkString(e.info()), false
	case "command":
		return commandReply(args), false
	case "select":
		n, ok := parseInt(args[1])
		if !ok {
			return errReply(msgNotInteger), false
		}
		if n != 0 {
			return errReply(msgDBIndex), false
		}
		return okReply, false
	case "quit":
		return okReply, true
	case "reset":
		if cc != nil {
			cc.mu.Lock()
			cc.name = ""
			cc.mu.Unlock()
		}
		return simpleReply("RESET"), false
	case "hello":
		return e.hello(cc, args), false
	case "client":
		return e.client(cc, args), false
	}
	// A data command reached runLocal: only possible when called directly
	// (fuzzing, tests); run it synchronously.
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RequestTimeout)
	defer cancel()
	return e.run(ctx, spec, name, args), false
}

// run executes a data command (read or write). It never panics on any input.
func (e *executor) run(ctx context.Context, spec *cmdSpec, name string, args [][]byte) reply {
	if spec == nil {
		return unknownCommand(args[0], args[1:])
	}
	if !spec.arityOK(args) {
		return wrongArity(spec.name)
	}
	if hasTooLarge(args) {
		return errReply(fmt.Sprintf(msgTooLarge, e.cfg.MaxValueBytes))
	}
	if spec.flags&flagWrite != 0 {
		cmd, r := parseWrite(spec, args)
		if r != nil {
			return r
		}
		return e.write(ctx, cmd)
	}
	if spec.flags&flagRead != 0 {
		return e.read(ctx, spec, args)
	}
	r, _ := e.runLocal(nil, spec, name, args)
	return r
}

// parseWrite turns a write command's arguments into a kv.Command, or an
// error reply for bad syntax (Redis 7's messages).
func parseWrite(spec *cmdSpec, args [][]byte) (kv.Command, reply) {
	var c kv.Command
	switch spec.name {
	case "set":
		c.Op, c.Key, c.Value = kv.OpSet, args[1], args[2]
		var expiry kv.Flag
		for i := 3; i < len(args); i++ {
			a := args[i]
			switch {
			case eqFold(a, "nx") && c.Flags&kv.FlagXX == 0:
				c.Flags |= kv.FlagNX
			case eqFold(a, "xx") && c.Flags&kv.FlagNX == 0:
				c.Flags |= kv.FlagXX
			case eqFold(a, "get"):
				c.Flags |= kv.FlagGet
			case eqFold(a, "keepttl") && expiry == 0:
				c.Flags |= kv.FlagKeepTTL
			case (eqFold(a, "ex") || eqFold(a, "px") || eqFold(a, "exat") || eqFold(a, "pxat")) &&
				expiry == 0 && c.Flags&kv.FlagKeepTTL == 0 && i+1 < len(args):
				switch strings.ToLower(string(a)) {
				case "ex":
					expiry = kv.FlagEX
				case "px":
					expiry = kv.FlagPX
				case "exat":
					expiry = kv.FlagEXAT
				default:
					expiry = kv.FlagPXAT
				}
				i++
				n, ok := parseInt(args[i])
				if !ok {
					return c, errReply(msgNotInteger)
				}
				if n <= 0 || (expiry&(kv.FlagEX|kv.FlagEXAT) != 0 && n > math.MaxInt64/1000) {
					return c, errReply("ERR invalid expire time in 'set' command")
				}
				c.Int = n
				c.Flags |= expiry
			default:
				return c, errReply(msgSyntax)
			}
		}
	case "setnx":
		c.Op, c.Key, c.Value = kv.OpSetNX, args[1], args[2]
	case "getset":
		c.Op, c.Key, c.Value = kv.OpGetSet, args[1], args[2]
	case "getdel":
		c.Op, c.Key = kv.OpGetDel, args[1]
	case "del":
		c.Op, c.Keys = kv.OpDel, args[1:]
	case "unlink":
		c.Op, c.Keys = kv.OpUnlink, args[1:]
	case "append":
		c.Op, c.Key, c.Value = kv.OpAppend, args[1], args[2]
	case "incr":
		c.Op, c.Key, c.Int = kv.OpIncrBy, args[1], 1
	case "decr":
		c.Op, c.Key, c.Int = kv.OpDecrBy, args[1], 1
	case "incrby", "decrby":
		n, ok := parseInt(args[2])
		if !ok {
			return c, errReply(msgNotInteger)
		}
		c.Op, c.Key, c.Int = kv.OpIncrBy, args[1], n
		if spec.name == "decrby" {
			c.Op = kv.OpDecrBy
		}
	case "mset":
		if len(args)%2 != 1 {
			return c, wrongArity("mset")
		}
		c.Op = kv.OpMSet
		n := (len(args) - 1) / 2
		c.Keys = make([][]byte, n)
		c.Values = make([][]byte, n)
		for i := 0; i < n; i++ {
			c.Keys[i], c.Values[i] = args[1+2*i], args[2+2*i]
		}
	case "expire", "pexpire":
		n, ok := parseInt(args[2])
		if !ok {
			return c, errReply(msgNotInteger)
		}
		c.Op, c.Key, c.Int = kv.OpExpire, args[1], n
		if spec.name == "pexpire" {
			c.Op = kv.OpPExpire
		} else if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return c, errReply("ERR invalid expire time in 'expire' command")
		}
		for _, a := range args[3:] {
			switch {
			case eqFold(a, "nx"):
				c.Flags |= kv.FlagNX
			case eqFold(a, "xx"):
				c.Flags |= kv.FlagXX
			case eqFold(a, "gt"):
				c.Flags |= kv.FlagGT
			case eqFold(a, "lt"):
				c.Flags |= kv.FlagLT
			default:
				return c, errReply("ERR Unsupported option " + sanitizeError(clip(string(a), 128)))
			}
		}
		if c.Flags&kv.FlagNX != 0 && c.Flags&(kv.FlagXX|kv.FlagGT|kv.FlagLT) != 0 {
			return c, errReply(kv.ErrMsgExpireFlagsNXXX)
		}
		if c.Flags&kv.FlagGT != 0 && c.Flags&kv.FlagLT != 0 {
			return c, errReply(kv.ErrMsgExpireFlagsGTLT)
		}
	case "persist":
		c.Op, c.Key = kv.OpPersist, args[1]
	case "flushdb", "flushall":
		if len(args) > 2 || (len(args) == 2 && !eqFold(args[1], "sync") && !eqFold(args[1], "async")) {
			return c, errReply(msgSyntax)
		}
		c.Op = kv.OpFlush
	default:
		return c, unknownCommand(args[0], args[1:])
	}
	return c, nil
}

// write proposes c and waits for its result.
func (e *executor) write(ctx context.Context, c kv.Command) reply {
	first, ack := e.seqs.take(1)
	defer e.seqs.done(first, 1)
	e.stamp(&c, first, ack)
	res, r := e.propose(ctx, &c, 1)
	if r != nil {
		return r
	}
	return resultReply(res)
}

// writeBatch proposes cmds, a connection's pipelined writes, as one OpBatch
// entry: they apply in order, atomically, and cost one proposal instead of
// len(cmds). It returns one reply per command.
func (e *executor) writeBatch(ctx context.Context, cmds []kv.Command) []reply {
	replies := make([]reply, len(cmds))
	if len(cmds) == 1 {
		replies[0] = e.write(ctx, cmds[0])
		return replies
	}
	first, ack := e.seqs.take(len(cmds))
	defer e.seqs.done(first, len(cmds))
	for i := range cmds {
		e.stamp(&cmds[i], first+uint64(i), ack)
	}
	res, r := e.propose(ctx, &kv.Command{Op: kv.OpBatch, Batch: cmds}, len(cmds))
	if r == nil {
		if results, ok := res.([]kv.Result); ok && len(results) == len(cmds) {
			for i := range results {
				replies[i] = kvReply(results[i])
			}
			return replies
		}
		r = errReply(fmt.Sprintf("ERR internal: unexpected batch result %T", res))
	}
	for i := range replies {
		replies[i] = r
	}
	return replies
}

// stamp gives c this member's dedup identity and clock.
func (e *executor) stamp(c *kv.Command, seq, ack uint64) {
	c.Session, c.Seq, c.Ack = e.session, seq, ack
	c.Now = e.clock().UnixMilli()
}

// propose replicates c (which carries n client commands) and returns the
// state machine's result, or an error reply. A proposal that Raft dropped,
// or whose outcome became unknown (leader change), is proposed again with
// the same Session and Seq until the deadline: the store's dedup table
// applies each command at most once and answers a repeat with the first
// result, so the client gets a definite answer through a failover whenever
// one is possible.
func (e *executor) propose(ctx context.Context, c *kv.Command, n int) (any, reply) {
	buf := encodeBufs.Get().(*[]byte)
	defer putEncodeBuf(buf)
	data, err := c.AppendBinary((*buf)[:0])
	*buf = data
	if err != nil {
		return nil, errReply("ERR " + sanitizeError(err.Error()))
	}
	size := int64(len(data))
	if e.inflight.Add(size) > e.cfg.MaxInflightBytes {
		e.inflight.Add(-size)
		e.m.proposalsFailed.WithLabelValues("inflight").Add(float64(n))
		return nil, errReply(msgInflight)
	}
	defer e.inflight.Add(-size)

	start := time.Now()
	e.m.proposals.Add(float64(n))
	e.m.proposalsTotal.Add(uint64(n))
	unknown := false
	var b backoff
	for {
		res, err := e.node.Propose(ctx, data)
		if err == nil {
			took := time.Since(start)
			for range n {
				e.m.proposalSeconds.Observe(took.Seconds())
			}
			e.m.latency.observe(took, n)
			return res, nil
		}
		if errors.Is(err, replica.ErrOutcomeUnknown) {
			unknown = true
		}
		retryable := errors.Is(err, replica.ErrOutcomeUnknown) || errors.Is(err, replica.ErrProposalDropped) ||
			errors.Is(err, replica.ErrNoLeader) || errors.Is(err, replica.ErrBusy)
		// On ctx's end the last cause says more than "deadline".
		if !retryable || errors.Is(err, replica.ErrStopped) || !b.wait(ctx) {
			return nil, e.writeError(err, unknown, n)
		}
	}
}

// backoff spaces the attempts of a request retried until its deadline: 5 ms
// first, doubling up to 100 ms, so that a retry through an election neither
// spins nor waits long after a leader is back.
type backoff struct{ next time.Duration }

// wait sleeps before the next attempt and reports false, at once, if ctx
// has ended or ends first.
func (b *backoff) wait(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	if b.next == 0 {
		b.next = 5 * time.Millisecond
	}
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, 100*time.Millisecond)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// encodeBufs holds the buffers propose encodes commands into. Propose
// copies its data before returning, so a buffer is free again once propose
// returns; reusing it saves allocating and zeroing the whole encoded batch
// (a few KiB for a 16-command pipeline) on every proposal.
var encodeBufs = sync.Pool{New: func() any { return new([]byte) }}

// putEncodeBuf returns b to encodeBufs unless it grew large (a big MSET):
// the pool should not pin megabytes.
func putEncodeBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		encodeBufs.Put(b)
	}
}

// writeError turns a failed proposal into a RESP error. unknown: some
// attempt may have committed, so the client must not be told it failed.
func (e *executor) writeError(err error, unknown bool, n int) reply {
	switch {
	case unknown || errors.Is(err, replica.ErrOutcomeUnknown):
		e.m.proposalsFailed.WithLabelValues("unknown").Add(float64(n))
		return errReply(msgUnknown)
	case errors.Is(err, replica.ErrStopped):
		e.m.proposalsFailed.WithLabelValues("stopped").Add(float64(n))
		return errReply(msgStopping)
	case errors.Is(err, replica.ErrBusy):
		e.m.proposalsFailed.WithLabelValues("busy").Add(float64(n))
		return errReply(msgBusy)
	case errors.Is(err, replica.ErrNoLeader), errors.Is(err, replica.ErrProposalDropped):
		e.m.proposalsFailed.WithLabelValues("noleader").Add(float64(n))
		return errReply(msgNoLeader)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e.m.proposalsFailed.WithLabelValues("timeout").Add(float64(n))
		return errReply(msgTimeout)
	}
	e.m.proposalsFailed.WithLabelValues("other").Add(float64(n))
	return errReply("ERR " + sanitizeError(err.Error()))
}

// resultReply turns a kv.Result into RESP.
func resultReply(res any) reply {
	r, ok := res.(kv.Result)
	if !ok {
		if p, okp := res.(*kv.Result); okp && p != nil {
			r, ok = *p, true
		}
	}
	if !ok {
		return errReply(fmt.Sprintf("ERR internal: unexpected result %T", res))
	}
	return kvReply(r)
}

// kvReply is resultReply for a kv.Result in hand (passing it as an any
// would box it: an allocation per pipelined write).
func kvReply(r kv.Result) reply {
	switch r.Kind {
	case kv.KindOK:
		return okReply
	case kv.KindNil:
		return nilReply{}
	case kv.KindInt:
		return intReply(r.Int)
	case kv.KindBulk:
		return bulkReply(r.Bulk)
	case kv.KindError:
		return errReply(sanitizeError(r.Err))
	}
	return errReply(fmt.Sprintf("ERR internal: unexpected result kind %d", r.Kind))
}

// barrier makes the following read linearizable: it returns once this
// member has applied everything committed before the read began (ReadIndex,
// thesis §6.4). In stale mode it returns at once.
func (e *executor) barrier(ctx context.Context) reply {
	if e.cfg.StaleReads {
		return nil
	}
	start := time.Now()
	var b backoff
	for {
		err := e.node.ReadIndex(ctx)
		if err == nil {
			e.m.readIndexSeconds.Observe(time.Since(start).Seconds())
			return nil
		}
		retryable := errors.Is(err, replica.ErrNoLeader) || errors.Is(err, replica.ErrBusy) || errors.Is(err, replica.ErrProposalDropped)
		if !retryable || !b.wait(ctx) {
			return e.readError(err)
		}
	}
}

func (e *executor) readError(err error) reply {
	e.m.readsFailed.Inc()
	switch {
	case errors.Is(err, replica.ErrStopped):
		return errReply(msgStopping)
	case errors.Is(err, replica.ErrBusy):
		return errReply(msgBusy)
	case errors.Is(err, replica.ErrNoLeader):
		return errReply(msgNoLeader)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errReply(msgTimeout)
	}
	return errReply("ERR " + sanitizeError(err.Error()))
}

// read serves a read command after the barrier. Argument syntax is checked
// first, so a bad command costs no ReadIndex round.
func (e *executor) read(ctx context.Context, spec *cmdSpec, args [][]byte) reply {
	var scanCursor uint64
	scanMatch, scanCount := "*", 10
	if spec.name == "scan" {
		cur, err := strconv.ParseUint(string(args[1]), 10, 64)
		if err != nil {
			return errReply(msgInvalidCursor)
		}
		scanCursor = cur
		for i := 2; i < len(args); i += 2 {
			if i+1 >= len(args) {
				return errReply(msgSyntax)
			}
			switch {
			case eqFold(args[i], "match"):
				scanMatch = string(args[i+1])
			case eqFold(args[i], "count"):
				n, ok := parseInt(args[i+1])
				if !ok {
					return errReply(msgNotInteger)
				}
				if n < 1 {
					return errReply(msgSyntax)
				}
				if n > 1<<20 {
					n = 1 << 20
				}
				scanCount = int(n)
			case eqFold(args[i], "type"):
				if !eqFold(args[i+1], "string") {
					// Only strings exist: a scan for another type matches nothing.
					scanMatch = "\x00raftkv:no-such-type"
				}
			default:
				return errReply(msgSyntax)
			}
		}
	}
	if r := e.barrier(ctx); r != nil {
		return r
	}
	now := e.clock().UnixMilli()
	s := e.store
	switch spec.name {
	case "get":
		if v, ok := s.Get(args[1], now); ok {
			return bulkReply(v)
		}
		return nilReply{}
	case "mget":
		// Get per key rather than MGet: MGet cannot tell an empty value
		// from a missing key (both nil).
		out := make(arrayReply, len(args)-1)
		for i, k := range args[1:] {
			if v, ok := s.Get(k, now); ok {
				out[i] = bulkReply(v)
			} else {
				out[i] = nilReply{}
			}
		}
		return out
	case "exists":
		return intReply(s.Exists(args[1:], now))
	case "strlen":
		return intReply(s.Strlen(args[1], now))
	case "ttl":
		return intReply(s.TTL(args[1], now))
	case "pttl":
		return intReply(s.PTTL(args[1], now))
	case "type":
		return simpleReply(s.Type(args[1], now))
	case "keys":
		return bulkStrings(s.Keys(args[1], now))
	case "scan":
		next, keys := s.Scan(scanCursor, []byte(scanMatch), scanCount, now)
		return arrayReply{bulkString(strconv.FormatUint(next, 10)), bulkStrings(keys)}
	case "dbsize":
		return intReply(s.DBSize())
	}
	return unknownCommand(args[0], args[1:])
}
