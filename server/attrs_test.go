package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proctest"
	"github.com/raftkv/raftkv/kv"
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/ui"
)

// waitUntil polls cond every 20ms until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// knowsAll reports whether m's /status lists every running member of c with
// the HTTP and RESP addresses that member is bound to.
func (c *testCluster) knowsAll(m *Member) bool {
	want := map[pb.NodeID]Addrs{}
	for i, o := range c.members {
		if o != nil {
			want[pb.NodeID(i+1)] = o.Addrs()
		}
	}
	seen := 0
	for _, e := range m.status().Members {
		a, ok := want[e.ID]
		if !ok {
			continue
		}
		if e.HTTPAddr != a.HTTP || e.RedisAddr != a.Redis {
			return false
		}
		seen++
	}
	return seen == len(want)
}

func getStatus(t *testing.T, httpAddr string) map[string]any {
	t.Helper()
	code, body := httpDo(t, "GET", "http://"+httpAddr+"/status", "")
	if code != 200 {
		t.Fatalf("GET /status: %d %s", code, body)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /status: %v\n%s", err, body)
	}
	return st
}

// TestMemberAttributesReachEveryMember: founding members know only each
// other's peer addresses from --initial-cluster; through the log every
// member learns every member's HTTP and RESP address. The records survive a
// snapshot and a restart without any leader to publish them again, a member
// restarted on another HTTP port is learned anew, and they never show up in
// the keyspace.
func TestMemberAttributesReachEveryMember(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitLeader(10 * time.Second)
	for i, m := range c.members {
		waitUntil(t, 10*time.Second, fmt.Sprintf("member %d to know every member's addresses", i+1), func() bool { return c.knowsAll(m) })
	}
	if n, err := c.client(0).DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE = %d, %v: member attributes must not be keys", n, err)
	}
	if keys, err := c.client(1).Keys(context.Background(), "*").Result(); err != nil || len(keys) != 0 {
		t.Fatalf("KEYS * = %q, %v", keys, err)
	}

	// Snapshot member 3 (its log is compacted behind the snapshot), stop
	// everyone, and restart member 3 alone: no leader, so nobody publishes,
	// yet it still knows the others' addresses, from its data dir.
	if code, body := httpDo(t, "POST", "http://"+c.members[2].Addrs().HTTP+"/v1/snapshot", ""); code != 200 {
		t.Fatalf("snapshot: %d %s", code, body)
	}
	before := map[pb.NodeID]Addrs{1: c.members[0].Addrs(), 2: c.members[1].Addrs()}
	for i := range c.members {
		c.stop(i)
	}
	c.start(2)
	st := c.members[2].status()
	if st.SnapshotIndex == 0 {
		t.Fatalf("member 3 restarted without its snapshot: %+v", st)
	}
	for _, e := range st.Members {
		if a, ok := before[e.ID]; ok && (e.HTTPAddr != a.HTTP || e.RedisAddr != a.Redis) {
			t.Errorf("after restart from a snapshot, member 3 lists member %d at http=%q redis=%q, want %q %q",
				e.ID, e.HTTPAddr, e.RedisAddr, a.HTTP, a.Redis)
		}
	}

	// Member 1 comes back on a new HTTP port: it publishes again, and the
	// others learn the new address.
	c.cfgs[0].HTTPAddr = proctest.FreeAddr(t)
	c.start(0)
	c.start(1)
	c.waitLeader(10 * time.Second)
	for i, m := range c.members {
		waitUntil(t, 10*time.Second, fmt.Sprintf("member %d to learn member 1's new HTTP address", i+1), func() bool { return c.knowsAll(m) })
	}
}

// TestStateMachineAttributesSnapshot checks the snapshot image directly:
// records and keys both survive Snapshot/Restore, a bare kv snapshot (from
// before records existed) still restores, and records are not keys.
func TestStateMachineAttributesSnapshot(t *testing.T) {
	newSM := func() *stateMachine {
		st, err := kv.New(kv.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return newStateMachine(st, slog.New(slog.DiscardHandler), nil)
	}
	set, _ := (&kv.Command{Op: kv.OpSet, Key: []byte("a"), Value: []byte("1"), Now: 1}).Encode()
	sm := newSM()
	ents := []pb.Entry{
		{Index: 1, Term: 1, Data: encodeAttrEntry(attrRecord{ID: 1, HTTPAddr: "h1:1", RedisAddr: "r1:1"})},
		{Index: 2, Term: 1, Data: set},
		{Index: 3, Term: 1, Data: encodeAttrEntry(attrRecord{ID: 2, HTTPAddr: "h2:2", RedisAddr: "r2:2"})},
		{Index: 4, Term: 1, Data: append(bytes.Clone(attrsEntryMagic), "not json"...)}, // skipped, not fatal
	}
	if _, err := sm.Apply(ents); err != nil {
		t.Fatal(err)
	}
	if sm.DBSize() != 1 || sm.Applied() != 4 {
		t.Fatalf("DBSize %d, applied %d; want 1 key and index 4", sm.DBSize(), sm.Applied())
	}
	f, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	if err := f(&img); err != nil {
		t.Fatal(err)
	}
	var got []attrRecord
	sm2 := newSM()
	sm2.onAttrs = func(r attrRecord) { got = append(got, r) }
	if err := sm2.Restore(bytes.NewReader(img.Bytes())); err != nil {
		t.Fatal(err)
	}
	if r, ok := sm2.attr(2); !ok || r.HTTPAddr != "h2:2" || r.RedisAddr != "r2:2" || len(got) != 2 {
		t.Fatalf("restored record of 2 = %+v %v; reported %+v", r, ok, got)
	}
	if v, ok := sm2.Get([]byte("a"), 1); !ok || string(v) != "1" || sm2.DBSize() != 1 {
		t.Fatalf("restored key a = %q %v, DBSize %d", v, ok, sm2.DBSize())
	}

	// A bare kv snapshot restores with an empty table.
	bare, err := sm.Store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	img.Reset()
	if err := bare(&img); err != nil {
		t.Fatal(err)
	}
	if err := sm2.Restore(&img); err != nil {
		t.Fatalf("restore a kv snapshot without records: %v", err)
	}
	if _, ok := sm2.attr(1); ok || sm2.DBSize() != 1 {
		t.Fatalf("after a bare restore: record 1 present %v, DBSize %d", ok, sm2.DBSize())
	}
}

// TestStatusPageFields checks the /status fields the cluster page reads,
// next to the contract's fields.
func TestStatusPageFields(t *testing.T) {
	c := newTestCluster(t, 3)
	lead := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	follower := (lead + 1) % 3
	for _, m := range c.members {
		waitUntil(t, 10*time.Second, "addresses to be published", func() bool { return c.knowsAll(m) })
	}
	for i := 0; i < 20; i++ {
		if err := c.client(follower).Set(ctx, fmt.Sprint("k", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	st := getStatus(t, c.members[lead].Addrs().HTTP)
	for _, k := range []string{"id", "role", "term", "leader", "commit_index", "applied_index", "members",
		"first_index", "last_index", "snapshot_index", "peers", "proposals_total", "commit_latency_p99_ms"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/status has no %q", k)
		}
	}
	for _, m := range st["members"].([]any) {
		m := m.(map[string]any)
		for _, k := range []string{"id", "peer_addr", "voter", "http_addr", "redis_addr"} {
			if _, ok := m[k]; !ok {
				t.Errorf("/status members[%v] has no %q", m["id"], k)
			}
		}
	}
	if st["last_index"].(float64) < st["commit_index"].(float64) || st["first_index"].(float64) < 1 {
		t.Errorf("first_index %v, last_index %v, commit_index %v", st["first_index"], st["last_index"], st["commit_index"])
	}
	peers := st["peers"].(map[string]any)
	if len(peers) != 2 {
		t.Fatalf("leader's peers = %v, want the 2 other members", peers)
	}
	for id, p := range peers {
		p := p.(map[string]any)
		sent := p["msgs_sent"].(map[string]any)
		if sent["MsgApp"] == nil && sent["MsgHeartbeat"] == nil {
			t.Errorf("peer %s: msgs_sent %v has neither MsgApp nor MsgHeartbeat", id, sent)
		}
		for _, k := range []string{"match", "next", "state", "lag"} {
			if _, ok := p[k]; !ok {
				t.Errorf("leader's peer %s has no %q: %v", id, k, p)
			}
		}
	}
	// The writes went through the follower: it counts them and their latency.
	fst := getStatus(t, c.members[follower].Addrs().HTTP)
	if n := fst["proposals_total"].(float64); n < 20 {
		t.Errorf("follower's proposals_total = %v, want >= 20", n)
	}
	if p99 := fst["commit_latency_p99_ms"].(float64); p99 <= 0 || p99 > 10000 {
		t.Errorf("follower's commit_latency_p99_ms = %v", p99)
	}
	for id, p := range fst["peers"].(map[string]any) {
		if _, ok := p.(map[string]any)["match"]; ok {
			t.Errorf("a follower reports progress for peer %s", id)
		}
	}
}

// TestAdminOnFollowerReachesLeader: routes only the leader can answer work
// when sent to a follower, which forwards them to the leader's HTTP address
// (learned from the log), bodies included.
func TestAdminOnFollowerReachesLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	lead := c.waitLeader(10 * time.Second)
	for _, m := range c.members {
		waitUntil(t, 10*time.Second, "addresses to be published", func() bool { return c.knowsAll(m) })
	}
	f1, f2 := (lead+1)%3, (lead+2)%3
	fHTTP := "http://" + c.members[f1].Addrs().HTTP

	// A learner that never catches up (nobody listens at its address).
	if code, body := httpDo(t, "POST", fHTTP+"/v1/members", `{"id":9,"peer_addr":"127.0.0.1:1"}`); code != 200 {
		t.Fatalf("add member 9 through a follower: %d %s", code, body)
	}
	// Promotion needs the leader's view of the learner's lag: the answer
	// comes from the leader (only the leader reports members' "lag").
	code, body := httpDo(t, "POST", fHTTP+"/v1/members/9/promote", "")
	if code != http.StatusOK || !strings.Contains(body, `"lag"`) {
		t.Fatalf("promote learner 9 through a follower: %d %s, want the leader's answer", code, body)
	}
	if code, body := httpDo(t, "DELETE", fHTTP+"/v1/members/9", ""); code != 200 {
		t.Fatalf("remove member 9 through a follower: %d %s", code, body)
	}

	// Leadership transfer to the other follower, asked of this one: the
	// body ("to") must reach the leader.
	target := pb.NodeID(f2 + 1)
	if code, body := httpDo(t, "POST", fHTTP+"/v1/leader/transfer", fmt.Sprintf(`{"to":%d}`, target)); code != 200 {
		t.Fatalf("leader transfer through a follower: %d %s", code, body)
	}
	waitUntil(t, 10*time.Second, fmt.Sprintf("member %d to lead", target), func() bool { return c.members[f2].status().Role == "leader" })
}

// TestClusterPage: /v1/cluster on a 3-member cluster shows 3 members, one
// leader, every member reachable; a stopped member is shown down.
func TestClusterPage(t *testing.T) {
	c := newTestCluster(t, 3)
	lead := c.waitLeader(10 * time.Second)
	for _, m := range c.members {
		waitUntil(t, 10*time.Second, "addresses to be published", func() bool { return c.knowsAll(m) })
	}
	viewer := (lead + 1) % 3
	view := func() ui.ClusterView {
		code, body := httpDo(t, "GET", "http://"+c.members[viewer].Addrs().HTTP+"/v1/cluster", "")
		if code != 200 {
			t.Fatalf("GET /v1/cluster: %d %s", code, body)
		}
		var v ui.ClusterView
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	roles := func(v ui.ClusterView) (leaders, reachable int) {
		for _, m := range v.Members {
			if !m.Reachable {
				continue
			}
			reachable++
			var s struct{ Role string }
			json.Unmarshal(m.Status, &s)
			if s.Role == "leader" {
				leaders++
			}
		}
		return
	}
	v := view()
	if l, r := roles(v); len(v.Members) != 3 || l != 1 || r != 3 || v.ObservedBy != uint64(viewer+1) {
		t.Fatalf("cluster view: %d members, %d leaders, %d reachable, observed by %d", len(v.Members), l, r, v.ObservedBy)
	}
	if code, body := httpDo(t, "GET", "http://"+c.members[viewer].Addrs().HTTP+"/ui", ""); code != 200 || !strings.Contains(body, "/v1/cluster/events") {
		t.Fatalf("GET /ui: %d", code)
	}

	down := (viewer + 1) % 3
	c.stop(down)
	waitUntil(t, 10*time.Second, fmt.Sprintf("member %d to be shown down", down+1), func() bool {
		for _, m := range view().Members {
			if m.ID == uint64(down+1) {
				return !m.Reachable && m.Error != ""
			}
		}
		return false
	})
	waitUntil(t, 10*time.Second, "one leader among the 2 reachable members", func() bool {
		l, r := roles(view())
		return l == 1 && r == 2
	})
}

func TestLatencyWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	w := newLatencyWindow()
	w.now = func() time.Time { return now }
	if w.p99() != 0 {
		t.Fatal("empty window has a p99")
	}
	for i := 0; i < 990/15; i++ {
		w.observe(time.Millisecond, 15) // a pipelined batch counts each command
	}
	for i := 0; i < 10; i++ {
		w.observe(100*time.Millisecond, 1)
	}
	if p := w.p99(); p < 1 || p > 1.25 {
		t.Fatalf("p99 = %v ms, want about 1ms", p)
	}
	w.observe(100*time.Millisecond, 1)
	if p := w.p99(); p < 100 || p > 125 {
		t.Fatalf("p99 = %v ms, want about 100ms", p)
	}
	now = now.Add(61 * time.Second) // all of it is older than a minute
	if p := w.p99(); p != 0 {
		t.Fatalf("p99 of a stale window = %v", p)
	}
}
