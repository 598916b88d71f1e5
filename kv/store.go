package kv

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Defaults for Config.
const (
	// DefaultDedupWindow is how long (in entry time) the dedup table remembers
	// an applied proposal: far longer than any proposer retries.
	DefaultDedupWindow = 5 * time.Minute
	// DefaultDedupMaxEntries caps the dedup table (about 100 bytes per entry
	// plus the values of GET-style results: ~50 MB at the cap).
	DefaultDedupMaxEntries = 1 << 19
	// DefaultMaxStringSize is Redis's proto-max-bulk-len: 512 MiB.
	DefaultMaxStringSize = 512 << 20
)

// Config configures a Store.
//
// DedupWindow, DedupMaxEntries and MaxStringSize decide how entries apply:
// they must be identical on every member of a cluster (like the log itself).
// Leave them zero for the defaults.
type Config struct {
	// DedupWindow: proposals applied longer ago than this (in entry time) are
	// forgotten. Zero means DefaultDedupWindow.
	DedupWindow time.Duration
	// DedupMaxEntries: at most this many proposals are remembered; the oldest
	// are forgotten first. Zero means DefaultDedupMaxEntries.
	DedupMaxEntries int
	// MaxStringSize: APPEND refuses to grow a value beyond this many bytes
	// (a limit on single arguments, such as SET's value, is the server's).
	// Zero means DefaultMaxStringSize.
	MaxStringSize int64
	// Logger receives rare events (restores, snapshots). Nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.DedupMaxEntries == 0 {
		c.DedupMaxEntries = DefaultDedupMaxEntries
	}
	if c.MaxStringSize == 0 {
		c.MaxStringSize = DefaultMaxStringSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.DedupWindow < 0 || (c.DedupWindow > 0 && c.DedupWindow < time.Millisecond) {
		errs = append(errs, fmt.Errorf("kv: dedup window %v: must be at least 1ms (or 0 for the default)", c.DedupWindow))
	}
	if c.DedupMaxEntries < 0 {
		errs = append(errs, fmt.Errorf("kv: dedup max entries %d: must not be negative", c.DedupMaxEntries))
	}
	if c.MaxStringSize < 0 {
		errs = append(errs, fmt.Errorf("kv: max string size %d: must not be negative", c.MaxStringSize))
	}
	return errors.Join(errs...)
}

// tombstone marks, in an overlay layer, a key deleted since the layers below
// were frozen. The bottom layer never holds tombstones.
const tombstone = -1

// item is one stored value.
//
// Invariants: val is never nil for a live item, and bytes [0, len(val)) are
// never modified once stored (APPEND may write beyond len(val) into spare
// capacity, which no other holder of the slice reads), so values are shared
// freely with frozen layers, results and readers. exp is the deadline in Unix
// ms (0: none; > 0 otherwise; tombstone in overlays).
type item struct {
	val []byte
	exp int64
}

// layer is one generation of the keyspace. The live view is the layers read
// top-down; writes go to the top. A layer below the top is frozen: it changes
// only when merged down, and never while a snapshot pins it.
type layer struct {
	m    map[string]item
	pins int // snapshots still reading this layer (guarded by Store.mu)
}

func newLayer(size int) *layer { return &layer{m: make(map[string]item, size)} }

// Store is raftkv's state machine: Redis strings with TTLs, a dedup table for
// retried proposals, and streaming snapshots. It implements
// replica.StateMachine.
//
// Concurrency: Apply, Snapshot and Restore are called from the replica
// goroutine only (never concurrently with each other); the SnapshotFunc runs on
// any goroutine concurrently with later Applies; every read method (Get, TTL,
// Keys, Scan, Stats, ...) may be called from any goroutine at any time. Reads
// take a shared lock; Apply takes the exclusive lock once per entry, so a
// large batch does not stall readers for its whole length.
//
// Snapshots are copy-on-write: Snapshot freezes the current layers and pushes
// an empty overlay that receives later writes; when no snapshot reads the
// frozen layers any more, Apply merges the overlays down a bounded number of
// keys at a time. Memory while a snapshot streams: the dataset once, plus one
// map entry per distinct key written or deleted since (values are shared, not
// copied), plus the dedup table's chunk list.
type Store struct {
	cfg    Config
	log    *slog.Logger
	window int64 // cfg.DedupWindow in ms

	applied atomic.Uint64 // last applied index (also written under mu)

	mu      sync.RWMutex
	layers  []*layer         // bottom first; never empty
	lastNow int64            // max Now applied so far: Apply's clock
	keys    int              // live keys, including expired ones not yet removed (as Redis's DBSIZE)
	bytes   int64            // sum of len(key)+len(value) over live keys
	ttl     map[string]int64 // deadline of each live key that has one (ExpiredKeys)
	scan    *scanIndex       // live keys in hash order (Scan)
	writes  uint64           // keys written or removed, ever: paces overlay merging
	dedup   dedupTable

	// batchBuf is the array Apply decodes a batch's commands into, reused
	// from entry to entry (Apply runs on the replica's goroutine only).
	batchBuf []Command
}

// maxBatchBuf bounds the batch scratch a Store keeps: a larger batch (a
// long pipeline) decodes into an array of its own.
const maxBatchBuf = 256

// New returns an empty Store.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{cfg: cfg, log: cfg.Logger, window: cfg.DedupWindow.Milliseconds()}
	s.layers = []*layer{newLayer(0)}
	s.ttl = make(map[string]int64)
	s.scan = newScanIndex()
	s.dedup = newDedupTable(s.window, cfg.DedupMaxEntries)
	return s, nil
}

// Applied returns the index of the last applied entry (0 before any).
func (s *Store) Applied() pb.Index { return pb.Index(s.applied.Load()) }

// Apply applies committed entries in order and returns one result per entry:
// a Result for a Command, a []Result for an OpBatch, nil for an entry that
// carries none (an empty entry or a configuration change, which the replica
// handles).
//
// An entry whose data is not a Command (corrupt, or written by a newer version
// of raftkv) is an error: applying it differently from other members would
// diverge, so the member must stop. Entries before it stay applied.
//
// Apply must not run concurrently with itself (the replica calls it from its
// loop); reads may run alongside it.
func (s *Store) Apply(entries []pb.Entry) ([]any, error) {
	results := make([]any, len(entries))
	writesBefore := s.writes
	for i := range entries {
		e := &entries[i]
		if prev := s.applied.Load(); uint64(e.Index) <= prev && prev != 0 {
			return results[:i], fmt.Errorf("kv: apply entry %d: already applied up to %d", e.Index, prev)
		}
		if e.Type != pb.EntryNormal || len(e.Data) == 0 {
			s.mu.Lock()
			s.applied.Store(uint64(e.Index))
			s.mu.Unlock()
			continue
		}
		cmd, err := decode(e.Data, false, s.batchBuf)
		if err != nil {
			clear(s.batchBuf[:cap(s.batchBuf)]) // what a bad batch decoded before failing
			return results[:i], fmt.Errorf("kv: apply entry %d: %w", e.Index, err)
		}
		s.mu.Lock()
		results[i] = s.applyCommandLocked(&cmd)
		s.applied.Store(uint64(e.Index))
		s.mu.Unlock()
		if b := cmd.Batch; cap(b) <= maxBatchBuf {
			clear(b) // the commands alias the entry's data: keep none of it alive
			if cap(b) > cap(s.batchBuf) {
				s.batchBuf = b[:0]
			}
		}
	}
	if len(s.layers) > 1 {
		// Merge faster than this batch wrote, so overlays drain even under
		// a steady stream of large MSETs.
		s.mu.Lock()
		s.compactLocked(256 + 2*int(s.writes-writesBefore))
		s.mu.Unlock()
	}
	return results, nil
}

// Pre-boxed common results: boxing a Result into an any allocates.
var (
	boxedOK  any = resOK
	boxedNil any = resNil
)

func boxResult(r Result) any {
	switch {
	case r.Kind == KindOK:
		return boxedOK
	case r.Kind == KindNil:
		return boxedNil
	}
	return r
}

// applyCommandLocked applies one decoded entry: a Result, or a []Result
// for a batch; s.mu is held exclusively.
func (s *Store) applyCommandLocked(c *Command) any {
	if c.Op != OpBatch {
		return boxResult(s.applyLocked(c))
	}
	batch := make([]Result, len(c.Batch))
	for j := range c.Batch {
		batch[j] = s.applyLocked(&c.Batch[j])
	}
	return batch
}

// applyLocked applies one command that is not a batch; s.mu is held exclusively.
func (s *Store) applyLocked(c *Command) Result {
	now := max(c.Now, s.lastNow)
	s.lastNow = now
	if c.Session != 0 {
		if c.Ack != 0 {
			s.dedup.ack(c.Session, c.Ack, now)
		}
		if res, ok, tooOld := s.dedup.lookup(c.Session, c.Seq, now); ok {
			return res
		} else if tooOld {
			return Error(ErrMsgDedupExpired)
		}
	}
	res := s.exec(c, now)
	if c.Session != 0 {
		s.dedup.add(c.Session, c.Seq, now, res)
	}
	s.dedup.evict(now)
	return res
}

// bstr views b as a string without copying, for map lookups only: the result
// must not be stored.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// lookupLocked returns the item the live view holds for key, expired or not.
func (s *Store) lookupLocked(key string) (item, bool) {
	for i := len(s.layers) - 1; i >= 0; i-- {
		if it, ok := s.layers[i].m[key]; ok {
			if it.exp == tombstone {
				return item{}, false
			}
			return it, true
		}
	}
	return item{}, false
}

// visibleBelowTop reports whether a layer under the top holds key.
func (s *Store) visibleBelowTop(key string) bool {
	for i := len(s.layers) - 2; i >= 0; i-- {
		if it, ok := s.layers[i].m[key]; ok {
			return it.exp != tombstone
		}
	}
	return false
}

// readLocked returns key's item if it exists and has not expired at now.
func (s *Store) readLocked(key []byte, now int64) (item, bool) {
	it, ok := s.lookupLocked(bstr(key))
	if !ok || (it.exp > 0 && it.exp <= now) {
		return item{}, false
	}
	return it, true
}

// liveLocked is readLocked for Apply: an expired key found on the way is
// removed (as Redis expires keys lazily on access), deterministically since
// now is the entry's time.
func (s *Store) liveLocked(key []byte, now int64) (item, bool) {
	k := bstr(key)
	it, ok := s.lookupLocked(k)
	if !ok {
		return item{}, false
	}
	if it.exp > 0 && it.exp <= now {
		s.removeLocked(k, it)
		return item{}, false
	}
	return it, true
}

// writeLocked stores nu under key, replacing old (had: whether old existed).
// key must be owned by the caller (not a bstr view).
func (s *Store) writeLocked(key string, old item, had bool, nu item) {
	if had {
		s.unaccount(key, old)
	} else {
		s.scan.add(key)
	}
	s.layers[len(s.layers)-1].m[key] = nu
	s.writes++
	s.keys++
	s.bytes += int64(len(key) + len(nu.val))
	if nu.exp > 0 {
		s.ttl[key] = nu.exp
	}
}

// removeLocked deletes key, whose current item is old. key may be a view.
func (s *Store) removeLocked(key string, old item) {
	s.unaccount(key, old)
	s.scan.remove(key)
	s.writes++
	top := s.layers[len(s.layers)-1]
	if len(s.layers) > 1 && s.visibleBelowTop(key) {
		top.m[strings.Clone(key)] = item{exp: tombstone}
	} else {
		delete(top.m, key)
	}
}

func (s *Store) unaccount(key string, old item) {
	s.keys--
	s.bytes -= int64(len(key) + len(old.val))
	if old.exp > 0 {
		delete(s.ttl, key)
	}
}

// compactLocked merges overlays no snapshot reads any more into the bottom
// layer, moving at most budget keys.
func (s *Store) compactLocked(budget int) {
	for budget > 0 && len(s.layers) > 1 {
		base, next := s.layers[0], s.layers[1]
		if base.pins > 0 || next.pins > 0 {
			return
		}
		for k, it := range next.m {
			if it.exp == tombstone {
				delete(base.m, k)
			} else {
				base.m[k] = it
			}
			delete(next.m, k)
			budget--
			if budget == 0 {
				break
			}
		}
		if len(next.m) == 0 {
			s.layers = append(s.layers[:1:1], s.layers[2:]...)
		}
	}
}

// resetLocked empties the keyspace (FLUSHDB, Restore). Frozen layers that
// snapshots still read are left to them.
func (s *Store) resetLocked() {
	s.layers = []*layer{newLayer(0)}
	s.keys = 0
	s.bytes = 0
	s.ttl = make(map[string]int64)
	s.scan = newScanIndex()
}
