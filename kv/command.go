package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Op names a write operation of the state machine.
//
// Written to the replicated log: never renumber.
type Op uint8

const (
	opInvalid Op = 0
	// OpSet is SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT n|KEEPTTL].
	// Key, Value; Int is the expire amount when an expire flag is set.
	OpSet Op = 1
	// OpSetNX is SETNX key value. Result: Int 1 if set, 0 if the key existed.
	OpSetNX Op = 2
	// OpGetSet is GETSET key value. Result: old value or Nil. Clears the TTL.
	OpGetSet Op = 3
	// OpGetDel is GETDEL key. Result: old value or Nil.
	OpGetDel Op = 4
	// OpDel is DEL key [key ...] (Keys). Result: Int number of keys removed.
	OpDel Op = 5
	// OpUnlink is UNLINK key [key ...]; the same as OpDel here (there is no
	// background freeing to do).
	OpUnlink Op = 6
	// OpAppend is APPEND key value. Result: Int new length.
	OpAppend Op = 7
	// OpIncrBy is INCR/INCRBY key delta (Int is the delta). Result: Int new value.
	OpIncrBy Op = 8
	// OpDecrBy is DECR/DECRBY key delta (Int is the amount to subtract). A
	// separate op because Redis rejects DECRBY math.MinInt64 with its own
	// message, which negating into an INCRBY would lose.
	OpDecrBy Op = 9
	// OpMSet is MSET key value [key value ...] (Keys and Values, same length).
	OpMSet Op = 10
	// OpExpire is EXPIRE key seconds [NX|XX|GT|LT] (Int is the amount).
	OpExpire Op = 11
	// OpPExpire is PEXPIRE key milliseconds [NX|XX|GT|LT] (Int is the amount).
	OpPExpire Op = 12
	// OpPersist is PERSIST key. Result: Int 1 if a TTL was removed.
	OpPersist Op = 13
	// OpFlush is FLUSHDB / FLUSHALL (there is one database). Result: OK.
	OpFlush Op = 14
	// OpExpireSweep deletes each of Keys whose deadline is <= the command's
	// time. The leader proposes it periodically with keys from
	// Store.ExpiredKeys, so that expired keys leave every replica at the same
	// log position. Result: Int number of keys removed.
	OpExpireSweep Op = 15
	// OpBatch applies the commands of Batch in order, in one log entry, each
	// with its own Session and Seq (so each is deduplicated on its own).
	// Result: a []Result, one per command. The server batches a client's
	// pipelined writes this way: one entry instead of one per command, and
	// their order on the connection is the order they apply in, whatever
	// retries a leader change forces. Batches do not nest.
	OpBatch Op = 16

	opMax = OpBatch
)

var opNames = [...]string{
	opInvalid: "invalid", OpSet: "set", OpSetNX: "setnx", OpGetSet: "getset", OpGetDel: "getdel",
	OpDel: "del", OpUnlink: "unlink", OpAppend: "append", OpIncrBy: "incrby", OpDecrBy: "decrby",
	OpMSet: "mset", OpExpire: "expire", OpPExpire: "pexpire", OpPersist: "persist", OpFlush: "flushdb",
	OpExpireSweep: "expire-sweep", OpBatch: "batch",
}

// String returns the Redis command name of o in lower case (as Redis error
// messages quote it).
func (o Op) String() string {
	if o <= opMax {
		return opNames[o]
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// Flag modifies an op. Which flags an op accepts is listed per flag.
//
// Written to the replicated log: never renumber.
type Flag uint16

const (
	// FlagNX (SET, EXPIRE): only if the key does not exist (SET) / has no TTL (EXPIRE).
	FlagNX Flag = 1 << 0
	// FlagXX (SET, EXPIRE): only if the key exists (SET) / has a TTL (EXPIRE).
	FlagXX Flag = 1 << 1
	// FlagGet (SET): reply with the old value instead of OK.
	FlagGet Flag = 1 << 2
	// FlagKeepTTL (SET): keep the key's TTL.
	FlagKeepTTL Flag = 1 << 3
	// FlagEX (SET): Int is a TTL in seconds.
	FlagEX Flag = 1 << 4
	// FlagPX (SET): Int is a TTL in milliseconds.
	FlagPX Flag = 1 << 5
	// FlagEXAT (SET): Int is a Unix deadline in seconds.
	FlagEXAT Flag = 1 << 6
	// FlagPXAT (SET): Int is a Unix deadline in milliseconds.
	FlagPXAT Flag = 1 << 7
	// FlagGT (EXPIRE): only if the new deadline is later than the current one.
	FlagGT Flag = 1 << 8
	// FlagLT (EXPIRE): only if the new deadline is earlier than the current one.
	FlagLT Flag = 1 << 9

	setFlags    = FlagNX | FlagXX | FlagGet | FlagKeepTTL | FlagEX | FlagPX | FlagEXAT | FlagPXAT
	expireFlags = FlagNX | FlagXX | FlagGT | FlagLT
	setExpiry   = FlagEX | FlagPX | FlagEXAT | FlagPXAT
)

// Command is one replicated write: the payload of a log entry.
//
// Session and Seq identify the proposal for deduplication: a proposer picks a
// random Session per process start and increments Seq per proposal, and may
// propose the same bytes again after a leader change; the store applies a
// given (Session, Seq) once and answers a repeat with the first result.
// Session 0 means "do not deduplicate" (internal ops such as the expiry sweep,
// which are idempotent).
//
// Ack, when not 0, is the proposer's promise that it will never propose
// again any seq of this Session below Ack (every one of them has been
// answered or given up on). The store then forgets their results at once
// instead of keeping them for the dedup window (Raft thesis §6.3, where
// clients acknowledge responses): the table holds what is in flight.
//
// Now is the proposer's clock in Unix milliseconds. Apply never reads a clock:
// it uses max(Now, the latest Now applied so far) so that time never runs
// backwards when leaders with skewed clocks take turns.
//
// Byte slices returned by Decode alias the input; Encode does not retain c.
type Command struct {
	Session uint64
	Seq     uint64
	Ack     uint64
	Now     int64

	Op    Op
	Flags Flag
	// Key and Value: single-key ops.
	Key   []byte
	Value []byte
	// Int: SET's expire amount, INCRBY/DECRBY's delta, EXPIRE/PEXPIRE's amount.
	Int int64
	// Keys: DEL, UNLINK, MSET, expiry sweep. Values: MSET (parallel to Keys).
	Keys   [][]byte
	Values [][]byte
	// Batch: the commands of an OpBatch.
	Batch []Command
}

// commandVersion is the first byte of every encoded command.
//
// Encoding (version 1), all integers varint (zig-zag for signed), bytes as
// uvarint length + data:
//
//	version(1 byte) session seq now op(1 byte) flags      (version 1: Ack is 0)
//	version(1 byte) session seq ack now op(1 byte) flags  (version 2)
//	SET:                         key value int
//	SETNX, GETSET, APPEND:       key value
//	GETDEL, PERSIST:             key
//	INCRBY, DECRBY, (P)EXPIRE:   key int
//	DEL, UNLINK, EXPIRE-SWEEP:   n key*n
//	MSET:                        n (key value)*n
//	FLUSH:                       (nothing)
//	BATCH:                       n (encoded command)*n, each as bytes
//
// Written to the replicated log: never change the meaning of a version.
// Encode writes version 1 when Ack is 0, so such commands keep the bytes
// they always had.
const (
	commandVersion    = 1
	commandVersionAck = 2
)

// ErrMalformedCommand is returned (wrapped) by Decode for bytes that are not
// an encoded Command.
var ErrMalformedCommand = errors.New("kv: malformed command")

// validate checks the structure of c (not its Redis semantics, which Apply
// checks and answers with error results).
func (c *Command) validate() error {
	if c.Op == opInvalid || c.Op > opMax {
		return fmt.Errorf("unknown op %d", c.Op)
	}
	var allowed Flag
	switch c.Op {
	case OpSet:
		allowed = setFlags
	case OpExpire, OpPExpire:
		allowed = expireFlags
	}
	if c.Flags&^allowed != 0 {
		return fmt.Errorf("op %s: invalid flags %#x", c.Op, uint16(c.Flags))
	}
	if c.Op == OpMSet && len(c.Keys) != len(c.Values) {
		return fmt.Errorf("mset: %d keys but %d values", len(c.Keys), len(c.Values))
	}
	if c.Op == OpBatch {
		if len(c.Batch) == 0 {
			return errors.New("batch: no commands")
		}
		for i := range c.Batch {
			if c.Batch[i].Op == OpBatch {
				return errors.New("batch: nested batch")
			}
		}
	} else if len(c.Batch) != 0 {
		return fmt.Errorf("op %s: carries a batch", c.Op)
	}
	return nil
}

// Encode returns the binary form of c.
func (c *Command) Encode() ([]byte, error) {
	return c.AppendBinary(make([]byte, 0, c.encodedSizeHint()))
}

func (c *Command) encodedSizeHint() int {
	n := 1 + 3*binary.MaxVarintLen64 + 1 + 3 + len(c.Key) + len(c.Value) + 2*binary.MaxVarintLen64 + binary.MaxVarintLen64
	for i := range c.Keys {
		n += len(c.Keys[i]) + binary.MaxVarintLen32
	}
	for i := range c.Values {
		n += len(c.Values[i]) + binary.MaxVarintLen32
	}
	for i := range c.Batch {
		n += c.Batch[i].encodedSizeHint() + binary.MaxVarintLen64
	}
	return n
}

// AppendBinary appends the binary form of c to b (encoding.BinaryAppender).
func (c *Command) AppendBinary(b []byte) ([]byte, error) {
	if err := c.validate(); err != nil {
		return b, fmt.Errorf("kv: encode command: %w", err)
	}
	if c.Ack == 0 {
		b = append(b, commandVersion)
		b = binary.AppendUvarint(b, c.Session)
		b = binary.AppendUvarint(b, c.Seq)
	} else {
		b = append(b, commandVersionAck)
		b = binary.AppendUvarint(b, c.Session)
		b = binary.AppendUvarint(b, c.Seq)
		b = binary.AppendUvarint(b, c.Ack)
	}
	b = binary.AppendVarint(b, c.Now)
	b = append(b, byte(c.Op))
	b = binary.AppendUvarint(b, uint64(c.Flags))
	switch c.Op {
	case OpSet:
		b = appendBytes(b, c.Key)
		b = appendBytes(b, c.Value)
		b = binary.AppendVarint(b, c.Int)
	case OpSetNX, OpGetSet, OpAppend:
		b = appendBytes(b, c.Key)
		b = appendBytes(b, c.Value)
	case OpGetDel, OpPersist:
		b = appendBytes(b, c.Key)
	case OpIncrBy, OpDecrBy, OpExpire, OpPExpire:
		b = appendBytes(b, c.Key)
		b = binary.AppendVarint(b, c.Int)
	case OpDel, OpUnlink, OpExpireSweep:
		b = binary.AppendUvarint(b, uint64(len(c.Keys)))
		for _, k := range c.Keys {
			b = appendBytes(b, k)
		}
	case OpMSet:
		b = binary.AppendUvarint(b, uint64(len(c.Keys)))
		for i := range c.Keys {
			b = appendBytes(b, c.Keys[i])
			b = appendBytes(b, c.Values[i])
		}
	case OpFlush:
	case OpBatch:
		b = binary.AppendUvarint(b, uint64(len(c.Batch)))
		for i := range c.Batch {
			// Length-prefixed: encode after a maximal uvarint gap, then
			// close it up, rather than encode every command twice.
			start := len(b)
			b = append(b, make([]byte, binary.MaxVarintLen64)...)
			var err error
			if b, err = c.Batch[i].AppendBinary(b); err != nil {
				return b[:start], err
			}
			var hdr [binary.MaxVarintLen64]byte
			h := binary.PutUvarint(hdr[:], uint64(len(b)-start-binary.MaxVarintLen64))
			copy(b[start:], hdr[:h])
			b = append(b[:start+h], b[start+binary.MaxVarintLen64:]...)
		}
	}
	return b, nil
}

// UnmarshalBinary decodes data into c (encoding.BinaryUnmarshaler). Byte
// slices in c alias data.
func (c *Command) UnmarshalBinary(data []byte) error {
	cmd, err := Decode(data)
	if err != nil {
		return err
	}
	*c = cmd
	return nil
}

// Decode parses an encoded Command. Byte slices in the result alias data.
// Errors wrap ErrMalformedCommand.
func Decode(data []byte) (Command, error) { return decode(data, false, nil) }

// decode parses one command; inBatch refuses a batch before reading its
// body, so nesting cannot make decoding recurse. A batch's commands go into
// scratch's array when it has room: Store.Apply passes one it reuses, since
// a pipeline of 16 SETs is otherwise a 2.7 KB allocation for every entry.
func decode(data []byte, inBatch bool, scratch []Command) (Command, error) {
	d := decoder{buf: data}
	var c Command
	v := d.byte()
	if d.err == nil && v != commandVersion && v != commandVersionAck {
		return Command{}, fmt.Errorf("%w: unsupported version %d", ErrMalformedCommand, v)
	}
	c.Session = d.uvarint()
	c.Seq = d.uvarint()
	if v == commandVersionAck {
		if c.Ack = d.uvarint(); d.err == nil && c.Ack == 0 {
			d.fail("version 2 with ack 0")
		}
	}
	c.Now = d.varint()
	c.Op = Op(d.byte())
	flags := d.uvarint()
	if flags > 0xffff {
		d.fail("flags out of range")
	}
	c.Flags = Flag(flags)
	if d.err == nil {
		if c.Op == opInvalid || c.Op > opMax {
			d.fail("unknown op " + strconv.Itoa(int(c.Op)))
		}
	}
	switch c.Op {
	case OpSet:
		c.Key = d.bytes()
		c.Value = d.bytes()
		c.Int = d.varint()
	case OpSetNX, OpGetSet, OpAppend:
		c.Key = d.bytes()
		c.Value = d.bytes()
	case OpGetDel, OpPersist:
		c.Key = d.bytes()
	case OpIncrBy, OpDecrBy, OpExpire, OpPExpire:
		c.Key = d.bytes()
		c.Int = d.varint()
	case OpDel, OpUnlink, OpExpireSweep:
		n := d.count(1)
		if n > 0 {
			c.Keys = make([][]byte, n)
			for i := range c.Keys {
				c.Keys[i] = d.bytes()
			}
		}
	case OpMSet:
		n := d.count(2)
		if n > 0 {
			c.Keys = make([][]byte, n)
			c.Values = make([][]byte, n)
			for i := range c.Keys {
				c.Keys[i] = d.bytes()
				c.Values[i] = d.bytes()
			}
		}
	case OpBatch:
		if inBatch {
			d.fail("nested batch")
			break
		}
		n := d.count(2)
		if n > 0 {
			if cap(scratch) >= n {
				c.Batch = scratch[:n]
			} else {
				c.Batch = make([]Command, n)
			}
			for i := range c.Batch {
				sub := d.bytes()
				if d.err != nil {
					break
				}
				var err error
				if c.Batch[i], err = decode(sub, true, nil); err != nil {
					d.fail("batch command " + strconv.Itoa(i) + ": " + strings.TrimPrefix(err.Error(), ErrMalformedCommand.Error()+": "))
				}
			}
		}
	}
	if d.err == nil && len(d.buf) != 0 {
		d.fail(strconv.Itoa(len(d.buf)) + " trailing bytes")
	}
	if d.err == nil {
		if err := c.validate(); err != nil {
			d.fail(err.Error())
		}
	}
	if d.err != nil {
		return Command{}, d.err
	}
	return c, nil
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// decoder reads the fields of a Command; after the first error every read
// returns a zero value and the error sticks.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformedCommand, what)
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.fail("truncated")
		return 0
	}
	v := d.buf[0]
	d.buf = d.buf[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("bad or truncated varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("bad or truncated varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("byte string longer than the command")
		return nil
	}
	v := d.buf[:n:n]
	d.buf = d.buf[n:]
	return v
}

// count reads an element count and checks it against the remaining bytes
// (each element takes at least minBytes), so a corrupt count cannot make
// Decode allocate more than the input justifies.
func (d *decoder) count(minBytes int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.buf)/minBytes) {
		d.fail("element count larger than the command")
		return 0
	}
	return int(n)
}
