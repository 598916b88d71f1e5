package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/tidwall/redcon"
)

// tooLargeMarker replaces, in the command the limiter hands out, a bulk
// string longer than the value size limit. The limiter discards the
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

// frameLimiter reads RESP commands from a client connection. It follows
// the framing of the byte stream (multibulk headers, bulk lengths, inline
// lines), rejects malformed frames, and enforces, before anything is
// buffered:
//   - at most maxArgs arguments per command (more is a protocol error, as
//     Redis's "invalid multibulk length"),
//   - bulk strings longer than maxBulk are swallowed and replaced by
//     tooLargeMarker (see above),
//   - inline lines of at most maxInlineBytes (redcon's parser splits them
//     into arguments, with Redis's quoting rules).
//
// Multibulk commands, nearly all of them, are sliced into arguments here:
// the frame already has to be followed byte by byte to enforce the limits,
// and handing out every command received so far as one batch, backed by one
// allocation, is what lets a pipeline become one proposal (see commands).
type frameLimiter struct {
	src     io.Reader
	maxArgs int
	maxBulk int

	in    []byte // read from src, not yet processed
	inBuf []byte // reused for every read from src (in is drained before the next)
	out   []byte // processed: complete commands (up to ends' last), then the current one
	err   error  // sticky

	ends     []cmdEnd // the complete commands in out
	offs     []int    // [start, end) of each argument in out, complete commands first
	cmdStart int      // where the current command starts in out
	argStart int      // where the current bulk's payload starts in out

	state     limState
	line      []byte // the header line being collected
	argsLeft  int    // bulk strings left in the current multibulk
	bulkLeft  int64  // bytes (including the trailing CRLF) of the current bulk still to pass or skip
	skipping  bool   // the current bulk is oversized: drop its bytes
	inlineLen int
}

// cmdEnd marks a complete command: its end in out, and the end of its
// arguments in offs.
type cmdEnd struct{ end, offsEnd int }

// command is one client command: its arguments, and its size as a
// multibulk (what batching limits count).
type command struct {
	args [][]byte
	size int
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

// A connection reads from its socket up to minReadBytes at a time (Redis's
// query buffer size), and up to maxReadBytes once reads fill their buffer
// (a client pipelining large values). A 16-command pipeline of 256-byte
// SETs is 4.8 KiB: read in one system call, it comes out of commands whole.
const (
	minReadBytes = 16 << 10
	maxReadBytes = 64 << 10
)

func newFrameLimiter(src io.Reader, maxArgs, maxBulk int) *frameLimiter {
	return &frameLimiter{src: src, maxArgs: maxArgs, maxBulk: maxBulk}
}

// commands returns every complete command received so far, waiting for the
// connection only when there is none: what arrived together is handled,
// and proposed, together. The arguments share one allocation, owned by the
// caller. An error (malformed frame, closed connection) is returned once the
// commands before it have been returned.
func (l *frameLimiter) commands() ([]command, error) {
	for len(l.ends) == 0 {
		if l.err != nil {
			return nil, l.err
		}
		if len(l.inBuf) < minReadBytes {
			l.inBuf = make([]byte, minReadBytes)
		}
		n, err := l.src.Read(l.inBuf)
		l.in = l.inBuf[:n]
		if n == len(l.inBuf) && n < maxReadBytes {
			// The client sends more than a read takes: a pipeline, or
			// large values. Read them in fewer system calls from now on.
			l.inBuf = make([]byte, min(2*n, maxReadBytes))
		}
		if err != nil {
			l.err = err
		}
		if perr := l.process(); perr != nil {
			l.err = perr
			l.in = nil
		}
	}
	return l.take(), nil
}

// take hands out the complete commands and keeps the current one's bytes.
func (l *frameLimiter) take() []command {
	last := l.ends[len(l.ends)-1]
	var buf []byte
	if last.end == len(l.out) && cap(l.out) > maxReadBytes {
		buf, l.out = l.out, nil // a large command: hand the buffer over
	} else {
		buf = append([]byte(nil), l.out[:last.end]...)
	}
	args := make([][]byte, last.offsEnd/2)
	for i := range args {
		args[i] = buf[l.offs[2*i]:l.offs[2*i+1]:l.offs[2*i+1]]
	}
	cmds := make([]command, len(l.ends))
	start, offsStart := 0, 0
	for i, e := range l.ends {
		cmds[i] = command{args: args[offsStart/2 : e.offsEnd/2 : e.offsEnd/2], size: e.end - start}
		start, offsStart = e.end, e.offsEnd
	}

	// Move the current command to the front of out.
	if l.out != nil {
		l.out = l.out[:copy(l.out, l.out[last.end:])]
		if cap(l.out) > 1<<20 && len(l.out) < 64<<10 {
			// One huge pipeline grew it past what is worth keeping per
			// connection.
			l.out = append([]byte(nil), l.out...)
		}
	}
	rest := l.offs[last.offsEnd:]
	for i := range rest {
		rest[i] -= last.end
	}
	l.offs = l.offs[:copy(l.offs, rest)]
	l.cmdStart -= last.end
	l.argStart -= last.end
	l.ends = l.ends[:0]
	return cmds
}

// process moves bytes from in to out, following the framing, and records
// the arguments and the end of every command it completes.
func (l *frameLimiter) process() error {
	for len(l.in) > 0 {
		switch l.state {
		case limStart:
			l.cmdStart = len(l.out)
			if l.whole() {
				continue
			}
			if l.in[0] == '*' {
				l.state = limHeader
				l.line = l.line[:0]
			} else {
				l.state = limInline
				l.inlineLen = 0
			}
		case limHeader, limBulkHdr:
			if l.state == limBulkHdr && len(l.line) == 0 && l.in[0] != '$' {
				return &errProtocol{fmt.Sprintf("expected '$', got '%c'", l.in[0])}
			}
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
			l.offs = append(l.offs, l.argStart, len(l.out)-2)
			l.argsLeft--
			if l.argsLeft == 0 {
				l.state = limStart
				l.ends = append(l.ends, cmdEnd{end: len(l.out), offsEnd: len(l.offs)})
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
				if err := l.inlineDone(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// whole takes, in one step, a multibulk command that has arrived whole at
// the front of in and that the byte-by-byte path below would take as it is
// (plain decimal lengths, no oversized value): nearly every command of a
// pipeline. Anything else (a command cut by the read, an error, a value to
// swallow) it leaves to that path, and reports false.
func (l *frameLimiter) whole() bool {
	in := l.in
	if len(in) == 0 || in[0] != '*' {
		return false
	}
	nargs, i, ok := wholeLen(in, 1)
	if !ok || nargs <= 0 || nargs > l.maxArgs {
		return false
	}
	base := len(l.out)
	offs := len(l.offs)
	for range nargs {
		if i >= len(in) || in[i] != '$' {
			l.offs = l.offs[:offs]
			return false
		}
		n, j, ok := wholeLen(in, i+1)
		if !ok || n > l.maxBulk || len(in)-j < n+2 || in[j+n] != '\r' || in[j+n+1] != '\n' {
			l.offs = l.offs[:offs]
			return false
		}
		l.offs = append(l.offs, base+j, base+j+n)
		i = j + n + 2
	}
	l.out = append(l.out, in[:i]...)
	l.in = in[i:]
	l.ends = append(l.ends, cmdEnd{end: len(l.out), offsEnd: len(l.offs)})
	return true
}

// wholeLen parses the length of a header whose digits start at in[i] and
// returns it and where the header's CRLF ends. ok is false unless the line
// is complete, plain digits (no sign, at most 9) and a CRLF.
func wholeLen(in []byte, i int) (n, end int, ok bool) {
	start := i
	for ; i < len(in) && in[i] >= '0' && in[i] <= '9'; i++ {
		n = n*10 + int(in[i]-'0')
	}
	if i == start || i-start > 9 || len(in)-i < 2 || in[i] != '\r' || in[i+1] != '\n' {
		return 0, 0, false
	}
	return n, i + 2, true
}

// headerDone handles a complete "*N\r\n" or "$N\r\n" line held in l.line.
func (l *frameLimiter) headerDone() error {
	// A malformed header is an error returned after the commands before
	// it in the same read (see commands), so that those are still answered.
	// (A bulk header not starting with '$' was refused at its first byte.)
	line := l.line
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
		l.argStart = len(l.out)
		l.out = append(l.out, tooLargeMarker...)
		l.out = append(l.out, "\r\n"...)
		return nil
	}
	l.out = append(l.out, line...)
	l.argStart = len(l.out)
	return nil
}

// inlineDone turns the inline line just completed at the end of out into a
// command: redcon splits it into arguments (quotes and escapes as Redis
// reads them), and the line is replaced by the equivalent multibulk. A line
// of spaces is no command.
func (l *frameLimiter) inlineDone() error {
	line := l.out[l.cmdStart:]
	text := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(bytes.Trim(text, " ")) == 0 {
		l.out = l.out[:l.cmdStart]
		return nil
	}
	// Parse a copy: the last argument may alias the line, which the
	// multibulk below overwrites.
	cmd, err := redcon.Parse(append([]byte(nil), line...))
	if err != nil {
		return err
	}
	l.out = l.out[:l.cmdStart]
	l.out = append(l.out, '*')
	l.out = strconv.AppendInt(l.out, int64(len(cmd.Args)), 10)
	l.out = append(l.out, "\r\n"...)
	for _, a := range cmd.Args {
		l.out = append(l.out, '$')
		l.out = strconv.AppendInt(l.out, int64(len(a)), 10)
		l.out = append(l.out, "\r\n"...)
		l.offs = append(l.offs, len(l.out), len(l.out)+len(a))
		l.out = append(l.out, a...)
		l.out = append(l.out, "\r\n"...)
	}
	l.ends = append(l.ends, cmdEnd{end: len(l.out), offsEnd: len(l.offs)})
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
