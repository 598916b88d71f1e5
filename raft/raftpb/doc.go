// Package raftpb holds the types that cross a process boundary: the Raft
// messages sent between members and the entries, hard state and snapshot
// metadata written to disk, with their binary encoding (codec.go).
//
// The types are plain Go values, safe to copy. The encoding is versioned and
// every decoder checks lengths against the input before allocating, so bytes
// from a peer or a damaged disk give an error wrapping ErrCorrupt, never a
// panic or an unbounded allocation.
package raftpb
