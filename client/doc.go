// Package client is the Go client of a raftkv cluster.
//
// Client speaks RESP (the Redis protocol) to a list of endpoints. Every member
// accepts every command (followers forward to the leader inside the cluster),
// so the client needs no leader discovery: it sticks to the endpoint that last
// answered and moves to the next one when a member is unreachable or answers
// -TRYAGAIN / -CLUSTERDOWN (no leader, no quorum, overload), with exponential
// backoff between rounds.
//
// What it never does: resend a write whose outcome is unknown. If a write was
// sent and the connection then failed or timed out, or the member answered
// -UNKNOWN, the write may or may not have been applied; resending INCR or
// APPEND could apply it twice. Such calls return an error that matches
// ErrUnknownOutcome, and the caller decides (read the value back, or retry a
// write it knows to be safe). Reads are resent freely, and so is any command
// that provably never reached a member (the dial failed).
//
// Admin speaks HTTP to members' admin API: /status, membership changes,
// leadership transfer and snapshots.
//
// Usage:
//
//	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:6379", "127.0.0.1:6380"}})
//	if err != nil { ... }
//	defer c.Close()
//	if err := c.Set(ctx, "greeting", "hello", 0); err != nil { ... }
//	v, err := c.Get(ctx, "greeting") // errors.Is(err, client.ErrNotFound) when absent
package client
