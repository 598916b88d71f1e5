package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// recordType says what a record's payload holds.
//
// Written to disk: never renumber.
type recordType uint8

const (
	recSegment   recordType = 1 // segment header: format version, sequence number, first index
	recEntry     recordType = 2 // one raftpb.Entry
	recHardState recordType = 3 // raftpb.HardState
	recConfState recordType = 4 // raftpb.ConfState (the latest applied membership)
	recSnapshot  recordType = 5 // raftpb.SnapshotMeta (a snapshot is durably in place)
	maxRecType              = recSnapshot
)

func (t recordType) String() string {
	switch t {
	case recSegment:
		return "segment"
	case recEntry:
		return "entry"
	case recHardState:
		return "hardstate"
	case recConfState:
		return "confstate"
	case recSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("recordType(%d)", uint8(t))
}

const (
	// headerSize is the fixed size of a record header (see doc.go).
	headerSize = 20
	// MaxRecordSize bounds a record's payload. A length field above it is
	// corruption, so a corrupt length can never make the reader allocate
	// more than this (and the reader never allocates more than the file
	// holds either).
	MaxRecordSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends one framed record to b. synced is the segment
// offset up to which the segment was known to be durable when the record
// was written (the "sync watermark" that lets recovery tell a torn tail
// from corruption; see doc.go).
func appendRecord(b []byte, typ recordType, synced int64, payload []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, headerSize)...)
	h := b[start:]
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(payload)))
	h[8] = byte(typ)
	// h[9:12] stays zero (reserved).
	binary.LittleEndian.PutUint64(h[12:20], uint64(synced))
	b = append(b, payload...)
	crc := crc32.Checksum(b[start+4:], castagnoli)
	binary.LittleEndian.PutUint32(b[start:start+4], crc)
	return b
}

// appendRecordFunc is appendRecord for a payload encoded in place by enc,
// avoiding a copy of the payload.
func appendRecordFunc(b []byte, typ recordType, synced int64, enc func([]byte) ([]byte, error)) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, headerSize)...)
	b, err := enc(b)
	if err != nil {
		return b[:start], err
	}
	n := len(b) - start - headerSize
	if n > MaxRecordSize {
		return b[:start], fmt.Errorf("wal: %s record of %d bytes exceeds the maximum of %d", typ, n, MaxRecordSize)
	}
	h := b[start:]
	binary.LittleEndian.PutUint32(h[4:8], uint32(n))
	h[8] = byte(typ)
	h[9], h[10], h[11] = 0, 0, 0
	binary.LittleEndian.PutUint64(h[12:20], uint64(synced))
	crc := crc32.Checksum(b[start+4:], castagnoli)
	binary.LittleEndian.PutUint32(b[start:start+4], crc)
	return b, nil
}

// record is one decoded record; payload aliases the buffer it came from.
type record struct {
	typ     recordType
	synced  int64
	off     int64 // offset of the record's header in its segment
	payload []byte
}

// Reasons a record fails to decode.
var (
	errTruncated = errors.New("record runs past the end of the file")
	errZero      = errors.New("zeroed header")
	errBadHeader = errors.New("invalid record header")
	errChecksum  = errors.New("checksum mismatch")
)

// decodeRecord decodes the record at the start of b, which starts at
// offset off of its segment. It returns the record and its framed size.
// It never allocates: the payload aliases b.
func decodeRecord(b []byte, off int64) (record, int, error) {
	if len(b) < headerSize {
		if allZero(b) {
			return record{}, 0, errZero
		}
		return record{}, 0, errTruncated
	}
	h := b[:headerSize]
	if allZero(h) {
		return record{}, 0, errZero
	}
	n := binary.LittleEndian.Uint32(h[4:8])
	typ := recordType(h[8])
	synced := binary.LittleEndian.Uint64(h[12:20])
	if typ == 0 || typ > maxRecType || h[9]|h[10]|h[11] != 0 || n > MaxRecordSize || synced > uint64(off) {
		return record{}, 0, errBadHeader
	}
	size := headerSize + int(n)
	if size > len(b) {
		return record{}, 0, errTruncated
	}
	if crc32.Checksum(b[4:size], castagnoli) != binary.LittleEndian.Uint32(h[0:4]) {
		return record{}, 0, errChecksum
	}
	return record{typ: typ, synced: int64(synced), off: off, payload: b[headerSize:size]}, size, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// segmentScan is the result of reading one segment's bytes.
type segmentScan struct {
	recs []record
	// end is the offset just past the last valid record.
	end int64
	// bad is set when the bytes at end are neither a valid record nor a
	// zero-filled remainder; badErr says why.
	bad    bool
	badErr error
	// synced is set when some valid record after end claims (by its sync
	// watermark) that the bytes at end had already been made durable: the
	// bad record is corruption, not a torn write.
	synced bool
}

// scanSegment splits a segment's bytes into records. It stops at the first
// record that does not decode; an all-zero remainder (preallocated or
// never written) is a clean end.
func scanSegment(b []byte) segmentScan {
	var s segmentScan
	off := 0
	for off < len(b) {
		r, n, err := decodeRecord(b[off:], int64(off))
		if err != nil {
			if allZero(b[off:]) {
				break
			}
			s.bad, s.badErr = true, err
			s.synced = syncedPast(b, off)
			break
		}
		s.recs = append(s.recs, r)
		off += n
	}
	s.end = int64(off)
	return s
}

// syncedPast reports whether any valid record after offset bad has a sync
// watermark beyond bad. Such a record was written after the bytes at bad
// were fsynced, so whatever is wrong at bad happened to durable data.
func syncedPast(b []byte, bad int) bool {
	for p := bad + 1; p+headerSize <= len(b); p++ {
		h := b[p : p+headerSize]
		// Cheap rejections first: most offsets fail here.
		if h[8] == 0 || recordType(h[8]) > maxRecType || h[9]|h[10]|h[11] != 0 {
			continue
		}
		synced := binary.LittleEndian.Uint64(h[12:20])
		if synced <= uint64(bad) {
			continue
		}
		if r, _, err := decodeRecord(b[p:], int64(p)); err == nil && r.synced > int64(bad) {
			return true
		}
	}
	return false
}
