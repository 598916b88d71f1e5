package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/kv"
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/replica"
	"github.com/raftkv/raftkv/ui"
)

// memberStatus is GET /status's JSON: the contract's fields first, then extras.
type memberStatus struct {
	ID           pb.NodeID     `json:"id"`
	Role         string        `json:"role"`
	Term         uint64        `json:"term"`
	Leader       pb.NodeID     `json:"leader"`
	CommitIndex  uint64        `json:"commit_index"`
	AppliedIndex uint64        `json:"applied_index"`
	Members      []memberEntry `json:"members"`

	LastIndex      uint64    `json:"last_index"`
	FirstIndex     uint64    `json:"first_index"`
	SnapshotIndex  uint64    `json:"snapshot_index"`
	LeadTransferee pb.NodeID `json:"lead_transferee,omitempty"`
	ClusterID      string    `json:"cluster_id"`
	PeerAddr       string    `json:"peer_addr"`
	RedisAddr      string    `json:"redis_addr"`
	HTTPAddr       string    `json:"http_addr"`
	Keys           int64     `json:"keys"`
	StaleReads     bool      `json:"stale_reads"`
	Stopped        bool      `json:"stopped,omitempty"`
	// Removed are the ids removed from the cluster: never reused.
	Removed []pb.NodeID `json:"removed,omitempty"`

	// For the cluster page (package ui): traffic and replication per peer,
	// and this member's client writes (a counter) and their p99 latency
	// from proposal to apply over about the last minute.
	Peers              map[string]peerView `json:"peers"`
	ProposalsTotal     uint64              `json:"proposals_total"`
	CommitLatencyP99Ms float64             `json:"commit_latency_p99_ms"`
}

// peerView is one other member in /status's "peers", keyed by its id:
// messages sent to it by type name (MsgApp, MsgHeartbeat...) since this
// process started, whether the stream to it is up, and on the leader its
// progress (match, next, state, lag).
type peerView struct {
	MsgsSent  map[string]uint64 `json:"msgs_sent"`
	Connected bool              `json:"connected"`
	Match     *uint64           `json:"match,omitempty"`
	Next      *uint64           `json:"next,omitempty"`
	State     string            `json:"state,omitempty"`
	Lag       *uint64           `json:"lag,omitempty"`
}

// memberEntry is one member in /status. Match, Lag and State are filled on
// the leader only.
type memberEntry struct {
	ID        pb.NodeID `json:"id"`
	PeerAddr  string    `json:"peer_addr"`
	Voter     bool      `json:"voter"`
	HTTPAddr  string    `json:"http_addr,omitempty"`
	RedisAddr string    `json:"redis_addr,omitempty"`
	Match     *uint64   `json:"match,omitempty"`
	Lag       *uint64   `json:"lag,omitempty"`
	State     string    `json:"state,omitempty"`
}

// memberContext is the JSON a raftkv member puts in the Context of the
// ConfChange that adds it, so that every member learns from the log where to
// dial it and where its clients' APIs are. Founding members' Context is the
// bare peer address (replica bootstraps them that way).
type memberContext struct {
	PeerAddr  string `json:"peer_addr"`
	HTTPAddr  string `json:"http_addr,omitempty"`
	RedisAddr string `json:"redis_addr,omitempty"`
}

// parseMemberContext reads a ConfChange Context: JSON or a bare address.
func parseMemberContext(b []byte) memberContext {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var mc memberContext
		if json.Unmarshal(b, &mc) == nil {
			return mc
		}
		return memberContext{}
	}
	return memberContext{PeerAddr: string(b)}
}

// httpAPI serves the HTTP routes of one member.
type httpAPI struct {
	m *Member
}

func (h *httpAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", h.status)
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.m.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/kv/{key...}", h.kvGet)
	mux.HandleFunc("PUT /v1/kv/{key...}", h.kvPut)
	mux.HandleFunc("DELETE /v1/kv/{key...}", h.kvDelete)
	mux.HandleFunc("GET /v1/members", h.membersList)
	mux.HandleFunc("POST /v1/members", h.membersAdd)
	mux.HandleFunc("DELETE /v1/members/{id}", h.membersRemove)
	mux.HandleFunc("POST /v1/members/{id}/promote", h.membersPromote)
	mux.HandleFunc("POST /v1/leader/transfer", h.leaderTransfer)
	mux.HandleFunc("POST /v1/snapshot", h.snapshot)
	if h.m.cfg.EnablePprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	ui.New(ui.Config{
		Self:        uint64(h.m.cfg.ID),
		LocalStatus: func() ([]byte, error) { return json.Marshal(h.m.status()) },
		Members:     h.m.uiMembers,
		Logger:      h.m.logger,
	}).Register(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// replyStatus maps a RESP error reply to an HTTP status.
func replyStatus(msg string) int {
	switch {
	case strings.HasPrefix(msg, "CLUSTERDOWN"), strings.HasPrefix(msg, "TRYAGAIN"):
		return http.StatusServiceUnavailable
	case strings.HasPrefix(msg, "UNKNOWN"):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadRequest
}

func (h *httpAPI) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.m.status())
}

func (h *httpAPI) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.m.cfg.RequestTimeout)
}

func (h *httpAPI) kvGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if key == "" {
		writeJSONError(w, http.StatusBadRequest, "empty key")
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	e := h.m.exec
	if rep := e.barrier(ctx); rep != nil {
		msg := string(rep.(errReply))
		writeJSONError(w, replyStatus(msg), msg)
		return
	}
	now := e.clock().UnixMilli()
	v, ok := e.store.Get([]byte(key), now)
	if !ok {
		writeJSONError(w, http.StatusNotFound, "key not found")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Raftkv-Pttl", strconv.FormatInt(e.store.PTTL([]byte(key), now), 10))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(v)
}

// kvPut sets the key to the request body; ?ttl= takes seconds ("10") or a
// Go duration ("1m30s", "500ms").
func (h *httpAPI) kvPut(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if key == "" {
		writeJSONError(w, http.StatusBadRequest, "empty key")
		return
	}
	limit := int64(h.m.cfg.MaxValueBytes)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if int64(len(body)) > limit {
		writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value is too large (max %d bytes)", limit))
		return
	}
	c := kv.Command{Op: kv.OpSet, Key: []byte(key), Value: body}
	if ttl := r.URL.Query().Get("ttl"); ttl != "" {
		var ms int64
		if n, err := strconv.ParseInt(ttl, 10, 64); err == nil && n > 0 && n < 1<<40 {
			ms = n * 1000
		} else if d, err := time.ParseDuration(ttl); err == nil && d >= time.Millisecond {
			ms = d.Milliseconds()
		} else {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: want a positive number of seconds or a duration such as 1m30s", ttl))
			return
		}
		c.Flags |= kv.FlagPX
		c.Int = ms
	}
	h.writeKV(w, r, c)
}

func (h *httpAPI) kvDelete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if key == "" {
		writeJSONError(w, http.StatusBadRequest, "empty key")
		return
	}
	h.writeKV(w, r, kv.Command{Op: kv.OpDel, Keys: [][]byte{[]byte(key)}})
}

func (h *httpAPI) writeKV(w http.ResponseWriter, r *http.Request, c kv.Command) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	switch rep := h.m.exec.write(ctx, c).(type) {
	case errReply:
		writeJSONError(w, replyStatus(string(rep)), string(rep))
	case intReply:
		writeJSON(w, http.StatusOK, map[string]int64{"deleted": int64(rep)})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"result": "OK"})
	}
}

// uiMembers lists every member and its HTTP address for the cluster page.
func (m *Member) uiMembers() []ui.Member {
	st := m.status()
	out := make([]ui.Member, 0, len(st.Members))
	for _, e := range st.Members {
		out = append(out, ui.Member{ID: uint64(e.ID), HTTPAddr: e.HTTPAddr})
	}
	return out
}

func (h *httpAPI) membersList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.m.status().Members)
}

// addMemberRequest is POST /v1/members's body.
type addMemberRequest struct {
	ID        pb.NodeID `json:"id"`
	PeerAddr  string    `json:"peer_addr"`
	HTTPAddr  string    `json:"http_addr,omitempty"`
	RedisAddr string    `json:"redis_addr,omitempty"`
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func (h *httpAPI) membersAdd(w http.ResponseWriter, r *http.Request) {
	if h.forwardIfFollower(w, r) {
		return
	}
	var req addMemberRequest
	if err := decodeBody(r, &req); err != nil {
		writeJSONError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if req.ID == pb.None {
		writeJSONError(w, http.StatusBadRequest, `"id" must be an integer >= 1`)
		return
	}
	if err := validateHostPort(req.PeerAddr); err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Sprintf(`"peer_addr" %q: %v`, req.PeerAddr, err))
		return
	}
	for _, m := range h.m.status().Members {
		if m.ID == req.ID {
			writeJSONError(w, http.StatusConflict, fmt.Sprintf("member %d already exists", req.ID))
			return
		}
	}
	ctxData, _ := json.Marshal(memberContext{PeerAddr: req.PeerAddr, HTTPAddr: req.HTTPAddr, RedisAddr: req.RedisAddr})
	h.confChange(w, r, pb.ConfChange{Type: pb.ConfChangeAddLearner, NodeID: req.ID, Context: ctxData})
}

func (h *httpAPI) pathID(w http.ResponseWriter, r *http.Request) (pb.NodeID, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("member id %q: want an integer >= 1", r.PathValue("id")))
		return 0, false
	}
	return pb.NodeID(id), true
}

func (h *httpAPI) findMember(id pb.NodeID) (memberEntry, bool) {
	for _, m := range h.m.status().Members {
		if m.ID == id {
			return m, true
		}
	}
	return memberEntry{}, false
}

func (h *httpAPI) membersRemove(w http.ResponseWriter, r *http.Request) {
	id, ok := h.pathID(w, r)
	if !ok || h.forwardIfFollower(w, r) {
		return
	}
	if _, ok := h.findMember(id); !ok {
		writeJSONError(w, http.StatusNotFound, fmt.Sprintf("member %d is not in the cluster", id))
		return
	}
	h.confChange(w, r, pb.ConfChange{Type: pb.ConfChangeRemove, NodeID: id})
}

// membersPromote makes a learner a voter. Only the leader knows the
// learner's lag, and it checks the learner is caught up (a voter far behind
// would slow every commit, or worse, cost the quorum). Only the leader
// looks the member up: a follower's view of the membership may lag, and a
// learner just added through it may not be applied there yet.
func (h *httpAPI) membersPromote(w http.ResponseWriter, r *http.Request) {
	id, ok := h.pathID(w, r)
	if !ok || h.forwardIfFollower(w, r) {
		return
	}
	if st := h.m.status(); st.Role != "leader" {
		notLeader(w, st) // no leader known, or its address is not
		return
	}
	m, ok := h.findMember(id)
	if !ok {
		writeJSONError(w, http.StatusNotFound, fmt.Sprintf("member %d is not in the cluster", id))
		return
	}
	if m.Voter {
		writeJSON(w, http.StatusOK, map[string]string{"result": fmt.Sprintf("member %d is already a voter", id)})
		return
	}
	if m.Lag == nil || *m.Lag > promoteMaxLag {
		lag := "unknown"
		if m.Lag != nil {
			lag = strconv.FormatUint(*m.Lag, 10)
		}
		writeJSONError(w, http.StatusConflict, fmt.Sprintf("member %d is not caught up (lag %s entries, need <= %d); retry shortly", id, lag, promoteMaxLag))
		return
	}
	h.confChange(w, r, pb.ConfChange{Type: pb.ConfChangeAddVoter, NodeID: id, Context: []byte(m.contextJSON())})
}

// promoteMaxLag is how far behind the leader a learner may be when promoted.
const promoteMaxLag = 1000

func (m memberEntry) contextJSON() string {
	if m.HTTPAddr == "" && m.RedisAddr == "" {
		return m.PeerAddr
	}
	b, _ := json.Marshal(memberContext{PeerAddr: m.PeerAddr, HTTPAddr: m.HTTPAddr, RedisAddr: m.RedisAddr})
	return string(b)
}

// forwardIfFollower forwards a request that the leader should answer
// (membership changes, leadership transfer) when this member does not lead
// and knows the leader's HTTP address, and reports whether it did. Otherwise
// the caller handles it here (a membership change proposed on a follower
// still reaches the leader through the Raft core).
func (h *httpAPI) forwardIfFollower(w http.ResponseWriter, r *http.Request) bool {
	st := h.m.status()
	return st.Role != "leader" && h.forwardToLeader(w, r, st)
}

// notLeader answers a request only the leader can serve, naming the leader
// (also in the X-Raftkv-Leader and X-Raftkv-Leader-Http headers) when known.
func notLeader(w http.ResponseWriter, st memberStatus) {
	if st.Leader == pb.None {
		writeJSONError(w, http.StatusServiceUnavailable, fmt.Sprintf("member %d is not the leader and no leader is known; retry shortly", st.ID))
		return
	}
	addr := ""
	for _, m := range st.Members {
		if m.ID == st.Leader {
			addr = m.HTTPAddr
		}
	}
	w.Header().Set("X-Raftkv-Leader", st.Leader.String())
	if addr == "" {
		writeJSONError(w, http.StatusServiceUnavailable, fmt.Sprintf("member %d is not the leader; the leader is member %d, whose HTTP address is not known here yet: ask it, or retry shortly", st.ID, st.Leader))
		return
	}
	w.Header().Set("X-Raftkv-Leader-Http", addr)
	writeJSONError(w, http.StatusServiceUnavailable, fmt.Sprintf("member %d is not the leader; ask the leader, member %d at http://%s", st.ID, st.Leader, addr))
}

// forwardToLeader replays the request on the leader's HTTP API if its
// address is known, and reports whether it did.
func (h *httpAPI) forwardToLeader(w http.ResponseWriter, r *http.Request, st memberStatus) bool {
	if r.Header.Get("X-Raftkv-Forwarded") != "" || st.Leader == pb.None {
		return false
	}
	var addr string
	for _, m := range st.Members {
		if m.ID == st.Leader {
			addr = m.HTTPAddr
		}
	}
	if addr == "" {
		return false
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	ctx, cancel := h.ctx(r)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("X-Raftkv-Forwarded", h.m.cfg.ID.String())
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		writeJSONError(w, http.StatusBadGateway, fmt.Sprintf("forwarding to leader %d at %s: %v", st.Leader, addr, err))
		return true
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
	return true
}

// confChange proposes cc through the replica (a follower's proposal is
// forwarded to the leader by the core) and answers once it is applied here.
// A change Raft dropped was appended nowhere, so it is proposed again until
// the deadline: a leader refuses changes until it has committed an entry of
// its term, and an operator's request right after an election (or a
// leadership transfer) should wait those few milliseconds, not fail.
func (h *httpAPI) confChange(w http.ResponseWriter, r *http.Request, cc pb.ConfChange) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	var b backoff
	err := h.m.rep.ProposeConfChange(ctx, cc)
	for (errors.Is(err, replica.ErrProposalDropped) || errors.Is(err, replica.ErrNoLeader)) && b.wait(ctx) {
		err = h.m.rep.ProposeConfChange(ctx, cc)
	}
	if err != nil {
		writeJSONError(w, errStatus(err), "membership change "+cc.Type.String()+" "+cc.NodeID.String()+": "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": "OK", "change": cc.Type.String(), "id": cc.NodeID, "members": h.m.status().Members})
}

// errStatus maps a replica error to an HTTP status.
func errStatus(err error) int {
	switch {
	case errors.Is(err, replica.ErrOutcomeUnknown):
		return http.StatusGatewayTimeout
	case errors.Is(err, replica.ErrNoLeader), errors.Is(err, replica.ErrProposalDropped),
		errors.Is(err, replica.ErrBusy), errors.Is(err, replica.ErrStopped),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	case errors.Is(err, replica.ErrTransferFailed):
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// transferRequest is POST /v1/leader/transfer's optional body.
type transferRequest struct {
	To pb.NodeID `json:"to"`
}

func (h *httpAPI) leaderTransfer(w http.ResponseWriter, r *http.Request) {
	if h.forwardIfFollower(w, r) {
		return
	}
	var req transferRequest
	if err := decodeBody(r, &req); err != nil {
		writeJSONError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if req.To == pb.None {
		if s := r.URL.Query().Get("to"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("to %q: want a member id", s))
				return
			}
			req.To = pb.NodeID(n)
		}
	}
	if req.To != pb.None {
		m, ok := h.findMember(req.To)
		if !ok {
			writeJSONError(w, http.StatusNotFound, fmt.Sprintf("member %d is not in the cluster", req.To))
			return
		}
		if !m.Voter {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("member %d is a learner: only a voter can lead", req.To))
			return
		}
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	if err := h.m.rep.TransferLeadership(ctx, req.To); err != nil {
		writeJSONError(w, errStatus(err), "leader transfer: "+err.Error())
		return
	}
	st := h.m.status()
	writeJSON(w, http.StatusOK, map[string]any{"result": "OK", "leader": st.Leader, "term": st.Term})
}

func (h *httpAPI) snapshot(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	meta, err := h.m.rep.TakeSnapshot(ctx)
	if err != nil {
		writeJSONError(w, errStatus(err), "snapshot: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": "OK", "index": meta.Index, "term": meta.Term})
}
