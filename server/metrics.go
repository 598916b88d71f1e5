package server

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/transport"
)

// metrics are one member's Prometheus metrics, on a registry of its own (no
// global state: `raftkv dev` runs three members in one process).
type metrics struct {
	reg *prometheus.Registry

	conns            prometheus.Gauge
	rejectedConns    prometheus.Counter
	protocolErrors   prometheus.Counter
	commands         *prometheus.CounterVec
	commandSeconds   *prometheus.HistogramVec
	proposals        prometheus.Counter
	proposalsFailed  *prometheus.CounterVec
	proposalSeconds  prometheus.Histogram
	readIndexSeconds prometheus.Histogram
	readsFailed      prometheus.Counter
	expirySweeps     prometheus.Counter
	expiredKeys      prometheus.Counter

	// proposalsTotal mirrors proposals and latency mirrors proposalSeconds
	// over the last minute, for /status (proposals_total,
	// commit_latency_p99_ms) and the cluster page.
	proposalsTotal atomic.Uint64
	latency        *latencyWindow
}

// latencyBuckets span 100µs to ~10s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

func newMetrics(status func() memberStatus) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg:     reg,
		latency: newLatencyWindow(),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raftkv_resp_connections", Help: "Open RESP client connections."}),
		rejectedConns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_resp_connections_rejected_total", Help: "RESP connections refused because of --max-conns."}),
		protocolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_resp_protocol_errors_total", Help: "RESP connections closed on a malformed or oversized frame."}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_resp_commands_total", Help: "RESP commands received, by command name."}, []string{"command"}),
		commandSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftkv_resp_command_duration_seconds", Help: "Latency of data commands, by command name.",
			Buckets: latencyBuckets}, []string{"command"}),
		proposals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_proposals_total", Help: "Writes proposed by this member (each client write once, retries included)."}),
		proposalsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_proposals_failed_total", Help: "Writes that ended in an error reply, by reason."}, []string{"reason"}),
		proposalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_proposal_duration_seconds", Help: "Time from proposing a write to its being applied.",
			Buckets: latencyBuckets}),
		readIndexSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_read_index_duration_seconds", Help: "Time of the ReadIndex barrier of linearizable reads.",
			Buckets: latencyBuckets}),
		readsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_reads_failed_total", Help: "Reads that ended in an error reply (no leader, timeout...)."}),
		expirySweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_expiry_sweeps_total", Help: "Expiry sweeps proposed by this member while leader."}),
		expiredKeys: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_expired_keys_proposed_total", Help: "Expired keys whose deletion this member proposed."}),
	}
	reg.MustRegister(m.conns, m.rejectedConns, m.protocolErrors, m.commands, m.commandSeconds, m.proposals,
		m.proposalsFailed, m.proposalSeconds, m.readIndexSeconds, m.readsFailed, m.expirySweeps, m.expiredKeys,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if status != nil {
		reg.MustRegister(&raftCollector{status: status})
	}
	return m
}

// raftCollector exports the replica's state at scrape time.
type raftCollector struct {
	status func() memberStatus
}

var (
	descTerm     = prometheus.NewDesc("raftkv_raft_term", "Current Raft term.", nil, nil)
	descRole     = prometheus.NewDesc("raftkv_raft_role", "1 for this member's current role.", []string{"role"}, nil)
	descLeader   = prometheus.NewDesc("raftkv_raft_leader_id", "Id of the leader this member knows (0: none).", nil, nil)
	descCommit   = prometheus.NewDesc("raftkv_raft_commit_index", "Highest log index known committed.", nil, nil)
	descApplied  = prometheus.NewDesc("raftkv_raft_applied_index", "Highest log index applied to the state machine.", nil, nil)
	descLast     = prometheus.NewDesc("raftkv_raft_last_index", "Last index of the local log.", nil, nil)
	descSnapshot = prometheus.NewDesc("raftkv_raft_snapshot_index", "Index of the newest snapshot.", nil, nil)
	descMembers  = prometheus.NewDesc("raftkv_raft_members", "Members of the cluster, by kind.", []string{"kind"}, nil)
	descPeerLag  = prometheus.NewDesc("raftkv_raft_peer_lag", "On the leader: entries each member is behind.", []string{"peer"}, nil)
	descKeys     = prometheus.NewDesc("raftkv_kv_keys", "Keys in the store (expired keys not yet swept included).", nil, nil)
)

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTerm, descRole, descLeader, descCommit, descApplied, descLast, descSnapshot, descMembers, descPeerLag, descKeys} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(st.Term))
	for _, r := range []string{"leader", "follower", "candidate", "learner"} {
		v := 0.0
		if st.Role == r {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, v, r)
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, float64(st.Leader))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(st.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(st.LastIndex))
	ch <- prometheus.MustNewConstMetric(descSnapshot, prometheus.GaugeValue, float64(st.SnapshotIndex))
	voters, learners := 0, 0
	for _, m := range st.Members {
		if m.Voter {
			voters++
		} else {
			learners++
		}
	}
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(voters), "voter")
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(learners), "learner")
	for _, m := range st.Members {
		if m.Lag != nil {
			ch <- prometheus.MustNewConstMetric(descPeerLag, prometheus.GaugeValue, float64(*m.Lag), m.ID.String())
		}
	}
	ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(st.Keys))
}

// peerCollector exports the transport's per-peer counters at scrape time.
type peerCollector struct {
	stats func() map[pb.NodeID]transport.PeerStats
}

var (
	descPeerSent      = prometheus.NewDesc("raftkv_peer_messages_sent_total", "Raft messages sent to each peer, by type.", []string{"peer", "type"}, nil)
	descPeerReceived  = prometheus.NewDesc("raftkv_peer_messages_received_total", "Raft messages received from each peer, by type.", []string{"peer", "type"}, nil)
	descPeerBytesSent = prometheus.NewDesc("raftkv_peer_bytes_sent_total", "Encoded bytes of Raft messages sent to each peer.", []string{"peer"}, nil)
	descPeerDropped   = prometheus.NewDesc("raftkv_peer_messages_dropped_total", "Messages to each peer dropped (not connected, queue full).", []string{"peer"}, nil)
	descPeerConnected = prometheus.NewDesc("raftkv_peer_connected", "1 if the outbound stream to the peer is up.", []string{"peer"}, nil)
	descPeerQueued    = prometheus.NewDesc("raftkv_peer_queued_messages", "Messages waiting in each peer's outbound queue.", []string{"peer"}, nil)
)

func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeerSent, descPeerReceived, descPeerBytesSent, descPeerDropped, descPeerConnected, descPeerQueued} {
		ch <- d
	}
}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	for id, s := range c.stats() {
		peer := id.String()
		for typ, n := range s.Sent {
			ch <- prometheus.MustNewConstMetric(descPeerSent, prometheus.CounterValue, float64(n.Msgs), peer, typ.String())
		}
		for typ, n := range s.Received {
			ch <- prometheus.MustNewConstMetric(descPeerReceived, prometheus.CounterValue, float64(n.Msgs), peer, typ.String())
		}
		ch <- prometheus.MustNewConstMetric(descPeerBytesSent, prometheus.CounterValue, float64(s.TotalSent().Bytes), peer)
		ch <- prometheus.MustNewConstMetric(descPeerDropped, prometheus.CounterValue, float64(s.Dropped), peer)
		connected := 0.0
		if s.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(descPeerConnected, prometheus.GaugeValue, connected, peer)
		ch <- prometheus.MustNewConstMetric(descPeerQueued, prometheus.GaugeValue, float64(s.Queued), peer)
	}
}
