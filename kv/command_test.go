package kv

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func sampleCommands() []Command {
	return []Command{
		{Session: 1, Seq: 2, Now: t0, Op: OpSet, Key: []byte("k"), Value: []byte("v"), Flags: FlagEX | FlagNX | FlagGet, Int: 10},
		{Session: math.MaxUint64, Seq: math.MaxUint64, Now: math.MinInt64, Op: OpSetNX, Key: []byte{}, Value: []byte{0, 0xff}},
		{Op: OpGetSet, Key: []byte("k"), Value: []byte("v")},
		{Op: OpGetDel, Key: []byte("k")},
		{Op: OpDel, Keys: [][]byte{[]byte("a"), []byte("")}},
		{Op: OpUnlink, Keys: [][]byte{[]byte("a")}},
		{Op: OpAppend, Key: []byte("k"), Value: bytes.Repeat([]byte("x"), 1000)},
		{Op: OpIncrBy, Key: []byte("n"), Int: math.MinInt64},
		{Session: 3, Seq: 9, Ack: 7, Now: t0, Op: OpIncrBy, Key: []byte("n"), Int: 2},
		{Op: OpDecrBy, Key: []byte("n"), Int: math.MaxInt64},
		{Op: OpMSet, Keys: [][]byte{[]byte("a"), []byte("b")}, Values: [][]byte{[]byte("1"), []byte("")}},
		{Op: OpExpire, Key: []byte("k"), Int: -5, Flags: FlagGT | FlagXX},
		{Op: OpPExpire, Key: []byte("k"), Int: 5},
		{Op: OpPersist, Key: []byte("k")},
		{Now: 5, Op: OpFlush},
		{Op: OpExpireSweep, Keys: [][]byte{[]byte("a")}},
		{Op: OpBatch, Batch: []Command{
			{Session: 7, Seq: 1, Now: t0, Op: OpSet, Key: []byte("a"), Value: []byte("1")},
			{Session: 7, Seq: 2, Now: t0, Op: OpIncrBy, Key: []byte("a"), Int: 1},
			{Session: 7, Seq: 3, Now: t0, Op: OpMSet, Keys: [][]byte{[]byte("b")}, Values: [][]byte{bytes.Repeat([]byte("v"), 300)}},
		}},
	}
}

// sameCommand compares commands treating nil and empty slices alike (the
// encoding does not distinguish them).
func sameCommand(a, b Command) bool {
	norm := func(c Command) Command {
		if len(c.Key) == 0 {
			c.Key = nil
		}
		if len(c.Value) == 0 {
			c.Value = nil
		}
		for _, l := range []*[][]byte{&c.Keys, &c.Values} {
			if len(*l) == 0 {
				*l = nil
			}
			for i := range *l {
				if len((*l)[i]) == 0 {
					(*l)[i] = nil
				}
			}
		}
		if len(c.Batch) == 0 {
			c.Batch = nil
		}
		return c
	}
	if len(a.Batch) != len(b.Batch) {
		return false
	}
	for i := range a.Batch {
		if !sameCommand(a.Batch[i], b.Batch[i]) {
			return false
		}
	}
	a.Batch, b.Batch = nil, nil
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		t.Run(c.Op.String(), func(t *testing.T) {
			data, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if !sameCommand(got, c) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, c)
			}
			// Every strict prefix and any trailing byte is rejected.
			for n := range len(data) {
				if _, err := Decode(data[:n]); !errors.Is(err, ErrMalformedCommand) {
					t.Fatalf("prefix %d of %d: err %v", n, len(data), err)
				}
			}
			if _, err := Decode(append(data, 0)); !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("trailing byte: err %v", err)
			}
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	for _, c := range []Command{
		{},
		{Op: opMax + 1},
		{Op: OpSet, Flags: FlagGT},
		{Op: OpGetDel, Flags: FlagNX},
		{Op: OpExpire, Flags: FlagKeepTTL},
		{Op: OpMSet, Keys: [][]byte{[]byte("a")}},
		{Op: OpBatch},
		{Op: OpBatch, Batch: []Command{{Op: OpBatch, Batch: []Command{{Op: OpFlush}}}}},
		{Op: OpBatch, Batch: []Command{{Op: OpGetDel, Flags: FlagNX}}},
		{Op: OpSet, Batch: []Command{{Op: OpFlush}}},
	} {
		if _, err := c.Encode(); err == nil {
			t.Errorf("Encode(%+v) succeeded", c)
		}
	}
	if _, err := Decode([]byte{3, 0, 0, 0, byte(OpFlush), 0}); !errors.Is(err, ErrMalformedCommand) {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := Decode([]byte{2, 1, 1, 0, 0, byte(OpFlush), 0}); !errors.Is(err, ErrMalformedCommand) {
		t.Errorf("version 2 with ack 0: %v", err)
	}
	// A batch inside a batch is refused before its body is read.
	inner, err := (&Command{Op: OpBatch, Batch: []Command{{Op: OpFlush}}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	outer := appendBytes([]byte{1, 0, 0, 0, byte(OpBatch), 0, 1}, inner)
	if _, err := Decode(outer); !errors.Is(err, ErrMalformedCommand) || !strings.Contains(err.Error(), "nested batch") {
		t.Errorf("nested batch: %v", err)
	}
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes to a
// command that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, c := range sampleCommands() {
		data, _ := c.Encode()
		f.Add(data)
	}
	f.Add([]byte{1, 0, 0, 0, byte(OpDel), 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("error %v does not wrap ErrMalformedCommand", err)
			}
			return
		}
		again, err := c.Encode()
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", c, err)
		}
		c2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if !sameCommand(c, c2) {
			t.Fatalf("\n%+v\n%+v", c, c2)
		}
		// Applying it must not panic either.
		s, _ := New(Config{})
		s.applyCommandLocked(&c)
	})
}
