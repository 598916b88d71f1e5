package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/server"
)

const devMembers = 3

// devPorts lays out a dev cluster's ports from a base port: RESP on
// base..base+2, peers on base+1000.., HTTP on base+2000... The default base
// puts member 1 on Redis's usual port, so redis-cli works without -p.
type devPorts struct{ redis, peer, http [devMembers]int }

func layoutPorts(base int) devPorts {
	var p devPorts
	for i := range devMembers {
		p.redis[i] = base + i
		p.peer[i] = base + 1000 + i
		p.http[i] = base + 2000 + i
	}
	return p
}

type devOptions struct {
	basePort   int
	dataDir    string
	verbose    bool
	noSync     bool
	leaderWait time.Duration
}

func newDevCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local 3-member cluster in this process (Ctrl-C stops it)",
		Long: `Start three members on 127.0.0.1 in one process, with real write-ahead logs
and real TCP between them, wait for a leader, and print how to reach each
member. Data goes to a temporary directory that is removed on exit, unless
--data-dir is given (then it is kept, and a second run resumes the cluster).

Ports, with the default --base-port 6379:
  RESP (redis-cli)  6379 6380 6381
  Raft peers        7379 7380 7381
  HTTP API and UI   8379 8380 8381
These are the client commands' default endpoints. --base-port 0 picks any
free ports instead.`,
		Example: `  raftkv dev
  raftkv dev --base-port 16379
  raftkv dev --data-dir ./devdata      # keep the data across runs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.basePort < 0 || o.basePort+2000+devMembers-1 > 65535 {
				return usagef("dev: --base-port must be 0 or 1..%d (got %d)", 65535-2000-devMembers+1, o.basePort)
			}
			if o.dataDir != "" && o.basePort == 0 {
				// Members record each other's peer addresses in the log; a
				// kept cluster restarted on other ports could not reach itself.
				return usagef("dev: --data-dir needs fixed ports: drop --base-port 0 or give a base port")
			}
			// The members' timer slack, as `raftkv server` gives it
			// (internal/timerslack); first, since it re-executes the binary.
			quiet := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelError}))
			setTimerSlack(defaultTimerSlack, quiet)
			defer setSysmonSlack(defaultSysmonSlack, defaultTimerSlack, quiet)()
			ensureProcs(quiet)
			return runDev(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().IntVar(&o.basePort, "base-port", 6379, "first RESP port; peers use +1000, HTTP +2000; 0 = any free ports")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "", "keep the members' data here (default: a temporary directory removed on exit)")
	cmd.Flags().BoolVar(&o.verbose, "verbose", false, "log the members' activity to stderr")
	cmd.Flags().BoolVar(&o.noSync, "no-sync", false, "skip fsync (faster; a power loss may lose acknowledged writes)")
	cmd.Flags().DurationVar(&o.leaderWait, "leader-timeout", 30*time.Second, "give up if no leader is elected within this long")
	return cmd
}

// runDev runs the dev cluster until ctx is done.
func runDev(ctx context.Context, o devOptions, stdout, stderr io.Writer) (err error) {
	peerAddrs, redisAddrs, httpAddrs, err := devAddrs(o.basePort)
	if err != nil {
		return err
	}

	dir := o.dataDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "raftkv-dev-")
		if err != nil {
			return fmt.Errorf("dev: create temporary data dir: %w", err)
		}
		defer func() {
			if rmErr := os.RemoveAll(dir); rmErr != nil && err == nil {
				err = fmt.Errorf("dev: remove temporary data dir: %w", rmErr)
			}
		}()
	}

	// Members warn about peers they cannot reach yet while the others are
	// starting and stopping: expected noise in a dev cluster, so only errors
	// are shown unless --verbose.
	level := slog.LevelError
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var initial []server.Peer
	for i := range devMembers {
		initial = append(initial, server.Peer{ID: pb.NodeID(i + 1), PeerAddr: peerAddrs[i]})
	}
	var members []*server.Member
	stopAll := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, len(members))
		for i, m := range members {
			wg.Go(func() { errs[i] = m.Stop(ctx) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	for i := range devMembers {
		id := pb.NodeID(i + 1)
		m, err := server.New(server.Config{
			ID:             id,
			DataDir:        filepath.Join(dir, fmt.Sprintf("member-%d", id)),
			PeerAddr:       peerAddrs[i],
			RedisAddr:      redisAddrs[i],
			HTTPAddr:       httpAddrs[i],
			InitialCluster: initial,
			NoSync:         o.noSync,
			Logger:         logger,
		})
		if err == nil {
			err = m.Start()
		}
		if err != nil {
			_ = stopAll()
			return fmt.Errorf("dev: start member %d: %w", id, err)
		}
		members = append(members, m)
	}
	defer func() {
		if stopErr := stopAll(); stopErr != nil && err == nil {
			err = fmt.Errorf("dev: stop: %w", stopErr)
		}
	}()

	var addrs []server.Addrs
	var httpEps []string
	for _, m := range members {
		a := m.Addrs()
		addrs = append(addrs, a)
		httpEps = append(httpEps, a.HTTP)
	}
	admin, err := client.NewAdmin(client.AdminConfig{Endpoints: httpEps, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	view, err := waitForLeader(ctx, admin, o.leaderWait)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while waiting: a clean stop, not a failure
		}
		return err
	}

	fmt.Fprintf(stdout, "raftkv dev: %d members on 127.0.0.1, data in %s", devMembers, dir)
	if o.dataDir == "" {
		fmt.Fprint(stdout, " (removed on exit)")
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tRESP (redis-cli)\tHTTP API\tWEB UI")
	for i, a := range addrs {
		role := "?"
		for _, mv := range view.Members {
			if mv.ID == uint64(i+1) && mv.Status != nil {
				role = mv.Status.Role
			}
		}
		fmt.Fprintf(tw, "%d\t%s\tredis-cli -p %s\thttp://%s\thttp://%s/ui\n", i+1, role, port(a.Redis), a.HTTP, a.HTTP)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var redisEps []string
	for _, a := range addrs {
		redisEps = append(redisEps, a.Redis)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "Try:  redis-cli -p %s set greeting hello\n", port(addrs[0].Redis))
	if strings.Join(redisEps, ",") == defaultEndpoints && strings.Join(httpEps, ",") == defaultHTTPEndpoints {
		fmt.Fprintln(stdout, "      raftkv get greeting")
		fmt.Fprintln(stdout, "      raftkv status")
	} else {
		fmt.Fprintf(stdout, "      export %s=%s %s=%s\n", envEndpoints, strings.Join(redisEps, ","), envHTTPEndpoints, strings.Join(httpEps, ","))
		fmt.Fprintln(stdout, "      raftkv get greeting; raftkv status")
	}
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")

	<-ctx.Done()
	fmt.Fprintln(stdout, "raftkv dev: stopping")
	return nil
}

// devAddrs picks the members' addresses. Fixed ports are probed first so
// that a taken one is reported in one line naming it, before anything starts.
func devAddrs(base int) (peer, redis, http []string, err error) {
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	if base == 0 {
		// The peer addresses must be known up front (they form the initial
		// cluster), so reserve free ports and release them just before
		// starting; RESP and HTTP bind port 0 and report what they got.
		for range devMembers {
			p, err := freePort()
			if err != nil {
				return nil, nil, nil, err
			}
			peer = append(peer, addr(p))
			redis = append(redis, "127.0.0.1:0")
			http = append(http, "127.0.0.1:0")
		}
		return peer, redis, http, nil
	}
	ports := layoutPorts(base)
	for i := range devMembers {
		for _, c := range []struct {
			what string
			port int
		}{{"RESP", ports.redis[i]}, {"peer", ports.peer[i]}, {"HTTP", ports.http[i]}} {
			l, err := net.Listen("tcp", addr(c.port))
			if err != nil {
				return nil, nil, nil, fmt.Errorf("dev: port %d (member %d %s) is not available: %v; choose another --base-port, or --base-port 0 for any free ports",
					c.port, i+1, c.what, rootCause(err))
			}
			l.Close()
		}
		peer = append(peer, addr(ports.peer[i]))
		redis = append(redis, addr(ports.redis[i]))
		http = append(http, addr(ports.http[i]))
	}
	return peer, redis, http, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dev: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func port(hostport string) string {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return p
}

// waitForLeader polls the members' /status until they agree on a leader.
func waitForLeader(ctx context.Context, admin *client.Admin, limit time.Duration) (*client.ClusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		view, err := admin.Cluster(ctx)
		if err == nil && settled(view) {
			return view, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("dev: no leader elected within %v: %w", limit, lastErr)
			}
			return nil, fmt.Errorf("dev: no leader elected within %v", limit)
		case <-tick.C:
		}
	}
}

// settled reports whether view shows exactly one member in the leader role,
// the one the members agree on. Members answer one at a time, so a view
// taken while an election is still settling (on a busy machine a first
// leader may step down) can name a leader no member reports as itself, or
// two members that each think they lead; the table printed from the view
// would then show no leader or two.
func settled(view *client.ClusterView) bool {
	leaders := 0
	for _, mv := range view.Members {
		if mv.Status != nil && mv.Status.Role == "leader" {
			if mv.ID != view.Leader {
				return false
			}
			leaders++
		}
	}
	return leaders == 1 // and it is view.Leader, so view.Leader != 0
}

// rootCause strips the "listen tcp 127.0.0.1:6379:" layers from a listen
// error, leaving e.g. "address already in use".
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
