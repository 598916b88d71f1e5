package raftpb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The binary encoding of the types in this package, used on the wire
// (transport) and on disk (wal). It is hand-written rather than protobuf
// because protobuf-go messages carry internal state that must not be copied
// by value, and the core copies Entry and Message values constantly.
//
// Every top-level encoding starts with a format version byte; integers are
// unsigned varints; byte strings are a uvarint length then the bytes.
//
//	Entry:        ver | term | index | type(1) | len | data
//	HardState:    ver | term | vote | commit
//	ConfState:    ver | nVoters | voter... | nLearners | learner...
//	ConfChange:   ver | type(1) | nodeID | len | context
//	SnapshotMeta: ver | index | term | ConfState body (without ver)
//	Message:      ver | type(1) | flags(1) | from | to | term | logTerm | index |
//	              commit | rejectHint | len | context | nEntries | Entry body... |
//	              [SnapshotMeta body if flags&flagSnapshot]
//
// Decoding never trusts a length or count: each is checked against the bytes
// that remain before anything is allocated. Decoded byte slices (Entry.Data,
// Message.Context, ConfChange.Context) alias the input; copy them if the
// input buffer is reused.
//
// Written to disk and to the wire: never change an encoding without bumping
// its version byte and keeping a decoder for the old one.

// Version is the current encoding version of every type in this package.
const Version byte = 1

const (
	flagReject   byte = 1 << 0
	flagSnapshot byte = 1 << 1
)

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("raftpb: corrupt encoding")

// AppendBinary appends the encoding of e to b (encoding.BinaryAppender).
func (e *Entry) AppendBinary(b []byte) ([]byte, error) {
	return appendEntry(append(b, Version), e), nil
}

// UnmarshalBinary decodes an Entry; e.Data aliases data.
func (e *Entry) UnmarshalBinary(data []byte) error {
	d := decoder{buf: data, what: "entry"}
	d.version()
	d.entry(e)
	return d.finish()
}

// AppendBinary appends the encoding of h to b.
func (h *HardState) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, Version)
	b = binary.AppendUvarint(b, uint64(h.Term))
	b = binary.AppendUvarint(b, uint64(h.Vote))
	return binary.AppendUvarint(b, uint64(h.Commit)), nil
}

// UnmarshalBinary decodes a HardState.
func (h *HardState) UnmarshalBinary(data []byte) error {
	d := decoder{buf: data, what: "hard state"}
	d.version()
	h.Term = Term(d.uvarint())
	h.Vote = NodeID(d.uvarint())
	h.Commit = Index(d.uvarint())
	return d.finish()
}

// AppendBinary appends the encoding of c to b.
func (c *ConfState) AppendBinary(b []byte) ([]byte, error) {
	return appendConfState(append(b, Version), c), nil
}

// UnmarshalBinary decodes a ConfState.
func (c *ConfState) UnmarshalBinary(data []byte) error {
	d := decoder{buf: data, what: "conf state"}
	d.version()
	d.confState(c)
	return d.finish()
}

// AppendBinary appends the encoding of cc to b.
func (cc *ConfChange) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, Version, byte(cc.Type))
	b = binary.AppendUvarint(b, uint64(cc.NodeID))
	return appendBytes(b, cc.Context), nil
}

// UnmarshalBinary decodes a ConfChange; cc.Context aliases data.
func (cc *ConfChange) UnmarshalBinary(data []byte) error {
	d := decoder{buf: data, what: "conf change"}
	d.version()
	cc.Type = ConfChangeType(d.byte())
	cc.NodeID = NodeID(d.uvarint())
	cc.Context = d.bytes()
	if d.err == nil && cc.Type > ConfChangeRemove {
		d.fail("unknown conf change type %d", cc.Type)
	}
	return d.finish()
}

// AppendBinary appends the encoding of m to b.
func (m *SnapshotMeta) AppendBinary(b []byte) ([]byte, error) {
	return appendSnapshotMeta(append(b, Version), m), nil
}

// UnmarshalBinary decodes a SnapshotMeta.
func (m *SnapshotMeta) UnmarshalBinary(data []byte) error {
	d := decoder{buf: data, what: "snapshot meta"}
	d.version()
	d.snapshotMeta(m)
	return d.finish()
}

// AppendBinary appends the encoding of m to b.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	var flags byte
	if m.Reject {
		flags |= flagReject
	}
	if m.Snapshot != nil {
		flags |= flagSnapshot
	}
	b = append(b, Version, byte(m.Type), flags)
	b = binary.AppendUvarint(b, uint64(m.From))
	b = binary.AppendUvarint(b, uint64(m.To))
	b = binary.AppendUvarint(b, uint64(m.Term))
	b = binary.AppendUvarint(b, uint64(m.LogTerm))
	b = binary.AppendUvarint(b, uint64(m.Index))
	b = binary.AppendUvarint(b, uint64(m.Commit))
	b = binary.AppendUvarint(b, uint64(m.RejectHint))
	b = appendBytes(b, m.Context)
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for i := range m.Entries {
		b = appendEntry(b, &m.Entries[i])
	}
	if m.Snapshot != nil {
		b = appendSnapshotMeta(b, m.Snapshot)
	}
	return b, nil
}

// UnmarshalBinary decodes a Message; entry data and Context alias data.
func (m *Message) UnmarshalBinary(data []byte) error {
	d := decoder{buf: data, what: "message"}
	d.version()
	*m = Message{Type: MessageType(d.byte())}
	flags := d.byte()
	m.Reject = flags&flagReject != 0
	m.From = NodeID(d.uvarint())
	m.To = NodeID(d.uvarint())
	m.Term = Term(d.uvarint())
	m.LogTerm = Term(d.uvarint())
	m.Index = Index(d.uvarint())
	m.Commit = Index(d.uvarint())
	m.RejectHint = Index(d.uvarint())
	m.Context = d.bytes()
	// An encoded entry takes at least minEntrySize bytes, so a count larger
	// than what remains is corrupt: checked before allocating.
	if n := d.count(minEntrySize); n > 0 {
		m.Entries = make([]Entry, n)
		for i := range m.Entries {
			d.entry(&m.Entries[i])
		}
	}
	if flags&flagSnapshot != 0 {
		m.Snapshot = new(SnapshotMeta)
		d.snapshotMeta(m.Snapshot)
	}
	if d.err == nil && flags&^(flagReject|flagSnapshot) != 0 {
		d.fail("unknown flags %#x", flags)
	}
	return d.finish()
}

// minEntrySize is the smallest encoded Entry body: term, index, type, length.
const minEntrySize = 4

func appendEntry(b []byte, e *Entry) []byte {
	b = binary.AppendUvarint(b, uint64(e.Term))
	b = binary.AppendUvarint(b, uint64(e.Index))
	b = append(b, byte(e.Type))
	return appendBytes(b, e.Data)
}

func appendConfState(b []byte, c *ConfState) []byte {
	b = binary.AppendUvarint(b, uint64(len(c.Voters)))
	for _, id := range c.Voters {
		b = binary.AppendUvarint(b, uint64(id))
	}
	b = binary.AppendUvarint(b, uint64(len(c.Learners)))
	for _, id := range c.Learners {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return b
}

func appendSnapshotMeta(b []byte, m *SnapshotMeta) []byte {
	b = binary.AppendUvarint(b, uint64(m.Index))
	b = binary.AppendUvarint(b, uint64(m.Term))
	return appendConfState(b, &m.ConfState)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// decoder reads the encoding with sticky errors: after the first problem
// every read returns zero values, and finish reports it.
type decoder struct {
	buf  []byte
	off  int
	what string
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d: %s", ErrCorrupt, d.what, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != Version {
		d.fail("unsupported version %d (this build reads %d)", v, Version)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.fail("truncated")
		return 0
	}
	c := d.buf[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// count reads a count of items each at least minSize bytes long.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64((len(d.buf)-d.off)/minSize) {
		d.fail("count %d exceeds the %d bytes left", n, len(d.buf)-d.off)
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)-d.off) {
		d.fail("length %d exceeds the %d bytes left", n, len(d.buf)-d.off)
		return nil
	}
	if n == 0 {
		return nil
	}
	p := d.buf[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return p
}

func (d *decoder) entry(e *Entry) {
	e.Term = Term(d.uvarint())
	e.Index = Index(d.uvarint())
	e.Type = EntryType(d.byte())
	e.Data = d.bytes()
	if d.err == nil && e.Type > EntryConfChange {
		d.fail("unknown entry type %d", e.Type)
	}
}

func (d *decoder) ids() []NodeID {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	ids := make([]NodeID, n)
	for i := range ids {
		ids[i] = NodeID(d.uvarint())
	}
	return ids
}

func (d *decoder) confState(c *ConfState) {
	c.Voters = d.ids()
	c.Learners = d.ids()
}

func (d *decoder) snapshotMeta(m *SnapshotMeta) {
	m.Index = Index(d.uvarint())
	m.Term = Term(d.uvarint())
	d.confState(&m.ConfState)
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d trailing bytes", len(d.buf)-d.off)
	}
	return d.err
}
