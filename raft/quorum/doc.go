// Package quorum holds the majority arithmetic of Raft: which log index a
// majority of voters has acknowledged (the commit rule, Raft paper §5.3) and
// whether an election is won, lost or still open (§5.2).
//
// It knows nothing of terms or logs: the caller supplies each voter's
// acknowledged index and decides what a quorum index means (the core commits
// it only if the entry there is of the leader's current term, §5.4.2).
//
// Only single majority configurations exist here because raftkv changes
// membership one server at a time (thesis §4.1); any two majorities of
// configurations that differ by one server overlap, which is what makes
// single-server changes safe.
package quorum
