package kv

import (
	"math"
	"strconv"
)

// exec runs one write command at time now (s.mu held exclusively) with Redis 7
// semantics. Argument errors that Redis reports while parsing (syntax, flag
// combinations) are re-checked here, so a command is answered the same way on
// every member whatever its proposer checked.
func (s *Store) exec(c *Command, now int64) Result {
	switch c.Op {
	case OpSet:
		return s.execSet(c, now)
	case OpSetNX:
		if _, had := s.liveLocked(c.Key, now); had {
			return Int(0)
		}
		s.writeLocked(string(c.Key), item{}, false, item{val: cloneValue(c.Value)})
		return Int(1)
	case OpGetSet:
		old, had := s.liveLocked(c.Key, now)
		s.writeLocked(string(c.Key), old, had, item{val: cloneValue(c.Value)})
		if !had {
			return Nil()
		}
		return Bulk(old.val)
	case OpGetDel:
		old, had := s.liveLocked(c.Key, now)
		if !had {
			return Nil()
		}
		s.removeLocked(bstr(c.Key), old)
		return Bulk(old.val)
	case OpDel, OpUnlink:
		if len(c.Keys) == 0 {
			return Error(errMsgArity(c.Op))
		}
		var n int64
		for _, k := range c.Keys {
			if old, had := s.liveLocked(k, now); had {
				s.removeLocked(bstr(k), old)
				n++
			}
		}
		return Int(n)
	case OpAppend:
		old, had := s.liveLocked(c.Key, now)
		if int64(len(old.val))+int64(len(c.Value)) > s.cfg.MaxStringSize {
			// Redis 7 appendCommand's checkStringLength.
			return Error(ErrMsgStringTooLong)
		}
		var nu item
		if had {
			// Appending in place beyond len(old.val) is safe: see item.
			nu = item{val: append(old.val, c.Value...), exp: old.exp}
		} else {
			nu = item{val: cloneValue(c.Value)}
		}
		s.writeLocked(string(c.Key), old, had, nu)
		return Int(int64(len(nu.val)))
	case OpIncrBy:
		return s.execIncr(c.Key, c.Int, now)
	case OpDecrBy:
		// Redis 7 decrbyCommand rejects LLONG_MIN before looking at the key.
		if c.Int == math.MinInt64 {
			return Error(ErrMsgDecrOverflow)
		}
		return s.execIncr(c.Key, -c.Int, now)
	case OpMSet:
		if len(c.Keys) == 0 {
			return Error(errMsgArity(c.Op))
		}
		for i, k := range c.Keys {
			old, had := s.liveLocked(k, now)
			s.writeLocked(string(k), old, had, item{val: cloneValue(c.Values[i])})
		}
		return OK()
	case OpExpire, OpPExpire:
		return s.execExpire(c, now)
	case OpPersist:
		old, had := s.liveLocked(c.Key, now)
		if !had || old.exp == 0 {
			return Int(0)
		}
		s.writeLocked(string(c.Key), old, had, item{val: old.val})
		return Int(1)
	case OpFlush:
		s.resetLocked()
		return OK()
	case OpExpireSweep:
		var n int64
		for _, k := range c.Keys {
			if it, ok := s.lookupLocked(bstr(k)); ok && it.exp > 0 && it.exp <= now {
				s.removeLocked(bstr(k), it)
				n++
			}
		}
		return Int(n)
	}
	// Decode rejects unknown ops; reaching here is a bug in this file.
	panic("kv: exec: unhandled op " + c.Op.String())
}

func errMsgArity(op Op) string {
	return "ERR wrong number of arguments for '" + op.String() + "' command"
}

// cloneValue copies a value out of the entry buffer (which the store does not
// own). The copy is never nil, so an empty value is still a value.
func cloneValue(v []byte) []byte {
	out := make([]byte, len(v))
	copy(out, v)
	return out
}

// execSet is Redis 7 setCommand + setGenericCommand.
func (s *Store) execSet(c *Command, now int64) Result {
	f := c.Flags
	expiry := f & setExpiry
	if (f&FlagNX != 0 && f&FlagXX != 0) || expiry&(expiry-1) != 0 || (f&FlagKeepTTL != 0 && expiry != 0) {
		return Error(ErrMsgSyntax)
	}
	var deadline int64
	if expiry != 0 {
		d, ok := setDeadline(c.Int, expiry, now)
		if !ok {
			return Error(errMsgExpireTime("set"))
		}
		deadline = d
	}
	old, had := s.liveLocked(c.Key, now)
	reply := OK()
	if f&FlagGet != 0 {
		reply = Nil()
		if had {
			reply = Bulk(old.val)
		}
	}
	if (f&FlagNX != 0 && had) || (f&FlagXX != 0 && !had) {
		if f&FlagGet != 0 {
			return reply
		}
		return Nil()
	}
	if f&FlagKeepTTL != 0 && had {
		deadline = old.exp
	}
	if deadline != 0 && deadline <= now {
		// A deadline already past (EXAT/PXAT in the past): Redis 7.2+ deletes
		// the key instead of storing it; either way it no longer exists.
		if had {
			s.removeLocked(bstr(c.Key), old)
		}
		return reply
	}
	s.writeLocked(string(c.Key), old, had, item{val: cloneValue(c.Value), exp: deadline})
	return reply
}

// setDeadline is Redis 7 getExpireMillisecondsOrReply: the amount must be
// positive, and the deadline must not overflow.
func setDeadline(n int64, unit Flag, now int64) (int64, bool) {
	seconds := unit == FlagEX || unit == FlagEXAT
	if n <= 0 || (seconds && n > math.MaxInt64/1000) {
		return 0, false
	}
	if seconds {
		n *= 1000
	}
	if unit == FlagEX || unit == FlagPX {
		if n > math.MaxInt64-now {
			return 0, false
		}
		n += now
	}
	return n, n > 0
}

// execExpire is Redis 7 expireGenericCommand.
func (s *Store) execExpire(c *Command, now int64) Result {
	f := c.Flags
	if f&FlagNX != 0 && f&(FlagXX|FlagGT|FlagLT) != 0 {
		return Error(ErrMsgExpireFlagsNXXX)
	}
	if f&FlagGT != 0 && f&FlagLT != 0 {
		return Error(ErrMsgExpireFlagsGTLT)
	}
	when := c.Int
	if c.Op == OpExpire {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			return Error(errMsgExpireTime(c.Op.String()))
		}
		when *= 1000
	}
	if when > math.MaxInt64-now {
		return Error(errMsgExpireTime(c.Op.String()))
	}
	when += now
	old, had := s.liveLocked(c.Key, now)
	if !had {
		return Int(0)
	}
	// current == 0 is Redis's -1: no TTL, which GT/LT treat as infinite.
	current := old.exp
	switch {
	case f&FlagNX != 0 && current != 0,
		f&FlagXX != 0 && current == 0,
		f&FlagGT != 0 && (current == 0 || when <= current),
		f&FlagLT != 0 && current != 0 && when >= current:
		return Int(0)
	}
	if when <= now {
		// Redis: a deadline in the past deletes the key (and still answers 1).
		s.removeLocked(bstr(c.Key), old)
		return Int(1)
	}
	s.writeLocked(string(c.Key), old, had, item{val: old.val, exp: when})
	return Int(1)
}

// execIncr is Redis 7 incrDecrCommand. The TTL is kept.
func (s *Store) execIncr(key []byte, delta int64, now int64) Result {
	old, had := s.liveLocked(key, now)
	var cur int64
	if had {
		v, ok := parseInt(old.val)
		if !ok {
			return Error(ErrMsgNotInteger)
		}
		cur = v
	}
	if (delta < 0 && cur < 0 && delta < math.MinInt64-cur) || (delta > 0 && cur > 0 && delta > math.MaxInt64-cur) {
		return Error(ErrMsgOverflow)
	}
	cur += delta
	nu := item{val: strconv.AppendInt(make([]byte, 0, 20), cur, 10), exp: old.exp}
	s.writeLocked(string(key), old, had, nu)
	return Int(cur)
}

// parseInt is Redis's string2ll: an optional '-', then digits without leading
// zeros ("0" alone is fine, "-0", "+1", " 1", "01" and "" are not), at most 20
// bytes, within int64.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) >= 21 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		d := uint64(ch - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return int64(-v), true // -(1<<63) wraps to MinInt64, as intended
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}
