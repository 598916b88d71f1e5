// Package sim is a deterministic, seeded simulator that runs real
// raft.RawNodes under virtual time, an unreliable network and crash-prone
// disks, and checks the Raft safety properties after every step.
//
// Why: the consensus core is pure (no clocks, sockets or goroutines), so the
// same code that runs in production can be driven here through thousands of
// fault schedules per minute, each replayable from its seed alone. Real time
// never enters: a "tick" is a call to RawNode.Tick, and message delays are
// counted in ticks.
//
// # What is simulated
//
//   - Nodes: each a raft.RawNode, a simulated disk (storage.go) and a state
//     machine summarised by a hash chain of the entries it applied. Each Ready
//     is handled in the order documented on raft.Ready: a leader's MsgApp and
//     MsgSnap may go out before the write, the write is synced (always when
//     MustSync; otherwise maybe later), the rest is sent, the snapshot
//     installed and entries applied, then Advance.
//   - Disks: writes land in a volatile view the core reads; sync makes them
//     durable; a crash keeps only what was synced. Crashes can be armed to
//     strike at any point of Ready handling (before the write, before the
//     sync, before applying, before Advance). A restart either resumes from
//     the state machine's checkpoint or rebuilds it from the newest snapshot
//     and re-applies the log. Logs are compacted into snapshots at random.
//   - Network: per-message loss, duplication and delay (delivery among the
//     deliverable messages is random, so it also reorders), partitions of any
//     shape and one-way link cuts, healing. Messages sent by a node before it
//     crashed are never delivered. With Config.WireCodec every message goes
//     through raftpb's binary encoding.
//   - Workload: proposals of unique values, ReadIndex reads, leadership
//     transfers, forced campaigns, membership changes (add a learner under a
//     fresh id — ids are never reused —, promote, remove; removed nodes are
//     shut down once the removal is applied by a majority of the new
//     configuration), crashes and restarts, partitions, compactions.
//
// # What is checked (checker.go), after every step
//
//   - Election safety: at most one leader per term.
//   - Log matching: logs are compared by prefix hash, so equal (index, term)
//     implies equal prefixes; storage rejects gaps and backwards terms.
//   - Leader completeness: a leader's log holds every entry committed in
//     earlier terms.
//   - Commit safety: whenever a node persists a commit index, its log up to
//     there equals the committed log; a committed entry is never changed or
//     lost, across crashes too.
//   - State machine safety: entries are applied in order, without gaps or
//     repeats (the applied index never goes backwards), only once committed,
//     and identical on every node.
//   - Persistence: an acknowledgement of entries or a granted vote leaves a
//     node only once it is durable; no node votes twice in a term; Ready sets
//     MustSync when it carries entries, a new term or a vote.
//   - Linearizable reads: a ReadIndex read, served once the node has applied
//     ReadState.Index, reflects every entry applied anywhere before the read
//     was issued.
//   - Liveness (Settle, and the named scenarios): once the network heals and
//     every member is back, a leader commits an entry of its term and every
//     member catches up within a bound.
//
// A failure names the seed; the tests print the command that replays it, e.g.
//
//	go test ./internal/sim -run '^TestRandomSchedules$' -seed=12345 -v
//
// which logs every event of that schedule. Bugs (test-only) injects runtime
// bugs to show the checker catches them.
package sim
