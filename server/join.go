package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// joinHTTP talks to the member named by --join.
var joinHTTP = &http.Client{Timeout: 5 * time.Second}

// fetchStatus reads GET /status from a member's HTTP address.
func fetchStatus(ctx context.Context, addr string) (memberStatus, error) {
	var st memberStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := joinHTTP.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /status: %s", resp.Status)
	}
	return st, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
}

// joinCluster adds this member to a running cluster as a learner, through
// --join (any member's HTTP address), and returns the cluster's id. The
// running members' peer addresses are added to the transport so that this
// member can answer the leader before it has applied the log that names them.
// Called by Start when the data dir is empty; a member that already joined
// (it is in the member list) just proceeds.
func (m *Member) joinCluster() (uint64, []memberEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := fetchStatus(ctx, m.cfg.Join)
	if err != nil {
		return 0, nil, fmt.Errorf("server: --join %s: %w", m.cfg.Join, err)
	}
	clusterID, err := strconv.ParseUint(st.ClusterID, 16, 64)
	if err != nil || clusterID == 0 {
		return 0, nil, fmt.Errorf("server: --join %s: bad cluster id %q in /status", m.cfg.Join, st.ClusterID)
	}
	for _, mem := range st.Members {
		if mem.ID == m.cfg.ID {
			m.logger.Info("already a member of the cluster; not adding again", "join", m.cfg.Join)
			return clusterID, st.Members, nil
		}
	}
	body, _ := json.Marshal(addMemberRequest{ID: m.cfg.ID, PeerAddr: m.addrs.Peer, HTTPAddr: m.addrs.HTTP, RedisAddr: m.addrs.Redis})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+m.cfg.Join+"/v1/members", bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("server: --join %s: %w", m.cfg.Join, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := joinHTTP.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("server: --join %s: add member: %w", m.cfg.Join, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusConflict {
		return 0, nil, fmt.Errorf("server: --join %s: add member: %s: %s", m.cfg.Join, resp.Status, bytes.TrimSpace(msg))
	}
	m.logger.Info("joined the cluster as a learner", "join", m.cfg.Join, "cluster_id", st.ClusterID)
	return clusterID, st.Members, nil
}

// promoteWhenCaughtUp runs on a member that joined: once it has applied
// what the cluster had committed when it looked, it asks to become a voter.
// A learner far behind would slow commits if it voted, hence the wait.
func (m *Member) promoteWhenCaughtUp(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
		self := m.status()
		for _, mem := range self.Members {
			if mem.ID == m.cfg.ID && mem.Voter {
				m.logger.Info("promoted to voter")
				return
			}
		}
		st, err := fetchStatus(ctx, m.cfg.Join)
		if err != nil {
			m.logger.Debug("promotion: cannot read the cluster's status", "err", err)
			continue
		}
		if self.AppliedIndex == 0 || self.AppliedIndex+promoteMaxLag/2 < st.CommitIndex {
			continue // still catching up
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			"http://"+m.cfg.Join+"/v1/members/"+m.cfg.ID.String()+"/promote", nil)
		if err != nil {
			return
		}
		resp, err := joinHTTP.Do(req)
		if err != nil {
			m.logger.Debug("promotion request failed", "err", err)
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			m.logger.Info("promoted to voter", "reply", string(bytes.TrimSpace(msg)))
			return
		}
		m.logger.Debug("promotion refused; will retry", "status", resp.Status, "reply", string(bytes.TrimSpace(msg)))
	}
}
