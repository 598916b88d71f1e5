// Package ui serves a live picture of a raftkv cluster in the browser, from
// any member: who leads, each member's log (first, snapshot, applied, commit,
// last index) and its lag behind the leader, replication traffic between
// members, elections on a timeline, and throughput and latency charts.
//
// The page is embedded in the binary (no CDN, no build step). It reads
// GET /v1/cluster once and then GET /v1/cluster/events, a Server-Sent Events
// stream of the same document about five times a second. The document is
// every member's own GET /status, gathered by the member serving the page;
// members that do not answer are shown as down.
//
// Cost is bounded however many people watch: one gather per interval is
// shared by every viewer (a cache), each member is asked with a short
// timeout, and the number of concurrent streams is capped. Rates (messages/s,
// proposals/s) are computed in the browser from counter deltas, so the
// members keep no per-viewer state.
package ui
