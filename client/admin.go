package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Status is a member's GET /status document.
type Status struct {
	ID           uint64         `json:"id"`
	Role         string         `json:"role"`
	Term         uint64         `json:"term"`
	Leader       uint64         `json:"leader"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	Members      []MemberStatus `json:"members"`

	// Extras reported by raftkv servers beyond the contract's fields.
	PeerAddr      string `json:"peer_addr,omitempty"`
	RedisAddr     string `json:"redis_addr,omitempty"`
	HTTPAddr      string `json:"http_addr,omitempty"`
	LastIndex     uint64 `json:"last_index,omitempty"`
	SnapshotIndex uint64 `json:"snapshot_index,omitempty"`
	ClusterID     string `json:"cluster_id,omitempty"`
	Keys          int64  `json:"keys,omitempty"`
}

// MemberStatus is one entry of Status.Members. RedisAddr and HTTPAddr are
// filled only by servers that report them.
type MemberStatus struct {
	ID        uint64 `json:"id"`
	PeerAddr  string `json:"peer_addr"`
	Voter     bool   `json:"voter"`
	RedisAddr string `json:"redis_addr,omitempty"`
	HTTPAddr  string `json:"http_addr,omitempty"`
}

// MemberView is one row of a cluster overview: what the cluster's
// configuration says about a member plus what the member says about itself
// (Status is nil when it could not be asked or did not answer).
type MemberView struct {
	ID       uint64
	PeerAddr string
	Voter    bool
	// HTTPAddr is where Status came from (or would have), if known.
	HTTPAddr string
	Status   *Status
	// Asked: the member's /status was requested (it was among the endpoints,
	// or some member reported its HTTP address). Err is why Status is nil.
	Asked bool
	Err   error
	// Lag is how many entries the member's applied index trails the
	// leader's commit index (0 when unknown).
	Lag uint64
	// Healthy: the member answered, knows the current leader, and its lag is
	// within ClusterView's threshold.
	Healthy bool
}

// ClusterView is the cluster as seen through the admin endpoints.
type ClusterView struct {
	// Leader is the leader's id, 0 if no reachable member knows one (or the
	// reachable members disagree on it within the highest term).
	Leader  uint64
	Term    uint64
	Members []MemberView
	// Unanswered lists the endpoints that did not answer and could not be
	// matched to a member (nothing reports which member sits behind them).
	Unanswered []EndpointError
}

// EndpointError is an endpoint that did not answer, and why.
type EndpointError struct {
	Endpoint string
	Err      error
}

// AdminConfig configures an Admin client.
type AdminConfig struct {
	// Endpoints are members' HTTP addresses: HOST:PORT or http(s)://HOST:PORT.
	Endpoints []string
	// Timeout bounds one HTTP request. Default 5s.
	Timeout time.Duration
	// HTTPClient, if set, is used instead of a client built from Timeout.
	HTTPClient *http.Client
	// HealthyLag is the largest lag (entries) for which a member still
	// counts as healthy. Default 1000.
	HealthyLag uint64
}

// Admin is a client of the members' HTTP admin API. Safe for concurrent use.
type Admin struct {
	cfg  AdminConfig
	base []string // normalized base URLs, same order as cfg.Endpoints
	hc   *http.Client
}

// NewAdmin validates cfg and returns an Admin client.
func NewAdmin(cfg AdminConfig) (*Admin, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("client: admin: no endpoints")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.HealthyLag == 0 {
		cfg.HealthyLag = 1000
	}
	a := &Admin{cfg: cfg, hc: cfg.HTTPClient}
	if a.hc == nil {
		a.hc = &http.Client{Timeout: cfg.Timeout}
	}
	var errs []error
	for _, ep := range cfg.Endpoints {
		u, err := baseURL(ep)
		if err != nil {
			errs = append(errs, fmt.Errorf("client: admin: endpoint %q: %w", ep, err))
			continue
		}
		a.base = append(a.base, u)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return a, nil
}

// baseURL turns HOST:PORT or a URL into "scheme://host:port" without a
// trailing slash.
func baseURL(ep string) (string, error) {
	if !strings.Contains(ep, "://") {
		if err := checkHostPort(ep); err != nil {
			return "", err
		}
		return "http://" + ep, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if err := checkHostPort(u.Host); err != nil {
		return "", err
	}
	return u.Scheme + "://" + u.Host, nil
}

// APIError is a non-2xx answer from a member's HTTP API.
type APIError struct {
	Endpoint string
	Status   int
	Msg      string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.Endpoint, e.Status, e.Msg)
}

// Status asks one member (an HTTP endpoint, HOST:PORT or URL) for its status.
func (a *Admin) Status(ctx context.Context, endpoint string) (*Status, error) {
	base, err := baseURL(endpoint)
	if err != nil {
		return nil, fmt.Errorf("client: status %q: %w", endpoint, err)
	}
	var st Status
	if err := a.call(ctx, base, http.MethodGet, "/status", nil, &st); err != nil {
		return nil, fmt.Errorf("client: status: %w", err)
	}
	return &st, nil
}

// Cluster asks every endpoint, and every member they report an HTTP address
// for, for its status, and assembles one row per member of the configuration.
func (a *Admin) Cluster(ctx context.Context) (*ClusterView, error) {
	type answer struct {
		base string
		st   *Status
		err  error
	}
	ask := func(bases []string) []answer {
		out := make([]answer, len(bases))
		done := make(chan struct{})
		for i, b := range bases {
			go func() {
				var st Status
				err := a.call(ctx, b, http.MethodGet, "/status", nil, &st)
				out[i] = answer{base: b, err: err}
				if err == nil {
					out[i].st = &st
				}
				done <- struct{}{}
			}()
		}
		for range bases {
			<-done
		}
		return out
	}
	answers := ask(a.base)
	asked := map[string]bool{}
	for _, b := range a.base {
		asked[b] = true
	}
	// Members reporting HTTP addresses we were not given: ask them too.
	var more []string
	for _, an := range answers {
		if an.st == nil {
			continue
		}
		for _, m := range an.st.Members {
			if m.HTTPAddr == "" {
				continue
			}
			if b, err := baseURL(m.HTTPAddr); err == nil && !asked[b] {
				asked[b] = true
				more = append(more, b)
			}
		}
	}
	answers = append(answers, ask(more)...)

	var errs []error
	byID := map[uint64]*answer{}
	var config []MemberStatus
	var configTerm, configCommit uint64
	view := &ClusterView{}
	leaders := map[uint64]bool{}
	for i := range answers {
		an := &answers[i]
		if an.st == nil {
			errs = append(errs, an.err)
			continue
		}
		byID[an.st.ID] = an
		if an.st.Term > view.Term {
			view.Term = an.st.Term
		}
		// The configuration seen by the member with the highest (term,
		// commit) wins: it is the most recent one.
		if config == nil || an.st.Term > configTerm || (an.st.Term == configTerm && an.st.CommitIndex > configCommit) {
			configTerm, configCommit = an.st.Term, an.st.CommitIndex
			config = an.st.Members
		}
	}
	if len(byID) == 0 {
		return nil, fmt.Errorf("client: no member answered: %w", joinErrs(errs))
	}
	for _, an := range byID {
		if an.st.Term == view.Term && an.st.Leader != 0 {
			leaders[an.st.Leader] = true
		}
	}
	if len(leaders) == 1 {
		for id := range leaders {
			view.Leader = id
		}
	}
	var leaderCommit uint64
	if l, ok := byID[view.Leader]; ok {
		leaderCommit = l.st.CommitIndex
	} else {
		for _, an := range byID {
			leaderCommit = max(leaderCommit, an.st.CommitIndex)
		}
	}
	seen := map[uint64]bool{}
	addRow := func(m MemberStatus) {
		seen[m.ID] = true
		row := MemberView{ID: m.ID, PeerAddr: m.PeerAddr, Voter: m.Voter, HTTPAddr: m.HTTPAddr}
		if an, ok := byID[m.ID]; ok {
			row.Asked = true
			row.Status = an.st
			// The address that answered, not the one the member reports
			// (which may be a bind address such as 0.0.0.0:8080).
			row.HTTPAddr = strings.TrimPrefix(an.base, "http://")
			if leaderCommit > an.st.AppliedIndex {
				row.Lag = leaderCommit - an.st.AppliedIndex
			}
			row.Healthy = view.Leader != 0 && an.st.Leader == view.Leader && row.Lag <= a.cfg.HealthyLag
		} else {
			row.Err = errors.New("HTTP address unknown: not among the endpoints, not reported by the cluster")
			for _, an := range answers {
				if an.st == nil && row.HTTPAddr != "" && strings.TrimPrefix(an.base, "http://") == row.HTTPAddr {
					row.Asked, row.Err = true, an.err
				}
			}
		}
		view.Members = append(view.Members, row)
	}
	for _, m := range config {
		addRow(m)
	}
	for _, an := range answers {
		if an.st != nil {
			continue
		}
		ep := strings.TrimPrefix(an.base, "http://")
		matched := false
		for _, row := range view.Members {
			if row.Asked && row.Status == nil && row.HTTPAddr == ep {
				matched = true
			}
		}
		if !matched {
			view.Unanswered = append(view.Unanswered, EndpointError{Endpoint: ep, Err: an.err})
		}
	}
	// A member that answered but is not in the winning configuration (removed,
	// or not yet aware of its addition) still gets a row.
	for id, an := range byID {
		if !seen[id] {
			addRow(MemberStatus{ID: id, Voter: an.st.Role != "learner"})
		}
	}
	sort.Slice(view.Members, func(i, j int) bool { return view.Members[i].ID < view.Members[j].ID })
	return view, nil
}

// Members returns the cluster's membership as reported by the first member
// that answers.
func (a *Admin) Members(ctx context.Context) ([]MemberStatus, error) {
	var ms []MemberStatus
	if err := a.any(ctx, http.MethodGet, "/v1/members", nil, &ms, true); err != nil {
		return nil, fmt.Errorf("client: members: %w", err)
	}
	return ms, nil
}

// NewMember describes a member to add. HTTPAddr and RedisAddr are optional;
// given, they are recorded in the cluster configuration so that every member
// (and `raftkv status`) knows where the new member's APIs are.
type NewMember struct {
	ID        uint64 `json:"id"`
	PeerAddr  string `json:"peer_addr"`
	HTTPAddr  string `json:"http_addr,omitempty"`
	RedisAddr string `json:"redis_addr,omitempty"`
}

// AddMember adds a member as a learner; promote it with PromoteMember once
// it has caught up.
func (a *Admin) AddMember(ctx context.Context, m NewMember) error {
	if m.ID == 0 {
		return errors.New("client: add member: id must be >= 1")
	}
	for _, f := range []struct{ name, addr string }{{"peer", m.PeerAddr}, {"HTTP", m.HTTPAddr}, {"RESP", m.RedisAddr}} {
		if f.addr == "" && f.name != "peer" {
			continue
		}
		if err := checkHostPort(f.addr); err != nil {
			return fmt.Errorf("client: add member %d: %s address %q: %w", m.ID, f.name, f.addr, err)
		}
	}
	if err := a.any(ctx, http.MethodPost, "/v1/members", m, nil, false); err != nil {
		return fmt.Errorf("client: add member %d: %w", m.ID, err)
	}
	return nil
}

// RemoveMember removes a member from the cluster.
func (a *Admin) RemoveMember(ctx context.Context, id uint64) error {
	if err := a.any(ctx, http.MethodDelete, fmt.Sprintf("/v1/members/%d", id), nil, nil, false); err != nil {
		return fmt.Errorf("client: remove member %d: %w", id, err)
	}
	return nil
}

// PromoteMember turns a learner into a voter.
func (a *Admin) PromoteMember(ctx context.Context, id uint64) error {
	if err := a.toLeader(ctx, http.MethodPost, fmt.Sprintf("/v1/members/%d/promote", id), nil, nil); err != nil {
		return fmt.Errorf("client: promote member %d: %w", id, err)
	}
	return nil
}

// TransferResult is what POST /v1/leader/transfer reports.
type TransferResult struct {
	Leader uint64 `json:"leader"`
	Term   uint64 `json:"term"`
}

// TransferLeader hands leadership to member to, or with to == 0 to the most
// caught-up member, and reports the leader afterwards.
func (a *Admin) TransferLeader(ctx context.Context, to uint64) (*TransferResult, error) {
	body := map[string]any{}
	if to != 0 {
		body["to"] = to
	}
	var res TransferResult
	if err := a.toLeader(ctx, http.MethodPost, "/v1/leader/transfer", body, &res); err != nil {
		return nil, fmt.Errorf("client: leader transfer: %w", err)
	}
	return &res, nil
}

// SnapshotResult is what POST /v1/snapshot reports (fields the server does
// not send stay zero).
type SnapshotResult struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
}

// Snapshot asks the member behind the first endpoint that answers to take a
// snapshot now.
func (a *Admin) Snapshot(ctx context.Context) (*SnapshotResult, error) {
	var res SnapshotResult
	if err := a.any(ctx, http.MethodPost, "/v1/snapshot", nil, &res, false); err != nil {
		return nil, fmt.Errorf("client: snapshot: %w", err)
	}
	return &res, nil
}

// toLeader sends a request that only the leader can serve to the leader's
// HTTP endpoint when one of the endpoints is the leader's; otherwise to the
// endpoints in order (a member forwards it to the leader when it knows the
// leader's HTTP address).
func (a *Admin) toLeader(ctx context.Context, method, path string, in, out any) error {
	view, err := a.Cluster(ctx)
	if err == nil && view.Leader != 0 {
		for _, m := range view.Members {
			if m.ID == view.Leader && m.Status != nil && m.HTTPAddr != "" {
				if base, err := baseURL(m.HTTPAddr); err == nil {
					return a.call(ctx, base, method, path, in, out)
				}
			}
		}
	}
	return a.any(ctx, method, path, in, out, false)
}

// any sends the request to the endpoints in order until one answers. A
// request that is not idempotent moves on only when it provably did not
// reach the member (connection refused); an HTTP answer, error or not, is
// final.
func (a *Admin) any(ctx context.Context, method, path string, in, out any, idempotent bool) error {
	var errs []error
	for _, b := range a.base {
		err := a.call(ctx, b, method, path, in, out)
		if err == nil {
			return nil
		}
		var apiErr *APIError
		if errors.As(err, &apiErr) || ctx.Err() != nil {
			return err
		}
		if !idempotent && !notSent(err) {
			return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
		}
		errs = append(errs, err)
	}
	return &wrapped{msg: "no member answered: " + joinErrs(errs).Error(), errs: append([]error{ErrUnavailable}, errs...)}
}

// joinErrs is errors.Join on one line ("; " instead of newlines), for
// messages that end up in a terminal.
func joinErrs(errs []error) error {
	var parts []string
	for _, e := range errs {
		if e != nil {
			parts = append(parts, e.Error())
		}
	}
	return &wrapped{msg: strings.Join(parts, "; "), errs: errs}
}

func notSent(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// call does one HTTP request against base and decodes a JSON answer into out.
func (a *Admin) call(ctx context.Context, base, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		// Drop url.Error's `Get "http://...":` preamble; keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		host := strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
		if strings.Contains(err.Error(), host) {
			return err
		}
		return fmt.Errorf("%s: %w", host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s%s: read answer: %w", method, base, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Endpoint: strings.TrimPrefix(base, "http://"), Status: resp.StatusCode, Msg: errorMessage(data)}
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s%s: decode answer: %w", method, base, path, err)
		}
	}
	return nil
}

// errorMessage extracts {"error":"..."} from an error body, or returns the
// body's first line.
func errorMessage(data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(data))
	if line, _, ok := strings.Cut(s, "\n"); ok {
		s = line
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		s = "(no message)"
	}
	return s
}
