// Package tracker is a Raft leader's bookkeeping about its peers: each
// member's replication Progress (Match, Next, probe / replicate / snapshot
// state and the in-flight window that bounds pipelining), the current
// membership, and the votes of an election in progress.
//
// It makes no protocol decisions: the core in package raft decides when to
// send, and calls the transitions here (BecomeProbe, MaybeUpdate, ...) to
// record what it did and learned.
package tracker
