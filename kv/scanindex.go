package kv

import (
	"slices"
)

// scanIndex orders the live keys by keyHash for SCAN, so that a SCAN call
// costs O(count) rather than a pass over the keyspace.
//
// Keys sit in 2^bits buckets by the top bits of their hash; bucket i holds
// the hashes in [i<<(64-bits), (i+1)<<(64-bits)), so walking buckets in order
// walks hashes in order, and a cursor (a hash) stays meaningful when the
// index grows to more buckets. Buckets are small unsorted slices (8 keys on
// average at most); SCAN sorts only the buckets it visits.
//
// FNV-1a is not keyed: a client that crafts many keys with equal hash
// prefixes makes their bucket, and so writes of those keys, slower (linear
// in the bucket). Cursors must mean the same on every member, which rules
// out a per-process random seed.
type scanIndex struct {
	bits    uint
	buckets [][]hashedKey
	n       int
}

type hashedKey struct {
	h uint64
	k string
}

const (
	scanMinBits   = 4
	scanMaxBits   = 30
	scanLoadLimit = 8 // keys per bucket on average before growing
)

func newScanIndex() *scanIndex {
	return &scanIndex{bits: scanMinBits, buckets: make([][]hashedKey, 1<<scanMinBits)}
}

func (x *scanIndex) bucket(h uint64) int { return int(h >> (64 - x.bits)) }

// add indexes k, which must not be indexed yet (and must be owned: the index
// keeps it).
func (x *scanIndex) add(k string) { x.insert(keyHash(k), k) }

func (x *scanIndex) insert(h uint64, k string) {
	b := x.bucket(h)
	x.buckets[b] = append(x.buckets[b], hashedKey{h, k})
	x.n++
	if x.n > scanLoadLimit<<x.bits && x.bits < scanMaxBits {
		x.grow()
	}
}

// remove unindexes k, which must be indexed (k may be a view).
func (x *scanIndex) remove(k string) { x.delete(keyHash(k), k) }

func (x *scanIndex) delete(h uint64, k string) {
	b := x.bucket(h)
	bk := x.buckets[b]
	for i := range bk {
		if bk[i].h == h && bk[i].k == k {
			last := len(bk) - 1
			bk[i] = bk[last]
			bk[last] = hashedKey{}
			x.buckets[b] = bk[:last]
			x.n--
			return
		}
	}
	panic("kv: scan index: removing a key that is not indexed: " + k)
}

func (x *scanIndex) grow() {
	nb := x.bits + 2
	buckets := make([][]hashedKey, 1<<nb)
	for _, bk := range x.buckets {
		for _, e := range bk {
			i := int(e.h >> (64 - nb))
			buckets[i] = append(buckets[i], e)
		}
	}
	x.bits, x.buckets = nb, buckets
}

// scan returns the keys with hash >= cursor, in hash order, for which keep
// returns true: count of them (more only to keep a run of equal hashes
// together, since a cursor cannot split it), or all that remain. next is the
// cursor to continue from; 0 when every bucket was visited. (A call that
// stops early may find nothing after it: the next call then returns no keys
// and 0, which Redis clients handle.)
func (x *scanIndex) scan(cursor uint64, count int, keep func(k string) bool) (next uint64, keys []hashedKey) {
	b := x.bucket(cursor)
	for ; b < len(x.buckets) && len(keys) < count; b++ {
		start := len(keys)
		for _, e := range x.buckets[b] {
			if e.h >= cursor && keep(e.k) {
				keys = append(keys, e)
			}
		}
		slices.SortFunc(keys[start:], cmpHashedKey)
	}
	exhausted := b == len(x.buckets)
	cut := min(count, len(keys))
	for cut > 0 && cut < len(keys) && keys[cut].h == keys[cut-1].h {
		cut++
	}
	if cut == len(keys) && exhausted {
		return 0, keys
	}
	// keys[cut-1].h+1 wraps to 0 only for the largest hash: nothing follows.
	return keys[cut-1].h + 1, keys[:cut]
}

func cmpHashedKey(a, b hashedKey) int {
	switch {
	case a.h < b.h:
		return -1
	case a.h > b.h:
		return 1
	case a.k < b.k:
		return -1
	case a.k > b.k:
		return 1
	}
	return 0
}
