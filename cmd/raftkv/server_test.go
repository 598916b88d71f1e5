package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/server"
)

// resolve parses args as `raftkv server` would and returns the resulting
// member configuration without starting anything.
func resolve(t *testing.T, args ...string) (server.Config, error) {
	t.Helper()
	cmd := newServerCmd()
	if err := cmd.ParseFlags(args); err != nil {
		return server.Config{}, err
	}
	path, _ := cmd.Flags().GetString("config")
	flags, err := readServerFlags(cmd.Flags())
	if err != nil {
		return server.Config{}, err
	}
	s, err := resolveServerConfig(cmd, path, flags)
	return s.cfg, err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServerConfigFileAndFlags(t *testing.T) {
	yml := writeFile(t, "raftkv.yaml", `
id: 2
data-dir: /tmp/x
peer-addr: 127.0.0.1:7002
redis-addr: 127.0.0.1:6380
http-addr: 127.0.0.1:8002
initial-cluster: 1=127.0.0.1:7001,2=127.0.0.1:7002
tick: 20ms
max-value-size: 1024
`)
	cfg, err := resolve(t, "--config", yml, "--redis-addr", "127.0.0.1:6999")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != 2 || cfg.DataDir != "/tmp/x" || cfg.TickInterval != 20*time.Millisecond || cfg.MaxValueBytes != 1024 {
		t.Fatalf("file values not applied: %+v", cfg)
	}
	if cfg.RedisAddr != "127.0.0.1:6999" {
		t.Fatalf("flag did not override the file: redis addr %q", cfg.RedisAddr)
	}
	if len(cfg.InitialCluster) != 2 || cfg.InitialCluster[1].PeerAddr != "127.0.0.1:7002" {
		t.Fatalf("initial cluster = %+v", cfg.InitialCluster)
	}

	js := writeFile(t, "raftkv.json", `{"id": 1, "data-dir": "/tmp/y", "peer-addr": "127.0.0.1:7001",
		"redis-addr": "127.0.0.1:6379", "http-addr": "127.0.0.1:8001", "initial-cluster": "1=127.0.0.1:7001"}`)
	if cfg, err := resolve(t, "--config", js); err != nil || cfg.ID != 1 {
		t.Fatalf("JSON config: %+v, %v", cfg, err)
	}
}

// TestServerTimerSlackSetting: --timer-slack defaults to 1 ms and
// --sysmon-slack to 10 ms, they come from the file's timer-slack and
// sysmon-slack keys, and the command line wins.
func TestServerTimerSlackSetting(t *testing.T) {
	yml := writeFile(t, "raftkv.yaml", "id: 1\ndata-dir: /tmp/x\npeer-addr: 127.0.0.1:7001\nredis-addr: 127.0.0.1:6379\n"+
		"http-addr: 127.0.0.1:8001\ninitial-cluster: 1=127.0.0.1:7001\ntimer-slack: 250us\nsysmon-slack: 4ms\n")
	for _, tc := range []struct {
		name         string
		args         []string
		want, sysmon time.Duration
	}{
		{"default", []string{"--config", writeFile(t, "plain.yaml", "id: 1\ndata-dir: /tmp/x\npeer-addr: 127.0.0.1:7001\nredis-addr: 127.0.0.1:6379\n"+
			"http-addr: 127.0.0.1:8001\ninitial-cluster: 1=127.0.0.1:7001\n")}, time.Millisecond, 10 * time.Millisecond},
		{"file", []string{"--config", yml}, 250 * time.Microsecond, 4 * time.Millisecond},
		{"flag over file", []string{"--config", yml, "--timer-slack", "0", "--sysmon-slack", "0"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newServerCmd()
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			flags, err := readServerFlags(cmd.Flags())
			if err != nil {
				t.Fatal(err)
			}
			s, err := resolveServerConfig(cmd, tc.args[1], flags)
			if err != nil {
				t.Fatal(err)
			}
			if s.timerSlack != tc.want {
				t.Fatalf("timer slack %v, want %v", s.timerSlack, tc.want)
			}
			if s.sysmonSlack != tc.sysmon {
				t.Fatalf("sysmon slack %v, want %v", s.sysmonSlack, tc.sysmon)
			}
		})
	}
}

func TestServerConfigRejects(t *testing.T) {
	good := []string{"--id", "1", "--data-dir", "/tmp/z", "--peer-addr", "127.0.0.1:7001", "--redis-addr", "127.0.0.1:6379",
		"--http-addr", "127.0.0.1:8001", "--initial-cluster", "1=127.0.0.1:7001"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"--config", writeFile(t, "bad.yaml", "id: 1\ndata_dir: /tmp\n")}, "field data_dir not found"},
		{"missing file", []string{"--config", "/nonexistent/raftkv.yaml"}, "--config"},
		{"zero tick", []string{"--tick", "0s"}, "--tick must be > 0"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"heartbeat >= election", []string{"--election-ticks", "2", "--heartbeat-ticks", "2"}, "election ticks (2) must be greater"},
		{"join and initial cluster", []string{"--join", "127.0.0.1:8001"}, "mutually exclusive"},
		{"half TLS", []string{"--peer-cert", "c.pem"}, "--peer-cert, --peer-key and --peer-ca"},
		{"malformed cluster", []string{"--initial-cluster", "1:127.0.0.1:7001"}, "is not ID=HOST:PORT"},
		{"negative timer slack", []string{"--timer-slack", "-1ms"}, "--timer-slack must be >= 0"},
		{"negative sysmon slack", []string{"--sysmon-slack", "-1ms"}, "--sysmon-slack must be >= 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolve(t, append(append([]string{}, good...), tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.TrimSpace(line) == "" {
					t.Fatalf("empty line in error %q", err)
				}
			}
		})
	}
}
