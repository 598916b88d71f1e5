package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
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

// member is one `raftkv server` process and the addresses it owns.
type member struct {
	id                            int
	peerAddr, redisAddr, httpAddr string
	dataDir, logPath              string
	args                          []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when the running process has exited
	paused bool
}

// cluster runs n members wired through a proxied network.
type cluster struct {
	t       testing.TB
	bin     string
	dir     string
	members []*member
	net     *network
	extra   []string // extra flags for every member
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("chaos: find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildBinary builds cmd/raftkv once per test binary.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func buildBinary(t testing.TB) string {
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

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

func newCluster(t testing.TB, n int, dir string, seed uint64, extra ...string) *cluster {
	c := &cluster{t: t, bin: buildBinary(t), dir: dir, extra: extra}
	peer := map[int]string{}
	for i := 1; i <= n; i++ {
		m := &member{id: i, peerAddr: freeAddr(t), redisAddr: freeAddr(t), httpAddr: freeAddr(t),
			dataDir: filepath.Join(dir, fmt.Sprintf("m%d", i)), logPath: filepath.Join(dir, fmt.Sprintf("m%d.log", i))}
		peer[i] = m.peerAddr
		c.members = append(c.members, m)
	}
	nw, err := newNetwork(peer, seed)
	if err != nil {
		t.Fatalf("chaos: proxies: %v", err)
	}
	c.net = nw
	for _, m := range c.members {
		// Each member sees its peers through its own proxies, and itself directly.
		var ic []string
		for _, p := range c.members {
			addr := p.peerAddr
			if p.id != m.id {
				addr = nw.addrFor(m.id, p.id)
			}
			ic = append(ic, fmt.Sprintf("%d=%s", p.id, addr))
		}
		m.args = append([]string{"server", "--id", fmt.Sprint(m.id), "--data-dir", m.dataDir,
			"--peer-addr", m.peerAddr, "--redis-addr", m.redisAddr, "--http-addr", m.httpAddr,
			"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-token", "chaos"}, extra...)
	}
	return c
}

func (c *cluster) start(m *member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatalf("chaos: log file: %v", err)
	}
	fmt.Fprintf(logf, "=== start %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(m.args, " "))
	cmd := exec.Command(c.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("chaos: start member %d: %v", m.id, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.cmd, m.done, m.paused = cmd, done, false
}

func (c *cluster) startAll() {
	for _, m := range c.members {
		c.start(m)
	}
}

// kill SIGKILLs m (resuming it first if paused, so it can die) and waits for it to exit.
func (c *cluster) kill(m *member) {
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

func (c *cluster) running(m *member) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

func (c *cluster) signal(m *member, sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(sig)
	m.paused = sig == syscall.SIGSTOP
}

func (c *cluster) member(id int) *member { return c.members[id-1] }

// stop kills every process and closes the proxies; safe to call twice.
func (c *cluster) stop() {
	for _, m := range c.members {
		c.kill(m)
	}
	if c.net != nil {
		c.net.close()
		c.net = nil
	}
}

// status is the part of GET /status the suite reads.
type status struct {
	ID     int    `json:"id"`
	Role   string `json:"role"`
	Term   uint64 `json:"term"`
	Leader int    `json:"leader"`
}

var httpClient = &http.Client{Timeout: 500 * time.Millisecond}

func (m *member) status() (status, error) {
	var s status
	resp, err := httpClient.Get("http://" + m.httpAddr + "/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("status %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// leader returns the id of the member that a running, unpaused member says
// leads and that itself claims to lead, or 0.
func (c *cluster) leader() int {
	for _, m := range c.members {
		if !c.running(m) {
			continue
		}
		s, err := m.status()
		if err == nil && s.Role == "leader" {
			return s.ID
		}
	}
	return 0
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
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
