package raftpb

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// roundTripper is every type with the binary encoding.
type roundTripper interface {
	AppendBinary([]byte) ([]byte, error)
	UnmarshalBinary([]byte) error
}

func randBytes(r *rand.Rand, max int) []byte {
	n := r.IntN(max + 1)
	if n == 0 {
		return nil // the decoder gives nil for empty byte strings
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randIDs(r *rand.Rand) []NodeID {
	n := r.IntN(6)
	if n == 0 {
		return nil
	}
	ids := make([]NodeID, n)
	for i := range ids {
		ids[i] = NodeID(r.Uint64() >> r.IntN(64))
	}
	return ids
}

func randEntry(r *rand.Rand) Entry {
	return Entry{Term: Term(r.Uint64() >> r.IntN(64)), Index: Index(r.Uint64() >> r.IntN(64)),
		Type: EntryType(r.IntN(2)), Data: randBytes(r, 64)}
}

func randMessage(r *rand.Rand) Message {
	m := Message{
		Type: MessageType(1 + r.IntN(20)), From: NodeID(r.Uint64N(100)), To: NodeID(r.Uint64N(100)),
		Term: Term(r.Uint64()), LogTerm: Term(r.Uint64N(1000)), Index: Index(r.Uint64()),
		Commit: Index(r.Uint64N(1 << 40)), Reject: r.IntN(2) == 0, RejectHint: Index(r.Uint64N(1000)),
		Context: randBytes(r, 16),
	}
	if n := r.IntN(5); n > 0 {
		m.Entries = make([]Entry, n)
		for i := range m.Entries {
			m.Entries[i] = randEntry(r)
		}
	}
	if r.IntN(3) == 0 {
		m.Snapshot = &SnapshotMeta{Index: Index(r.Uint64()), Term: Term(r.Uint64()),
			ConfState: ConfState{Voters: randIDs(r), Learners: randIDs(r)}}
	}
	return m
}

// TestRoundTrip checks that decode(encode(v)) == v for random values of every type.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		e := randEntry(r)
		cc := ConfChange{Type: ConfChangeType(r.IntN(3)), NodeID: NodeID(r.Uint64()), Context: randBytes(r, 32)}
		cs := ConfState{Voters: randIDs(r), Learners: randIDs(r)}
		sm := SnapshotMeta{Index: Index(r.Uint64()), Term: Term(r.Uint64()), ConfState: cs}
		hs := HardState{Term: Term(r.Uint64()), Vote: NodeID(r.Uint64()), Commit: Index(r.Uint64())}
		m := randMessage(r)
		cases := []struct {
			in, out roundTripper
		}{
			{&e, new(Entry)}, {&cc, new(ConfChange)}, {&cs, new(ConfState)},
			{&sm, new(SnapshotMeta)}, {&hs, new(HardState)}, {&m, new(Message)},
		}
		for _, c := range cases {
			b, err := c.in.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.out.UnmarshalBinary(b); err != nil {
				t.Fatalf("decode %T %+v: %v", c.in, c.in, err)
			}
			if !reflect.DeepEqual(c.in, c.out) {
				t.Fatalf("round trip of %T:\n in %+v\nout %+v", c.in, c.in, c.out)
			}
		}
	}
}

// TestAppendBinaryAppends checks that encoding appends to, and keeps, the given prefix.
func TestAppendBinaryAppends(t *testing.T) {
	hs := HardState{Term: 3, Vote: 2, Commit: 9}
	b, _ := hs.AppendBinary([]byte("prefix"))
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatalf("prefix lost: %q", b)
	}
	var got HardState
	if err := got.UnmarshalBinary(b[len("prefix"):]); err != nil || got != hs {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// TestDecodeRejectsCorruption checks the errors users see for damaged input.
func TestDecodeRejectsCorruption(t *testing.T) {
	m := Message{Type: MsgApp, From: 1, To: 2, Entries: []Entry{{Term: 1, Index: 1, Data: []byte("x")}}}
	good, _ := m.AppendBinary(nil)
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"future version", append([]byte{Version + 1}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(append([]byte{}, good...), 0)},
		// A count of 2^62 entries must be refused before any allocation.
		{"huge entry count", []byte{Version, byte(MsgApp), 0, 1, 2, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40}},
		{"huge context length", []byte{Version, byte(MsgApp), 0, 1, 2, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"unknown flags", append([]byte{Version, byte(MsgApp), 0x80}, good[3:]...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got Message
			err := got.UnmarshalBinary(tc.data)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// FuzzMessage checks that any input either fails cleanly or decodes to a
// message that re-encodes to the same bytes.
func FuzzMessage(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 16; i++ {
		m := randMessage(r)
		b, _ := m.AppendBinary(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if err := m.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := m.AppendBinary(nil)
		var m2 Message
		if err := m2.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoding changed the message: %v\n%+v\n%+v", err, m, m2)
		}
	})
}

// FuzzEntry is FuzzMessage for disk entries.
func FuzzEntry(f *testing.F) {
	e := Entry{Term: 2, Index: 7, Data: []byte("hello")}
	b, _ := e.AppendBinary(nil)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Entry
		if err := e.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := e.AppendBinary(nil)
		if !bytes.Equal(again, data) {
			// Varints have one canonical form only when minimal; accept
			// non-minimal input but require a stable re-encoding.
			var e2 Entry
			if err := e2.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(e, e2) {
				t.Fatalf("unstable re-encoding: %+v vs %+v", e, e2)
			}
		}
	})
}

func BenchmarkMessageAppendBinary(b *testing.B) {
	m := Message{Type: MsgApp, From: 1, To: 2, Term: 5, Index: 100, LogTerm: 5, Commit: 99}
	for i := 0; i < 64; i++ {
		m.Entries = append(m.Entries, Entry{Term: 5, Index: Index(101 + i), Data: make([]byte, 256)})
	}
	buf := make([]byte, 0, 32<<10)
	b.SetBytes(64 * 256)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = m.AppendBinary(buf[:0])
	}
}

func BenchmarkMessageUnmarshalBinary(b *testing.B) {
	m := Message{Type: MsgApp, From: 1, To: 2, Term: 5, Index: 100, LogTerm: 5, Commit: 99}
	for i := 0; i < 64; i++ {
		m.Entries = append(m.Entries, Entry{Term: 5, Index: Index(101 + i), Data: make([]byte, 256)})
	}
	buf, _ := m.AppendBinary(nil)
	b.SetBytes(64 * 256)
	b.ReportAllocs()
	for b.Loop() {
		var out Message
		if err := out.UnmarshalBinary(buf); err != nil {
			b.Fatal(err)
		}
	}
}
