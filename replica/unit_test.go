package replica

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      proposalID
		payload []byte
	}{
		{"small", proposalID{1, 2, 3}, []byte("set a 1")},
		{"max ids", proposalID{^uint64(0), ^uint64(0), ^uint64(0)}, []byte{0xE7, 0x01}},
		{"empty payload", proposalID{5, 6, 7}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendEnvelope(nil, tc.id, tc.payload)
			id, payload, ok := decodeEnvelope(b)
			if !ok || id != tc.id || !bytes.Equal(payload, tc.payload) {
				t.Fatalf("decode = %v %q %v, want %v %q", id, payload, ok, tc.id, tc.payload)
			}
		})
	}
	// Data without an envelope passes through untouched.
	for _, raw := range [][]byte{nil, []byte("127.0.0.1:7001"), {0xE7}, {0xE7, 0x02, 1, 2, 3}, {0xE7, 0x01, 0x80}} {
		if _, payload, ok := decodeEnvelope(raw); ok || !bytes.Equal(payload, raw) {
			t.Errorf("decodeEnvelope(%x) = %q, %v; want passthrough", raw, payload, ok)
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, proposalID{1, 2, 3}, []byte("x")))
	f.Add([]byte{0xE7, 0x01, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		id, payload, ok := decodeEnvelope(data)
		if !ok {
			return
		}
		again := appendEnvelope(nil, id, payload)
		id2, payload2, ok2 := decodeEnvelope(again)
		if !ok2 || id2 != id || !bytes.Equal(payload2, payload) {
			t.Fatalf("re-encoding changed the envelope")
		}
	})
}

func TestSnapshotHeaderRoundTrip(t *testing.T) {
	addrs := map[pb.NodeID]string{1: "127.0.0.1:1", 2: "127.0.0.1:2", 9: "gone"}
	cs := pb.ConfState{Voters: []pb.NodeID{1, 2}, Learners: []pb.NodeID{3}}
	b := appendSnapshotHeader(nil, addrs, cs, []pb.NodeID{4, 7})
	b = append(b, "state"...)
	br := bufio.NewReader(bytes.NewReader(b))
	got, removed, err := readSnapshotHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1] != "127.0.0.1:1" || got[2] != "127.0.0.1:2" || got[3] != "" {
		t.Fatalf("members = %v", got)
	}
	if !slices.Equal(removed, []pb.NodeID{4, 7}) {
		t.Fatalf("removed = %v", removed)
	}
	rest, _ := br.ReadString(0)
	if rest != "state" {
		t.Fatalf("state machine stream = %q, want %q", rest, "state")
	}
}

// A version 1 header (no removed ids) is still read.
func TestSnapshotHeaderVersion1(t *testing.T) {
	b := []byte("rksn\x01\x01\x01\x01astate")
	br := bufio.NewReader(bytes.NewReader(b))
	got, removed, err := readSnapshotHeader(br)
	if err != nil || len(got) != 1 || got[1] != "a" || len(removed) != 0 {
		t.Fatalf("got %v, %v, %v", got, removed, err)
	}
	if rest, _ := br.ReadString(0); rest != "state" {
		t.Fatalf("state machine stream = %q", rest)
	}
}

func TestSnapshotHeaderRejectsBadInput(t *testing.T) {
	good := appendSnapshotHeader(nil, map[pb.NodeID]string{1: "a"}, pb.ConfState{Voters: []pb.NodeID{1}}, nil)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "read header"},
		{"wrong magic", []byte("xxxx\x01\x00"), "not a replica snapshot"},
		{"future version", []byte("rksn\x09\x00"), "unsupported snapshot version"},
		{"huge count", append([]byte("rksn\x01"), 0xff, 0xff, 0xff, 0x7f), "over the limit"},
		{"huge address", []byte("rksn\x01\x01\x01\xff\xff\x03"), "over the limit"},
		{"truncated", good[:len(good)-2], "read member 1 address"},
		{"no removed count", good[:len(good)-1], "read removed count"},
		{"huge removed count", append(slices.Clone(good[:len(good)-1]), 0xff, 0xff, 0xff, 0x7f), "over the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readSnapshotHeader(bufio.NewReader(bytes.NewReader(tc.data)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzSnapshotHeader(f *testing.F) {
	f.Add(appendSnapshotHeader(nil, map[pb.NodeID]string{1: "a"}, pb.ConfState{Voters: []pb.NodeID{1}}, []pb.NodeID{2}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = readSnapshotHeader(bufio.NewReader(bytes.NewReader(data)))
	})
}

func TestConfigValidate(t *testing.T) {
	err := Config{Peers: []Peer{{ID: 0}, {ID: 2}, {ID: 2}}, ElectionTicks: 1, HeartbeatTicks: 1, TickInterval: -1}.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{"ID must not be 0", "StateMachine is required", "Storage is required",
		"Transport is required", "TickInterval", "ElectionTicks must be greater", "id 0", "listed twice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q:\n%v", want, err)
		}
	}
	err = Config{ID: 5, StateMachine: &testSM{}, Storage: newMemStorage(), Transport: &memSender{},
		Peers: []Peer{{ID: 1}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "own id 5 is not among Peers") {
		t.Fatalf("Validate: %v", err)
	}
}
