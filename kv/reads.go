package kv

import (
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Reads may run on any goroutine, concurrently with Apply. Each takes now, the
// caller's clock in Unix ms; the store reads at max(now, the latest entry time
// applied), so a read never sees a key that an applied write already
// considered expired, whatever the reader's clock says. A key whose deadline
// is <= that time reads as absent.
//
// Keys are []byte so that a RESP server can pass its argument buffers without
// converting. Returned values alias the store: they are immutable and their
// capacity is clipped (append copies); do not modify them.

// Get returns key's value and whether the key exists.
func (s *Store) Get(key []byte, now int64) ([]byte, bool) {
	s.mu.RLock()
	it, ok := s.readLocked(key, max(now, s.lastNow))
	s.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return it.val[:len(it.val):len(it.val)], true
}

// MGet returns the values of keys: nil for a key that does not exist, and a
// non-nil (possibly empty) slice for one that does, so an empty value and a
// missing key stay distinct.
func (s *Store) MGet(keys [][]byte, now int64) [][]byte {
	out := make([][]byte, len(keys))
	s.mu.RLock()
	now = max(now, s.lastNow)
	for i, k := range keys {
		if it, ok := s.readLocked(k, now); ok {
			out[i] = it.val[:len(it.val):len(it.val)]
		}
	}
	s.mu.RUnlock()
	return out
}

// Exists returns how many of keys exist (a key named twice counts twice, as
// in Redis).
func (s *Store) Exists(keys [][]byte, now int64) int64 {
	var n int64
	s.mu.RLock()
	now = max(now, s.lastNow)
	for _, k := range keys {
		if _, ok := s.readLocked(k, now); ok {
			n++
		}
	}
	s.mu.RUnlock()
	return n
}

// Strlen returns the length of key's value, 0 if the key does not exist.
func (s *Store) Strlen(key []byte, now int64) int64 {
	s.mu.RLock()
	it, _ := s.readLocked(key, max(now, s.lastNow))
	s.mu.RUnlock()
	return int64(len(it.val))
}

// PTTL returns key's remaining time to live in milliseconds, -1 if it has no
// TTL, -2 if it does not exist (Redis PTTL).
func (s *Store) PTTL(key []byte, now int64) int64 {
	s.mu.RLock()
	now = max(now, s.lastNow)
	it, ok := s.readLocked(key, now)
	s.mu.RUnlock()
	switch {
	case !ok:
		return -2
	case it.exp == 0:
		return -1
	}
	return it.exp - now
}

// TTL returns key's remaining time to live in seconds, rounded to the nearest
// second as Redis does ((ms+500)/1000), -1 if it has no TTL, -2 if it does
// not exist.
func (s *Store) TTL(key []byte, now int64) int64 {
	ms := s.PTTL(key, now)
	if ms < 0 {
		return ms
	}
	return (ms + 500) / 1000
}

// Type returns "string" if key exists, "none" otherwise (Redis TYPE; raftkv
// stores strings only).
func (s *Store) Type(key []byte, now int64) string {
	s.mu.RLock()
	_, ok := s.readLocked(key, max(now, s.lastNow))
	s.mu.RUnlock()
	if ok {
		return "string"
	}
	return "none"
}

// DBSize returns the number of keys, counting expired keys not yet removed by
// a sweep or a write, as Redis's DBSIZE does.
func (s *Store) DBSize() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int64(s.keys)
}

// Keys returns every key that exists at now and matches the Redis glob
// pattern (KEYS), in no particular order. It holds the read lock for a full
// pass over the keyspace, as KEYS blocks Redis.
func (s *Store) Keys(pattern []byte, now int64) []string {
	var out []string
	matchAll := string(pattern) == "*"
	s.mu.RLock()
	now = max(now, s.lastNow)
	forEachVisible(s.layers, func(k string, it item) bool {
		if (it.exp == 0 || it.exp > now) && (matchAll || Match(bstr(pattern), k)) {
			out = append(out, k)
		}
		return true
	})
	s.mu.RUnlock()
	return out
}

// Scan is Redis SCAN: it returns about count keys (count <= 0 means 10) from
// cursor on, and the cursor to continue from; 0 means the iteration is
// complete. As in Redis, a key that exists for the whole iteration is returned
// at least once, a key added or removed meanwhile may or may not be, and
// match (nil: everything) filters the keys after they are picked, so a call
// may return fewer than count keys, or none, with a non-zero cursor.
//
// The cursor is a position in the order of FNV-1a hashes of the keys, which
// every member computes alike, so a cursor stays valid across members and
// leader changes. A call costs O(count) (plus the keys of the index buckets
// it visits), not a pass over the keyspace.
func (s *Store) Scan(cursor uint64, match []byte, count int, now int64) (next uint64, keys []string) {
	if count <= 0 {
		count = 10
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now = max(now, s.lastNow)
	next, picked := s.scan.scan(cursor, count, func(k string) bool {
		it, ok := s.lookupLocked(k)
		return ok && (it.exp == 0 || it.exp > now)
	})
	keys = make([]string, 0, len(picked))
	for _, p := range picked {
		if match == nil || Match(bstr(match), p.k) {
			keys = append(keys, p.k)
		}
	}
	return next, keys
}

// keyHash is 64-bit FNV-1a: stable across members and versions, the order of
// Scan cursors.
//
// Part of the SCAN cursor contract: never change.
func keyHash(k string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(k); i++ {
		h ^= uint64(k[i])
		h *= 1099511628211
	}
	return h
}

// ExpiredKeys returns up to max keys whose deadline is <= now, for the
// leader's periodic OpExpireSweep. Like Redis's active expiry it samples: it
// examines at most max(20*max, 1000) keys with a TTL, starting at a random
// place (Go map order), so a large keyspace with few expired keys costs a
// bounded amount per call and successive calls cover different keys. Keys it
// misses are still invisible to reads and writes; a later call finds them.
func (s *Store) ExpiredKeys(now int64, max int) []string {
	if max <= 0 {
		return nil
	}
	var out []string
	budget := 20 * max
	if budget < 1000 {
		budget = 1000
	}
	s.mu.RLock()
	for k, exp := range s.ttl {
		if exp <= now {
			out = append(out, k)
			if len(out) == max {
				break
			}
		}
		budget--
		if budget == 0 {
			break
		}
	}
	s.mu.RUnlock()
	return out
}

// Stats is a snapshot of the store's size, for metrics and status.
type Stats struct {
	Keys         int64    // keys, including expired ones not yet removed
	KeysWithTTL  int64    // keys that have a deadline
	Bytes        int64    // sum of key and value lengths (not counting overhead)
	DedupEntries int64    // proposals remembered for deduplication
	Layers       int      // keyspace layers: > 1 while a snapshot streams or overlays merge
	Applied      pb.Index // last applied index
	LastNow      int64    // latest entry time applied (Unix ms)
}

// Stats returns the store's current size figures.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{
		Keys:         int64(s.keys),
		KeysWithTTL:  int64(len(s.ttl)),
		Bytes:        s.bytes,
		DedupEntries: int64(s.dedup.len()),
		Layers:       len(s.layers),
		Applied:      s.Applied(),
		LastNow:      s.lastNow,
	}
}

// forEachVisible calls fn for every key of the view made of layers (bottom
// first), skipping keys shadowed by a higher layer and tombstones, until fn
// returns false. Expired keys are included.
func forEachVisible(layers []*layer, fn func(k string, it item) bool) {
	for i := len(layers) - 1; i >= 0; i-- {
	keys:
		for k, it := range layers[i].m {
			if it.exp == tombstone {
				continue
			}
			for j := i + 1; j < len(layers); j++ {
				if _, ok := layers[j].m[k]; ok {
					continue keys
				}
			}
			if !fn(k, it) {
				return
			}
		}
	}
}
