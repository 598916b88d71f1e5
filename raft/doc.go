// Package raft is the Raft consensus algorithm as a pure, deterministic
// state machine, in the shape of etcd-io/raft: a RawNode takes inputs
// (Tick, Step, Propose, ReadIndex, ProposeConfChange, TransferLeadership)
// and hands back work in a Ready; the caller does the work and calls Advance.
//
// # What it does
//
//   - Leader election with randomized timeouts in [ElectionTick,
//     2*ElectionTick), pre-vote (thesis §9.6) and check-quorum (§6.2) on by
//     default, and leader stickiness (§4.2.3): a node that heard from a
//     leader within an election timeout ignores vote requests, so partitioned
//     or removed servers cannot disrupt the group.
//   - Log replication (§5.3) with batching (every proposal made between two
//     Readys goes out in one MsgApp per follower, capped by MaxSizePerMsg),
//     pipelining bounded by an in-flight window (MaxInflightMsgs), fast
//     backtracking with conflict-term hints, and a cap on uncommitted data
//     (MaxUncommittedEntriesSize, past which proposals fail with
//     ErrProposalDropped).
//   - The commit rule of §5.4.2: only entries of the leader's term are
//     committed by counting; a new leader appends an empty entry at once.
//   - Linearizable reads with ReadIndex (§6.4), batched: one heartbeat round
//     confirms every request received before it, and no request is answered
//     before the leader has committed an entry of its term.
//   - Leadership transfer (§3.10), learners, single-server membership changes
//     with the no-op-first rule (§4.1), snapshots for followers that need
//     compacted entries (§5, §7), and proposal forwarding.
//
// # What it leaves to the caller
//
// Everything with side effects: durable storage (Storage is read-only to the
// core; MemoryStorage is an in-memory implementation), the network, the
// clock (call Tick at a fixed interval), snapshot data (the core handles
// only SnapshotMeta; the runtime streams and installs data), the state
// machine, and decoding ConfChange entries before ApplyConfChange. It starts
// no goroutines and is not safe for concurrent use: one goroutine drives a
// RawNode.
//
// # The loop
//
// Start a group by persisting what Bootstrap returns, then drive the node:
//
//	for {
//		select {
//		case <-ticker: rn.Tick()
//		case m := <-fromNetwork: rn.Step(m)
//		case p := <-proposals: rn.Propose(p)
//		}
//		for rn.HasReady() {
//			rd := rn.Ready()
//			persist(rd.HardState, rd.Entries, rd.Snapshot) // fsync if rd.MustSync
//			send(rd.Messages)                              // after the write (see Ready)
//			apply(rd.Snapshot, rd.CommittedEntries)        // ApplyConfChange for conf changes
//			rn.Advance(rd)
//		}
//	}
//
// See Example for a runnable single-node version.
package raft
