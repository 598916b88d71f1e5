package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/raftkv/raftkv/internal/proctest"
)

// TestKillLeaderLosesNoAcknowledgedWrite: SIGKILL the leader under write
// load; a new leader is elected within a few election timeouts; after
// SIGKILLing and restarting every member, every acknowledged write is there.
func TestKillLeaderLosesNoAcknowledgedWrite(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.waitLeader(20 * time.Second)

	var mu sync.Mutex
	acked := map[string]string{}
	var stop atomic.Bool
	var wg sync.WaitGroup
	clients := map[*proc]*redis.Client{}
	for _, p := range c.procs {
		clients[p] = c.client(p)
	}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				p := c.procs[(g+i)%len(c.procs)]
				key, val := fmt.Sprintf("w%d-%d", g, i), fmt.Sprintf("v%d", i)
				if err := clients[p].Set(ctx, key, val, 0).Err(); err == nil {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				}
			}
		}(g)
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	eventually(t, 20*time.Second, "100 writes acknowledged", func() error {
		if n := ackedCount(); n < 100 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})

	killedAt := time.Now()
	c.kill(lead)
	newLead := c.waitLeader(20 * time.Second)
	took := time.Since(killedAt)
	t.Logf("member %d killed; member %d leads after %v", lead.id, newLead.id, took)
	if took > 10*electionTimeout {
		t.Errorf("new leader after %v, want within a few election timeouts (%v each)", took, electionTimeout)
	}
	before := ackedCount()
	eventually(t, 20*time.Second, "writes continue after failover", func() error {
		if n := ackedCount(); n < before+100 {
			return fmt.Errorf("%d acknowledged since failover", n-before)
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()

	// Power loss of everyone at once, then restart everything.
	for _, p := range c.procs {
		c.kill(p)
	}
	for _, p := range c.procs {
		c.start(p)
	}
	c.waitLeader(20 * time.Second)
	cl := c.client(c.procs[0])
	mu.Lock()
	defer mu.Unlock()
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	for len(keys) > 0 {
		batch := keys[:min(200, len(keys))]
		keys = keys[len(batch):]
		var vals []any
		eventually(t, 20*time.Second, "MGET after restart", func() (err error) {
			vals, err = cl.MGet(ctx, batch...).Result()
			return err
		})
		for i, k := range batch {
			if vals[i] != acked[k] {
				t.Fatalf("acknowledged write lost: %s = %v, want %q", k, vals[i], acked[k])
			}
		}
	}
	t.Logf("%d acknowledged writes all present after restarting every member", len(acked))
}

// TestTTLAcrossLeaderChange: TTLs are absolute deadlines stamped by the
// leader, so a leader change neither resets nor stretches them, and keys
// expire on every replica alike.
func TestTTLAcrossLeaderChange(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.waitLeader(20 * time.Second)
	cl := c.client(lead)
	setAt := time.Now()
	if err := cl.Set(ctx, "long", "x", 100*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := cl.Set(ctx, fmt.Sprintf("short%d", i), "x", 1500*time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.kill(lead)
	c.waitLeader(20 * time.Second)

	for _, p := range c.procs {
		if p.cmd == nil {
			continue
		}
		pttl, err := c.client(p).PTTL(ctx, "long").Result()
		if err != nil {
			t.Fatal(err)
		}
		maxLeft := 100*time.Second - time.Since(setAt) + 50*time.Millisecond
		if pttl > maxLeft || pttl < maxLeft-10*time.Second {
			t.Fatalf("member %d: PTTL long = %v after a leader change, want about %v (not reset)", p.id, pttl, maxLeft)
		}
	}
	c.start(lead)
	// After the deadline the short keys are gone everywhere: reads hide them
	// at once, and the leader's sweep deletes them on every replica.
	time.Sleep(time.Until(setAt.Add(1600 * time.Millisecond))) // wait for a deadline in wall-clock time, not for another goroutine
	for _, p := range c.procs {
		cl := c.client(p)
		eventually(t, 20*time.Second, fmt.Sprintf("member %d answers", p.id), func() error {
			return cl.Ping(ctx).Err()
		})
		eventually(t, 20*time.Second, fmt.Sprintf("member %d sees short keys expired", p.id), func() error {
			n, err := cl.Exists(ctx, "short0", "short7", "short19").Result()
			if err != nil || n != 0 {
				return fmt.Errorf("EXISTS = %d, %v", n, err)
			}
			return nil
		})
		eventually(t, 20*time.Second, fmt.Sprintf("member %d keyspace swept", p.id), func() error {
			keys, err := cl.Keys(ctx, "*").Result()
			if err != nil {
				return err
			}
			size, err := cl.DBSize(ctx).Result()
			if err != nil || size != 1 || len(keys) != 1 || keys[0] != "long" {
				return fmt.Errorf("DBSIZE = %d (%v), KEYS = %v", size, err, keys)
			}
			return nil
		})
	}
}

// TestRetriedIncrIsExactlyOnce: INCRs through followers while the leader is
// killed. Writes whose first attempt's outcome became unknown are retried
// by the server with the same dedup identity, so none applies twice: the
// final counter is at least the acknowledged INCRs and at most those plus
// the ones answered with an unknown outcome, and no two acknowledged INCRs
// saw the same value.
func TestRetriedIncrIsExactlyOnce(t *testing.T) {
	incrsThroughLeaderKill(t, 6, 50, func(cl *redis.Client, l *incrLedger) {
		v, err := cl.Incr(ctx, "ctr").Result()
		l.record(t, v, err)
	})
}

// TestPipelinedIncrsAcrossLeaderKill: pipelined writes are proposed as one
// batch entry per pipeline; through a SIGKILLed leader, every INCR still
// applies at most once, the answers within one pipeline keep its order, and
// no two INCRs are given the same value.
func TestPipelinedIncrsAcrossLeaderKill(t *testing.T) {
	const depth = 16
	incrsThroughLeaderKill(t, 4, 20*depth, func(cl *redis.Client, l *incrLedger) {
		pipe := cl.Pipeline()
		cmds := make([]*redis.IntCmd, depth)
		for i := range cmds {
			cmds[i] = pipe.Incr(ctx, "ctr")
		}
		_, _ = pipe.Exec(ctx) // errors are per command below
		last := int64(0)
		for _, cmd := range cmds {
			v, err := cmd.Result()
			if l.record(t, v, err) {
				if v <= last {
					t.Errorf("pipelined INCR answered %d after %d: out of order", v, last)
				}
				last = v
			}
		}
	})
}

// incrLedger tallies the outcomes of INCRs of one counter.
type incrLedger struct {
	mu                  sync.Mutex
	seen                map[int64]bool
	ok, unknown, failed atomic.Int64
}

// record files one INCR's outcome and reports whether it was acknowledged.
// No two acknowledged INCRs may return the same value.
func (l *incrLedger) record(t *testing.T, v int64, err error) bool {
	switch {
	case err == nil:
		l.ok.Add(1)
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.seen[v] {
			t.Errorf("two INCRs answered %d", v)
		}
		l.seen[v] = true
		return true
	case strings.HasPrefix(err.Error(), "CLUSTERDOWN"), strings.HasPrefix(err.Error(), "TRYAGAIN"):
		l.failed.Add(1) // definitely not applied
	default:
		l.unknown.Add(1) // UNKNOWN, or the connection broke: may or may not have applied
	}
	return false
}

// incrsThroughLeaderKill runs work in a loop on workers clients connected
// to followers, SIGKILLs the leader once minAcks INCRs were acknowledged,
// waits for minAcks more under the new leader, then checks that the counter
// lies between the acknowledged INCRs and those plus the unknown ones: none
// applied twice, none acknowledged and lost.
func incrsThroughLeaderKill(t *testing.T, workers int, minAcks int64, work func(*redis.Client, *incrLedger)) {
	c := newCluster(t, 3)
	lead := c.waitLeader(20 * time.Second)
	l := &incrLedger{seen: map[int64]bool{}}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		p := c.procs[g%3]
		if p == lead {
			p = c.other(lead)
		}
		cl := c.client(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				work(cl, l)
			}
		}()
	}
	eventually(t, 20*time.Second, "INCRs acknowledged", func() error {
		if l.ok.Load() < minAcks {
			return fmt.Errorf("%d so far", l.ok.Load())
		}
		return nil
	})
	c.kill(lead)
	c.waitLeader(20 * time.Second)
	n := l.ok.Load()
	eventually(t, 20*time.Second, "INCRs acknowledged after failover", func() error {
		if l.ok.Load() < n+minAcks {
			return fmt.Errorf("%d so far", l.ok.Load()-n)
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()
	final, err := c.client(c.other(lead)).Get(ctx, "ctr").Int64()
	if err != nil {
		t.Fatal(err)
	}
	ok, unknown := l.ok.Load(), l.unknown.Load()
	t.Logf("final %d, acknowledged %d, unknown %d, failed %d", final, ok, unknown, l.failed.Load())
	if final < ok || final > ok+unknown {
		t.Fatalf("counter %d outside [acknowledged %d, acknowledged+unknown %d]: an INCR applied twice or a lost one",
			final, ok, ok+unknown)
	}
}

// TestGracefulStopHandsLeadershipOver: SIGTERM on the leader exits 0 and
// another member leads without waiting for an election timeout to pass.
func TestGracefulStopHandsLeadershipOver(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.waitLeader(20 * time.Second)
	if err := c.client(lead).Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := lead.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lead.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("leader did not exit within 20s of SIGTERM")
	}
	if code := lead.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	lead.cmd = nil
	next := c.waitLeader(20 * time.Second)
	if v, err := c.client(next).Get(ctx, "a").Result(); err != nil || v != "1" {
		t.Fatalf("GET a on the new leader = %q, %v", v, err)
	}
}

// TestInvalidSettingsRefused: each bad setting stops the process with exit
// code 2 and a line naming the problem.
func TestInvalidSettingsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	ports := proctest.FreeAddrs(t, 3)
	dir := t.TempDir()
	base := []string{"server", "--data-dir", dir, "--peer-addr", ports[0], "--redis-addr", ports[1], "--http-addr", ports[2]}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"id 0", []string{"--id", "0", "--initial-cluster", "1=" + ports[0]}, "--id must be an integer >= 1"},
		{"duplicate ids", []string{"--id", "1", "--initial-cluster", "1=" + ports[0] + ",1=127.0.0.1:1"}, "duplicate member id 1"},
		{"own id missing", []string{"--id", "3", "--initial-cluster", "1=" + ports[0]}, "--id 3 is not in --initial-cluster"},
		{"bad address", []string{"--id", "1", "--initial-cluster", "1=" + ports[0], "--redis-addr", "nonsense"}, `--redis-addr "nonsense"`},
		{"bad flag value", []string{"--id", "x"}, "--id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := run(t, append(append([]string{}, base...), tc.args...)...)
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want exit 2 and %q", code, out, tc.want)
			}
		})
	}

	t.Run("data dir of another member", func(t *testing.T) {
		c := newCluster(t, 1)
		c.waitLeader(20 * time.Second)
		c.kill(c.procs[0])
		p := proctest.FreeAddrs(t, 3)
		out, code := run(t, "server", "--id", "2", "--data-dir", c.procs[0].dataDir, "--peer-addr", p[0],
			"--redis-addr", p[1], "--http-addr", p[2], "--initial-cluster", "2="+p[0])
		if code != 2 || !strings.Contains(out, "another cluster or member") {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})

	t.Run("port taken", func(t *testing.T) {
		c := newCluster(t, 1)
		c.waitLeader(20 * time.Second)
		p := proctest.FreeAddrs(t, 2)
		out, code := run(t, "server", "--id", "1", "--data-dir", t.TempDir(), "--peer-addr", p[0],
			"--redis-addr", c.procs[0].redisAddr, "--http-addr", p[1], "--initial-cluster", "1="+p[0])
		if code == 0 || !strings.Contains(out, c.procs[0].redisAddr) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Fatalf("exit %d, output %q; want one line naming %s", code, out, c.procs[0].redisAddr)
		}
	})
}

// run runs the binary to completion and returns its stderr+stdout and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("raftkv %v did not exit", args)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// TestRedisCLISmoke drives a member with redis-cli, as an operator would.
func TestRedisCLISmoke(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not installed (apt-get install -y redis-tools): skipping the redis-cli smoke test")
	}
	c := newCluster(t, 3)
	lead := c.waitLeader(20 * time.Second)
	follower := c.other(lead)
	host, port, _ := strings.Cut(follower.redisAddr, ":")
	rc := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"-h", host, "-p", port}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "greeting", "hello"}, "OK"},
		{[]string{"GET", "greeting"}, "hello"},
		{[]string{"INCR", "n"}, "1"},
		{[]string{"SET", "t", "x", "EX", "100"}, "OK"},
		{[]string{"TTL", "t"}, "100"},
		{[]string{"DBSIZE"}, "3"},
		{[]string{"GET"}, "ERR wrong number of arguments for 'get' command"},
		{[]string{"NOSUCH"}, "ERR unknown command 'NOSUCH'"},
		{[]string{"SELECT", "1"}, "ERR DB index is out of range"},
	} {
		if got := rc(step.args...); !strings.HasPrefix(got, step.want) {
			t.Fatalf("redis-cli %v = %q, want %q", step.args, got, step.want)
		}
	}
	info := rc("INFO")
	for _, want := range []string{"# Replication", "raft_role:follower", fmt.Sprintf("raft_leader:%d", lead.id)} {
		if !strings.Contains(info, want) {
			t.Fatalf("INFO lacks %q:\n%s", want, info)
		}
	}
	// A pipe of commands, as `redis-cli < file` sends them.
	cmd := exec.Command(cli, "-h", host, "-p", port)
	cmd.Stdin = strings.NewReader("SET p1 a\nSET p2 b\nMGET p1 p2\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "a\nb") {
		t.Fatalf("redis-cli pipe: %v\n%s", err, out)
	}
	_ = os.Remove(filepath.Join(t.TempDir(), "x"))
}
