package kv

import (
	"strconv"
)

// Kind says which RESP reply a Result stands for.
//
// Written to snapshots (inside the dedup table): never renumber.
type Kind uint8

const (
	// KindOK is the simple string reply +OK.
	KindOK Kind = 1
	// KindNil is the null bulk reply ($-1 in RESP2).
	KindNil Kind = 2
	// KindInt is an integer reply (Result.Int).
	KindInt Kind = 3
	// KindBulk is a bulk string reply (Result.Bulk, never nil).
	KindBulk Kind = 4
	// KindError is an error reply (Result.Err, a Redis-style message that starts
	// with an upper-case code: "ERR ...", "WRONGTYPE ...").
	KindError Kind = 5
)

// Result is what Apply returns for each entry (boxed in an any): the reply of
// one write command, ready for the server to turn into RESP or JSON.
//
// A Result is immutable: Bulk aliases the store's value and must not be
// modified (its capacity is clipped, so appending to it copies).
type Result struct {
	Kind Kind
	Int  int64
	Bulk []byte
	Err  string
}

// Redis error messages, as Redis 7 words them.
const (
	ErrMsgNotInteger      = "ERR value is not an integer or out of range"
	ErrMsgOverflow        = "ERR increment or decrement would overflow"
	ErrMsgDecrOverflow    = "ERR decrement would overflow"
	ErrMsgSyntax          = "ERR syntax error"
	ErrMsgStringTooLong   = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
	ErrMsgExpireFlagsNXXX = "ERR NX and XX, GT or LT options at the same time are not compatible"
	ErrMsgExpireFlagsGTLT = "ERR GT and LT options at the same time are not compatible"
	// ErrMsgDedupExpired answers a retried proposal whose first attempt may
	// have been applied but is no longer remembered (older than the dedup
	// window, or evicted by the dedup cap): re-applying it could apply it twice.
	ErrMsgDedupExpired = "ERR proposal too old to deduplicate: it may or may not have been applied"
)

// errMsgExpireTime is Redis's "invalid expire time in '<cmd>' command".
func errMsgExpireTime(cmd string) string {
	return "ERR invalid expire time in '" + cmd + "' command"
}

// OK, Nil, Int, Bulk and Error build Results.
var (
	resOK  = Result{Kind: KindOK}
	resNil = Result{Kind: KindNil}
)

// OK returns the +OK result.
func OK() Result { return resOK }

// Nil returns the null result.
func Nil() Result { return resNil }

// Int returns an integer result.
func Int(n int64) Result { return Result{Kind: KindInt, Int: n} }

// Bulk returns a bulk string result; b must not be modified afterwards.
func Bulk(b []byte) Result {
	if b == nil {
		b = []byte{}
	}
	return Result{Kind: KindBulk, Bulk: b[:len(b):len(b)]}
}

// Error returns an error result; msg should start with a Redis error code.
func Error(msg string) Result { return Result{Kind: KindError, Err: msg} }

// IsError reports whether r is an error reply.
func (r Result) IsError() bool { return r.Kind == KindError }

// String renders r the way redis-cli would, for logs and test failures.
func (r Result) String() string {
	switch r.Kind {
	case KindOK:
		return "OK"
	case KindNil:
		return "(nil)"
	case KindInt:
		return "(integer) " + strconv.FormatInt(r.Int, 10)
	case KindBulk:
		return strconv.Quote(string(r.Bulk))
	case KindError:
		return "(error) " + r.Err
	}
	return "Result(kind " + strconv.Itoa(int(r.Kind)) + ")"
}

// equal reports whether two results are the same reply.
func (r Result) equal(o Result) bool {
	return r.Kind == o.Kind && r.Int == o.Int && string(r.Bulk) == string(o.Bulk) && r.Err == o.Err
}
