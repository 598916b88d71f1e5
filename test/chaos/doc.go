// Package chaos breaks a real raftkv cluster on purpose and checks that it
// holds: real `raftkv server` processes, a concurrent workload through a real
// Redis client, and faults injected while it runs (SIGKILL and restart of one
// member, the leader, a majority or everyone; SIGSTOP pauses; partitions of
// every shape; lossy, slow links). Every operation is recorded with its
// invoke and return time and checked with porcupine against a per-key model;
// after the faults, everything is healed and restarted and every acknowledged
// APPEND and INCR must be present exactly once.
//
// Partitions use one TCP proxy per directed link between members (member i
// dials member j through its own proxy), so they need neither root nor
// network namespaces, and clients keep reaching an isolated member directly:
// exactly the "deposed leader still talking to clients" case that found
// stale reads in redisraft.
//
// The suite is off by default because it takes minutes:
//
//	RAFTKV_CHAOS=1 go test ./test/chaos -v                       # 3 runs of 60 s
//	RAFTKV_CHAOS=1 RAFTKV_CHAOS_RUNS=200 go test ./test/chaos -timeout 12h -v   # a soak
//	RAFTKV_CHAOS=1 go test ./test/chaos -run TestChaos -chaos.seed=42 -v        # replay a schedule
//
// On a failure it writes porcupine's HTML visualization and the members' logs
// under the artifact directory it prints.
package chaos
