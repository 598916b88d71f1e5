package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeMember serves a fixed /status and counts how often it is asked.
func fakeMember(t *testing.T, status string) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		w.Write([]byte(status))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func newTestHandler(t *testing.T, interval time.Duration) (*Handler, *atomic.Int64) {
	leader, hits := fakeMember(t, `{"id":2,"role":"leader","term":7,"leader":2,"commit_index":40}`)
	members := []Member{
		{ID: 1}, // self
		{ID: 2, HTTPAddr: strings.TrimPrefix(leader.URL, "http://")},
		{ID: 3, HTTPAddr: "127.0.0.1:1"}, // nobody listens: down
		{ID: 4},                          // address not known yet
	}
	h := New(Config{
		Self:        1,
		LocalStatus: func() ([]byte, error) { return []byte(`{"id":1,"role":"follower","term":7,"leader":2}`), nil },
		Members:     func() []Member { return members },
		Interval:    interval,
	})
	return h, hits
}

func decode(t *testing.T, b []byte) ClusterView {
	t.Helper()
	var v ClusterView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("cluster document is not JSON: %v\n%s", err, b)
	}
	return v
}

// TestClusterDocument checks the shape the page relies on: every member, its
// status when reachable, and a reason when it is not.
func TestClusterDocument(t *testing.T) {
	h, _ := newTestHandler(t, time.Second)
	v := decode(t, h.Cluster(context.Background()))
	if v.ObservedBy != 1 || len(v.Members) != 4 {
		t.Fatalf("observed_by=%d members=%d, want 1 and 4", v.ObservedBy, len(v.Members))
	}
	want := []struct {
		reachable bool
		role      string
	}{{true, "follower"}, {true, "leader"}, {false, ""}, {false, ""}}
	for i, m := range v.Members {
		if m.Reachable != want[i].reachable {
			t.Errorf("member %d reachable=%v, want %v (error %q)", m.ID, m.Reachable, want[i].reachable, m.Error)
		}
		if !m.Reachable {
			if m.Error == "" {
				t.Errorf("member %d is down with no reason", m.ID)
			}
			continue
		}
		var s struct{ Role string }
		json.Unmarshal(m.Status, &s)
		if s.Role != want[i].role {
			t.Errorf("member %d role %q, want %q", m.ID, s.Role, want[i].role)
		}
	}
}

// TestClusterDocumentFollowsLeaderChange checks that a new gather reflects
// a member's new status (after the cache interval) rather than a stale copy.
func TestClusterDocumentFollowsLeaderChange(t *testing.T) {
	var role atomic.Value
	role.Store("leader")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"id":2,"role":"` + role.Load().(string) + `"}`))
	}))
	defer srv.Close()
	h := New(Config{Self: 1, Interval: 20 * time.Millisecond,
		LocalStatus: func() ([]byte, error) { return []byte(`{"id":1,"role":"follower"}`), nil },
		Members: func() []Member {
			return []Member{{ID: 1}, {ID: 2, HTTPAddr: strings.TrimPrefix(srv.URL, "http://")}}
		}})
	roleOf := func() string {
		var s struct{ Role string }
		json.Unmarshal(decode(t, h.Cluster(context.Background())).Members[1].Status, &s)
		return s.Role
	}
	if got := roleOf(); got != "leader" {
		t.Fatalf("role %q, want leader", got)
	}
	role.Store("follower")
	deadline := time.Now().Add(2 * time.Second)
	for roleOf() != "follower" {
		if time.Now().After(deadline) {
			t.Fatal("the document never showed member 2's new role")
		}
		time.Sleep(5 * time.Millisecond) // poll: the cache expires on its own clock
	}
}

// TestClusterGatherIsShared checks the bounded cost: many viewers asking at
// once cause one request per member per interval, not one per viewer.
func TestClusterGatherIsShared(t *testing.T) {
	h, hits := newTestHandler(t, time.Hour)
	for i := 0; i < 50; i++ {
		h.Cluster(context.Background())
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("member 2 was asked %d times for 50 views within one interval, want 1", n)
	}
}

// TestEventsStream reads the first Server-Sent Event and checks the viewer cap.
func TestEventsStream(t *testing.T) {
	h, _ := newTestHandler(t, 50*time.Millisecond)
	h.cfg.MaxViewers = 1
	h.viewers = make(chan struct{}, 1)
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/cluster/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	if v := decode(t, []byte(strings.TrimPrefix(line, "data: "))); len(v.Members) != 4 {
		t.Fatalf("event has %d members", len(v.Members))
	}
	// A second viewer is over the cap while the first one streams.
	resp2, err := http.Get(srv.URL + "/v1/cluster/events")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second viewer got %s, want 503", resp2.Status)
	}
}

// TestPageServed checks that the embedded page is served at /ui and / redirects there.
func TestPageServed(t *testing.T) {
	h, _ := newTestHandler(t, time.Second)
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&body)
	if resp.Request.URL.Path != "/ui" || !strings.Contains(body.String(), "/v1/cluster/events") {
		t.Fatalf("GET / ended at %s with a page that does not stream", resp.Request.URL.Path)
	}
}
