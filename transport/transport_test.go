package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// TestDeliverAmongThree checks that every message sent between three
// members arrives intact, once, and in order per sender.
func TestDeliverAmongThree(t *testing.T) {
	nodes := []*node{newNode(t, 1), newNode(t, 2), newNode(t, 3)}
	mesh(t, nodes...)

	const perPair = 200
	want := map[[2]raftpb.NodeID][]raftpb.Message{}
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			var batch []raftpb.Message
			for i := range perPair {
				m := app(a.id, b.id, i, i%300)
				if i%3 == 1 {
					m = raftpb.Message{Type: raftpb.MsgHeartbeat, From: a.id, To: b.id, Term: 9, Commit: raftpb.Index(i), Context: []byte("ctx")}
				}
				if i%7 == 2 {
					m = raftpb.Message{Type: raftpb.MsgAppResp, From: a.id, To: b.id, Term: 9, Reject: true, RejectHint: 5, LogTerm: 2}
				}
				batch = append(batch, m)
			}
			want[[2]raftpb.NodeID{a.id, b.id}] = batch
			a.Send(batch)
		}
	}
	for _, b := range nodes {
		waitFor(t, "all messages delivered", func() bool { return b.rec.count.Load() == 2*perPair })
		got := map[raftpb.NodeID][]raftpb.Message{}
		for _, m := range b.rec.messages() {
			got[m.From] = append(got[m.From], m)
		}
		for _, a := range nodes {
			if a == b {
				continue
			}
			w := want[[2]raftpb.NodeID{a.id, b.id}]
			if !reflect.DeepEqual(normalize(got[a.id]), normalize(w)) {
				t.Fatalf("%d -> %d: messages differ (got %d, want %d)", a.id, b.id, len(got[a.id]), len(w))
			}
		}
	}
	st := nodes[0].PeerStats()[2]
	if st.Sent[raftpb.MsgHeartbeat].Msgs == 0 || st.Sent[raftpb.MsgApp].Bytes == 0 || !st.Inbound {
		t.Fatalf("stats do not reflect traffic: %+v", st)
	}
	if got := nodes[1].PeerStats()[1].TotalReceived(); got != st.TotalSent() {
		t.Fatalf("receiver counted %+v, sender %+v", got, st.TotalSent())
	}
}

// normalize makes empty and nil slices compare equal.
func normalize(ms []raftpb.Message) []raftpb.Message {
	out := make([]raftpb.Message, len(ms))
	for i, m := range ms {
		if len(m.Context) == 0 {
			m.Context = nil
		}
		if len(m.Entries) == 0 {
			m.Entries = nil
		}
		for j := range m.Entries {
			if len(m.Entries[j].Data) == 0 {
				m.Entries[j].Data = nil
			}
		}
		out[i] = m
	}
	return out
}

// TestBatching checks that a burst of messages travels in few frames and few
// flushes, not one write per message.
func TestBatching(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	b.rec.noKeep = true
	mesh(t, a, b)
	const n = 4000
	msgs := make([]raftpb.Message, n)
	for i := range msgs {
		msgs[i] = app(1, 2, i, 64)
	}
	a.Send(msgs)
	waitFor(t, "delivery", func() bool { return b.rec.count.Load() == n })
	sa, sb := a.PeerStats()[2], b.PeerStats()[1]
	if sa.Sent[raftpb.MsgApp].Msgs != n || sb.Received[raftpb.MsgApp].Msgs != n {
		t.Fatalf("sent %d, received %d, want %d", sa.Sent[raftpb.MsgApp].Msgs, sb.Received[raftpb.MsgApp].Msgs, n)
	}
	if sa.FramesSent != sb.FramesReceived {
		t.Fatalf("sender wrote %d frames, receiver read %d", sa.FramesSent, sb.FramesReceived)
	}
	if sa.FramesSent > n/20 || sa.Flushes > n/20 {
		t.Fatalf("%d messages took %d frames and %d flushes: not batched", n, sa.FramesSent, sa.Flushes)
	}
	if sa.Dropped != 0 {
		t.Fatalf("dropped %d", sa.Dropped)
	}
	t.Logf("%d messages in %d frames, %d flushes", n, sa.FramesSent, sa.Flushes)
}

// TestReconnect checks that a peer that goes down is reported unreachable,
// messages meanwhile are dropped, and delivery resumes when it comes back on
// the same address.
func TestReconnect(t *testing.T) {
	a := newNode(t, 1)
	b := newNode(t, 2)
	mesh(t, a, b)
	a.Send([]raftpb.Message{app(1, 2, 1, 10)})
	waitFor(t, "first delivery", func() bool { return b.rec.count.Load() == 1 })

	addr := b.addr
	closedAt := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b down", func() bool { return !a.PeerStats()[2].Connected })
	a.Send([]raftpb.Message{app(1, 2, 2, 10)})
	waitFor(t, "ReportUnreachable(2)", func() bool { return a.rec.unreachableCount(2) > 0 })
	if st := a.PeerStats()[2]; st.Dropped == 0 || !st.LastErrorAt.After(closedAt) {
		t.Fatalf("drop or error not recorded: %+v", st)
	}

	var ln net.Listener
	waitFor(t, "rebind "+addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	b2 := startNode(t, 2, ln)
	b2.AddPeer(1, a.addr)
	start := time.Now()
	waitConnected(t, a, 2)
	t.Logf("reconnected in %v", time.Since(start))
	a.Send([]raftpb.Message{app(1, 2, 3, 10)})
	waitFor(t, "delivery after reconnect", func() bool { return b2.rec.count.Load() == 1 })
	if got := b2.rec.messages()[0].Index; got != 3 {
		t.Fatalf("delivered index %d after reconnect, want 3 (older messages must have been dropped)", got)
	}
	if c := a.PeerStats()[2].Connects; c != 2 {
		t.Fatalf("connects = %d, want 2", c)
	}
}

// TestAddressChange checks that AddPeer with a new address moves the stream.
func TestAddressChange(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	mesh(t, a, b)
	b2 := newNode(t, 2)
	b2.AddPeer(1, a.addr)
	a.AddPeer(2, b2.addr)
	waitFor(t, "moved to new address", func() bool {
		st := a.PeerStats()[2]
		return st.Connected && st.Addr == b2.addr && st.Connects == 2
	})
	a.Send([]raftpb.Message{app(1, 2, 7, 10)})
	waitFor(t, "delivery at new address", func() bool { return b2.rec.count.Load() == 1 })
	if b.rec.count.Load() != 0 {
		t.Fatal("old address still received")
	}
}

// TestHandshakeRejects checks that the acceptor refuses, and logs, streams
// from another cluster, streams meant for another member, and members it
// does not know; and that a member added later can connect.
func TestHandshakeRejects(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, a, b *node) // a dials b
		reason string
		admit  func(a, b *node) // makes the connection acceptable, if it can be
	}{
		{
			name:   "wrong cluster",
			setup:  func(t *testing.T, a, b *node) { b.AddPeer(1, a.addr); a.AddPeer(2, b.addr) },
			reason: statusWrongCluster.String(),
		},
		{
			name:   "unknown member, added later",
			setup:  func(t *testing.T, a, b *node) { a.AddPeer(2, b.addr) },
			reason: statusUnknownMember.String(),
			admit:  func(a, b *node) { b.AddPeer(1, a.addr) },
		},
		{
			name:   "wrong target",
			setup:  func(t *testing.T, a, b *node) { b.AddPeer(1, a.addr); a.AddPeer(3, b.addr) },
			reason: statusWrongTarget.String(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newNode(t, 1)
			var b *node
			if tc.name == "wrong cluster" {
				b = newNode(t, 2, func(c *Config) { c.ClusterID = testCluster + 1 })
			} else {
				b = newNode(t, 2)
			}
			tc.setup(t, a, b)
			target := raftpb.NodeID(2)
			if tc.name == "wrong target" {
				target = 3
			}
			waitFor(t, "rejection seen by dialer", func() bool {
				return strings.Contains(a.PeerStats()[target].LastError, tc.reason)
			})
			waitFor(t, "rejection logged by acceptor", func() bool {
				return strings.Contains(b.logs.String(), "rejected peer connection") &&
					strings.Contains(b.logs.String(), tc.reason)
			})
			if a.PeerStats()[target].Connected {
				t.Fatal("rejected stream counted as connected")
			}
			a.Send([]raftpb.Message{app(1, target, 1, 1)})
			waitFor(t, "unreachable reported", func() bool { return a.rec.unreachableCount(target) > 0 })
			if tc.admit != nil {
				tc.admit(a, b)
				waitConnected(t, a, target)
				a.Send([]raftpb.Message{app(1, target, 2, 1)})
				waitFor(t, "delivery once admitted", func() bool { return b.rec.count.Load() == 1 })
			}
			if tc.admit == nil && b.rec.count.Load() != 0 {
				t.Fatal("rejected peer's messages delivered")
			}
		})
	}
}

// TestRemovedMemberRejected checks that RemovePeer cuts an existing stream
// and refuses the member's redials.
func TestRemovedMemberRejected(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	mesh(t, a, b)
	// mesh may have left an older "unknown member" error behind (a dialed b
	// before b added it): only errors after the removal count.
	removedAt := time.Now()
	b.RemovePeer(1)
	if _, ok := b.PeerStats()[1]; ok {
		t.Fatal("removed peer still in stats")
	}
	waitFor(t, "removed member's redial rejected", func() bool {
		st := a.PeerStats()[2]
		return !st.Connected && st.LastErrorAt.After(removedAt) &&
			strings.Contains(st.LastError, statusUnknownMember.String())
	})
	a.Send([]raftpb.Message{app(1, 2, 1, 1)})
	waitFor(t, "unreachable", func() bool { return a.rec.unreachableCount(2) > 0 })
	if b.rec.count.Load() != 0 {
		t.Fatal("message from removed member delivered")
	}
	// The remover stops sending to it as well.
	b.Send([]raftpb.Message{app(2, 1, 1, 1)})
	if b.rec.unreachableCount(1) != 0 {
		t.Fatal("a removed peer is not a peer: no unreachable report expected")
	}
}

// TestSendNeverBlocks checks Send against peers that swallow everything:
// a listener that accepts and never reads, an address nobody listens on,
// and a real member whose handler is stuck. Other peers keep receiving.
func TestSendNeverBlocks(t *testing.T) {
	blackHole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	var bhWG sync.WaitGroup
	bhWG.Add(1)
	go func() {
		defer bhWG.Done()
		for {
			c, err := blackHole.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		blackHole.Close()
		bhWG.Wait()
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	a := newNode(t, 1, func(c *Config) {
		c.QueueSize = 256
		// A Send that waited on a write would take a minute: unmistakable
		// even on a loaded machine.
		c.WriteTimeout = time.Minute
	})
	stuck := newNode(t, 4)
	release := make(chan struct{})
	var once sync.Once
	unstick := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstick) // before stuck.Close, which waits for Step (cleanups run LIFO)
	stuck.rec.onStep = func(raftpb.Message) { <-release }
	healthy := newNode(t, 5)
	healthy.rec.noKeep = true
	mesh(t, a, stuck, healthy)
	a.AddPeer(2, blackHole.Addr().String())
	a.AddPeer(3, deadAddr)

	const rounds = 3000
	var worst time.Duration
	batch := make([]raftpb.Message, 0, 4)
	for i := range rounds {
		batch = append(batch[:0], app(1, 2, i, 512), app(1, 3, i, 512), app(1, 4, i, 4096), app(1, 5, i, 16))
		start := time.Now()
		a.Send(batch)
		worst = max(worst, time.Since(start))
		// Pace the healthy peer within its queue: whatever the others do,
		// it must then lose nothing.
		waitFor(t, "healthy peer keeps up", func() bool { return healthy.rec.count.Load() >= int64(i+1-128) })
	}
	if worst > time.Second {
		t.Fatalf("a Send call took %v", worst)
	}
	t.Logf("worst Send call: %v", worst)
	waitFor(t, "all stuck/dead peers reported", func() bool {
		return a.rec.unreachableCount(2) > 0 && a.rec.unreachableCount(3) > 0 && a.rec.unreachableCount(4) > 0
	})
	st := a.PeerStats()
	for _, id := range []raftpb.NodeID{2, 3, 4} {
		if st[id].Dropped == 0 {
			t.Errorf("peer %d: no drops recorded", id)
		}
	}
	if st[2].Connected || st[3].Connected {
		t.Error("black hole or dead address counted as connected")
	}
	waitFor(t, "healthy peer got its messages", func() bool {
		return healthy.rec.count.Load()+int64(a.PeerStats()[5].Dropped) == rounds
	})
	if d := a.PeerStats()[5].Dropped; d != 0 {
		t.Fatalf("healthy peer lost %d of %d messages", d, rounds)
	}

	// Once the stuck member recovers, delivery to it resumes.
	unstick()
	waitFor(t, "delivery to the recovered member", func() bool {
		before := stuck.rec.count.Load()
		a.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 4, Term: 1, Commit: 424242}})
		deadline := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(deadline) {
			for _, m := range stuck.rec.messages()[before:] {
				if m.Commit == 424242 {
					return true
				}
			}
			time.Sleep(time.Millisecond)
		}
		return false
	})
}

// TestCloseInterruptsDial checks that Close does not wait out a dial to a
// peer that never answers the handshake.
func TestCloseInterruptsDial(t *testing.T) {
	blackHole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 2)
	go func() {
		for range 2 {
			c, err := blackHole.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	a := newNode(t, 1, func(c *Config) { c.DialTimeout = time.Minute })
	a.AddPeer(2, blackHole.Addr().String())
	a.SendSnapshot(snapMsg(1, 2), newGen(10), 10)
	// Both the message stream and the snapshot stream are now stuck waiting
	// for a handshake answer that never comes.
	for range 2 {
		c := <-accepted
		defer c.Close()
	}
	defer blackHole.Close()
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// TestNewerInboundStreamReplacesOlder checks that when a member opens a new
// stream (it believes the old one dead), the acceptor drops the old one:
// half-open connections do not pile up.
func TestNewerInboundStreamReplacesOlder(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	mesh(t, a, b)
	c, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hs := handshake{version: wireVersion, kind: kindMessages, clusterID: testCluster, from: 1, to: 2}
	if _, err := c.Write(hs.append(nil)); err != nil {
		t.Fatal(err)
	}
	if st, err := readStatus(c); err != nil || st != statusOK {
		t.Fatalf("handshake: %v %v", st, err)
	}
	// a's stream was closed by b; a notices and redials, which in turn
	// replaces (closes) ours.
	waitFor(t, "a redialed", func() bool { return a.PeerStats()[2].Connects >= 2 && a.PeerStats()[2].Connected })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("replaced stream not closed: %v", err)
	}
	a.Send([]raftpb.Message{app(1, 2, 1, 1)})
	waitFor(t, "delivery on the new stream", func() bool { return b.rec.count.Load() == 1 })
}

// TestMalformedInput checks that bad bytes from a peer close that connection
// with a logged error and deliver nothing, and that the member keeps
// serving others.
func TestMalformedInput(t *testing.T) {
	b := newNode(t, 2, func(c *Config) { c.MaxFrameSize = 1 << 20 })
	b.AddPeer(1, "127.0.0.1:1")
	hs := handshake{version: wireVersion, kind: kindMessages, clusterID: testCluster, from: 1, to: 2}
	good := func(m raftpb.Message) []byte {
		body, _, err := appendMessage(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		return append(appendFrameHeader(nil, frameMessages, len(body)), body...)
	}
	withBody := func(typ frameType, body []byte) []byte {
		return append(appendFrameHeader(nil, typ, len(body)), body...)
	}
	tests := []struct {
		name   string
		hs     []byte
		frames []byte
		logged string
	}{
		{"bad magic", []byte("XXXX" + strings.Repeat("\x00", 28)), nil, "bad handshake"},
		{"bad version", handshake{version: 9, kind: kindMessages, clusterID: testCluster, from: 1, to: 2}.append(nil), nil, statusBadVersion.String()},
		{"bad kind", handshake{version: wireVersion, kind: 9, clusterID: testCluster, from: 1, to: 2}.append(nil), nil, statusBadKind.String()},
		{"huge frame", hs.append(nil), appendFrameHeader(nil, frameMessages, 2<<20), "frame too large"},
		{"unknown frame type", hs.append(nil), withBody(7, []byte{1, 2, 3}), "frame type 7"},
		{"snapshot frame on message stream", hs.append(nil), withBody(frameSnapChunk, []byte{1}), "frame type 3"},
		{"empty batch", hs.append(nil), withBody(frameMessages, nil), "empty message batch"},
		{"message overruns frame", hs.append(nil), withBody(frameMessages, []byte{0, 0, 0, 9, 1}), "overruns"},
		{"garbage message", hs.append(nil), withBody(frameMessages, []byte{0, 0, 0, 3, 1, 2, 3}), "corrupt"},
		{"forged sender", hs.append(nil), good(app(7, 2, 1, 1)), "on the stream of peer 1"},
		{"wrong recipient", hs.append(nil), good(app(1, 9, 1, 1)), "arrived at 2"},
		{"local message", hs.append(nil), good(raftpb.Message{Type: raftpb.MsgHup, From: 1, To: 2}), "local message"},
		{"snapshot on message stream", hs.append(nil), good(raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Snapshot: &raftpb.SnapshotMeta{Index: 1}}), "MsgSnap on a message stream"},
		{"truncated body", hs.append(nil), good(app(1, 2, 1, 100))[:50], "unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", b.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(tc.hs); err != nil {
				t.Fatal(err)
			}
			if tc.frames != nil {
				if st, err := readStatus(c); err != nil || st != statusOK {
					t.Fatalf("handshake: %v %v", st, err)
				}
				c.Write(tc.frames)
				if tc.name == "truncated body" {
					c.(*net.TCPConn).CloseWrite()
				}
			}
			// The member closes the connection: reads end (after at most a
			// rejection status byte).
			buf := make([]byte, 16)
			for {
				if _, err := c.Read(buf); err != nil {
					if errors.Is(err, net.ErrClosed) || isTimeout(err) {
						t.Fatalf("connection not closed by member: %v", err)
					}
					break
				}
			}
			waitFor(t, "logged "+tc.logged, func() bool { return strings.Contains(b.logs.String(), tc.logged) })
			if n := b.rec.count.Load(); n != 0 {
				t.Fatalf("%d messages delivered from malformed input", n)
			}
		})
	}
	// Still healthy: a well-behaved peer gets through.
	a := newNode(t, 1)
	b.AddPeer(1, a.addr)
	a.AddPeer(2, b.addr)
	waitConnected(t, a, 2)
	a.Send([]raftpb.Message{app(1, 2, 1, 1)})
	waitFor(t, "delivery after malformed input", func() bool { return b.rec.count.Load() == 1 })
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestReadBodyBoundedAllocation checks that a frame that declares a large
// body but delivers little costs little memory.
func TestReadBodyBoundedAllocation(t *testing.T) {
	r := bytes.NewReader(nil)
	var got []byte
	var err error
	bytesAlloc := measureAlloc(func() {
		r.Reset(make([]byte, 1000))
		got, err = readBody(r, 60<<20)
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) || got != nil {
		t.Fatalf("readBody = %d bytes, %v; want unexpected EOF", len(got), err)
	}
	if bytesAlloc > 2<<20 {
		t.Fatalf("a 60 MiB declaration with 1000 bytes sent allocated %d bytes", bytesAlloc)
	}
	// And a real large body still reads correctly.
	want := bytes.Repeat([]byte("0123456789"), 100_000)
	got, err = readBody(bytes.NewReader(want), len(want))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("large body: %v", err)
	}
}

// TestSendAfterCloseAndValidation checks the edges of the API.
func TestSendAfterCloseAndValidation(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "ID") || !strings.Contains(err.Error(), "Listener") || !strings.Contains(err.Error(), "Handler") {
		t.Fatalf("New(Config{}) = %v; want every problem reported", err)
	}
	a := newNode(t, 1)
	a.AddPeer(2, "127.0.0.1:1")
	a.AddPeer(1, "127.0.0.1:1") // self: ignored
	if _, ok := a.PeerStats()[1]; ok {
		t.Fatal("self added as peer")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a.Send([]raftpb.Message{app(1, 2, 1, 1)})
	a.AddPeer(3, "127.0.0.1:1")
	if len(a.PeerStats()) > 1 {
		t.Fatal("AddPeer after Close took effect")
	}
}

// TestCloseWhileBusy closes transports in the middle of traffic; goleak
// (TestMain) checks nothing is left behind.
func TestCloseWhileBusy(t *testing.T) {
	a, b := newNode(t, 1), newNode(t, 2)
	mesh(t, a, b)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			a.Send([]raftpb.Message{app(1, 2, i, 100)})
			b.Send([]raftpb.Message{app(2, 1, i, 100)})
		}
	}()
	waitFor(t, "traffic", func() bool { return b.rec.count.Load() > 100 })
	a.Close()
	b.Close()
	stop.Store(true)
	wg.Wait()
}

func TestBackoff(t *testing.T) {
	d := time.Duration(0)
	for range 20 {
		d = nextBackoff(d, time.Second)
		if j := jitter(d); j < d/2 || j > d {
			t.Fatalf("jitter(%v) = %v", d, j)
		}
	}
	if d != time.Second {
		t.Fatalf("backoff capped at %v, want 1s", d)
	}
}

// measureAlloc returns the bytes allocated (process-wide) while f runs.
func measureAlloc(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestLargeMessagesSplitFrames checks frame cutting: messages larger than a
// frame's soft size travel alone, small ones around them still batch, and a
// message above MaxFrameSize is dropped loudly without harming the rest.
func TestLargeMessagesSplitFrames(t *testing.T) {
	limit := func(c *Config) { c.MaxFrameSize = 1 << 20 }
	a, b := newNode(t, 1, limit), newNode(t, 2, limit)
	mesh(t, a, b)
	sizes := []int{10, 300 << 10, 10, 2 << 20, 900 << 10, 10, 10, 200 << 10, 200 << 10, 10}
	var msgs []raftpb.Message
	for i, n := range sizes {
		msgs = append(msgs, app(1, 2, i, n))
	}
	a.Send(msgs)
	waitFor(t, "delivery", func() bool { return b.rec.count.Load() == int64(len(sizes)-1) })
	var got []int
	for _, m := range b.rec.messages() {
		got = append(got, int(m.Index))
		if want := app(1, 2, int(m.Index), sizes[m.Index]); !bytes.Equal(m.Entries[0].Data, want.Entries[0].Data) {
			t.Fatalf("message %d corrupted", m.Index)
		}
	}
	if want := []int{0, 1, 2, 4, 5, 6, 7, 8, 9}; !reflect.DeepEqual(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	st := a.PeerStats()[2]
	if st.Dropped != 1 || !strings.Contains(st.LastError, "MaxFrameSize") {
		t.Fatalf("oversized message: dropped %d, last error %q", st.Dropped, st.LastError)
	}
	if !strings.Contains(a.logs.String(), "dropping unsendable message") {
		t.Fatal("oversized message not logged")
	}
}
