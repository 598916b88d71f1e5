package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/raftkv/raftkv/internal/proctest"
)

// binary is the raftkv binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "raftkv-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raftkv")
	build := exec.Command("go", "build", "-o", binary, "github.com/raftkv/raftkv/cmd/raftkv")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building raftkv:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Timing of the test clusters: 50ms ticks, election timeout 10 ticks.
const (
	tick            = 50 * time.Millisecond
	electionTimeout = 10 * tick
)

// proc is one `raftkv server` process.
type proc struct {
	id                        int
	dataDir                   string
	peer, redisAddr, httpAddr string
	cmd                       *exec.Cmd
	logs                      *bytes.Buffer
	exited                    chan struct{}
}

type cluster struct {
	t       *testing.T
	procs   []*proc
	initial string
	extra   []string // more server flags for every member
	logsMu  sync.Mutex
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return newClusterArgs(t, n)
}

// newClusterArgs is newCluster with more server flags for every member.
func newClusterArgs(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level test: skipped with -short")
	}
	ports := proctest.FreeAddrs(t, 3*n)
	c := &cluster{t: t, extra: extra}
	var parts []string
	for i := 0; i < n; i++ {
		p := &proc{id: i + 1, dataDir: t.TempDir(), peer: ports[3*i], redisAddr: ports[3*i+1], httpAddr: ports[3*i+2]}
		c.procs = append(c.procs, p)
		parts = append(parts, fmt.Sprintf("%d=%s", p.id, p.peer))
	}
	c.initial = strings.Join(parts, ",")
	for _, p := range c.procs {
		c.start(p)
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			c.kill(p)
		}
		if t.Failed() {
			for _, p := range c.procs {
				c.logsMu.Lock()
				t.Logf("--- member %d log ---\n%s", p.id, p.logs.String())
				c.logsMu.Unlock()
			}
		}
	})
	return c
}

// lockedWriter serialises writes to a shared buffer.
type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func (c *cluster) start(p *proc) {
	c.t.Helper()
	if p.logs == nil {
		p.logs = &bytes.Buffer{}
	}
	fmt.Fprintf(lockedWriter{&c.logsMu, p.logs}, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	args := []string{"server",
		"--id", fmt.Sprint(p.id), "--data-dir", p.dataDir,
		"--peer-addr", p.peer, "--redis-addr", p.redisAddr, "--http-addr", p.httpAddr,
		"--initial-cluster", c.initial,
		"--tick", tick.String(), "--election-ticks", "10", "--log-level", "debug"}
	p.cmd = exec.Command(binary, append(args, c.extra...)...)
	p.cmd.Stdout = lockedWriter{&c.logsMu, p.logs}
	p.cmd.Stderr = lockedWriter{&c.logsMu, p.logs}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start member %d: %v", p.id, err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.cmd, p.exited)
}

// kill SIGKILLs p (if running) and waits for it to exit.
func (c *cluster) kill(p *proc) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// status is the contract's GET /status.
type status struct {
	ID           int    `json:"id"`
	Role         string `json:"role"`
	Term         uint64 `json:"term"`
	Leader       int    `json:"leader"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID       int    `json:"id"`
		PeerAddr string `json:"peer_addr"`
		Voter    bool   `json:"voter"`
	} `json:"members"`
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func (p *proc) status() (status, error) {
	var st status
	resp, err := httpClient.Get("http://" + p.httpAddr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// waitLeader polls the running members' /status until they agree on a
// leader that says it leads, and returns it.
func (c *cluster) waitLeader(timeout time.Duration) *proc {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var lead *proc
		agree, running := true, 0
		leaderID := 0
		for _, p := range c.procs {
			if p.cmd == nil {
				continue
			}
			running++
			st, err := p.status()
			if err != nil || st.Leader == 0 || (leaderID != 0 && st.Leader != leaderID) {
				agree = false
				break
			}
			leaderID = st.Leader
			if st.Role == "leader" {
				lead = p
			}
		}
		if agree && running > 0 && lead != nil && lead.id == leaderID {
			return lead
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no agreed leader within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

func (c *cluster) client(p *proc) *redis.Client {
	cl := redis.NewClient(&redis.Options{Addr: p.redisAddr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 15 * time.Second})
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func (c *cluster) other(p *proc) *proc {
	for _, q := range c.procs {
		if q != p && q.cmd != nil {
			return q
		}
	}
	c.t.Fatal("no other running member")
	return nil
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

var ctx = context.Background()
