package ui

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

//go:embed static/index.html
var static embed.FS

// Member is a member the page should show, and where its HTTP API listens
// ("" when this member does not know it yet: the member is shown as unknown).
type Member struct {
	ID       uint64
	HTTPAddr string
}

// Config wires the handler to the member serving it.
type Config struct {
	// Self is the id of the member serving the page.
	Self uint64
	// LocalStatus returns this member's GET /status document; it is called
	// instead of an HTTP round trip to itself.
	LocalStatus func() ([]byte, error)
	// Members lists every member of the cluster as this member knows it.
	Members func() []Member
	// Interval between updates pushed to each viewer. Default 200ms.
	Interval time.Duration
	// MaxViewers caps concurrent event streams. Default 64.
	MaxViewers int
	// Client fetches other members' status. Default: 400ms timeout.
	Client *http.Client
	Logger *slog.Logger
}

// Handler serves the page, the cluster document and its event stream.
type Handler struct {
	cfg     Config
	viewers chan struct{}

	mu       sync.Mutex // held while gathering: concurrent viewers share one gather
	cached   []byte
	cachedAt time.Time
}

// New returns a Handler; register its routes with Register.
func New(cfg Config) *Handler {
	if cfg.Interval <= 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 64
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 400 * time.Millisecond}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, viewers: make(chan struct{}, cfg.MaxViewers)}
}

// Register adds GET /, /ui, /v1/cluster and /v1/cluster/events to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui", http.StatusFound)
	})
	mux.HandleFunc("GET /ui", h.page)
	mux.HandleFunc("GET /v1/cluster", h.clusterDoc)
	mux.HandleFunc("GET /v1/cluster/events", h.events)
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

// MemberView is one member in the cluster document.
type MemberView struct {
	ID        uint64          `json:"id"`
	HTTPAddr  string          `json:"http_addr,omitempty"`
	Reachable bool            `json:"reachable"`
	Error     string          `json:"error,omitempty"`
	Status    json.RawMessage `json:"status,omitempty"`
}

// ClusterView is the document behind the page.
type ClusterView struct {
	ObservedBy uint64       `json:"observed_by"`
	TimeMs     int64        `json:"time_ms"`
	Members    []MemberView `json:"members"`
}

// Cluster gathers every member's status now, or returns the copy gathered
// less than half an interval ago.
func (h *Handler) Cluster(ctx context.Context) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cached != nil && time.Since(h.cachedAt) < h.cfg.Interval/2 {
		return h.cached
	}
	members := h.cfg.Members()
	view := ClusterView{ObservedBy: h.cfg.Self, TimeMs: time.Now().UnixMilli(), Members: make([]MemberView, len(members))}
	var wg sync.WaitGroup
	for i, m := range members {
		view.Members[i] = MemberView{ID: m.ID, HTTPAddr: m.HTTPAddr}
		wg.Add(1)
		go func(mv *MemberView) {
			defer wg.Done()
			b, err := h.fetch(ctx, mv.ID, mv.HTTPAddr)
			if err != nil {
				mv.Error = err.Error()
				return
			}
			mv.Reachable, mv.Status = true, b
		}(&view.Members[i])
	}
	wg.Wait()
	b, err := json.Marshal(view)
	if err != nil {
		h.cfg.Logger.Error("ui: encode cluster view", "err", err)
		return []byte("{}")
	}
	h.cached, h.cachedAt = b, time.Now()
	return b
}

func (h *Handler) fetch(ctx context.Context, id uint64, addr string) ([]byte, error) {
	if id == h.cfg.Self {
		return h.cfg.LocalStatus()
	}
	if addr == "" {
		return nil, fmt.Errorf("HTTP address not known yet")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("GET /status: not JSON")
	}
	return b, nil
}

// allowAnyOrigin lets a page loaded from one member keep streaming from
// another after the first one dies: the page follows the cluster, not the
// member that served it. The documents are read-only status.
func allowAnyOrigin(w http.ResponseWriter) { w.Header().Set("Access-Control-Allow-Origin", "*") }

func (h *Handler) clusterDoc(w http.ResponseWriter, r *http.Request) {
	allowAnyOrigin(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(h.Cluster(r.Context()))
}

// events streams the cluster document as Server-Sent Events.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	select {
	case h.viewers <- struct{}{}:
		defer func() { <-h.viewers }()
	default:
		http.Error(w, "too many viewers", http.StatusServiceUnavailable)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	allowAnyOrigin(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	tick := time.NewTicker(h.cfg.Interval)
	defer tick.Stop()
	for {
		if _, err := fmt.Fprintf(w, "data: %s\n\n", h.Cluster(r.Context())); err != nil {
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}
