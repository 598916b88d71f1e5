package docker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// repoRoot is the module root (this file is test/docker/docker_test.go).
func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// compose returns the command prefix of docker-compose v1 or the v2 plugin.
func compose() ([]string, bool) {
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}, true
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}, true
	}
	return nil, false
}

// runCmd runs a command and fails the test with its output on error.
func runCmd(t *testing.T, ctx context.Context, env []string, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s (%.1fs)", name, strings.Join(args, " "), time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestComposeClusterSurvivesAStoppedMember(t *testing.T) {
	if testing.Short() {
		t.Skip("docker test skipped with -short (it builds an image and starts containers)")
	}
	if os.Getenv("RAFTKV_DOCKER") == "0" {
		t.Skip("docker test disabled by RAFTKV_DOCKER=0")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker test skipped: no docker command in PATH")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("docker test skipped: no Docker engine reachable (docker info: %s)", strings.TrimSpace(string(out)))
	}
	composeCmd, ok := compose()
	if !ok {
		t.Skip("docker test skipped: neither docker-compose nor the docker compose plugin is installed")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root := repoRoot(t)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	project := "raftkvtest" + suffix
	image := "raftkv-test:" + suffix

	// 1. The static binary and the image, from a context holding only them.
	buildDir := t.TempDir()
	runCmd(t, ctx, []string{"CGO_ENABLED=0"}, root, "go", "build", "-trimpath", "-ldflags=-s -w",
		"-o", filepath.Join(buildDir, "raftkv"), "./cmd/raftkv")
	runCmd(t, ctx, nil, root, "docker", "build", "-q", "-t", image, "-f", filepath.Join(root, "Dockerfile"), buildDir)
	t.Cleanup(func() {
		_ = exec.Command("docker", "rmi", "-f", image).Run()
	})

	// 2. The cluster, on host ports Docker picks (port 0): a port found free
	// here and bound by Docker later could be taken in between.
	var env []string
	for i := 1; i <= 3; i++ {
		env = append(env, fmt.Sprintf("RAFTKV_REDIS_PORT_%d=0", i), fmt.Sprintf("RAFTKV_HTTP_PORT_%d=0", i))
	}
	env = append(env, "RAFTKV_IMAGE="+image)
	dc := func(args ...string) string {
		t.Helper()
		full := append(append(append([]string{}, composeCmd[1:]...), "-p", project, "-f", filepath.Join(root, "docker-compose.yml")), args...)
		return runCmd(t, ctx, env, root, composeCmd[0], full...)
	}
	t.Cleanup(func() {
		// Always tear down, even after a failure (a fresh context: ctx may be done).
		if t.Failed() {
			logs := exec.Command(composeCmd[0], append(append([]string{}, composeCmd[1:]...), "-p", project, "-f", filepath.Join(root, "docker-compose.yml"), "logs", "--no-color")...)
			logs.Env = append(os.Environ(), env...)
			out, _ := logs.CombinedOutput()
			t.Logf("container logs:\n%s", out)
		}
		down := exec.Command(composeCmd[0], append(append([]string{}, composeCmd[1:]...), "-p", project, "-f", filepath.Join(root, "docker-compose.yml"), "down", "-v", "--remove-orphans", "-t", "5")...)
		down.Env = append(os.Environ(), env...)
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("teardown (%s down -v): %v\n%s", composeCmd[0], err, out)
		}
	})
	dc("up", "-d")
	redisPort := map[int]int{}
	httpPort := map[int]int{}
	for i := 1; i <= 3; i++ {
		service := fmt.Sprintf("raftkv%d", i)
		redisPort[i] = hostPort(t, dc("port", service, "6379"))
		httpPort[i] = hostPort(t, dc("port", service, "8080"))
	}

	// 3. Wait for a leader, seen through the HTTP API.
	admin, err := client.NewAdmin(client.AdminConfig{Endpoints: []string{
		fmt.Sprintf("127.0.0.1:%d", httpPort[1]), fmt.Sprintf("127.0.0.1:%d", httpPort[2]), fmt.Sprintf("127.0.0.1:%d", httpPort[3]),
	}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 90*time.Second, "a leader", func() error {
		view, err := admin.Cluster(ctx)
		if err != nil {
			return err
		}
		if view.Leader == 0 {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})

	// 4. Write through member 1.
	c1 := newClient(t, redisPort[1])
	waitFor(t, ctx, 30*time.Second, "SET through member 1", func() error {
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c1.Set(opCtx, "greeting", "hello from docker", 0)
	})

	// 5. Stop member 2 (perhaps the leader: then the others elect a new one).
	dc("stop", "-t", "10", "raftkv2")

	// 6. Read it back through member 3.
	c3 := newClient(t, redisPort[3])
	waitFor(t, ctx, 60*time.Second, "GET through member 3", func() error {
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := c3.Get(opCtx, "greeting")
		if err != nil {
			return err
		}
		if v != "hello from docker" {
			t.Fatalf("GET through member 3 = %q, want %q", v, "hello from docker")
		}
		return nil
	})
}

// hostPort parses the host port out of "docker compose port"'s answer
// ("0.0.0.0:49153", perhaps followed by an IPv6 line).
func hostPort(t *testing.T, out string) int {
	t.Helper()
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	i := strings.LastIndexByte(first, ':')
	port, err := strconv.Atoi(strings.TrimSpace(first[i+1:]))
	if i < 0 || err != nil || port <= 0 {
		t.Fatalf("docker compose port: cannot parse %q", out)
	}
	return port
}

func newClient(t *testing.T, port int) *client.Client {
	c, err := client.New(client.Config{Endpoints: []string{fmt.Sprintf("127.0.0.1:%d", port)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls fn until it succeeds or the limit passes.
func waitFor(t *testing.T, ctx context.Context, limit time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v: %v", what, limit, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s: %v (last error: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}
