// Package vfs is the filesystem seam under the write-ahead log: everything
// wal does to a disk goes through the FS and File interfaces here, so that
// tests can run the same code on a filesystem that crashes or fails on cue.
//
// Three implementations:
//
//   - Default is the real operating-system filesystem. File.Sync is
//     fdatasync(2) where the platform has it (the data and the metadata
//     needed to read it back, not timestamps), and FS.Lock is flock(2).
//   - NewMem returns an in-memory filesystem that remembers, for every file
//     and directory, what has been made durable (File.Sync, FS.SyncDir) and
//     what has not. MemFS.Crash simulates a power loss: synced state survives;
//     each unsynced write, truncation and directory change is kept, dropped
//     or (for writes) torn at random from a seeded source.
//   - NewInjector wraps any FS and fails the Nth operation of a chosen kind
//     (write, sync, rename, read, ...), once or from then on.
//
// What the package leaves to its callers: ordering. A file's data is durable
// only after File.Sync returns nil; its name (creation, rename, removal) is
// durable only after SyncDir on its directory returns nil. MemFS enforces
// exactly that and nothing more, which is what makes it a useful test bed.
//
// Concurrency: an FS may be used from many goroutines. A File may be used by
// one goroutine at a time for Read/Write/Seek; ReadAt, Sync and Stat may run
// concurrently with them.
package vfs
