// Package server is raftkv's front door: it wires one member together (the
// write-ahead log, the peer transport, the replica runtime and the kv state
// machine) and serves clients over RESP (the Redis protocol; replies written
// with tidwall/redcon) and HTTP (/status, /metrics, /v1/kv, admin routes).
//
// What it leaves to the layers below: consensus (raft, replica), durability
// (wal), peer connections (transport) and the data model (kv). The server
// touches the state machine only through the replica for writes, and through
// kv's concurrent-safe read methods after a ReadIndex barrier for reads.
//
// # Forwarding
//
// Any member accepts any command. A follower keeps no connection pool of its
// own to the leader: replica.Propose and replica.ReadIndex work on followers
// (the raft core forwards MsgProp and MsgReadIndex over the peer connection
// that is already open), and a follower's write is answered once this member
// has applied it. Admin routes that the leader should answer (member add,
// remove and promote, leader transfer) are forwarded over HTTP to the
// leader's HTTP address; promotion, which needs the leader's view of the
// learner's lag, otherwise answers 503 naming the leader.
//
// # Member addresses
//
// Members dial each other at the peer addresses of the membership
// (--initial-cluster, or the ConfChange that added a member). Each member
// also publishes its HTTP and RESP addresses through the log, as etcd
// publishes client URLs: once a leader is known it proposes a small
// member-attributes entry until the log holds its current addresses (again
// after a restart on other addresses). The entries are applied beside the kv
// store, not in it (KEYS, SCAN and DBSIZE never see them), and the table is
// written at the head of the state machine's snapshot image, so it survives
// log compaction (see attrs.go). /status lists every member with its
// http_addr and redis_addr, which the forwarding above, the cluster page and
// `raftkv status` from any one endpoint rely on.
//
// # The cluster page
//
// GET / and /ui serve the live cluster page of package ui, GET /v1/cluster
// and /v1/cluster/events its data: every member's /status, gathered by the
// member serving the page. /status carries what the page draws beyond the
// contract: first_index, last_index, snapshot_index, per-peer messages sent
// by type (and match, next, state, lag on the leader), proposals_total and
// commit_latency_p99_ms.
//
// # Writes: exactly once, never a false failure
//
// A write becomes a kv.Command stamped with this process's random dedup
// Session, the next Seq, and the local clock (Now); it is answered after it is
// committed and applied. When Raft drops it or its outcome becomes unknown
// (leader change), the same bytes are proposed again until the command's
// deadline: kv's dedup table applies a (Session, Seq) once and answers a
// repeat with the first result, so a client sees a definite answer through a
// failover. Only when the deadline passes with an attempt possibly committed
// does the client get "-UNKNOWN ...", never a failure for a write that may
// have happened. No leader or no quorum: "-CLUSTERDOWN ..." (or "-TRYAGAIN
// ..." when overloaded) within Config.RequestTimeout.
//
// # Reads
//
// Linearizable by default: each read waits for replica.ReadIndex (one
// heartbeat round confirms leadership for all reads waiting together), then
// reads kv at the local clock. Config.StaleReads answers from local state.
//
// # Connections and pipelining
//
// Each RESP connection has a reader goroutine (a frameLimiter, which parses
// commands and enforces argument count and value size before anything is
// buffered) and a writer goroutine that answers in command order. A
// command read alone while nothing is in flight (a client that waits for
// each reply) runs on the reader, which answers it itself. Pipelined commands
// run concurrently where order cannot be observed: commands on disjoint keys,
// reads of the same key; a write waits for earlier commands on its keys, and
// keyspace-wide commands (FLUSHDB, KEYS, SCAN, DBSIZE) wait for everything
// before them. Memory per client is bounded by Config.MaxPendingPerConn
// commands and Config.MaxValueBytes per value (larger values are discarded as
// they arrive and answered with an error; the connection stays usable), and
// Config.MaxInflightBytes bounds the bytes of writes in flight member-wide.
//
// # Expiry
//
// TTLs are absolute deadlines computed from the proposer's Now at apply time.
// The leader proposes an expiry sweep every 100ms for keys past their
// deadline, so every replica deletes the same keys at the same log position;
// reads hide expired keys meanwhile.
//
// Usage:
//
//	m, err := server.New(server.Config{ID: 1, DataDir: dir,
//		PeerAddr: "127.0.0.1:7001", RedisAddr: "127.0.0.1:6379", HTTPAddr: "127.0.0.1:8001",
//		InitialCluster: []server.Peer{{ID: 1, PeerAddr: "127.0.0.1:7001"}}})
//	if err != nil { ... }           // every invalid setting, one line each
//	if err := m.Start(); err != nil { ... }
//	defer m.Stop(ctx)               // graceful: hands leadership over, drains
package server
