package server

import (
	"github.com/tidwall/redcon"
)

// reply is one RESP2 reply, built by a command and written by the
// connection's writer in command order.
type reply interface {
	writeTo(w *redcon.Writer)
}

type (
	simpleReply string   // +OK
	errReply    string   // -ERR ... (the full message, prefix included)
	intReply    int64    // :1
	bulkReply   []byte   // $3 foo
	nilReply    struct{} // $-1
	arrayReply  []reply  // *N ...
	nilArray    struct{} // *-1
)

func (r simpleReply) writeTo(w *redcon.Writer) { w.WriteString(string(r)) }
func (r errReply) writeTo(w *redcon.Writer)    { w.WriteError(string(r)) }
func (r intReply) writeTo(w *redcon.Writer)    { w.WriteInt64(int64(r)) }
func (r bulkReply) writeTo(w *redcon.Writer)   { w.WriteBulk(r) }
func (nilReply) writeTo(w *redcon.Writer)      { w.WriteNull() }
func (nilArray) writeTo(w *redcon.Writer)      { w.WriteRaw([]byte("*-1\r\n")) }
func (r arrayReply) writeTo(w *redcon.Writer) {
	w.WriteArray(len(r))
	for _, e := range r {
		e.writeTo(w)
	}
}

// Typed as reply so that returning one does not box a new copy each time
// (one allocation per write, answered OK, otherwise).
var (
	okReply   reply = simpleReply("OK")
	pongReply reply = simpleReply("PONG")
)

func bulkString(s string) reply { return bulkReply(s) }

func bulkStrings(ss []string) reply {
	a := make(arrayReply, len(ss))
	for i, s := range ss {
		a[i] = bulkReply(s)
	}
	return a
}

// Errors with Redis 7's exact wording where Redis has one.
const (
	msgSyntax        = "ERR syntax error"
	msgNotInteger    = "ERR value is not an integer or out of range"
	msgDBIndex       = "ERR DB index is out of range"
	msgInvalidCursor = "ERR invalid cursor"
)

func wrongArity(name string) reply {
	return errReply("ERR wrong number of arguments for '" + name + "' command")
}
