package server

import (
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

func validConfig() Config {
	return Config{ID: 1, DataDir: "/tmp/d", PeerAddr: "127.0.0.1:7001", RedisAddr: "127.0.0.1:6379", HTTPAddr: "127.0.0.1:8001",
		InitialCluster: []Peer{{1, "127.0.0.1:7001"}, {2, "127.0.0.1:7002"}, {3, "127.0.0.1:7003"}}}
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"id 0", func(c *Config) { c.ID = 0 }, []string{"--id must be an integer >= 1"}},
		{"no data dir", func(c *Config) { c.DataDir = "" }, []string{"--data-dir is required"}},
		{"duplicate ids", func(c *Config) { c.InitialCluster[2].ID = 2 }, []string{"duplicate member id 2"}},
		{"own id missing", func(c *Config) { c.ID = 9; c.PeerAddr = "127.0.0.1:7009" }, []string{"--id 9 is not in --initial-cluster"}},
		{"bad address", func(c *Config) { c.RedisAddr = "localhost" }, []string{`--redis-addr "localhost": want HOST:PORT`}},
		{"bad port", func(c *Config) { c.HTTPAddr = "127.0.0.1:99999" }, []string{"--http-addr", "0..65535"}},
		{"same address twice", func(c *Config) { c.HTTPAddr = c.RedisAddr }, []string{"--redis-addr and --http-addr are both"}},
		{"peer addr mismatch", func(c *Config) { c.PeerAddr = "127.0.0.1:7999" }, []string{"--initial-cluster names \"127.0.0.1:7001\" for member 1"}},
		{"shared peer addr", func(c *Config) { c.InitialCluster[2].PeerAddr = "127.0.0.1:7002" }, []string{"members 2 and 3 share the address"}},
		{"join and cluster", func(c *Config) { c.Join = "127.0.0.1:8002" }, []string{"mutually exclusive"}},
		{"no cluster", func(c *Config) { c.InitialCluster = nil }, []string{"--initial-cluster (or --join) is required"}},
		{"ticks", func(c *Config) { c.ElectionTicks, c.HeartbeatTicks = 3, 5 }, []string{"election ticks (3) must be greater than heartbeat ticks (5)"}},
		{"several at once", func(c *Config) { c.ID = 0; c.DataDir = "" }, []string{"--id must be", "--data-dir is required"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			c.InitialCluster = append([]Peer(nil), c.InitialCluster...)
			tc.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
			if tc.name == "several at once" && strings.Count(err.Error(), "\n") != 1 {
				t.Fatalf("want one line per problem: %q", err)
			}
		})
	}
}

func TestParseInitialCluster(t *testing.T) {
	peers, err := ParseInitialCluster("1=127.0.0.1:7001, 2=127.0.0.1:7002")
	if err != nil || len(peers) != 2 || peers[1] != (Peer{ID: 2, PeerAddr: "127.0.0.1:7002"}) {
		t.Fatalf("= %v, %v", peers, err)
	}
	for _, bad := range []string{"1", "x=127.0.0.1:1", "1=a,,2=b", "-1=a"} {
		if _, err := ParseInitialCluster(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestClusterIDDeterministic: every founding member derives the same id
// whatever the order of --initial-cluster; another cluster gets another.
func TestClusterIDDeterministic(t *testing.T) {
	a := []Peer{{1, "h:1"}, {2, "h:2"}, {3, "h:3"}}
	b := []Peer{{3, "h:3"}, {1, "h:1"}, {2, "h:2"}}
	if ClusterID("", a) != ClusterID("", b) {
		t.Fatal("order changes the cluster id")
	}
	if ClusterID("", a) == ClusterID("", []Peer{{1, "h:1"}, {2, "h:2"}, {3, "h:4"}}) || ClusterID("", a) == 0 {
		t.Fatal("different clusters share an id")
	}
	_ = pb.None
}

// TestClusterIDToken: with a token, members that list each other at
// different addresses (through proxies, NAT) agree on the id, and another
// token or another set of ids gives another cluster.
func TestClusterIDToken(t *testing.T) {
	viewOf1 := []Peer{{1, "h:1"}, {2, "proxy:12"}, {3, "proxy:13"}}
	viewOf2 := []Peer{{1, "proxy:21"}, {2, "h:2"}, {3, "proxy:23"}}
	if ClusterID("t", viewOf1) != ClusterID("t", viewOf2) {
		t.Fatal("members of one token-named cluster disagree on its id")
	}
	if ClusterID("t", viewOf1) == ClusterID("u", viewOf1) {
		t.Fatal("two tokens share an id")
	}
	if ClusterID("t", viewOf1) == ClusterID("t", viewOf1[:2]) {
		t.Fatal("two member sets share an id")
	}
	if ClusterID("t", viewOf1) == ClusterID("", viewOf1) {
		t.Fatal("a token does not change the id")
	}
}
