package server_test

import (
	"fmt"

	"github.com/raftkv/raftkv/server"
)

// ExampleConfig_Validate shows how a bad command line is reported: every
// problem at once, one line each, naming the flag.
func ExampleConfig_Validate() {
	peers, _ := server.ParseInitialCluster("1=127.0.0.1:7001,1=127.0.0.1:7002")
	cfg := server.Config{ID: 3, DataDir: "/var/lib/raftkv", PeerAddr: "127.0.0.1:7003",
		RedisAddr: "127.0.0.1:6379", HTTPAddr: "127.0.0.1:8003", InitialCluster: peers}
	fmt.Println(cfg.Validate())
	// Output:
	// server: config: --initial-cluster: duplicate member id 1
	// server: config: --id 3 is not in --initial-cluster
}
