// Package proctest runs clusters of real `raftkv server` processes for
// process-level tests: it builds the binary once, starts members on free
// 127.0.0.1 ports with their own data directories and log files, kills,
// pauses and restarts them, and routes peer traffic through per-link TCP
// proxies so that tests can partition and slow the network without root.
package proctest

import (
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
)

// Member is one `raftkv server` process and the addresses it owns.
type Member struct {
	ID                            int
	PeerAddr, RedisAddr, HTTPAddr string
	DataDir, LogPath              string
	Args                          []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when the running process has exited
	paused bool
}

// Cluster runs n members wired through a network that tests can break
// (per-link proxies, or one network namespace per member).
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	Members []*Member
	Net     Links
	extra   []string // extra flags for every member
	netns   *Netns   // set when each member runs in its own namespace
}

// BuildBinary builds cmd/raftkv once per test binary and returns its path.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

// RAFTKV_BIN names a prebuilt binary to use instead (e.g. one build shared
// by several suites, or a released binary tested black-box).
func BuildBinary(t testing.TB) string {
	if bin := os.Getenv("RAFTKV_BIN"); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "raftkv-chaos-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "raftkv")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "./cmd/raftkv")
		cmd.Dir = repoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build ./cmd/raftkv: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatalf("chaos: %v", buildOnce.err)
	}
	return buildOnce.path
}

// repoRoot is the nearest directory above the working directory (a test's
// package directory) that holds go.mod.
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// NewCluster prepares n members with data and logs under dir; extra flags
// go to every member. Members reach each other through the proxies of Net,
// so tests can cut and slow links; StartAll starts the processes.
func NewCluster(t testing.TB, n int, dir string, seed uint64, extra ...string) *Cluster {
	c := &Cluster{t: t, bin: BuildBinary(t), dir: dir, extra: extra}
	peer := map[int]string{}
	for i := 1; i <= n; i++ {
		m := &Member{ID: i, PeerAddr: FreeAddr(t), RedisAddr: FreeAddr(t), HTTPAddr: FreeAddr(t),
			DataDir: filepath.Join(dir, fmt.Sprintf("m%d", i)), LogPath: filepath.Join(dir, fmt.Sprintf("m%d.log", i))}
		peer[i] = m.PeerAddr
		c.Members = append(c.Members, m)
	}
	nw, err := NewNetwork(peer, seed)
	if err != nil {
		t.Fatalf("chaos: proxies: %v", err)
	}
	c.Net = nw
	for _, m := range c.Members {
		// Each member sees its peers through its own proxies, and itself directly.
		var ic []string
		for _, p := range c.Members {
			addr := p.PeerAddr
			if p.ID != m.ID {
				addr = nw.AddrFor(m.ID, p.ID)
			}
			ic = append(ic, fmt.Sprintf("%d=%s", p.ID, addr))
		}
		m.Args = append([]string{"server", "--id", fmt.Sprint(m.ID), "--data-dir", m.DataDir,
			"--peer-addr", m.PeerAddr, "--redis-addr", m.RedisAddr, "--http-addr", m.HTTPAddr,
			"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-token", "chaos"}, extra...)
	}
	return c
}

// Start starts m's process (again), appending to its log file.
func (c *Cluster) Start(m *Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatalf("chaos: log file: %v", err)
	}
	fmt.Fprintf(logf, "=== start %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(m.Args, " "))
	argv := append([]string{c.bin}, m.Args...)
	if c.netns != nil {
		argv = c.netns.Exec(m.ID, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("chaos: start member %d: %v", m.ID, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.cmd, m.done, m.paused = cmd, done, false
}

// StartAll starts every member.
func (c *Cluster) StartAll() {
	for _, m := range c.Members {
		c.Start(m)
	}
}

// Kill SIGKILLs m (resuming it first if paused, so it can die) and waits for it to exit.
func (c *Cluster) Kill(m *Member) {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd, m.paused = nil, false
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Running reports whether m has a live process (it may be paused).
func (c *Cluster) Running(m *Member) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// Signal sends sig to m's process, if it runs.
func (c *Cluster) Signal(m *Member, sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(sig)
	m.paused = sig == syscall.SIGSTOP
}

// Member returns the member with the given id (1-based).
func (c *Cluster) Member(id int) *Member { return c.Members[id-1] }

// Stop kills every process and closes the proxies; safe to call twice.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		c.Kill(m)
	}
	if c.Net != nil {
		c.Net.Close()
		c.Net = nil
	}
}

// Status is the part of GET /status the suite reads.
type Status struct {
	ID     int    `json:"id"`
	Role   string `json:"role"`
	Term   uint64 `json:"term"`
	Leader int    `json:"leader"`
}

var httpClient = &http.Client{Timeout: 500 * time.Millisecond}

// Status asks m's HTTP API for its status.
func (m *Member) Status() (Status, error) {
	var s Status
	resp, err := httpClient.Get("http://" + m.HTTPAddr + "/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("status %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// Leader returns the id of the member that a running, unpaused member says
// leads and that itself claims to lead, or 0.
func (c *Cluster) Leader() int {
	for _, m := range c.Members {
		if !c.Running(m) {
			continue
		}
		s, err := m.Status()
		if err == nil && s.Role == "leader" {
			return s.ID
		}
	}
	return 0
}

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return cond()
}
