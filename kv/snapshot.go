package kv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync/atomic"
	"unsafe"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/replica"
)

// Snapshot stream format, version 2 (version 1 had no 0x04 records and no
// nacks in the trailer; both are read). Integers are varints (zig-zag for
// signed), byte strings a uvarint length then the bytes:
//
//	+------------+---------+---------------+----------+-------+
//	| "RKVS"(4B) | ver(1B) | applied index | last now | nkeys |   header (nkeys: a size hint)
//	+------------+---------+---------------+----------+-------+
//	| 0x01 key value deadline                          |   one per key (deadline 0: none)
//	| 0x02 session seq at kind [int | bulk | err]     |   one per dedup record, oldest first
//	| 0x03 session seq at                              |   one per dedup floor
//	| 0x04 session seq at                              |   one per dedup ack
//	+--------------------------------------------------+
//	| 0xFF nkeys ndedup nfloors nacks | CRC-32C (4B, LE) |   trailer; the CRC covers every byte before it
//	+--------------------------------------------------+
//
// Written to disk and to the wire: never renumber or reorder.
const (
	snapMagic     = "RKVS"
	snapVersion   = 2
	snapVersionV1 = 1

	recKey     = 0x01
	recDedup   = 0x02
	recFloor   = 0x03
	recAck     = 0x04
	recTrailer = 0xFF

	// maxSnapString bounds a key or value read from a snapshot. Reading is
	// chunked, so a corrupt length costs at most what the stream holds.
	maxSnapString = 1 << 32
	readChunk     = 1 << 20
	// maxSizeHint bounds the map pre-sizing a header can ask for, since the
	// header is trusted only once the CRC at the end checks out.
	maxSizeHint = 1 << 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptSnapshot is returned (wrapped) by Restore for a stream that is not
// a complete, intact snapshot.
var ErrCorruptSnapshot = errors.New("kv: corrupt snapshot")

// ErrSnapshotUsed is returned by a SnapshotFunc called a second time.
var ErrSnapshotUsed = errors.New("kv: snapshot function already called")

var _ replica.StateMachine = (*Store)(nil)

// Snapshot captures the state as of the last applied entry and returns a
// function that streams it. Capturing is O(layers + dedup chunks): it freezes
// the current keyspace layers (later writes go to a new overlay) and copies
// the dedup table's chunk list.
//
// The returned function must be called exactly once (a second call returns
// ErrSnapshotUsed), from any goroutine: until it returns, the frozen layers
// stay pinned and overlays cannot merge down, so a function never called holds
// memory for every key written after the capture until the next Restore or
// FLUSHDB. The stream is buffered; the function does not close w.
func (s *Store) Snapshot() (replica.SnapshotFunc, error) {
	s.mu.Lock()
	frozen := slices.Clone(s.layers)
	for _, l := range frozen {
		l.pins++
	}
	s.layers = append(slices.Clone(frozen), newLayer(0))
	dv := s.dedup.view()
	applied, lastNow, nkeys := s.Applied(), s.lastNow, s.keys
	s.mu.Unlock()

	var called atomic.Bool
	return func(w io.Writer) error {
		if !called.CompareAndSwap(false, true) {
			return ErrSnapshotUsed
		}
		defer func() {
			s.mu.Lock()
			for _, l := range frozen {
				l.pins--
			}
			s.mu.Unlock()
		}()
		if err := writeSnapshot(w, applied, lastNow, nkeys, frozen, &dv); err != nil {
			return fmt.Errorf("kv: write snapshot at index %d: %w", applied, err)
		}
		return nil
	}, nil
}

func writeSnapshot(w io.Writer, applied pb.Index, lastNow int64, nkeys int, layers []*layer, dv *dedupView) error {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	buf := make([]byte, 0, 64)
	buf = append(buf, snapMagic...)
	buf = append(buf, snapVersion)
	buf = binary.AppendUvarint(buf, uint64(applied))
	buf = binary.AppendVarint(buf, lastNow)
	buf = binary.AppendUvarint(buf, uint64(nkeys))
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	var written uint64
	var werr error
	forEachVisible(layers, func(k string, it item) bool {
		buf = append(buf[:0], recKey)
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		if _, werr = bw.Write(buf); werr != nil {
			return false
		}
		if _, werr = bw.WriteString(k); werr != nil {
			return false
		}
		buf = binary.AppendUvarint(buf[:0], uint64(len(it.val)))
		if _, werr = bw.Write(buf); werr != nil {
			return false
		}
		if _, werr = bw.Write(it.val); werr != nil {
			return false
		}
		buf = binary.AppendVarint(buf[:0], it.exp)
		if _, werr = bw.Write(buf); werr != nil {
			return false
		}
		written++
		return true
	})
	if werr != nil {
		return werr
	}
	for pos := dv.head; pos < dv.tail; pos++ {
		r := dv.rec(pos)
		buf = append(buf[:0], recDedup)
		buf = binary.AppendUvarint(buf, r.session)
		buf = binary.AppendUvarint(buf, r.seq)
		buf = binary.AppendVarint(buf, r.at)
		buf = append(buf, byte(r.res.Kind))
		switch r.res.Kind {
		case KindInt:
			buf = binary.AppendVarint(buf, r.res.Int)
		case KindBulk:
			buf = appendBytes(buf, r.res.Bulk)
		case KindError:
			buf = appendBytes(buf, []byte(r.res.Err))
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	for _, list := range []struct {
		tag  byte
		recs []dedupFloorRec
	}{{recFloor, dv.floors}, {recAck, dv.acks}} {
		for _, f := range list.recs {
			buf = append(buf[:0], list.tag)
			buf = binary.AppendUvarint(buf, f.session)
			buf = binary.AppendUvarint(buf, f.seq)
			buf = binary.AppendVarint(buf, f.at)
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
	}
	buf = append(buf[:0], recTrailer)
	buf = binary.AppendUvarint(buf, written)
	buf = binary.AppendUvarint(buf, dv.tail-dv.head)
	buf = binary.AppendUvarint(buf, uint64(len(dv.floors)))
	buf = binary.AppendUvarint(buf, uint64(len(dv.acks)))
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(binary.LittleEndian.AppendUint32(buf[:0], crc.Sum32()))
	return err
}

// Restore replaces the whole state with the snapshot read from r. The stream
// is read and checked to the end (structure, counts, CRC) into a new state
// before anything is replaced: on error the store is unchanged. Restore reads
// exactly the snapshot when r yields no more, but may read ahead past its end
// otherwise (hand it a reader of the snapshot alone).
func (s *Store) Restore(r io.Reader) error {
	st, err := readSnapshot(r, s.window, s.cfg.DedupMaxEntries)
	if err != nil {
		return fmt.Errorf("kv: restore: %w", err)
	}
	s.mu.Lock()
	s.layers = []*layer{st.layer}
	s.keys = len(st.layer.m)
	s.bytes = st.bytes
	s.ttl = st.ttl
	s.scan = st.scan
	s.lastNow = st.lastNow
	s.dedup = st.dedup
	s.applied.Store(uint64(st.applied))
	s.mu.Unlock()
	s.log.Info("kv: restored snapshot", "applied", st.applied, "keys", len(st.layer.m), "dedup", st.dedup.len())
	return nil
}

type restored struct {
	applied pb.Index
	lastNow int64
	layer   *layer
	bytes   int64
	ttl     map[string]int64
	scan    *scanIndex
	dedup   dedupTable
}

func readSnapshot(r io.Reader, window int64, maxDedup int) (*restored, error) {
	sr := snapReader{br: bufio.NewReaderSize(r, 64<<10)}
	var magic [4]byte
	sr.full(magic[:])
	if sr.err == nil && string(magic[:]) != snapMagic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrCorruptSnapshot, magic[:])
	}
	version := sr.byte()
	if sr.err == nil && version != snapVersion && version != snapVersionV1 {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrCorruptSnapshot, version)
	}
	st := &restored{
		ttl: make(map[string]int64),
		// The snapshot's records are kept whatever this member's cap: they
		// were remembered on the member that wrote it, and evict() trims to
		// the cap at the next Apply exactly as that member would.
		dedup: newDedupTable(window, maxDedup),
	}
	st.applied = pb.Index(sr.uvarint())
	st.lastNow = sr.varint()
	if sr.err == nil && st.lastNow < 0 {
		sr.fail("negative time")
	}
	st.layer = newLayer(int(min(sr.uvarint(), maxSizeHint)))
	var ndedup, nfloors, nacks uint64
	lastAt := int64(-1 << 63)
	for sr.err == nil {
		switch tag := sr.byte(); tag {
		case recKey:
			kb := sr.bytes()
			val := sr.bytes()
			exp := sr.varint()
			if sr.err != nil {
				break
			}
			k := unsafe.String(unsafe.SliceData(kb), len(kb)) // kb is ours and never changes
			if exp < 0 {
				sr.fail("negative deadline for a key")
			} else if _, dup := st.layer.m[k]; dup {
				sr.fail("duplicate key")
			}
			if val == nil {
				val = []byte{}
			}
			st.layer.m[k] = item{val: val, exp: exp}
			st.bytes += int64(len(k) + len(val))
			if exp > 0 {
				st.ttl[k] = exp
			}
		case recDedup:
			session, seq, at := sr.uvarint(), sr.uvarint(), sr.varint()
			res := Result{Kind: Kind(sr.byte())}
			switch res.Kind {
			case KindOK, KindNil:
			case KindInt:
				res.Int = sr.varint()
			case KindBulk:
				res.Bulk = sr.bytes()
				if res.Bulk == nil {
					res.Bulk = []byte{}
				}
			case KindError:
				res.Err = string(sr.bytes())
			default:
				sr.fail(fmt.Sprintf("unknown result kind %d", res.Kind))
			}
			if sr.err != nil {
				break
			}
			if session == 0 {
				sr.fail("dedup record without a session")
			} else if at < lastAt {
				sr.fail("dedup records out of time order")
			} else if _, dup := st.dedup.indexed(session, seq); dup {
				sr.fail("duplicate dedup record")
			}
			lastAt = at
			st.dedup.add(session, seq, at, res)
			ndedup++
		case recFloor, recAck:
			session, seq, at := sr.uvarint(), sr.uvarint(), sr.varint()
			if sr.err != nil {
				break
			}
			m, n, what := st.dedup.floors, &nfloors, "floor"
			if tag == recAck {
				m, n, what = st.dedup.acks, &nacks, "ack"
				if version == snapVersionV1 {
					sr.fail("dedup ack in a version 1 snapshot")
				}
			}
			if _, dup := m[session]; dup {
				sr.fail("duplicate dedup " + what)
			}
			m[session] = dedupFloor{seq: seq, at: at}
			*n++
		case recTrailer:
			nk, nd, nf := sr.uvarint(), sr.uvarint(), sr.uvarint()
			var na uint64
			if version != snapVersionV1 {
				na = sr.uvarint()
			}
			if sr.err != nil {
				break
			}
			want := sr.crc
			var sum [4]byte
			sr.full(sum[:])
			if sr.err != nil {
				break
			}
			if got := binary.LittleEndian.Uint32(sum[:]); got != want {
				return nil, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorruptSnapshot, got, want)
			}
			if nk != uint64(len(st.layer.m)) || nd != ndedup || nf != nfloors || na != nacks {
				return nil, fmt.Errorf("%w: trailer counts %d/%d/%d/%d, read %d/%d/%d/%d",
					ErrCorruptSnapshot, nk, nd, nf, na, len(st.layer.m), ndedup, nfloors, nacks)
			}
			st.dedup.floorsGC = max(64, 2*(len(st.dedup.floors)+len(st.dedup.acks)))
			st.scan = newScanIndex()
			for k := range st.layer.m {
				st.scan.add(k)
			}
			return st, nil
		default:
			if sr.err == nil {
				sr.fail(fmt.Sprintf("unknown record tag %#x", tag))
			}
		}
	}
	return nil, sr.err
}

// snapReader reads snapshot fields and keeps a running CRC of the bytes
// consumed. After the first error every read returns zero and the error
// sticks; a stream that ends early is ErrCorruptSnapshot (truncated), other
// read errors are returned as they are.
type snapReader struct {
	br  *bufio.Reader
	crc uint32
	err error
	one [1]byte
}

func (r *snapReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorruptSnapshot, what)
	}
}

func (r *snapReader) readErr(err error) {
	if r.err != nil {
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		r.fail("truncated")
		return
	}
	r.err = fmt.Errorf("read: %w", err)
}

func (r *snapReader) byte() byte {
	if r.err != nil {
		return 0
	}
	b, err := r.br.ReadByte()
	if err != nil {
		r.readErr(err)
		return 0
	}
	r.one[0] = b
	r.crc = crc32.Update(r.crc, castagnoli, r.one[:])
	return b
}

func (r *snapReader) full(p []byte) {
	if r.err != nil {
		return
	}
	if _, err := io.ReadFull(r.br, p); err != nil {
		r.readErr(err)
		return
	}
	r.crc = crc32.Update(r.crc, castagnoli, p)
}

func (r *snapReader) uvarint() uint64 {
	var x uint64
	for shift := uint(0); ; shift += 7 {
		b := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 63 && b > 1 {
			r.fail("varint overflows 64 bits")
			return 0
		}
		x |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return x
		}
	}
}

func (r *snapReader) varint() int64 {
	ux := r.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// bytes reads a length-prefixed byte string into a new slice, growing it as
// data arrives so that a corrupt length cannot allocate more than the stream
// holds.
func (r *snapReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > maxSnapString {
		r.fail(fmt.Sprintf("byte string of %d bytes", n))
		return nil
	}
	buf := make([]byte, 0, min(n, readChunk))
	for uint64(len(buf)) < n && r.err == nil {
		step := int(min(n-uint64(len(buf)), readChunk))
		buf = slices.Grow(buf, step)
		r.full(buf[len(buf) : len(buf)+step])
		buf = buf[:len(buf)+step]
	}
	if r.err != nil {
		return nil
	}
	return buf
}
