package replica

import "errors"

// Errors returned by Replica methods; match them with errors.Is. Several may
// be wrapped together (for example a shutdown while a proposal was in flight
// matches both ErrStopped and ErrOutcomeUnknown).
var (
	// ErrStopped: the replica was stopped (Stop, or a fatal storage or state
	// machine error; see Err).
	ErrStopped = errors.New("replica: stopped")
	// ErrBusy: too many proposals or reads are pending (Config.MaxPendingProposals).
	// Nothing was proposed; retry later.
	ErrBusy = errors.New("replica: too many pending requests")
	// ErrNoLeader: no leader is known, or the leader did not confirm a read
	// within a bounded time. Nothing was proposed; retry later.
	ErrNoLeader = errors.New("replica: no leader")
	// ErrOutcomeUnknown: the proposal was handed to Raft but this replica can
	// no longer tell whether it will commit (leadership or term changed, the
	// caller's context expired, or the replica stopped). It may have been
	// applied or not; retry only if the command is idempotent or deduplicated.
	ErrOutcomeUnknown = errors.New("replica: proposal outcome unknown")
	// ErrProposalDropped: Raft refused the proposal (no leader, a leadership
	// transfer in progress, or the uncommitted budget is full). It will never
	// commit; retrying is safe.
	ErrProposalDropped = errors.New("replica: proposal dropped")
	// ErrEmptyProposal: Propose was given no data. An empty entry is Raft's
	// no-op and would never reach the state machine.
	ErrEmptyProposal = errors.New("replica: empty proposal")
	// ErrTransferFailed: a leadership transfer did not complete in time.
	ErrTransferFailed = errors.New("replica: leadership transfer did not complete")
	// ErrMemberRemoved: a conf change would add back a member id that was
	// removed from the group. Ids are never reused: a removed member's data
	// dir (and any peer still holding its old state) must not come back.
	ErrMemberRemoved = errors.New("replica: member id was removed from the cluster and is never reused (add the member under a new id, with an empty data dir)")
)
