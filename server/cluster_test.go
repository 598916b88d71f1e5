package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/raftkv/raftkv/internal/proctest"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// testCluster is three Members in this process over loopback TCP.
type testCluster struct {
	t       *testing.T
	cfgs    []Config
	members []*Member
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	ports := proctest.FreeAddrs(t, 3*n)
	var initial []Peer
	for i := 0; i < n; i++ {
		initial = append(initial, Peer{ID: pb.NodeID(i + 1), PeerAddr: ports[3*i]})
	}
	c := &testCluster{t: t}
	for i := 0; i < n; i++ {
		cfg := Config{
			ID: pb.NodeID(i + 1), DataDir: t.TempDir(),
			PeerAddr: ports[3*i], RedisAddr: ports[3*i+1], HTTPAddr: ports[3*i+2],
			InitialCluster: initial,
			TickInterval:   20 * time.Millisecond, ElectionTicks: 10,
			RequestTimeout: 3 * time.Second,
			NoSync:         true,
		}
		c.cfgs = append(c.cfgs, cfg)
		c.members = append(c.members, nil)
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.members {
			c.stop(i)
		}
	})
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	m, err := New(c.cfgs[i])
	if err != nil {
		c.t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.members[i] = m
}

func (c *testCluster) stop(i int) {
	if c.members[i] == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.members[i].Stop(ctx); err != nil {
		c.t.Errorf("stop member %d: %v", i+1, err)
	}
	c.members[i] = nil
}

// waitLeader polls until the running members agree on a leader.
func (c *testCluster) waitLeader(timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		lead := pb.None
		agree := true
		for _, m := range c.members {
			if m == nil {
				continue
			}
			st := m.status()
			if st.Leader == pb.None || (lead != pb.None && st.Leader != lead) {
				agree = false
				break
			}
			lead = st.Leader
		}
		if agree && lead != pb.None && c.members[lead-1] != nil && c.members[lead-1].status().Role == "leader" {
			return int(lead - 1)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	c.t.Fatalf("no leader within %v", timeout)
	return -1
}

func (c *testCluster) client(i int) *redis.Client {
	cl := redis.NewClient(&redis.Options{Addr: c.members[i].Addrs().Redis, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// TestClusterReadsAndWritesOnEveryMember: any member accepts any command;
// a write on a follower is visible to a linearizable read on another.
func TestClusterReadsAndWritesOnEveryMember(t *testing.T) {
	c := newTestCluster(t, 3)
	lead := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	for i := range c.members {
		cl := c.client(i)
		key := fmt.Sprintf("k%d", i)
		if err := cl.Set(ctx, key, fmt.Sprint(i), 0).Err(); err != nil {
			t.Fatalf("SET on member %d (leader %d): %v", i+1, lead+1, err)
		}
		next := c.client((i + 1) % 3)
		if v, err := next.Get(ctx, key).Result(); err != nil || v != fmt.Sprint(i) {
			t.Fatalf("GET %s on member %d = %q, %v", key, (i+1)%3+1, v, err)
		}
		if n, err := cl.Incr(ctx, "ctr").Result(); err != nil || n != int64(i+1) {
			t.Fatalf("INCR on member %d = %d, %v", i+1, n, err)
		}
	}
	// Pipelined writes through a follower.
	follower := (lead + 1) % 3
	cl := c.client(follower)
	pipe := cl.Pipeline()
	var cmds []*redis.IntCmd
	for i := 0; i < 100; i++ {
		cmds = append(cmds, pipe.Incr(ctx, "pipe"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if cmd.Val() != int64(i+1) {
			t.Fatalf("pipelined INCR %d = %d", i, cmd.Val())
		}
	}

	// HTTP: status shape, kv routes, metrics.
	httpAddr := c.members[follower].Addrs().HTTP
	resp, err := http.Get("http://" + httpAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, k := range []string{"id", "role", "term", "leader", "commit_index", "applied_index", "members"} {
		if _, ok := st[k]; !ok {
			t.Fatalf("/status lacks %q: %v", k, st)
		}
	}
	if st["role"] != "follower" || len(st["members"].([]any)) != 3 {
		t.Fatalf("/status = %v", st)
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+httpAddr+"/v1/kv/h?ttl=60", strings.NewReader("hello"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	if v, err := c.client(lead).Get(ctx, "h").Result(); err != nil || v != "hello" {
		t.Fatalf("GET h after PUT = %q, %v", v, err)
	}
	resp, err = http.Get("http://" + httpAddr + "/v1/kv/h")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/kv/h: %v %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("GET /v1/kv/h = %q", body)
	}
	resp, _ = http.Get("http://" + httpAddr + "/v1/kv/nope")
	if resp.StatusCode != 404 {
		t.Fatalf("GET missing key: %d", resp.StatusCode)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"raftkv_raft_term", "raftkv_raft_commit_index", "raftkv_proposals_total", `raftkv_resp_commands_total{command="incr"}`, "raftkv_peer_messages_sent_total", "raftkv_proposal_duration_seconds_bucket"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// TestClusterFailover: stop the leader; a new one is elected, acknowledged
// writes survive, and a stopped member restarts from its data dir.
func TestClusterFailover(t *testing.T) {
	c := newTestCluster(t, 3)
	lead := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if err := c.client((lead+1)%3).Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprint(i), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(lead)
	newLead := c.waitLeader(10 * time.Second)
	if newLead == lead {
		t.Fatalf("stopped member %d still leads", lead+1)
	}
	cl := c.client(newLead)
	for i := 0; i < 20; i++ {
		if v, err := cl.Get(ctx, fmt.Sprintf("k%d", i)).Result(); err != nil || v != fmt.Sprint(i) {
			t.Fatalf("after failover GET k%d = %q, %v", i, v, err)
		}
	}
	if err := cl.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.start(lead)
	restarted := c.client(lead)
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := restarted.Get(ctx, "after").Result()
		if err == nil && v == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted member never caught up: %q, %v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterNoQuorum: with two of three members down, commands fail with
// the contract's errors within a bounded time.
func TestClusterNoQuorum(t *testing.T) {
	c := newTestCluster(t, 3)
	lead := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	alive := (lead + 1) % 3
	cl := c.client(alive)
	if err := cl.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range c.members {
		if i != alive {
			c.stop(i)
		}
	}
	start := time.Now()
	err := cl.Get(ctx, "a").Err()
	if err == nil || !(strings.HasPrefix(err.Error(), "CLUSTERDOWN") || strings.HasPrefix(err.Error(), "TRYAGAIN")) {
		t.Fatalf("GET without quorum = %v", err)
	}
	err = cl.Set(ctx, "a", "2", 0).Err()
	if err == nil || !(strings.HasPrefix(err.Error(), "CLUSTERDOWN") || strings.HasPrefix(err.Error(), "TRYAGAIN") || strings.HasPrefix(err.Error(), "UNKNOWN")) {
		t.Fatalf("SET without quorum = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("errors took %v", d)
	}
	if errors.Is(err, redis.Nil) {
		t.Fatal("unreachable")
	}
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClusterMembershipAndAdmin: --join adds a learner that is promoted
// once caught up; leader transfer, snapshot and member removal over HTTP,
// sent to a follower.
func TestClusterMembershipAndAdmin(t *testing.T) {
	c := newTestCluster(t, 3)
	lead := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if err := c.client(lead).Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	follower := (lead + 1) % 3
	fHTTP := "http://" + c.members[follower].Addrs().HTTP

	// Snapshot on demand.
	if code, body := httpDo(t, "POST", fHTTP+"/v1/snapshot", ""); code != 200 || !strings.Contains(body, `"index"`) {
		t.Fatalf("POST /v1/snapshot: %d %s", code, body)
	}

	// Join a fourth member through a follower.
	ports := proctest.FreeAddrs(t, 3)
	cfg := c.cfgs[0]
	cfg.ID, cfg.DataDir = 4, t.TempDir()
	cfg.PeerAddr, cfg.RedisAddr, cfg.HTTPAddr = ports[0], ports[1], ports[2]
	cfg.InitialCluster, cfg.Join = nil, c.members[follower].Addrs().HTTP
	c.cfgs = append(c.cfgs, cfg)
	c.members = append(c.members, nil)
	c.start(3)
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := c.members[lead].status()
		voter := false
		for _, m := range st.Members {
			if m.ID == 4 && m.Voter {
				voter = true
			}
		}
		if voter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member 4 not promoted: %+v", st.Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v, err := c.client(3).Get(ctx, "k49").Result(); err != nil || v != "v" {
		t.Fatalf("GET on the joined member = %q, %v", v, err)
	}

	// Transfer leadership to a chosen member, asked of a follower.
	target := pb.NodeID(follower + 1)
	if code, body := httpDo(t, "POST", fHTTP+"/v1/leader/transfer", fmt.Sprintf(`{"to":%d}`, target)); code != 200 {
		t.Fatalf("leader transfer: %d %s", code, body)
	}
	deadline = time.Now().Add(10 * time.Second)
	for c.members[follower].status().Role != "leader" {
		if time.Now().After(deadline) {
			t.Fatalf("member %d did not become leader", target)
		}
		time.Sleep(time.Millisecond) // a fine poll, not proctest.WaitFor's 50 ms: the removal below must follow at once
	}

	// Remove member 4, asked of the new leader at once: it refuses changes
	// until it has committed an entry of its term, and the request waits.
	if code, body := httpDo(t, "DELETE", "http://"+c.members[follower].Addrs().HTTP+"/v1/members/4", ""); code != 200 {
		t.Fatalf("remove member 4 right after the transfer: %d %s", code, body)
	}
	for _, m := range c.members[follower].status().Members {
		if m.ID == 4 {
			t.Fatalf("member 4 still listed after removal")
		}
	}

	// Bad requests get JSON errors with proper codes.
	if code, _ := httpDo(t, "POST", fHTTP+"/v1/members", `{"id":0,"peer_addr":"x"}`); code != 400 {
		t.Fatalf("add member id 0: %d", code)
	}
	if code, _ := httpDo(t, "POST", fHTTP+"/v1/members", `{"id":2,"peer_addr":"127.0.0.1:1"}`); code != 409 {
		t.Fatalf("add existing member: %d", code)
	}
	if code, _ := httpDo(t, "DELETE", fHTTP+"/v1/members/99", ""); code != 404 {
		t.Fatalf("remove unknown member: %d", code)
	}

	c.stop(3)
}
