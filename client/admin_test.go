package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/internal/proctest"
)

// fakeHTTPMember serves /status (from st) and records admin requests.
type fakeHTTPMember struct {
	srv *httptest.Server

	mu       sync.Mutex
	st       Status
	requests []string // "METHOD PATH BODY"
	reply    func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeHTTPMember(t *testing.T, st Status) *fakeHTTPMember {
	f := &fakeHTTPMember{st: st}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeHTTPMember) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeHTTPMember) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path+" "+strings.TrimSpace(string(body)))
	st, reply := f.st, f.reply
	f.mu.Unlock()
	if reply != nil && reply(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.Method + " " + r.URL.Path {
	case "GET /status":
		_ = json.NewEncoder(w).Encode(st)
	case "GET /v1/members":
		_ = json.NewEncoder(w).Encode(st.Members)
	case "POST /v1/leader/transfer":
		_, _ = io.WriteString(w, `{"result":"OK","leader":2,"term":9}`)
	case "POST /v1/snapshot":
		_, _ = io.WriteString(w, `{"result":"OK","index":120,"term":8}`)
	default:
		_, _ = io.WriteString(w, `{"result":"OK"}`)
	}
}

func (f *fakeHTTPMember) lastRequest() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func threeMembers(t *testing.T) []*fakeHTTPMember {
	members := []MemberStatus{{ID: 1, PeerAddr: "127.0.0.1:7001", Voter: true}, {ID: 2, PeerAddr: "127.0.0.1:7002", Voter: true}, {ID: 3, PeerAddr: "127.0.0.1:7003", Voter: true}}
	return []*fakeHTTPMember{
		newFakeHTTPMember(t, Status{ID: 1, Role: "leader", Term: 8, Leader: 1, CommitIndex: 100, AppliedIndex: 100, Members: members}),
		newFakeHTTPMember(t, Status{ID: 2, Role: "follower", Term: 8, Leader: 1, CommitIndex: 100, AppliedIndex: 90, Members: members}),
		newFakeHTTPMember(t, Status{ID: 3, Role: "follower", Term: 8, Leader: 1, CommitIndex: 50, AppliedIndex: 40, Members: members}),
	}
}

func newTestAdmin(t *testing.T, eps ...string) *Admin {
	t.Helper()
	a, err := NewAdmin(AdminConfig{Endpoints: eps, HealthyLag: 20})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestClusterView(t *testing.T) {
	fs := threeMembers(t)
	a := newTestAdmin(t, fs[0].addr(), fs[1].addr(), fs[2].addr())
	view, err := a.Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if view.Leader != 1 || view.Term != 8 || len(view.Members) != 3 {
		t.Fatalf("view = %+v, want leader 1, term 8, 3 members", view)
	}
	for _, tc := range []struct {
		id      uint64
		lag     uint64
		healthy bool
	}{{1, 0, true}, {2, 10, true}, {3, 60, false}} {
		m := view.Members[tc.id-1]
		if m.ID != tc.id || m.Status == nil || m.Lag != tc.lag || m.Healthy != tc.healthy {
			t.Errorf("member %d: got id %d lag %d healthy %v, want lag %d healthy %v", tc.id, m.ID, m.Lag, m.Healthy, tc.lag, tc.healthy)
		}
	}
}

func TestClusterViewWithUnreachableMember(t *testing.T) {
	fs := threeMembers(t)
	fs[2].srv.Close()
	a := newTestAdmin(t, fs[0].addr(), fs[1].addr(), fs[2].addr())
	view, err := a.Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if view.Leader != 1 {
		t.Fatalf("leader = %d, want 1", view.Leader)
	}
	m := view.Members[2]
	if m.ID != 3 || m.Status != nil || m.Healthy || m.PeerAddr != "127.0.0.1:7003" {
		t.Fatalf("member 3 = %+v, want listed from the configuration, without status", m)
	}
	if len(view.Unanswered) != 1 || view.Unanswered[0].Endpoint != fs[2].addr() || view.Unanswered[0].Err == nil {
		t.Fatalf("unanswered = %+v, want %s", view.Unanswered, fs[2].addr())
	}

	// Given only member 1's address, and no HTTP addresses reported, the
	// others are listed but not asked.
	view, err = newTestAdmin(t, fs[0].addr()).Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(view.Members) != 3 || view.Members[1].Asked || view.Members[1].Status != nil {
		t.Fatalf("members = %+v, want 2 and 3 listed, not asked", view.Members)
	}
}

func TestClusterViewDiscoversHTTPAddrs(t *testing.T) {
	fs := threeMembers(t)
	for _, f := range fs {
		f.mu.Lock()
		f.st.Members = append([]MemberStatus(nil), f.st.Members...)
		for i := range f.st.Members {
			f.st.Members[i].HTTPAddr = fs[i].addr()
		}
		f.mu.Unlock()
	}
	a := newTestAdmin(t, fs[1].addr()) // only one endpoint given
	view, err := a.Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range view.Members {
		if m.Status == nil {
			t.Errorf("member %d was not asked through its reported HTTP address", m.ID)
		}
	}
}

func TestClusterViewNoLeader(t *testing.T) {
	members := []MemberStatus{{ID: 1, Voter: true}, {ID: 2, Voter: true}}
	f1 := newFakeHTTPMember(t, Status{ID: 1, Role: "candidate", Term: 9, Members: members})
	f2 := newFakeHTTPMember(t, Status{ID: 2, Role: "follower", Term: 8, Leader: 1, Members: members})
	view, err := newTestAdmin(t, f1.addr(), f2.addr()).Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Member 2's leader belongs to an older term: it is not the leader now.
	if view.Leader != 0 {
		t.Fatalf("leader = %d, want 0 (no leader in term 9)", view.Leader)
	}
}

func TestClusterViewNobodyAnswers(t *testing.T) {
	fs := threeMembers(t)
	fs[0].srv.Close()
	_, err := newTestAdmin(t, fs[0].addr()).Cluster(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no member answered") {
		t.Fatalf("err = %v, want 'no member answered'", err)
	}
}

func TestAdminRequests(t *testing.T) {
	f := threeMembers(t)[0]
	a := newTestAdmin(t, f.addr())
	ctx := context.Background()

	if err := a.AddMember(ctx, NewMember{ID: 4, PeerAddr: "127.0.0.1:7004", HTTPAddr: "127.0.0.1:8004"}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.lastRequest(), `POST /v1/members {"id":4,"peer_addr":"127.0.0.1:7004","http_addr":"127.0.0.1:8004"}`; got != want {
		t.Errorf("add: sent %q, want %q", got, want)
	}
	if err := a.RemoveMember(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest(); got != "DELETE /v1/members/2 " {
		t.Errorf("remove: sent %q", got)
	}
	if err := a.PromoteMember(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest(); got != "POST /v1/members/4/promote " {
		t.Errorf("promote: sent %q", got)
	}
	res, err := a.TransferLeader(ctx, 2)
	if err != nil || res.Leader != 2 || res.Term != 9 {
		t.Fatalf("transfer = %+v, %v", res, err)
	}
	if got := f.lastRequest(); got != `POST /v1/leader/transfer {"to":2}` {
		t.Errorf("transfer: sent %q", got)
	}
	if _, err := a.TransferLeader(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest(); got != `POST /v1/leader/transfer {}` {
		t.Errorf("transfer to any: sent %q", got)
	}
	snap, err := a.Snapshot(ctx)
	if err != nil || snap.Index != 120 || snap.Term != 8 {
		t.Fatalf("snapshot = %+v, %v", snap, err)
	}
	ms, err := a.Members(ctx)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members = %v, %v", ms, err)
	}
}

func TestAdminBadInputRejectedLocally(t *testing.T) {
	f := threeMembers(t)[0]
	a := newTestAdmin(t, f.addr())
	for _, m := range []NewMember{{ID: 0, PeerAddr: "127.0.0.1:1"}, {ID: 4, PeerAddr: "nope"}, {ID: 4, PeerAddr: "127.0.0.1:1", HTTPAddr: "x"}} {
		if err := a.AddMember(context.Background(), m); err == nil {
			t.Errorf("AddMember(%+v) accepted", m)
		}
	}
	if _, err := NewAdmin(AdminConfig{Endpoints: []string{"ftp://127.0.0.1:1"}}); err == nil {
		t.Error("ftp:// endpoint accepted")
	}
	if _, err := NewAdmin(AdminConfig{}); err == nil {
		t.Error("no endpoints accepted")
	}
}

func TestAdminAPIErrorIsReported(t *testing.T) {
	f := threeMembers(t)[0]
	f.reply = func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, `{"error":"member 4 is not caught up"}`)
		return true
	}
	other := threeMembers(t)[1]
	err := newTestAdmin(t, f.addr(), other.addr()).PromoteMember(context.Background(), 4)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || apiErr.Msg != "member 4 is not caught up" {
		t.Fatalf("err = %v, want the member's 409 message", err)
	}
	for _, r := range other.requests {
		if !strings.HasPrefix(r, "GET ") {
			t.Fatalf("an answered request was retried on another member: %q", r)
		}
	}
}

func TestLeaderOnlyRequestsGoToTheLeader(t *testing.T) {
	fs := threeMembers(t)
	// The leader (member 1) is the last endpoint given.
	a := newTestAdmin(t, fs[1].addr(), fs[2].addr(), fs[0].addr())
	if _, err := a.TransferLeader(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if err := a.PromoteMember(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs[1:] {
		for _, r := range f.requests {
			if !strings.HasPrefix(r, "GET /status") {
				t.Errorf("follower got %q", r)
			}
		}
	}
	if got := fs[0].lastRequest(); got != "POST /v1/members/3/promote " {
		t.Errorf("leader's last request %q", got)
	}
}

func TestAdminFailsOverOnlyWhenNotSent(t *testing.T) {
	live := threeMembers(t)[0]
	dead := proctest.RefusedAddr(t)
	if err := newTestAdmin(t, dead, live.addr()).RemoveMember(context.Background(), 3); err != nil {
		t.Fatalf("refused connection should move on to the next member: %v", err)
	}
	// A request that reached a member but got no answer is not resent.
	hang := threeMembers(t)[1]
	hang.reply = func(w http.ResponseWriter, r *http.Request) bool {
		hj, ok := w.(http.Hijacker)
		if !ok {
			t.Error("no hijacker")
			return false
		}
		conn, _, _ := hj.Hijack()
		conn.Close()
		return true
	}
	other := threeMembers(t)[2]
	err := newTestAdmin(t, hang.addr(), other.addr()).RemoveMember(context.Background(), 3)
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("err = %v, want ErrUnknownOutcome", err)
	}
	if len(other.requests) != 0 {
		t.Fatal("a request with unknown outcome was resent")
	}
}
