package server

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Peer is a founding member: its id and the address other members dial.
type Peer struct {
	ID       pb.NodeID `yaml:"id" json:"id"`
	PeerAddr string    `yaml:"peer_addr" json:"peer_addr"`
}

// Config configures one member. The zero value of every optional field means
// "the default" (see WithDefaults).
type Config struct {
	// ID is this member's id; >= 1 and unique in the cluster.
	ID pb.NodeID
	// DataDir holds the WAL and snapshots; created if missing.
	DataDir string
	// PeerAddr is the Raft peer listener, also the address others dial.
	PeerAddr string
	// RedisAddr is the RESP listener.
	RedisAddr string
	// HTTPAddr is the HTTP API listener.
	HTTPAddr string
	// InitialCluster lists the founding members (including this one). It is
	// used only when DataDir has no state; on restart membership comes from
	// the log.
	InitialCluster []Peer
	// InitialClusterToken, when set, names the cluster instead of the
	// founding members' addresses (see ClusterID). Used only with InitialCluster.
	InitialClusterToken string
	// Join is the HTTP address of a running member to join through, instead
	// of InitialCluster.
	Join string

	// MaxValueBytes caps one value (SET, APPEND result, PUT body). Default 8 MiB.
	MaxValueBytes int
	// MaxArgs caps the arguments of one command (MSET, DEL, MGET...). Default 1,048,576.
	MaxArgs int
	// MaxPendingPerConn caps the commands of one connection that are read but
	// not yet answered (pipeline depth). Default 1024.
	MaxPendingPerConn int
	// MaxInflightBytes caps the bytes of all proposals in flight on this
	// member, across all connections; past it clients get -TRYAGAIN. Default 256 MiB.
	MaxInflightBytes int64
	// MaxConns caps client connections (RESP). Default 10,000.
	MaxConns int
	// StaleReads lets a member answer reads from its local state without a
	// ReadIndex round: faster, but a follower may return old data. Off by default.
	StaleReads bool
	// RequestTimeout bounds one command: past it a read gets -TRYAGAIN and a
	// write whose outcome is not known gets -UNKNOWN. Default: 5 election timeouts.
	RequestTimeout time.Duration

	// TickInterval is the raft tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks. Default 10.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval in ticks. Default 1.
	HeartbeatTicks int
	// SnapshotEvery takes a snapshot after this many applied entries. Default 10,000.
	SnapshotEvery uint64
	// NoSync makes the WAL skip fsync (benchmarks and throwaway dev
	// clusters only: a power loss may lose acknowledged writes).
	NoSync bool
	// EnablePprof serves the Go runtime's profiles at /debug/pprof/ on the
	// HTTP API. Off by default: profiles expose internals and cost CPU while
	// they are taken.
	EnablePprof bool
	// PeerCertFile, PeerKeyFile and PeerCAFile enable mutual TLS on peer
	// traffic; all three or none.
	PeerCertFile string
	PeerKeyFile  string
	PeerCAFile   string

	// Logger receives the member's logs. Nil discards.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxValueBytes     = 8 << 20
	DefaultMaxArgs           = 1 << 20
	DefaultMaxPendingPerConn = 1024
	DefaultMaxInflightBytes  = 256 << 20
	DefaultMaxConns          = 10000
	DefaultTickInterval      = 100 * time.Millisecond
	DefaultElectionTicks     = 10
	DefaultHeartbeatTicks    = 1
	DefaultSnapshotEvery     = 10000
)

// WithDefaults returns a copy of c with every unset optional field filled.
func (c Config) WithDefaults() Config {
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.MaxArgs == 0 {
		c.MaxArgs = DefaultMaxArgs
	}
	if c.MaxPendingPerConn == 0 {
		c.MaxPendingPerConn = DefaultMaxPendingPerConn
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Duration(c.ElectionTicks) * c.TickInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c at once, one line each, each naming
// the setting (as its command-line flag) and the offending value.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("server: config: "+format, args...))
	}
	if c.ID == pb.None {
		bad("--id must be an integer >= 1 (got 0)")
	}
	if c.DataDir == "" {
		bad("--data-dir is required")
	}
	checkAddr := func(flag, addr string, required bool) {
		if addr == "" {
			if required {
				bad("%s is required", flag)
			}
			return
		}
		if err := validateHostPort(addr); err != nil {
			bad("%s %q: %v", flag, addr, err)
		}
	}
	checkAddr("--peer-addr", c.PeerAddr, true)
	checkAddr("--redis-addr", c.RedisAddr, true)
	checkAddr("--http-addr", c.HTTPAddr, true)
	seenAddr := map[string]string{}
	for _, a := range []struct{ flag, addr string }{{"--peer-addr", c.PeerAddr}, {"--redis-addr", c.RedisAddr}, {"--http-addr", c.HTTPAddr}} {
		if a.addr == "" || strings.HasSuffix(a.addr, ":0") {
			continue
		}
		if prev, ok := seenAddr[a.addr]; ok {
			bad("%s and %s are both %q", prev, a.flag, a.addr)
		}
		seenAddr[a.addr] = a.flag
	}

	switch {
	case c.Join != "" && c.InitialClusterToken != "":
		bad("--initial-cluster-token goes with --initial-cluster, not --join")
	case c.Join != "" && len(c.InitialCluster) > 0:
		bad("--join and --initial-cluster are mutually exclusive")
	case c.Join != "":
		checkAddr("--join", c.Join, true)
	case len(c.InitialCluster) == 0:
		bad("--initial-cluster (or --join) is required")
	default:
		ids := map[pb.NodeID]bool{}
		addrs := map[string]pb.NodeID{}
		self := false
		for _, p := range c.InitialCluster {
			if p.ID == pb.None {
				bad("--initial-cluster: member id must be >= 1 (got 0)")
				continue
			}
			if ids[p.ID] {
				bad("--initial-cluster: duplicate member id %d", p.ID)
			}
			ids[p.ID] = true
			if err := validateHostPort(p.PeerAddr); err != nil {
				bad("--initial-cluster: member %d address %q: %v", p.ID, p.PeerAddr, err)
			} else if other, ok := addrs[p.PeerAddr]; ok {
				bad("--initial-cluster: members %d and %d share the address %q", other, p.ID, p.PeerAddr)
			}
			addrs[p.PeerAddr] = p.ID
			if p.ID == c.ID {
				self = true
				if c.PeerAddr != "" && p.PeerAddr != c.PeerAddr {
					bad("--initial-cluster names %q for member %d but --peer-addr is %q", p.PeerAddr, p.ID, c.PeerAddr)
				}
			}
		}
		if c.ID != pb.None && !self {
			bad("--id %d is not in --initial-cluster", c.ID)
		}
	}

	if c.MaxValueBytes < 0 {
		bad("max value size must be >= 0 (got %d)", c.MaxValueBytes)
	}
	if c.MaxArgs < 0 {
		bad("max args must be >= 0 (got %d)", c.MaxArgs)
	}
	if c.MaxPendingPerConn < 0 {
		bad("max pending per connection must be >= 0 (got %d)", c.MaxPendingPerConn)
	}
	if c.MaxInflightBytes < 0 {
		bad("max inflight bytes must be >= 0 (got %d)", c.MaxInflightBytes)
	}
	if c.MaxConns < 0 {
		bad("max connections must be >= 0 (got %d)", c.MaxConns)
	}
	if c.RequestTimeout < 0 {
		bad("request timeout must be >= 0 (got %v)", c.RequestTimeout)
	}
	if c.TickInterval < 0 {
		bad("tick interval must be >= 0 (got %v)", c.TickInterval)
	}
	if c.ElectionTicks < 0 || c.HeartbeatTicks < 0 {
		bad("election and heartbeat ticks must be >= 0 (got %d and %d)", c.ElectionTicks, c.HeartbeatTicks)
	}
	d := c.WithDefaults()
	if d.ElectionTicks <= d.HeartbeatTicks {
		bad("election ticks (%d) must be greater than heartbeat ticks (%d)", d.ElectionTicks, d.HeartbeatTicks)
	}
	tls := 0
	for _, f := range []string{c.PeerCertFile, c.PeerKeyFile, c.PeerCAFile} {
		if f != "" {
			tls++
		}
	}
	if tls != 0 && tls != 3 {
		bad("peer TLS needs all of --peer-cert, --peer-key and --peer-ca (got %d of 3)", tls)
	}
	return errors.Join(errs...)
}

// validateHostPort checks that addr is HOST:PORT with a numeric port in 0..65535.
func validateHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want HOST:PORT")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number in 0..65535", port)
	}
	return nil
}

// ParseInitialCluster parses "1=HOST:PORT,2=HOST:PORT". It reports syntax
// errors; duplicate ids and addresses are left to Config.Validate, which
// reports them together with every other problem.
func ParseInitialCluster(s string) ([]Peer, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var peers []Peer
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		idStr, addr, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("server: --initial-cluster: %q is not ID=HOST:PORT", item)
		}
		id, err := strconv.ParseUint(strings.TrimSpace(idStr), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("server: --initial-cluster: %q: id %q is not an integer >= 1", item, idStr)
		}
		peers = append(peers, Peer{ID: pb.NodeID(id), PeerAddr: strings.TrimSpace(addr)})
	}
	return peers, nil
}

// ClusterID derives the cluster's identity from its founding members: the
// same --initial-cluster on every member gives the same id (order does not
// matter), and the WAL and transport refuse another cluster's data and peers.
//
// With a token (--initial-cluster-token, as in etcd) the id is derived from
// the token and the member ids only, not the addresses: members may then
// list each other at addresses that differ by vantage point (a proxy, NAT, a
// DNS name), and two clusters on the same addresses stay apart by token.
func ClusterID(token string, peers []Peer) uint64 {
	sorted := append([]Peer(nil), peers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	h := sha256.New()
	if token != "" {
		fmt.Fprintf(h, "token=%s\n", token)
	}
	for _, p := range sorted {
		if token != "" {
			fmt.Fprintf(h, "%d\n", p.ID)
		} else {
			fmt.Fprintf(h, "%d=%s\n", p.ID, p.PeerAddr)
		}
	}
	sum := h.Sum(nil)
	id := binary.BigEndian.Uint64(sum[:8])
	if id == 0 {
		id = 1 // zero means "unknown" to the WAL and transport
	}
	return id
}
