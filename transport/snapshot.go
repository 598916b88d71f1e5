package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newCRC() hash.Hash32 { return crc32.New(castagnoli) }

// SendSnapshot streams a MsgSnap and its data to m.To on a connection of its
// own, in the background, so that a large snapshot never delays the
// message stream. Memory is bounded by one chunk (SnapshotChunkSize) on each
// side. size is the number of bytes data yields; a data stream of another
// length is reported as failed (pass -1 if unknown). data is always closed.
// Handler.ReportSnapshot(m.To, ok) follows when the receiver has taken the
// snapshot (ok) or the stream failed; ok means the receiver's
// Handler.ReceiveSnapshot returned nil after an intact stream. After Close,
// data is closed and nothing is reported.
func (t *Transport) SendSnapshot(m raftpb.Message, data io.ReadCloser, size int64) {
	fail := func(msg string) {
		data.Close()
		t.log.Error(msg, "peer", m.To, "type", m.Type)
		t.rep.snapshot(m.To, false)
	}
	if m.Type != raftpb.MsgSnap || m.Snapshot == nil {
		fail("SendSnapshot needs a MsgSnap with snapshot metadata")
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		data.Close()
		return
	}
	p, ok := t.peers[m.To]
	if !ok {
		t.mu.Unlock()
		fail("cannot send snapshot to unknown peer")
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		start := time.Now()
		n, err := t.sendSnapshot(p, m, data, size)
		if err != nil {
			p.stats.snapSendFailed.Add(1)
			p.stats.setErr(err)
			if !t.isClosing() {
				t.log.Warn("snapshot send failed", "peer", m.To, "index", m.Snapshot.Index, "err", err)
			}
			t.rep.snapshot(m.To, false)
			return
		}
		p.stats.snapSent.Add(1)
		p.stats.snapBytesSent.Add(uint64(n))
		t.log.Info("snapshot sent", "peer", m.To, "index", m.Snapshot.Index, "bytes", n, "took", time.Since(start))
		t.rep.snapshot(m.To, true)
	}()
}

// sendSnapshot streams one snapshot and waits for the receiver's verdict.
// It returns the number of data bytes sent.
func (t *Transport) sendSnapshot(p *peer, m raftpb.Message, data io.ReadCloser, size int64) (int64, error) {
	defer data.Close()
	ctx, cancel := context.WithTimeout(p.ctx, t.cfg.DialTimeout)
	conn, err := t.dialPeer(ctx, p.getAddr(), handshake{kind: kindSnapshot, to: p.id})
	cancel()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if !t.trackSnapConn(conn) {
		return 0, ErrClosed
	}
	defer t.untrackSnapConn(conn)
	// A removed peer stops its snapshot too.
	defer context.AfterFunc(p.ctx, func() { conn.Close() })()

	wrap := func(err error) error { return fmt.Errorf("transport: snapshot to %d: %w", p.id, err) }
	bw := newBufWriter(conn)
	deadline := func() error { return conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)) }

	hdr := binary.BigEndian.AppendUint64(nil, uint64(size))
	hdr, err = m.AppendBinary(hdr)
	if err != nil {
		return 0, wrap(err)
	}
	if len(hdr) > t.cfg.MaxFrameSize {
		return 0, wrap(fmt.Errorf("header of %d bytes: %w", len(hdr), ErrFrameTooLarge))
	}
	if err := deadline(); err != nil {
		return 0, wrap(err)
	}
	if err := writeFrame(bw, frameSnapHeader, hdr); err != nil {
		return 0, wrap(err)
	}

	buf := make([]byte, t.cfg.SnapshotChunkSize)
	crc := newCRC()
	var total int64
	for {
		n, rerr := io.ReadFull(data, buf)
		if n > 0 {
			if err := deadline(); err != nil {
				return total, wrap(err)
			}
			if err := writeFrame(bw, frameSnapChunk, buf[:n]); err != nil {
				return total, wrap(err)
			}
			crc.Write(buf[:n])
			total += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			// Closing without an end frame tells the receiver the stream broke.
			return total, wrap(fmt.Errorf("read snapshot data: %w", rerr))
		}
	}
	if size >= 0 && total != size {
		return total, wrap(fmt.Errorf("snapshot data is %d bytes, %d declared", total, size))
	}
	var end [snapEndSize]byte
	binary.BigEndian.PutUint64(end[:], uint64(total))
	binary.BigEndian.PutUint32(end[8:], crc.Sum32())
	if err := deadline(); err != nil {
		return total, wrap(err)
	}
	if err := writeFrame(bw, frameSnapEnd, end[:]); err != nil {
		return total, wrap(err)
	}
	if err := bw.Flush(); err != nil {
		return total, wrap(err)
	}
	// The receiver answers once its Handler has taken (stored) the snapshot.
	if err := conn.SetReadDeadline(time.Now().Add(t.cfg.SnapshotTimeout)); err != nil {
		return total, wrap(err)
	}
	status, err := readStatus(conn)
	if err != nil {
		return total, wrap(fmt.Errorf("waiting for receiver: %w", unexpectedEOF(err)))
	}
	if status != statusOK {
		return total, wrap(errors.New(status.String()))
	}
	return total, nil
}

func (t *Transport) trackSnapConn(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.snapConns[c] = struct{}{}
	return true
}

func (t *Transport) untrackSnapConn(c net.Conn) {
	t.mu.Lock()
	delete(t.snapConns, c)
	t.mu.Unlock()
}

// receiveSnapshot reads a snapshot stream, hands it to the Handler and
// answers the sender.
func (t *Transport) receiveSnapshot(conn net.Conn, br *bufio.Reader, p *peer, from raftpb.NodeID) {
	start := time.Now()
	sr := &snapReader{conn: conn, br: br, max: t.cfg.MaxFrameSize, timeout: t.cfg.SnapshotTimeout,
		crc: newCRC(), from: from}
	m, err := sr.header(t.cfg.ID)
	if err == nil {
		err = t.cfg.Handler.ReceiveSnapshot(m, sr)
		if err == nil && sr.err == nil {
			// The handler returned early: read to the end so that a broken or
			// corrupt stream is still detected before we say "ok".
			_, err = io.Copy(io.Discard, sr)
		}
		if err == nil && sr.err != io.EOF {
			err = fmt.Errorf("transport: handler accepted a broken snapshot stream: %w", sr.err)
		}
	}
	status := statusOK
	if err != nil {
		status = statusFailed
		p.stats.snapRecvFailed.Add(1)
		p.stats.setErr(err)
		if !t.isClosing() {
			t.log.Warn("snapshot receive failed", "peer", from, "err", err)
		}
	} else {
		p.stats.snapRecv.Add(1)
		p.stats.snapBytesRecv.Add(uint64(sr.total))
		t.log.Info("snapshot received", "peer", from, "index", m.Snapshot.Index, "bytes", sr.total, "took", time.Since(start))
	}
	conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
	conn.Write([]byte{byte(status)})
}

// snapReader is the io.Reader a Handler gets over a snapshot stream: it
// returns chunk data straight from the connection's buffer (no per-chunk
// allocation), verifies the length and CRC in the end frame, and returns
// io.EOF only for a complete, intact stream.
type snapReader struct {
	conn    interface{ SetReadDeadline(time.Time) error }
	br      *bufio.Reader
	max     int
	timeout time.Duration
	from    raftpb.NodeID

	size  int64 // declared by the sender; -1 if unknown
	left  int   // bytes left in the current chunk
	total int64
	crc   hash.Hash32
	err   error // sticky: io.EOF after a good end frame
}

// header reads the snapshot header frame.
func (s *snapReader) header(self raftpb.NodeID) (raftpb.Message, error) {
	var m raftpb.Message
	if err := s.conn.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
		return m, err
	}
	typ, n, err := readFrameHeader(s.br, s.max)
	if err != nil {
		return m, fmt.Errorf("transport: snapshot from %d: header: %w", s.from, unexpectedEOF(err))
	}
	if typ != frameSnapHeader || n < 8 {
		return m, fmt.Errorf("%w: snapshot stream opened with frame type %d of %d bytes", ErrMalformed, typ, n)
	}
	body, err := readBody(s.br, n)
	if err != nil {
		return m, fmt.Errorf("transport: snapshot from %d: header: %w", s.from, err)
	}
	s.size = int64(binary.BigEndian.Uint64(body))
	if err := m.UnmarshalBinary(body[8:]); err != nil {
		return m, fmt.Errorf("%w: snapshot header: %w", ErrMalformed, err)
	}
	switch {
	case m.Type != raftpb.MsgSnap || m.Snapshot == nil:
		return m, fmt.Errorf("%w: snapshot header carries %s", ErrMalformed, m.Type)
	case m.From != s.from || m.To != self:
		return m, fmt.Errorf("%w: snapshot header from %d to %d on a stream from %d to %d", ErrMalformed, m.From, m.To, s.from, self)
	}
	return m, nil
}

func (s *snapReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Every read gets a fresh deadline: a slow Handler is fine, a silent
	// sender is not.
	if err := s.conn.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
		return 0, s.fail(err)
	}
	for s.left == 0 {
		typ, n, err := readFrameHeader(s.br, s.max)
		if err != nil {
			return 0, s.fail(unexpectedEOF(err))
		}
		switch typ {
		case frameSnapChunk:
			s.left = n
		case frameSnapEnd:
			return 0, s.end(n)
		default:
			return 0, s.fail(fmt.Errorf("%w: frame type %d in a snapshot stream", ErrMalformed, typ))
		}
	}
	if len(p) > s.left {
		p = p[:s.left]
	}
	n, err := s.br.Read(p)
	s.left -= n
	s.total += int64(n)
	s.crc.Write(p[:n])
	if err != nil {
		return n, s.fail(unexpectedEOF(err))
	}
	return n, nil
}

// end checks the end frame and makes the stream return io.EOF.
func (s *snapReader) end(n int) error {
	if n != snapEndSize {
		return s.fail(fmt.Errorf("%w: snapshot end frame of %d bytes", ErrMalformed, n))
	}
	var b [snapEndSize]byte
	if _, err := io.ReadFull(s.br, b[:]); err != nil {
		return s.fail(unexpectedEOF(err))
	}
	total, sum := int64(binary.BigEndian.Uint64(b[:])), binary.BigEndian.Uint32(b[8:])
	switch {
	case total != s.total:
		return s.fail(fmt.Errorf("%w: snapshot of %d bytes, sender counted %d", ErrMalformed, s.total, total))
	case sum != s.crc.Sum32():
		return s.fail(fmt.Errorf("%w: snapshot checksum mismatch", ErrMalformed))
	case s.size >= 0 && total != s.size:
		return s.fail(fmt.Errorf("%w: snapshot of %d bytes, %d declared", ErrMalformed, total, s.size))
	}
	s.err = io.EOF
	return io.EOF
}

func (s *snapReader) fail(err error) error {
	s.err = fmt.Errorf("transport: snapshot from %d: %w", s.from, err)
	return s.err
}
