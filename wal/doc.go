// Package wal is raftkv's durable storage: a segmented, CRC-framed
// write-ahead log of Raft entries, hard state, membership and snapshot
// metadata, plus the snapshot files beside it. A *Log is also the
// raft.Storage the consensus core reads from, answered from memory.
//
// # Directory layout
//
//	<dir>/LOCK                               flock: one process per directory
//	<dir>/IDENTITY                           cluster id, member id, format version
//	<dir>/<seq:16x>-<first index:16x>.wal    segments; names sort by sequence
//	<dir>/snap/<index:16x>-<term:16x>.snap   snapshot files (see snapshot.go)
//
// # Record framing
//
// A segment is a sequence of records. Every record (little-endian):
//
//	0         4         8      9          12                 20
//	+---------+---------+------+----------+------------------+-------------------+
//	| CRC32C  | length  | type | reserved | sync watermark   | payload           |
//	| (u32)   | (u32)   | (u8) | (3 x 0)  | (u64)            | (length bytes)    |
//	+---------+---------+------+----------+------------------+-------------------+
//
// The CRC (Castagnoli) covers bytes 4 .. 20+length. length is at most
// MaxRecordSize, checked before anything is read or allocated. Types: 1
// segment header, 2 entry, 3 hard state, 4 conf state, 5 snapshot meta.
// Payloads use the raftpb encodings (AppendBinary), except:
//
//	segment header:  version(u8) | seq(u64) | first index(u64)
//	snapshot meta:   keep(u8: 0 or 1) | raftpb.SnapshotMeta
//
// keep records whether the entries after the snapshot survived it (a local
// snapshot of an applied prefix) or were discarded (a snapshot from the
// leader that replaced the log); replay cannot always decide again, since
// compaction may have removed the entry at the snapshot's index.
//
// Every segment starts with its header and restates the snapshot, hard
// state and membership, so any suffix of segments replays to the whole
// state and Compact can remove whole segments. Segments are preallocated
// (zero-filled ahead of time; see Options.NoPreallocate), so a segment may
// end in zeros. Written to disk: never renumber.
//
// # Torn tails and corruption
//
// The sync watermark is the segment offset up to which the segment was
// known durable (fsynced) when the record was written. It is what lets
// Open tell a torn tail from corruption without guessing:
//
//   - Every segment but the last is fsynced before the next is created, so
//     any bad record in one is corruption.
//   - In the last segment, a bad record at offset X is a torn write (a crash
//     mid-write, or unsynced pages lost or written back out of order) unless
//     some later valid record carries a watermark beyond X: that record was
//     written after X had been fsynced, so the damage struck durable data.
//     A torn tail is truncated (and the truncation fsynced); corruption is a
//     *CorruptionError naming the file and offset, and Open refuses to
//     proceed unless Options.Repair is set.
//   - An all-zero remainder is a clean end.
//
// Damage to the last records written before a crash, with nothing written
// after them, cannot be told from a torn write by any format and is treated
// as one.
//
// # Group commit
//
// Save appends records to an in-memory buffer under a mutex. A Save that
// must be durable waits until a flush covers its bytes; if no flush is
// running it becomes the flusher: it takes the whole buffer, releases the
// mutex, writes and fdatasyncs, and wakes every waiter whose bytes are
// now durable. Saves arriving meanwhile fill the next buffer and share the
// next fdatasync. After a failed write or fsync the log refuses all
// further writes (ErrFailed): a retried fsync can succeed after the kernel
// dropped the dirty pages.
//
// # What the caller does
//
// The caller (replica runtime) persists each Ready with Save before
// sending messages that depend on it, writes snapshot files with
// CreateSnapshot/Commit before recording them with SaveSnapshot, calls
// Compact after a snapshot to drop old segments, and SetConfState when it
// applies a membership change. The package knows nothing of Raft's rules
// beyond "entries, hard state, snapshot metadata".
package wal
