package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// The peer wire format.
//
// Written to the wire: never renumber, never reorder. A change to anything in
// this file bumps wireVersion; an acceptor answers an unknown version with
// statusBadVersion so that a mixed-version cluster fails loudly, not subtly.
//
// Every connection opens with a handshake sent by the dialer (big-endian):
//
//	0        4      5      6          8            16         24         32
//	+--------+------+------+----------+------------+----------+----------+
//	| "RKVT" | ver  | kind | reserved | cluster id | from id  | to id    |
//	+--------+------+------+----------+------------+----------+----------+
//
// The acceptor answers with one status byte (statusOK or a rejection reason)
// and closes the connection on anything but statusOK. After statusOK the
// dialer writes frames and the acceptor only reads (a message stream) or
// reads and finally answers one status byte (a snapshot stream).
//
// A frame is a 5-byte header and a body of at most Config.MaxFrameSize bytes:
//
//	0            4      5
//	+------------+------+---------------------+
//	| body len   | type | body (len bytes)    |
//	+------------+------+---------------------+
//
// frameMessages body: one or more messages, each a 4-byte big-endian length
// then raftpb.Message.AppendBinary bytes:
//
//	+---------+-----------+---------+-----------+--
//	| len u32 | message 1 | len u32 | message 2 | ...
//	+---------+-----------+---------+-----------+--
//
// A snapshot stream carries, in order: one frameSnapHeader (8-byte declared
// data size, then the MsgSnap message bytes), zero or more frameSnapChunk
// (raw data), and one frameSnapEnd (8-byte total data length, 4-byte
// CRC-32C of all data). The receiver answers statusOK if the handler took
// the snapshot, statusFailed otherwise.
const (
	wireMagic   = "RKVT"
	wireVersion = 1

	handshakeSize   = 32
	frameHeaderSize = 5
	msgLenSize      = 4
	snapEndSize     = 12
)

// streamKind says what a connection carries. Written to the wire.
type streamKind uint8

const (
	kindMessages streamKind = 1 // batched Raft messages, one stream per peer and direction
	kindSnapshot streamKind = 2 // one snapshot, then the connection closes
)

// frameType names a frame. Written to the wire: never renumber.
type frameType uint8

const (
	frameMessages   frameType = 1
	frameSnapHeader frameType = 2
	frameSnapChunk  frameType = 3
	frameSnapEnd    frameType = 4
)

// handshakeStatus is the acceptor's one-byte answer. Written to the wire.
type handshakeStatus uint8

const (
	statusOK            handshakeStatus = 0
	statusBadVersion    handshakeStatus = 1
	statusWrongCluster  handshakeStatus = 2
	statusWrongTarget   handshakeStatus = 3
	statusUnknownMember handshakeStatus = 4
	statusBadKind       handshakeStatus = 5
	statusFailed        handshakeStatus = 6 // snapshot stream: the receiver did not take the snapshot
	statusShuttingDown  handshakeStatus = 7
)

func (s handshakeStatus) String() string {
	switch s {
	case statusOK:
		return "ok"
	case statusBadVersion:
		return "unsupported wire version"
	case statusWrongCluster:
		return "wrong cluster id"
	case statusWrongTarget:
		return "wrong target member id"
	case statusUnknownMember:
		return "unknown or removed member"
	case statusBadKind:
		return "unknown stream kind"
	case statusFailed:
		return "snapshot not taken by receiver"
	case statusShuttingDown:
		return "receiver shutting down"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Errors of the wire format; matched with errors.Is.
var (
	// ErrMalformed is wrapped by every error about bytes a peer sent that do
	// not follow the wire format. The connection is closed.
	ErrMalformed = errors.New("transport: malformed frame")
	// ErrFrameTooLarge is wrapped when a frame's declared length exceeds the limit.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrRejected is wrapped when a peer refused our handshake.
	ErrRejected = errors.New("transport: handshake rejected")
)

// handshake is the first thing a dialer sends.
type handshake struct {
	version   uint8
	kind      streamKind
	clusterID uint64
	from, to  raftpb.NodeID
}

func (h handshake) append(b []byte) []byte {
	b = append(b, wireMagic...)
	b = append(b, h.version, byte(h.kind), 0, 0)
	b = binary.BigEndian.AppendUint64(b, h.clusterID)
	b = binary.BigEndian.AppendUint64(b, uint64(h.from))
	return binary.BigEndian.AppendUint64(b, uint64(h.to))
}

// readHandshake reads and parses a handshake. The version is returned, not
// checked, so that the caller can answer statusBadVersion.
func readHandshake(r io.Reader) (handshake, error) {
	var b [handshakeSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return handshake{}, fmt.Errorf("transport: read handshake: %w", err)
	}
	if string(b[:4]) != wireMagic {
		return handshake{}, fmt.Errorf("%w: bad handshake magic %q", ErrMalformed, b[:4])
	}
	return handshake{
		version:   b[4],
		kind:      streamKind(b[5]),
		clusterID: binary.BigEndian.Uint64(b[8:]),
		from:      raftpb.NodeID(binary.BigEndian.Uint64(b[16:])),
		to:        raftpb.NodeID(binary.BigEndian.Uint64(b[24:])),
	}, nil
}

// appendFrameHeader appends a frame header for a body of n bytes.
func appendFrameHeader(b []byte, typ frameType, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return append(b, byte(typ))
}

// readFrameHeader reads a frame header and checks the body length against
// max before anything is allocated for it.
func readFrameHeader(r io.Reader, max int) (frameType, int, error) {
	var b [frameHeaderSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, 0, err
	}
	n := binary.BigEndian.Uint32(b[:4])
	if uint64(n) > uint64(max) {
		return 0, 0, fmt.Errorf("%w: %d bytes declared, limit %d", ErrFrameTooLarge, n, max)
	}
	return frameType(b[4]), int(n), nil
}

// readBodyStep is the largest allocation made for a frame body before the
// bytes to fill it have actually arrived.
const readBodyStep = 256 << 10

// readBody reads an n-byte frame body into a fresh buffer. Decoded messages
// alias the buffer, so it is never reused. A large body is read in growing
// steps so that a peer that declares a huge frame and then sends nothing
// costs little memory: allocation stays within twice what has arrived.
func readBody(r io.Reader, n int) ([]byte, error) {
	if n <= readBodyStep {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, unexpectedEOF(err)
		}
		return buf, nil
	}
	buf := make([]byte, 0, readBodyStep)
	for len(buf) < n {
		next := min(n, max(2*len(buf), readBodyStep))
		if next > cap(buf) {
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		if _, err := io.ReadFull(r, buf[len(buf):next]); err != nil {
			return nil, unexpectedEOF(err)
		}
		buf = buf[:next]
	}
	return buf, nil
}

// unexpectedEOF turns a clean EOF in the middle of a frame into ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// maxMessageType is the largest MessageType this wire version knows.
const maxMessageType = raftpb.MsgForgetLeader

// decodeBatch decodes a frameMessages body into msgs, with each message's
// encoded size in sizes. Messages alias body. On error both are empty: a
// malformed frame delivers nothing.
func decodeBatch(body []byte, msgs []raftpb.Message, sizes []int) ([]raftpb.Message, []int, error) {
	msgs, sizes, err := decodeMessages(body, msgs[:0], sizes[:0])
	if err != nil {
		// Deliver nothing from a malformed frame.
		clear(msgs)
		return msgs[:0], sizes[:0], err
	}
	return msgs, sizes, nil
}

func decodeMessages(body []byte, msgs []raftpb.Message, sizes []int) ([]raftpb.Message, []int, error) {
	if len(body) == 0 {
		return msgs, sizes, fmt.Errorf("%w: empty message batch", ErrMalformed)
	}
	for off := 0; off < len(body); {
		if len(body)-off < msgLenSize {
			return msgs, sizes, fmt.Errorf("%w: truncated message length at byte %d", ErrMalformed, off)
		}
		n := binary.BigEndian.Uint32(body[off:])
		off += msgLenSize
		if uint64(n) > uint64(len(body)-off) {
			return msgs, sizes, fmt.Errorf("%w: message of %d bytes at byte %d overruns frame of %d", ErrMalformed, n, off, len(body))
		}
		var m raftpb.Message
		if err := m.UnmarshalBinary(body[off : off+int(n)]); err != nil {
			return msgs, sizes, fmt.Errorf("%w: message %d: %w", ErrMalformed, len(msgs), err)
		}
		if m.Type == 0 || m.Type > maxMessageType {
			return msgs, sizes, fmt.Errorf("%w: message %d: unknown type %d", ErrMalformed, len(msgs), m.Type)
		}
		off += int(n)
		msgs = append(msgs, m)
		sizes = append(sizes, int(n))
	}
	return msgs, sizes, nil
}

// appendMessage appends one length-prefixed message to a frameMessages body
// under construction and returns the encoded message size.
func appendMessage(b []byte, m *raftpb.Message) ([]byte, int, error) {
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	b, err := m.AppendBinary(b)
	if err != nil {
		return b[:at], 0, fmt.Errorf("transport: encode %s to %d: %w", m.Type, m.To, err)
	}
	n := len(b) - at - msgLenSize
	if uint64(n) > uint64(^uint32(0)) {
		return b[:at], 0, fmt.Errorf("transport: encode %s to %d: %d bytes: %w", m.Type, m.To, n, ErrFrameTooLarge)
	}
	binary.BigEndian.PutUint32(b[at:], uint32(n))
	return b, n, nil
}

// readStatus reads the acceptor's one-byte answer.
func readStatus(r io.Reader) (handshakeStatus, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	return handshakeStatus(b[0]), nil
}

// newBufReader and newBufWriter size the per-connection buffers: large
// enough that one syscall carries many small messages.
func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }
func newBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 64<<10) }
