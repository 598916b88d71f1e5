package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/wal"
)

// ErrDataLossNotAccepted is returned by ForceNewCluster when the operator
// has not acknowledged that forcing a new cluster may lose writes.
var ErrDataLossNotAccepted = errors.New("--force-new-cluster needs --i-accept-data-loss: " +
	"it makes this member the only voter of its cluster from its own data dir, so writes that the lost members " +
	"had and this one did not (uncommitted, or acknowledged by a majority that did not include this member) are lost")

// ForceNewClusterResult describes what ForceNewCluster wrote.
type ForceNewClusterResult struct {
	Removed  []pb.NodeID // members removed from the configuration (voters and learners)
	Promoted bool        // this member was a learner and became the voter
	Term     pb.Term     // the term of the new entries (the member starts in it)
	Commit   pb.Index    // everything up to here is now committed
	Changed  bool        // false: the data dir already was a one-voter cluster of this member; nothing written
}

// ForceNewCluster recovers from the loss of a quorum, like etcd's
// --force-new-cluster: it rewrites the data dir of a surviving member (which
// must not be running) so that this member is the only voter of its cluster,
// and returns; the caller then starts the member as usual, it elects itself
// and serves. The other members can then be added back with `members add`
// and --join, under NEW ids and with empty data dirs.
//
// What it writes, durably, through the WAL: after the last entry of the
// member's log, one ConfChangeRemove entry per other member (voter or
// learner) and, if this member is a learner, a ConfChangeAddVoter for it,
// all at a new term (one above any term the data dir has seen), with a hard
// state that commits everything up to the last of them and votes for this
// member. The core applies these committed conf changes on start like any
// others; it does not campaign before they are applied (an unapplied conf
// change blocks elections), then it is a one-voter group and wins alone.
//
// Every entry of this member's log is kept and committed, including the
// tail that it had not yet learned was committed: writes acknowledged by
// the old cluster are kept as long as this member had them (a majority that
// acknowledged a write need not have included it: pick the survivor with
// the highest last index, see /status). Writes it did not have are lost,
// hence acceptDataLoss, which must be true.
//
// The cluster id is kept. Running it again on a data dir that already is a
// one-voter cluster of this member writes nothing; on a cluster to which
// members were added back it would remove them again, so drop the flag
// after the first successful start.
func ForceNewCluster(dataDir string, id pb.NodeID, acceptDataLoss bool, logger *slog.Logger) (ForceNewClusterResult, error) {
	var res ForceNewClusterResult
	if !acceptDataLoss {
		return res, ErrDataLossNotAccepted
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if id == pb.None {
		return res, errors.New("server: --force-new-cluster: --id must be >= 1")
	}
	clusterID, ok, err := storedClusterID(dataDir)
	if err != nil {
		return res, err
	}
	if !ok {
		return res, fmt.Errorf("%w: --force-new-cluster: --data-dir %s holds no member state: it needs the data dir of a surviving member",
			ErrInvalidDataDir, dataDir)
	}
	l, err := wal.Open(dataDir, wal.Identity{ClusterID: clusterID, MemberID: uint64(id)}, wal.Options{Logger: logger})
	if err != nil {
		if errors.Is(err, wal.ErrIdentityMismatch) || errors.Is(err, wal.ErrLocked) {
			return res, fmt.Errorf("%w: --force-new-cluster: --data-dir %s: %w", ErrInvalidDataDir, dataDir, err)
		}
		return res, fmt.Errorf("server: --force-new-cluster: open --data-dir %s: %w", dataDir, err)
	}
	res, err = forceNewCluster(l, id)
	if cerr := l.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("server: --force-new-cluster: close the log: %w", cerr)
	}
	if err != nil {
		return ForceNewClusterResult{}, err
	}
	if res.Changed {
		logger.Warn("forced a new cluster from this member's data: it is now the only voter; add members back with new ids and empty data dirs, and drop --force-new-cluster",
			"member", uint64(id), "removed", fmt.Sprint(res.Removed), "promoted", res.Promoted, "term", uint64(res.Term), "commit", uint64(res.Commit))
	} else {
		logger.Warn("--force-new-cluster: this member already is the only voter of its cluster; nothing changed (drop the flag)", "member", uint64(id))
	}
	return res, nil
}

// forceNewCluster does the work of ForceNewCluster on an open log.
func forceNewCluster(l *wal.Log, id pb.NodeID) (ForceNewClusterResult, error) {
	var res ForceNewClusterResult
	hs, _, err := l.InitialState()
	if err != nil {
		return res, err
	}
	snap, err := l.Snapshot()
	if err != nil {
		return res, err
	}
	first, err := l.FirstIndex()
	if err != nil {
		return res, err
	}
	last, err := l.LastIndex()
	if err != nil {
		return res, err
	}
	var ents []pb.Entry
	if last >= first {
		if ents, err = l.Entries(first, last+1, ^uint64(0)); err != nil {
			return res, fmt.Errorf("server: --force-new-cluster: read the log: %w", err)
		}
	}
	if hs.IsEmpty() || (snap.IsEmpty() && len(ents) == 0) {
		// Never started (a founding log is committed only once the core has
		// seen it): there is nothing to recover.
		return res, fmt.Errorf("%w: --force-new-cluster: the data dir of member %d never ran as part of a cluster", ErrInvalidDataDir, id)
	}

	// The membership the whole log adds up to: the snapshot's, then every
	// conf change after it (they are all about to be committed).
	cs := snap.ConfState
	lastTerm := snap.Term
	for _, e := range ents {
		lastTerm = e.Term
		if e.Type != pb.EntryConfChange {
			continue
		}
		var cc pb.ConfChange
		if err := cc.UnmarshalBinary(e.Data); err != nil {
			return res, fmt.Errorf("server: --force-new-cluster: decode conf change at %d: %w", e.Index, err)
		}
		cs = applyConfChangeTo(cs, cc)
	}
	isVoter, isLearner := slices.Contains(cs.Voters, id), slices.Contains(cs.Learners, id)
	if !isVoter && !isLearner {
		return res, fmt.Errorf("%w: --force-new-cluster: member %d is not in the membership its data dir records (voters %v, learners %v): it was removed, use a surviving member's data dir",
			ErrInvalidDataDir, id, cs.Voters, cs.Learners)
	}
	// A learner becomes the voter first: a change that would leave no voter
	// is ignored by the core.
	var changes []pb.ConfChange
	if isLearner {
		changes = append(changes, pb.ConfChange{Type: pb.ConfChangeAddVoter, NodeID: id})
		res.Promoted = true
	}
	for _, other := range slices.Concat(cs.Voters, cs.Learners) {
		if other != id {
			changes = append(changes, pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: other})
			res.Removed = append(res.Removed, other)
		}
	}
	if len(changes) == 0 {
		return res, nil // already a one-voter cluster of this member
	}
	term := max(hs.Term, lastTerm) + 1
	var add []pb.Entry
	for i, cc := range changes {
		data, err := cc.AppendBinary(nil)
		if err != nil {
			return res, fmt.Errorf("server: --force-new-cluster: encode conf change: %w", err)
		}
		add = append(add, pb.Entry{Term: term, Index: last + 1 + pb.Index(i), Type: pb.EntryConfChange, Data: data})
	}
	newHS := pb.HardState{Term: term, Vote: id, Commit: add[len(add)-1].Index}
	if err := l.Save(newHS, add, true); err != nil {
		return res, fmt.Errorf("server: --force-new-cluster: write the new membership: %w", err)
	}
	res.Term, res.Commit, res.Changed = term, newHS.Commit, true
	return res, nil
}

// applyConfChangeTo returns cs changed by cc exactly as the raft core
// applies it (raft/confchange.go): the member leaves both lists, then joins
// the one its change names; a change that would leave no voter is ignored.
func applyConfChangeTo(cs pb.ConfState, cc pb.ConfChange) pb.ConfState {
	if cc.NodeID == pb.None {
		return cs
	}
	voters := slices.DeleteFunc(slices.Clone(cs.Voters), func(n pb.NodeID) bool { return n == cc.NodeID })
	learners := slices.DeleteFunc(slices.Clone(cs.Learners), func(n pb.NodeID) bool { return n == cc.NodeID })
	switch cc.Type {
	case pb.ConfChangeAddVoter:
		voters = append(voters, cc.NodeID)
	case pb.ConfChangeAddLearner:
		learners = append(learners, cc.NodeID)
	case pb.ConfChangeRemove:
	default:
		return cs
	}
	if len(voters) == 0 {
		return cs
	}
	slices.Sort(voters)
	slices.Sort(learners)
	return pb.ConfState{Voters: voters, Learners: learners}
}

// checkNotRemoved runs when a member with state restarts with --join: if
// the cluster reached through --join says this member's id was removed, the
// data dir belongs to a removed member and must not come back (ids are never
// reused). An unreachable --join member is not an error: the member may be
// restarting while the member it once joined through is down.
func (m *Member) checkNotRemoved() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := fetchStatus(ctx, m.cfg.Join)
	if err != nil {
		m.logger.Warn("--join: cannot check this member is still in the cluster", "join", m.cfg.Join, "err", err)
		return nil
	}
	if slices.Contains(st.Removed, m.cfg.ID) {
		return fmt.Errorf("%w: member %d was removed from the cluster (as %s reports) and its id is never reused: "+
			"delete --data-dir %s, or add the member under a new id with an empty data dir", ErrInvalidDataDir, m.cfg.ID, m.cfg.Join, m.cfg.DataDir)
	}
	return nil
}
