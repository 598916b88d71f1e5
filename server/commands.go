package server

import (
	"bytes"
	"strings"
)

// cmdFlag classifies a command for scheduling and for COMMAND's reply.
type cmdFlag uint8

const (
	flagWrite    cmdFlag = 1 << iota // proposed through Raft
	flagRead                         // reads keys after a ReadIndex barrier
	flagKeyspace                     // touches the whole keyspace: ordered against everything on its connection
	flagConn                         // connection state only (SELECT, CLIENT, HELLO, QUIT): runs in order on the reader
	flagFast                         // O(1): reported to COMMAND
)

// cmdSpec describes one command: its Redis arity (positive: exact count
// including the name; negative: at least -arity), where its keys are (first,
// last, step as in COMMAND; last -1 = the final argument) and its kind.
type cmdSpec struct {
	name  string
	arity int
	flags cmdFlag
	first int
	last  int
	step  int
}

// keys returns the key arguments of args (already arity-checked).
func (c *cmdSpec) keys(args [][]byte) [][]byte {
	if c.first == 0 {
		return nil
	}
	last := c.last
	if last < 0 {
		last = len(args) + last
	}
	if last >= len(args) {
		last = len(args) - 1
	}
	if c.step == 1 {
		return args[c.first : last+1] // no copy: every command but MSET
	}
	var ks [][]byte
	for i := c.first; i <= last; i += c.step {
		ks = append(ks, args[i])
	}
	return ks
}

// commandTable lists every command raftkv answers, with Redis 7's arity and
// key positions so that COMMAND's reply is what clients expect.
var commandTable = map[string]*cmdSpec{}

func init() {
	for _, c := range []cmdSpec{
		{"ping", -1, flagFast, 0, 0, 0},
		{"echo", 2, flagFast, 0, 0, 0},
		{"get", 2, flagRead | flagFast, 1, 1, 1},
		{"set", -3, flagWrite, 1, 1, 1},
		{"setnx", 3, flagWrite | flagFast, 1, 1, 1},
		{"getset", 3, flagWrite | flagFast, 1, 1, 1},
		{"getdel", 2, flagWrite | flagFast, 1, 1, 1},
		{"del", -2, flagWrite, 1, -1, 1},
		{"unlink", -2, flagWrite | flagFast, 1, -1, 1},
		{"exists", -2, flagRead | flagFast, 1, -1, 1},
		{"append", 3, flagWrite | flagFast, 1, 1, 1},
		{"strlen", 2, flagRead | flagFast, 1, 1, 1},
		{"incr", 2, flagWrite | flagFast, 1, 1, 1},
		{"incrby", 3, flagWrite | flagFast, 1, 1, 1},
		{"decr", 2, flagWrite | flagFast, 1, 1, 1},
		{"decrby", 3, flagWrite | flagFast, 1, 1, 1},
		{"mget", -2, flagRead | flagFast, 1, -1, 1},
		{"mset", -3, flagWrite, 1, -1, 2},
		{"expire", -3, flagWrite | flagFast, 1, 1, 1},
		{"pexpire", -3, flagWrite | flagFast, 1, 1, 1},
		{"ttl", 2, flagRead | flagFast, 1, 1, 1},
		{"pttl", 2, flagRead | flagFast, 1, 1, 1},
		{"persist", 2, flagWrite | flagFast, 1, 1, 1},
		{"type", 2, flagRead | flagFast, 1, 1, 1},
		{"keys", 2, flagRead | flagKeyspace, 0, 0, 0},
		{"scan", -2, flagRead | flagKeyspace, 0, 0, 0},
		{"dbsize", 1, flagRead | flagKeyspace | flagFast, 0, 0, 0},
		{"flushdb", -1, flagWrite | flagKeyspace, 0, 0, 0},
		{"flushall", -1, flagWrite | flagKeyspace, 0, 0, 0},
		{"info", -1, 0, 0, 0, 0},
		{"command", -1, 0, 0, 0, 0},
		{"client", -2, flagConn, 0, 0, 0},
		{"select", 2, flagConn | flagFast, 0, 0, 0},
		{"hello", -1, flagConn | flagFast, 0, 0, 0},
		{"quit", -1, flagConn | flagFast, 0, 0, 0},
		{"reset", 1, flagConn | flagFast, 0, 0, 0},
	} {
		commandTable[c.name] = &c
	}
}

// lookup finds the spec of args[0] (case-insensitive). It returns the lower-
// cased name in any case, for errors and metrics.
func lookup(args [][]byte) (*cmdSpec, string) {
	if len(args) == 0 {
		return nil, ""
	}
	var buf [16]byte
	name := args[0]
	if len(name) <= len(buf) {
		lower := buf[:len(name)]
		for i, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		if spec, ok := commandTable[string(lower)]; ok { // no allocation: map lookup by string(bytes)
			return spec, spec.name
		}
		return nil, string(lower)
	}
	return nil, string(bytes.ToLower(name))
}

// arityOK checks args against the spec's arity.
func (c *cmdSpec) arityOK(args [][]byte) bool {
	if c.arity >= 0 {
		return len(args) == c.arity
	}
	return len(args) >= -c.arity
}

// unknownCommand words the error as Redis 7 does.
func unknownCommand(name []byte, args [][]byte) reply {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(clip(string(name), 128))
	b.WriteString("', with args beginning with: ")
	total := 0
	for _, a := range args {
		if total >= 128 {
			break
		}
		s := clip(string(a), 128-total)
		total += len(s)
		b.WriteString("'")
		b.WriteString(s)
		b.WriteString("' ")
	}
	return errReply(sanitizeError(b.String()))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// sanitizeError keeps a client-controlled string from breaking the RESP
// framing of an error line.
func sanitizeError(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// metricName bounds the label values of the per-command metric: unknown
// commands share one label, so clients cannot blow up the metric's cardinality.
func metricName(spec *cmdSpec, name string) string {
	if spec == nil {
		return "unknown"
	}
	return spec.name
}

// parseInt parses a Redis integer argument strictly, as Redis's string2ll
// does: optional '-', no '+', no spaces, no leading zeros, within int64.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := false
	i := 0
	if b[0] == '-' {
		neg = true
		i = 1
		if len(b) == 1 {
			return 0, false
		}
	}
	if b[i] == '0' {
		return 0, len(b) == 1
	}
	var u uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if u > (1<<64-1-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

func eqFold(b []byte, s string) bool {
	return len(b) == len(s) && strings.EqualFold(string(b), s)
}
