package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proctest"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestForceNewCluster: 3 members, writes, 2 members lost; the survivor's
// data dir is forced into a one-voter cluster: every acknowledged write is
// still there, new writes succeed, and a member is added back (new id,
// empty data dir) and catches up.
func TestForceNewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several members")
	}
	c := newTestCluster(t, 3)
	lead := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	survivor := (lead + 1) % 3
	write := func(i, from, to int) {
		t.Helper()
		cl := c.client(i)
		for k := from; k < to; k++ {
			if err := cl.Set(ctx, fmt.Sprintf("k%d", k), fmt.Sprintf("v%d", k), 0).Err(); err != nil {
				t.Fatalf("SET k%d: %v", k, err)
			}
		}
	}
	write(lead, 0, 150)
	// A snapshot in the middle, so the survivor's data is snapshot + log tail.
	if code, body := httpDo(t, "POST", "http://"+c.members[survivor].Addrs().HTTP+"/v1/snapshot", ""); code != 200 {
		t.Fatalf("POST /v1/snapshot: %d %s", code, body)
	}
	write(lead, 150, 300)
	// Acknowledged writes survive only on a member that has them: wait until
	// the survivor has applied what the leader committed.
	commit := c.members[lead].status().CommitIndex
	deadline := time.Now().Add(10 * time.Second)
	for c.members[survivor].status().AppliedIndex < commit {
		if time.Now().After(deadline) {
			t.Fatalf("survivor did not catch up to %d", commit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range c.members {
		if i != survivor {
			c.stop(i)
		}
	}
	c.stop(survivor)
	dir, id := c.cfgs[survivor].DataDir, c.cfgs[survivor].ID

	// Refused without the acknowledgement, and on a data dir with no state.
	if _, err := ForceNewCluster(dir, id, false, nil); !errors.Is(err, ErrDataLossNotAccepted) {
		t.Fatalf("without acceptDataLoss: %v", err)
	}
	if !strings.Contains(ErrDataLossNotAccepted.Error(), "lost") || strings.Contains(ErrDataLossNotAccepted.Error(), "\n") {
		t.Fatalf("the refusal is not one line explaining the loss: %q", ErrDataLossNotAccepted)
	}
	if _, err := ForceNewCluster(t.TempDir(), id, true, nil); !errors.Is(err, ErrInvalidDataDir) {
		t.Fatalf("on an empty data dir: %v", err)
	}

	res, err := ForceNewCluster(dir, id, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	var others []pb.NodeID
	for i := range c.cfgs {
		if i != survivor {
			others = append(others, c.cfgs[i].ID)
		}
	}
	slices.Sort(res.Removed)
	if !res.Changed || !slices.Equal(res.Removed, others) || res.Promoted {
		t.Fatalf("result %+v, want %v removed", res, others)
	}
	// Again on the rewritten dir (before it ran): still nothing left to remove.
	if res2, err := ForceNewCluster(dir, id, true, nil); err != nil || res2.Changed {
		t.Fatalf("second run: %+v, %v", res2, err)
	}

	c.start(survivor)
	deadline = time.Now().Add(10 * time.Second)
	for c.members[survivor].status().Role != "leader" {
		if time.Now().After(deadline) {
			t.Fatalf("survivor did not elect itself: %+v", c.members[survivor].status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := c.members[survivor].status()
	if len(st.Members) != 1 || st.Members[0].ID != id || !st.Members[0].Voter {
		t.Fatalf("members after recovery: %+v", st.Members)
	}
	if st.Term <= uint64(res.Term-1) {
		t.Fatalf("term %d, want above %d", st.Term, res.Term-1)
	}
	cl := c.client(survivor)
	for k := 0; k < 300; k++ {
		if v, err := cl.Get(ctx, fmt.Sprintf("k%d", k)).Result(); err != nil || v != fmt.Sprintf("v%d", k) {
			t.Fatalf("acknowledged write k%d after recovery: %q, %v", k, v, err)
		}
	}
	write(survivor, 300, 350)
	// The removed ids are never reused.
	if code, body := httpDo(t, "POST", "http://"+c.members[survivor].Addrs().HTTP+"/v1/members",
		fmt.Sprintf(`{"id":%d,"peer_addr":"127.0.0.1:1"}`, others[0])); code != 400 || !strings.Contains(body, "never reused") {
		t.Fatalf("adding back removed member %d: %d %s", others[0], code, body)
	}
	if st := c.members[survivor].status(); !slices.Equal(st.Removed, others) {
		t.Fatalf("/status removed = %v, want %v", st.Removed, others)
	}
	// The removed ids outlive the log that removed them: snapshot (the log
	// is compacted), restart, and they are still known.
	if code, body := httpDo(t, "POST", "http://"+c.members[survivor].Addrs().HTTP+"/v1/snapshot", ""); code != 200 {
		t.Fatalf("POST /v1/snapshot: %d %s", code, body)
	}
	c.stop(survivor)
	c.start(survivor)
	if st := c.members[survivor].status(); !slices.Equal(st.Removed, others) || st.SnapshotIndex < uint64(res.Commit) {
		t.Fatalf("after a snapshot and a restart: removed %v (want %v), snapshot index %d", st.Removed, others, st.SnapshotIndex)
	}
	deadline = time.Now().Add(10 * time.Second)
	for c.members[survivor].status().Role != "leader" {
		if time.Now().After(deadline) {
			t.Fatalf("survivor did not elect itself after a restart")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Add a member back: a new id, an empty data dir, --join.
	ports := proctest.FreeAddrs(t, 3)
	cfg := c.cfgs[survivor]
	cfg.ID, cfg.DataDir = 10, t.TempDir()
	cfg.PeerAddr, cfg.RedisAddr, cfg.HTTPAddr = ports[0], ports[1], ports[2]
	cfg.InitialCluster, cfg.Join = nil, c.members[survivor].Addrs().HTTP
	c.cfgs = append(c.cfgs, cfg)
	c.members = append(c.members, nil)
	c.start(3)
	deadline = time.Now().Add(20 * time.Second)
	for {
		voter := false
		for _, m := range c.members[survivor].status().Members {
			voter = voter || (m.ID == 10 && m.Voter)
		}
		if voter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member 10 not promoted: %+v", c.members[survivor].status().Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
	write(survivor, 350, 360) // needs both voters now
	if st := c.members[3].status(); !slices.Equal(st.Removed, others) {
		t.Fatalf("the added member (restored from a snapshot) knows removed %v, want %v", st.Removed, others)
	}
	cl4 := c.client(3)
	for _, k := range []int{0, 299, 359} {
		if v, err := cl4.Get(ctx, fmt.Sprintf("k%d", k)).Result(); err != nil || v != fmt.Sprintf("v%d", k) {
			t.Fatalf("GET k%d on the added member: %q, %v", k, v, err)
		}
	}
}
