// Package kv is raftkv's replicated state machine: a keyspace of Redis
// strings with TTLs, a table that makes retried proposals apply once, and
// snapshots that stream.
//
// # Writes
//
// A write is a Command (Session, Seq, Now and one Op), encoded with
// Command.Encode, proposed through the replica, and applied by Store.Apply on
// every member. Apply depends only on the store and the entries:
//
//   - Time comes from the entry. Command.Now is the proposer's clock (Unix
//     ms); Apply uses the maximum Now applied so far, so time never runs
//     backwards when leaders with skewed clocks alternate. TTLs are stored as
//     absolute deadlines, so a TTL survives a leader change exactly.
//   - Expired keys vanish deterministically: a key past its deadline reads as
//     absent everywhere, a write that touches it removes it first (as Redis's
//     lazy expiry does), and the leader proposes OpExpireSweep for keys that
//     Store.ExpiredKeys finds, so every member deletes them at the same log
//     position.
//   - A proposal is identified by (Session, Seq). The store remembers recent
//     ones with their results (bounded by entry time and by count, evicted
//     identically on every member, kept in snapshots), so a proposal that
//     appears in the log twice (a proposer's retry after a timeout, a
//     replica's re-proposal after a leader change) applies once and both
//     copies return the first result.
//
// Results are Result values (OK, Nil, Int, Bulk, Error) that map one-to-one
// onto RESP replies; errors carry Redis 7's messages.
//
// # Reads
//
// Get, MGet, Exists, Strlen, TTL, PTTL, Type, Keys, Scan and DBSize may be
// called from any goroutine while Apply runs. They are as fresh as the last
// applied entry: linearizable reads are the caller's job (wait for a ReadIndex
// barrier to be applied, then read).
//
// # Snapshots
//
// Snapshot freezes the keyspace copy-on-write and returns a function that
// streams a versioned, checksummed image while Apply continues; Restore
// validates a stream completely before it replaces anything.
package kv
