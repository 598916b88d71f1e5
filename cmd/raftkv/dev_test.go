package main

import (
	"context"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// syncBuffer is an io.Writer safe to read while the dev cluster writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDevTakenPortIsOneClearLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if port+2002 > 65535 {
		t.Skipf("ephemeral port %d too high for a base port", port)
	}
	_, errOut, code := runCLI(t, "", "dev", "--base-port", strconv.Itoa(port))
	want := "port " + strconv.Itoa(port) + " (member 1 RESP) is not available"
	if code != exitError || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "--base-port") {
		t.Fatalf("exit %d, stderr %q; want one line with %q and a hint", code, errOut, want)
	}
}

// TestDevClusterServesAndStopsCleanly runs `raftkv dev` as a user would:
// waits for its table, writes through one member's printed port, reads
// through another's, stops it with a cancel (Ctrl-C), and checks the
// temporary data directory is gone.
func TestDevClusterServesAndStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--base-port", "0", "--no-sync"}, strings.NewReader(""), &out, &errOut)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case code := <-done:
			t.Fatalf("dev exited early with %d; stdout %q stderr %q", code, out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no member table within 60s; stdout %q stderr %q", out.String(), errOut.String())
		}
	}
	text := out.String()
	ports := regexp.MustCompile(`redis-cli -p (\d+)`).FindAllStringSubmatch(text, -1)
	if len(ports) < devMembers+1 { // the table plus the "Try:" line
		t.Fatalf("table lacks redis-cli lines: %q", text)
	}
	if n := len(regexp.MustCompile(`(?m)^\d+\s+leader\s`).FindAllString(text, -1)); n != 1 {
		t.Errorf("table shows %d leaders, want 1: %q", n, text)
	}
	if !regexp.MustCompile(`http://127\.0\.0\.1:\d+/ui`).MatchString(text) {
		t.Errorf("table lacks the web UI address: %q", text)
	}
	dirMatch := regexp.MustCompile(`data in (\S+) \(removed on exit\)`).FindStringSubmatch(text)
	if dirMatch == nil {
		t.Fatalf("no data dir line: %q", text)
	}

	write, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:" + ports[0][1]}})
	if err != nil {
		t.Fatal(err)
	}
	defer write.Close()
	read, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:" + ports[2][1]}})
	if err != nil {
		t.Fatal(err)
	}
	defer read.Close()
	opCtx, opCancel := context.WithTimeout(ctx, 20*time.Second)
	defer opCancel()
	if err := write.Set(opCtx, "greeting", "hello", 0); err != nil {
		t.Fatalf("SET through member 1: %v", err)
	}
	if v, err := read.Get(opCtx, "greeting"); err != nil || v != "hello" {
		t.Fatalf("GET through member 3 = %q, %v; want hello", v, err)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("dev stopped with exit %d; stderr %q", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop within 30s of Ctrl-C")
	}
	if _, err := os.Stat(dirMatch[1]); !os.IsNotExist(err) {
		t.Errorf("temporary data dir %s still exists (stat: %v)", dirMatch[1], err)
	}
}

// TestDevWaitsForASettledLeader: the dev table is printed from a view in
// which exactly the agreed leader says it leads; CI once caught a view that
// named a leader while that member was already a candidate again.
func TestDevWaitsForASettledLeader(t *testing.T) {
	member := func(id uint64, role string) client.MemberView {
		return client.MemberView{ID: id, Status: &client.Status{Role: role}}
	}
	cases := []struct {
		name   string
		leader uint64
		roles  []string
		want   bool
	}{
		{"one leader, agreed", 3, []string{"follower", "follower", "leader"}, true},
		{"named leader is a candidate", 3, []string{"follower", "follower", "candidate"}, false},
		{"two members lead", 3, []string{"leader", "follower", "leader"}, false},
		{"leader role, other leader named", 2, []string{"leader", "follower", "follower"}, false},
		{"no leader named", 0, []string{"candidate", "follower", "follower"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			view := &client.ClusterView{Leader: tc.leader}
			for i, r := range tc.roles {
				view.Members = append(view.Members, member(uint64(i+1), r))
			}
			if got := settled(view); got != tc.want {
				t.Fatalf("settled = %v, want %v", got, tc.want)
			}
		})
	}
	// A member whose status is unknown does not count as a leader.
	view := &client.ClusterView{Leader: 1, Members: []client.MemberView{member(1, "leader"), {ID: 2}}}
	if !settled(view) {
		t.Fatal("settled = false with the leader answering and another member silent")
	}
}
