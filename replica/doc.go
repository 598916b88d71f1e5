// Package replica runs one member of a Raft group: the single goroutine
// that drives the pure consensus core (raft.RawNode) on a real clock.
//
// Per Ready it follows the order raft.Ready documents: a leader sends its
// MsgApp/MsgSnap first and persists in parallel (Raft thesis §10.2.1), any
// other member persists (Storage.Save, fsync when MustSync) before sending;
// then it installs a snapshot if one came, applies the committed entries in
// one StateMachine.Apply batch, resolves futures and calls Advance. A
// Storage or StateMachine error stops the member (see Err): going on would
// risk acknowledging a write that is not durable.
//
// Proposals: Propose wraps the caller's data in a small envelope naming this
// replica incarnation and a sequence number, so that the proposing member
// resolves its future when it applies the entry, whoever led; the state
// machine only ever sees the caller's bytes. A follower forwards through the
// core (MsgProp), so any member accepts writes. When the leader or term
// changes, a proposal that may still commit returns ErrOutcomeUnknown, never
// a failure: the caller must not assume it did not happen.
//
// Reads: ReadIndex batches concurrent callers into one core request (one
// heartbeat round), then waits until the state machine has applied the
// confirmed index. A leader cut off from its majority never confirms, so its
// callers get ErrNoLeader in bounded time, never a stale read.
//
// Snapshots: every Config.SnapshotEntries applied entries (or on
// TakeSnapshot) the state machine's Snapshot runs on the replica goroutine
// and its stream is written to Storage on another; the log below it is then
// compacted. A lagging follower receives the newest snapshot file through
// Sender.SendSnapshot; ReceiveSnapshot writes it durably before the core
// sees the MsgSnap.
//
// What the caller owns: Storage and Transport (open them before New, stop
// the Replica, then close them), routing peer messages to the Replica
// (it implements transport.Handler), and adding transport peers as
// OnConfChange reports members.
//
// Usage:
//
//	log, err := wal.Open(dir, wal.Identity{ClusterID: cid, MemberID: 1}, wal.Options{})
//	...
//	r, err := replica.New(replica.Config{
//		ID: 1, StateMachine: sm, Storage: replica.AdaptStorage(log), Transport: tr,
//		Peers: []replica.Peer{{ID: 1, Addr: "127.0.0.1:7001"}, {ID: 2, Addr: "127.0.0.1:7002"}, {ID: 3, Addr: "127.0.0.1:7003"}},
//	})
//	if err != nil { ... }
//	r.Start()
//	defer r.Stop()
//	res, err := r.Propose(ctx, cmd)   // result of sm.Apply for cmd
//	err = r.ReadIndex(ctx)            // then read sm: linearizable
//
// transport.New wants its Handler and New wants its Sender: create the
// transport with a small forwarding Handler whose target is set to the
// Replica once New returns (the Replica uses the Sender only after Start).
// Example (in example_test.go) runs a group of one end to end.
package replica
