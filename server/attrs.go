package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/replica"
)

// Member attributes: every member publishes its own client addresses (HTTP
// and RESP) through the replicated log, as etcd publishes its client URLs, so
// that every member learns every member's HTTP and RESP address, whether it
// was a founding member (whose ConfChange carries the bare peer address) or
// joined later. The peer address is not part of the record: members dial
// each other at the address the membership names (--initial-cluster or the
// ConfChange), which may differ from the one a member binds (NAT, proxies). A record is a normal entry that the member proposes once a
// leader exists, again until it is applied, and again after a restart with
// other addresses. Applying it is idempotent.
//
// The records live beside the kv store, not in it (so KEYS, SCAN and DBSIZE
// never see them): stateMachine wraps kv.Store, takes the records out of the
// entries it passes on (kv sees an empty entry at that index, which only
// advances its applied index), and prefixes the store's snapshot with the
// table, so the records survive log compaction and travel with snapshots.
//
// Entry:     attrsEntryMagic | JSON attrRecord
// Snapshot:  "RKMA" | version 1 | uvarint n | n bytes JSON []attrRecord | kv snapshot
//
// A snapshot without the "RKMA" prefix (written before records existed) is
// a bare kv snapshot; the members then publish their records again.
const (
	attrsSnapMagic   = "RKMA"
	attrsSnapVersion = 1
	attrsSnapMaxLen  = 16 << 20
)

// attrsEntryMagic starts a member-attributes entry. kv commands start with
// their version byte (1), so the two never collide. Written to disk: never change.
var attrsEntryMagic = []byte{0xA7, 'M', 'A', 0x01}

// attrRecord is one member's published client addresses.
type attrRecord struct {
	ID        pb.NodeID `json:"id"`
	HTTPAddr  string    `json:"http_addr"`
	RedisAddr string    `json:"redis_addr"`
}

// context is the record as address-book fields (no peer address: see above).
func (r attrRecord) context() memberContext {
	return memberContext{HTTPAddr: r.HTTPAddr, RedisAddr: r.RedisAddr}
}

func encodeAttrEntry(r attrRecord) []byte {
	b, _ := json.Marshal(r)
	return append(slices.Clone(attrsEntryMagic), b...)
}

func isAttrEntry(e *pb.Entry) bool {
	return e.Type == pb.EntryNormal && bytes.HasPrefix(e.Data, attrsEntryMagic)
}

// stateMachine is the replicated state of a member: the kv store plus the
// member attribute table.
type stateMachine struct {
	*kv.Store
	logger *slog.Logger
	// onAttrs is called (on the replica goroutine) for each record applied
	// or restored.
	onAttrs func(attrRecord)

	mu    sync.Mutex
	attrs map[pb.NodeID]attrRecord
}

func newStateMachine(store *kv.Store, logger *slog.Logger, onAttrs func(attrRecord)) *stateMachine {
	return &stateMachine{Store: store, logger: logger, onAttrs: onAttrs, attrs: map[pb.NodeID]attrRecord{}}
}

// attr returns the record of member id, if one was applied.
func (s *stateMachine) attr(id pb.NodeID) (attrRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.attrs[id]
	return r, ok
}

// forget drops member id's record (it was removed from the cluster). Called
// on the replica goroutine when the removal is applied, so every member
// forgets at the same log position.
func (s *stateMachine) forget(id pb.NodeID) {
	s.mu.Lock()
	delete(s.attrs, id)
	s.mu.Unlock()
}

// Apply applies member-attribute records itself and everything else through
// the kv store.
func (s *stateMachine) Apply(entries []pb.Entry) ([]any, error) {
	var recs []int
	for i := range entries {
		if isAttrEntry(&entries[i]) {
			recs = append(recs, i)
		}
	}
	if len(recs) == 0 {
		return s.Store.Apply(entries)
	}
	pass := slices.Clone(entries)
	for _, i := range recs {
		pass[i].Data = nil // kv only advances its applied index
	}
	res, err := s.Store.Apply(pass)
	if err != nil {
		return res, err
	}
	for _, i := range recs {
		var r attrRecord
		if err := json.Unmarshal(entries[i].Data[len(attrsEntryMagic):], &r); err != nil || r.ID == pb.None {
			// Deterministic on every member: a bad record is skipped everywhere.
			s.logger.Warn("skipping a malformed member-attributes entry", "index", uint64(entries[i].Index), "err", err)
			continue
		}
		s.mu.Lock()
		s.attrs[r.ID] = r
		s.mu.Unlock()
		if s.onAttrs != nil {
			s.onAttrs(r)
		}
	}
	return res, nil
}

// Snapshot captures the attribute table and the kv store at the same index
// (both are called on the replica goroutine, between applies).
func (s *stateMachine) Snapshot() (replica.SnapshotFunc, error) {
	s.mu.Lock()
	table := slices.SortedFunc(maps.Values(s.attrs), func(a, b attrRecord) int { return cmpNodeID(a.ID, b.ID) })
	s.mu.Unlock()
	f, err := s.Store.Snapshot()
	if err != nil {
		return nil, err
	}
	return func(w io.Writer) error {
		js, err := json.Marshal(table)
		if err != nil {
			return err
		}
		hdr := append([]byte(attrsSnapMagic), attrsSnapVersion)
		hdr = binary.AppendUvarint(hdr, uint64(len(js)))
		if _, err := w.Write(append(hdr, js...)); err != nil {
			return err
		}
		return f(w)
	}, nil
}

// Restore reads the attribute table (if the snapshot has one) and restores
// the kv store from the rest; the table is replaced only if both succeed.
func (s *stateMachine) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	table := map[pb.NodeID]attrRecord{}
	if magic, err := br.Peek(len(attrsSnapMagic)); err == nil && string(magic) == attrsSnapMagic {
		br.Discard(len(attrsSnapMagic))
		v, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("server: restore member attributes: %w", err)
		}
		if v != attrsSnapVersion {
			return fmt.Errorf("server: restore member attributes: unknown version %d", v)
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || n > attrsSnapMaxLen {
			return fmt.Errorf("server: restore member attributes: bad length %d: %v", n, err)
		}
		js := make([]byte, n)
		if _, err := io.ReadFull(br, js); err != nil {
			return fmt.Errorf("server: restore member attributes: %w", err)
		}
		var recs []attrRecord
		if err := json.Unmarshal(js, &recs); err != nil {
			return fmt.Errorf("server: restore member attributes: %w", err)
		}
		for _, rec := range recs {
			table[rec.ID] = rec
		}
	}
	if err := s.Store.Restore(br); err != nil {
		return err
	}
	s.mu.Lock()
	s.attrs = table
	s.mu.Unlock()
	if s.onAttrs != nil {
		for _, id := range slices.Sorted(maps.Keys(table)) {
			s.onAttrs(table[id])
		}
	}
	return nil
}

func cmpNodeID(a, b pb.NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// advertised is the record this member publishes: the addresses it is bound
// to, with an unspecified host (":8080", "0.0.0.0:8080") replaced by the
// peer address's host, which other members already dial.
func (m *Member) advertised() attrRecord {
	a := m.Addrs()
	peerHost, _, _ := net.SplitHostPort(a.Peer)
	fix := func(addr string) string {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return addr
		}
		if ip := net.ParseIP(host); (host == "" || (ip != nil && ip.IsUnspecified())) && peerHost != "" {
			if pip := net.ParseIP(peerHost); pip == nil || !pip.IsUnspecified() {
				return net.JoinHostPort(peerHost, port)
			}
		}
		return addr
	}
	return attrRecord{ID: m.cfg.ID, HTTPAddr: fix(a.HTTP), RedisAddr: fix(a.Redis)}
}

// publishAttrs runs for the member's lifetime: whenever a leader is known
// and the log does not hold this member's current addresses (first start,
// a restart with other addresses, a snapshot from before records existed),
// it proposes its record, retrying until it is applied.
func (m *Member) publishAttrs(ctx context.Context) {
	want := m.advertised()
	data := encodeAttrEntry(want)
	wait := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if got, ok := m.sm.attr(m.cfg.ID); ok && got == want {
			wait = 2 * time.Second // published; keep checking cheaply (a restore may drop it)
			continue
		}
		wait = 200 * time.Millisecond
		if m.rep.Status().Leader == pb.None {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
		_, err := m.rep.Propose(pctx, data)
		cancel()
		if err != nil {
			m.logger.Debug("publishing member attributes failed; will retry", "err", err)
			continue
		}
		m.logger.Info("published member attributes", "http_addr", want.HTTPAddr, "redis_addr", want.RedisAddr)
		wait = 0
	}
}
