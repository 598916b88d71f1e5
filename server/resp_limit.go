package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// tooLargeMarker replaces, in the byte stream handed to the RESP parser, a
// bulk string longer than the value size limit. The limiter discards the
// oversized bytes as they arrive instead of buffering them, so a client
// announcing "$4000000000" costs no memory, and the command still reaches the
// dispatcher, which answers it with an error: the connection stays usable.
// A client sending the marker itself only gets the same error.
var tooLargeMarker = []byte("\x00raftkv:value-too-large\x00")

// hasTooLarge reports whether the limiter swallowed one of args.
func hasTooLarge(args [][]byte) bool {
	for _, a := range args[1:] {
		if string(a) == string(tooLargeMarker) {
			return true
		}
	}
	return false
}

// maxInlineBytes caps an inline (non-RESP, telnet-style) command line, as
// Redis does (64 KiB): past it the parser would buffer without bound.
const maxInlineBytes = 64 << 10

// maxLineBytes caps a RESP header line ("*N" or "$N"): 20 digits are plenty.
const maxLineBytes = 32

// errProtocol is a malformed or oversized frame: the connection is answered
// with an error and closed (there is no way to find the next command).
type errProtocol struct{ msg string }

func (e *errProtocol) Error() string { return "Protocol error: " + e.msg }

// frameLimiter sits between a client connection and redcon's RESP parser. It
// follows the framing of the byte stream (multibulk headers, bulk lengths,
// inline lines) and enforces, before anything is buffered:
//   - at most maxArgs arguments per command (more is a protocol error, as
//     Redis's "invalid multibulk length"),
//   - bulk strings longer than maxBulk are swallowed and replaced by
//     tooLargeMarker (see above),
//   - inline lines of at most maxInlineBytes.
//
// It is not a validator: redcon still parses and rejects malformed input; the
// limiter only has to track boundaries correctly for well-formed prefixes.
type frameLimiter struct {
	src     io.Reader
	maxArgs int
	maxBulk int

	in     []byte // read from src, not yet processed
	inBuf  []byte // reused for every read from src (in is drained before the next)
	out    []byte // processed; out[outOff:] is not yet handed to the reader
	outOff int
	err    error // sticky

	state     limState
	line      []byte // the header line being collected
	argsLeft  int    // bulk strings left in the current multibulk
	bulkLeft  int64  // bytes (including the trailing CRLF) of the current bulk still to pass or skip
	skipping  bool   // the current bulk is oversized: drop its bytes
	inlineLen int
}

type limState uint8

const (
	limStart   limState = iota // expecting '*' or an inline command
	limHeader                  // collecting "*N\r\n"
	limBulkHdr                 // collecting "$N\r\n"
	limBulk                    // passing or skipping bulk bytes
	limBulkCR                  // expecting the CR after a bulk
	limBulkLF                  // expecting the LF after a bulk
	limInline                  // inside an inline command line
)

func newFrameLimiter(src io.Reader, maxArgs, maxBulk int) *frameLimiter {
	return &frameLimiter{src: src, maxArgs: maxArgs, maxBulk: maxBulk}
}

func (l *frameLimiter) Read(p []byte) (int, error) {
	for l.outOff == len(l.out) {
		if l.err != nil {
			return 0, l.err
		}
		if len(l.in) == 0 {
			if len(l.inBuf) < max(len(p), 4096) {
				l.inBuf = make([]byte, max(len(p), 4096))
			}
			n, err := l.src.Read(l.inBuf)
			l.in = l.inBuf[:n]
			if err != nil {
				l.err = err
			}
			if n == 0 {
				continue
			}
		}
		if err := l.process(); err != nil {
			l.err = err
			l.in = nil
		}
	}
	n := copy(p, l.out[l.outOff:])
	l.outOff += n
	if l.outOff == len(l.out) {
		// Reuse the buffer for the next frames, unless one huge pipeline
		// grew it past what is worth keeping per connection.
		l.out, l.outOff = l.out[:0], 0
		if cap(l.out) > 1<<20 {
			l.out = nil
		}
	}
	return n, nil
}

// process moves bytes from in to out, following the framing.
func (l *frameLimiter) process() error {
	for len(l.in) > 0 {
		switch l.state {
		case limStart:
			if l.in[0] == '*' {
				l.state = limHeader
				l.line = l.line[:0]
			} else {
				l.state = limInline
				l.inlineLen = 0
			}
		case limHeader, limBulkHdr:
			i := bytes.IndexByte(l.in, '\n')
			chunk := l.in
			if i >= 0 {
				chunk = l.in[:i+1]
			}
			l.line = append(l.line, chunk...)
			if len(l.line) > maxLineBytes {
				if l.state == limHeader {
					return &errProtocol{"invalid multibulk length"}
				}
				return &errProtocol{"invalid bulk length"}
			}
			l.in = l.in[len(chunk):]
			if i < 0 {
				continue
			}
			if err := l.headerDone(); err != nil {
				return err
			}
		case limBulk:
			n := int64(len(l.in))
			if n > l.bulkLeft {
				n = l.bulkLeft
			}
			if !l.skipping {
				l.out = append(l.out, l.in[:n]...)
			}
			l.in = l.in[n:]
			l.bulkLeft -= n
			if l.bulkLeft == 0 {
				l.state = limBulkCR
			}
		case limBulkCR, limBulkLF:
			want := byte('\r')
			if l.state == limBulkLF {
				want = '\n'
			}
			if l.in[0] != want {
				return &errProtocol{"invalid bulk length"}
			}
			if !l.skipping {
				l.out = append(l.out, want)
			}
			l.in = l.in[1:]
			if l.state == limBulkCR {
				l.state = limBulkLF
				continue
			}
			l.skipping = false
			l.argsLeft--
			if l.argsLeft == 0 {
				l.state = limStart
			} else {
				l.state = limBulkHdr
				l.line = l.line[:0]
			}
		case limInline:
			i := bytes.IndexByte(l.in, '\n')
			chunk := l.in
			if i >= 0 {
				chunk = l.in[:i+1]
			}
			l.inlineLen += len(chunk)
			if l.inlineLen > maxInlineBytes {
				return &errProtocol{"too big inline request"}
			}
			l.out = append(l.out, chunk...)
			l.in = l.in[len(chunk):]
			if i >= 0 {
				l.state = limStart
			}
		}
	}
	return nil
}

// headerDone handles a complete "*N\r\n" or "$N\r\n" line held in l.line.
func (l *frameLimiter) headerDone() error {
	// Malformed headers are errors here, not in redcon, so that the
	// commands before them in the same read are still answered.
	line := l.line
	if l.state == limBulkHdr && line[0] != '$' {
		return &errProtocol{fmt.Sprintf("expected '$', got '%c'", line[0])}
	}
	n, err := int64(0), error(nil)
	if len(line) < 3 || line[len(line)-2] != '\r' {
		err = errors.New("no CRLF")
	} else {
		n, err = strconv.ParseInt(string(line[1:len(line)-2]), 10, 64)
	}
	if l.state == limHeader {
		if err != nil || n <= 0 {
			return &errProtocol{"invalid multibulk length"}
		}
		if n > int64(l.maxArgs) {
			return &errProtocol{fmt.Sprintf("invalid multibulk length (more than %d arguments)", l.maxArgs)}
		}
		l.out = append(l.out, line...)
		l.argsLeft = int(n)
		l.state = limBulkHdr
		l.line = l.line[:0]
		return nil
	}
	if err != nil || n < 0 {
		return &errProtocol{"invalid bulk length"}
	}
	l.state = limBulk
	l.bulkLeft = n
	if n == 0 {
		l.state = limBulkCR
	}
	if n > int64(l.maxBulk) {
		l.skipping = true
		l.out = append(l.out, '$')
		l.out = strconv.AppendInt(l.out, int64(len(tooLargeMarker)), 10)
		l.out = append(l.out, "\r\n"...)
		l.out = append(l.out, tooLargeMarker...)
		l.out = append(l.out, "\r\n"...)
		return nil
	}
	l.out = append(l.out, line...)
	return nil
}

// isProtocolError reports whether err came from the limiter or from redcon's
// parser (as opposed to the network).
func isProtocolError(err error) bool {
	var pe *errProtocol
	if errors.As(err, &pe) {
		return true
	}
	return err != nil && bytes.HasPrefix([]byte(err.Error()), []byte("Protocol error"))
}
