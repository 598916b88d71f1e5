package transport

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// encodeBatch builds a frameMessages frame the way the writer does.
func encodeBatch(t testing.TB, msgs ...raftpb.Message) []byte {
	t.Helper()
	var body []byte
	for i := range msgs {
		var err error
		body, _, err = appendMessage(body, &msgs[i])
		if err != nil {
			t.Fatal(err)
		}
	}
	return append(appendFrameHeader(nil, frameMessages, len(body)), body...)
}

func TestHandshakeRoundTrip(t *testing.T) {
	h := handshake{version: wireVersion, kind: kindSnapshot, clusterID: 1<<63 + 5, from: 7, to: 1 << 40}
	b := h.append(nil)
	if len(b) != handshakeSize {
		t.Fatalf("handshake is %d bytes, want %d", len(b), handshakeSize)
	}
	got, err := readHandshake(bytes.NewReader(b))
	if err != nil || got != h {
		t.Fatalf("got %+v, %v; want %+v", got, err, h)
	}
	if _, err := readHandshake(bytes.NewReader(b[:10])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short handshake: %v", err)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	msgs := []raftpb.Message{
		app(1, 2, 5, 300),
		{Type: raftpb.MsgVote, From: 1, To: 2, Term: 8, LogTerm: 7, Index: 99},
		{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Context: []byte("read-42")},
	}
	frame := encodeBatch(t, msgs...)
	got, sizes, err := readMessageFrame(bytes.NewReader(frame), 1<<20, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(got), normalize(msgs)) || len(sizes) != 3 {
		t.Fatalf("round trip: got %+v", got)
	}
	if _, _, err := readMessageFrame(bytes.NewReader(frame), len(frame)-frameHeaderSize-1, nil, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("limit not enforced: %v", err)
	}
}

// FuzzReadMessageFrame feeds arbitrary bytes to the frame decoder: it must
// never panic, never allocate beyond the limit, and whatever it accepts must
// survive a re-encode unchanged.
func FuzzReadMessageFrame(f *testing.F) {
	f.Add(encodeBatch(f, app(1, 2, 1, 10)))
	f.Add(encodeBatch(f, app(1, 2, 1, 0), raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Context: []byte{1}}))
	f.Add(encodeBatch(f, raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Snapshot: &raftpb.SnapshotMeta{Index: 3, ConfState: raftpb.ConfState{Voters: []raftpb.NodeID{1}}}}))
	f.Add([]byte{0, 0, 0, 5, 1, 0, 0, 0, 1, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 16
		msgs, sizes, err := readMessageFrame(bytes.NewReader(data), limit, nil, nil)
		if err != nil {
			if len(msgs) != 0 {
				t.Fatalf("error %v with %d messages", err, len(msgs))
			}
			return
		}
		if len(msgs) == 0 || len(msgs) != len(sizes) {
			t.Fatalf("accepted a frame with %d messages, %d sizes", len(msgs), len(sizes))
		}
		re := encodeBatch(t, msgs...)
		again, _, err := readMessageFrame(bytes.NewReader(re), limit+1<<16, nil, nil)
		if err != nil {
			t.Fatalf("re-encoded frame rejected: %v", err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(msgs)) {
			t.Fatalf("re-encode changed messages")
		}
	})
}

// FuzzSnapshotReader feeds arbitrary snapshot streams to the receiver's
// reader: no panic, and io.EOF only for a stream whose end frame matches.
func FuzzSnapshotReader(f *testing.F) {
	good := append(appendFrameHeader(nil, frameSnapChunk, 3), "abc"...)
	f.Add(good, int64(3))
	f.Add([]byte{0, 0, 0, 12, 4}, int64(-1))
	f.Add([]byte{0, 0, 0, 1, 9, 0}, int64(0))
	f.Fuzz(func(t *testing.T, data []byte, size int64) {
		sr := &snapReader{conn: noDeadline{}, br: newBufReader(bytes.NewReader(data)), max: 1 << 16,
			timeout: 1, crc: newCRC(), size: size}
		n, err := io.Copy(io.Discard, sr)
		if err == nil && (sr.err != io.EOF || n != sr.total) {
			t.Fatalf("clean end with sticky error %v, %d vs %d bytes", sr.err, n, sr.total)
		}
	})
}
