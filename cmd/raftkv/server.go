package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/server"
)

// serverFile is the --config file: the same settings as the flags, with
// the flags' names as keys ("data-dir: /var/lib/raftkv"). Unknown keys are
// rejected so that a typo never silently falls back to a default.
type serverFile struct {
	ID               uint64        `yaml:"id"`
	DataDir          string        `yaml:"data-dir"`
	PeerAddr         string        `yaml:"peer-addr"`
	RedisAddr        string        `yaml:"redis-addr"`
	HTTPAddr         string        `yaml:"http-addr"`
	InitialCluster   string        `yaml:"initial-cluster"`
	InitialToken     string        `yaml:"initial-cluster-token"`
	Join             string        `yaml:"join"`
	MaxValueSize     int           `yaml:"max-value-size"`
	MaxArgs          int           `yaml:"max-args"`
	MaxPipeline      int           `yaml:"max-pipeline"`
	MaxInflightBytes int64         `yaml:"max-inflight-bytes"`
	MaxConns         int           `yaml:"max-conns"`
	StaleReads       bool          `yaml:"stale-reads"`
	RequestTimeout   time.Duration `yaml:"request-timeout"`
	Tick             time.Duration `yaml:"tick"`
	ElectionTicks    int           `yaml:"election-ticks"`
	HeartbeatTicks   int           `yaml:"heartbeat-ticks"`
	SnapshotEvery    uint64        `yaml:"snapshot-every"`
	PeerCert         string        `yaml:"peer-cert"`
	PeerKey          string        `yaml:"peer-key"`
	PeerCA           string        `yaml:"peer-ca"`
	LogLevel         string        `yaml:"log-level"`
	UnsafeNoFsync    bool          `yaml:"unsafe-no-fsync"`
	EnablePprof      bool          `yaml:"enable-pprof"`
	ShutdownTimeout  time.Duration `yaml:"shutdown-timeout"`
	TimerSlack       time.Duration `yaml:"timer-slack"`
	SysmonSlack      time.Duration `yaml:"sysmon-slack"`
}

// serverSettings is what `raftkv server` runs with: the member's Config
// and the settings of the process around it.
type serverSettings struct {
	cfg             server.Config
	level           slog.Level
	shutdownTimeout time.Duration
	timerSlack      time.Duration
	sysmonSlack     time.Duration
}

func newServerCmd() *cobra.Command {
	f := &serverFile{} // flag values land here; readServerFlags reads them back by name
	var configPath string
	var forceNewCluster, acceptDataLoss bool // command line only, never from --config
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run one raftkv member",
		Long: `Run one member of a raftkv cluster: a Raft peer listener, a RESP (Redis
protocol) listener and an HTTP API.

Start a new cluster by giving every founding member the same --initial-cluster;
restart a member with the same --id and --data-dir (--initial-cluster is then
ignored: state comes from the data dir). SIGTERM or SIGINT stops gracefully (a
leader hands leadership over first).

Every setting can also come from --config FILE (YAML or JSON, keys named as the
flags without dashes in front, e.g. "data-dir: /var/lib/raftkv"); flags given on
the command line override the file. An invalid setting is refused with one line
naming it and exit code 2.`,
		Example: `  raftkv server --id 1 --data-dir /var/lib/raftkv/1 \
    --peer-addr 127.0.0.1:7001 --redis-addr 127.0.0.1:6379 --http-addr 127.0.0.1:8001 \
    --initial-cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags, err := readServerFlags(cmd.Flags())
			if err != nil {
				return &usageError{err}
			}
			if forceNewCluster && !acceptDataLoss {
				return &usageError{server.ErrDataLossNotAccepted}
			}
			if acceptDataLoss && !forceNewCluster {
				return &usageError{errors.New("--i-accept-data-loss goes with --force-new-cluster")}
			}
			s, err := resolveServerConfig(cmd, configPath, flags)
			if err != nil {
				return &usageError{err}
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: s.level}))
			cfg := s.cfg
			cfg.Logger = logger
			// Before anything with effects: a re-executed process starts over.
			setTimerSlack(s.timerSlack, logger)
			stopSysmon := setSysmonSlack(s.sysmonSlack, s.timerSlack, logger)
			defer stopSysmon()
			ensureProcs(logger)
			if forceNewCluster {
				if _, err := server.ForceNewCluster(cfg.DataDir, cfg.ID, acceptDataLoss, logger); err != nil {
					if errors.Is(err, server.ErrInvalidDataDir) {
						return &usageError{err}
					}
					return err
				}
			}
			return runServer(cmd, cfg, s.shutdownTimeout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configPath, "config", "", "read settings from this YAML or JSON file; flags override it")
	fl.Uint64Var(&f.ID, "id", 0, "node id, integer >= 1, unique in the cluster")
	fl.StringVar(&f.DataDir, "data-dir", "", "durable state (WAL, snapshots); created if missing")
	fl.StringVar(&f.PeerAddr, "peer-addr", "", "Raft peer listener HOST:PORT; also the address other members dial")
	fl.StringVar(&f.RedisAddr, "redis-addr", "", "RESP (Redis protocol) listener HOST:PORT for clients")
	fl.StringVar(&f.HTTPAddr, "http-addr", "", "HTTP API listener HOST:PORT (/status, /metrics, /v1/...)")
	fl.StringVar(&f.InitialCluster, "initial-cluster", "", "founding members' peer addresses: 1=HOST:PORT,2=HOST:PORT,...; ignored on restart")
	fl.StringVar(&f.InitialToken, "initial-cluster-token", "", "names a new cluster; its id then comes from the token and member ids, not the addresses in --initial-cluster (for members that reach each other at different addresses)")
	fl.StringVar(&f.Join, "join", "", "instead of --initial-cluster: join a running cluster through any member's HTTP address HOST:PORT")
	fl.IntVar(&f.MaxValueSize, "max-value-size", server.DefaultMaxValueBytes, "largest value accepted, in bytes")
	fl.IntVar(&f.MaxArgs, "max-args", server.DefaultMaxArgs, "most arguments accepted in one command")
	fl.IntVar(&f.MaxPipeline, "max-pipeline", server.DefaultMaxPendingPerConn, "most commands of one connection read but not yet answered")
	fl.Int64Var(&f.MaxInflightBytes, "max-inflight-bytes", server.DefaultMaxInflightBytes, "most bytes of writes in flight on this member; past it clients get -TRYAGAIN")
	fl.IntVar(&f.MaxConns, "max-conns", server.DefaultMaxConns, "most client connections")
	fl.BoolVar(&f.StaleReads, "stale-reads", false, "answer reads from local state without a ReadIndex round (faster; a follower may return old data)")
	fl.DurationVar(&f.RequestTimeout, "request-timeout", 0, "bound on one command (default 5 election timeouts)")
	fl.DurationVar(&f.Tick, "tick", server.DefaultTickInterval, "Raft tick interval")
	fl.IntVar(&f.ElectionTicks, "election-ticks", server.DefaultElectionTicks, "election timeout, in ticks")
	fl.IntVar(&f.HeartbeatTicks, "heartbeat-ticks", server.DefaultHeartbeatTicks, "heartbeat interval, in ticks")
	fl.Uint64Var(&f.SnapshotEvery, "snapshot-every", server.DefaultSnapshotEvery, "take a snapshot after this many applied entries")
	fl.StringVar(&f.PeerCert, "peer-cert", "", "TLS certificate for peer traffic (with --peer-key and --peer-ca: mutual TLS)")
	fl.StringVar(&f.PeerKey, "peer-key", "", "TLS private key for peer traffic")
	fl.StringVar(&f.PeerCA, "peer-ca", "", "CA certificate that peers' certificates must chain to")
	fl.StringVar(&f.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.BoolVar(&f.UnsafeNoFsync, "unsafe-no-fsync", false, "do not fsync the WAL (benchmarks only: a power loss may lose acknowledged writes)")
	fl.BoolVar(&f.EnablePprof, "enable-pprof", false, "serve Go runtime profiles at /debug/pprof/ on the HTTP API (for diagnosing CPU and memory use)")
	fl.DurationVar(&f.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful stop may take")
	fl.DurationVar(&f.TimerSlack, "timer-slack", defaultTimerSlack, "Linux timer slack for the process's threads: how late its timers may fire; larger wakes the Go runtime less often (see docs/operations.md); 0 keeps the inherited one")
	fl.DurationVar(&f.SysmonSlack, "sysmon-slack", defaultSysmonSlack, "Linux timer slack for the Go runtime's sysmon thread alone, on top of --timer-slack (needs CAP_SYS_NICE; see docs/operations.md); 0 leaves sysmon at --timer-slack")
	fl.BoolVar(&forceNewCluster, "force-new-cluster", false, "quorum-loss recovery: make this surviving member the only voter of its cluster, from its --data-dir, then serve (needs --i-accept-data-loss; drop both after the first start; see docs/operations.md)")
	fl.BoolVar(&acceptDataLoss, "i-accept-data-loss", false, "with --force-new-cluster: acknowledge that writes this member did not have are lost")
	return cmd
}

// resolveServerConfig merges the config file (if any) with the flags given on
// the command line (which win), and validates the result.
func resolveServerConfig(cmd *cobra.Command, path string, flags serverFile) (serverSettings, error) {
	merged := flags
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return serverSettings{}, fmt.Errorf("--config: %w", err)
		}
		// Start from the flag defaults so that keys the file omits keep them.
		file := flags
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
			return serverSettings{}, fmt.Errorf("--config %s: %s", path, oneLine(err.Error()))
		}
		merged = file
		// Flags explicitly given on the command line override the file.
		cmd.Flags().Visit(func(fl *pflag.Flag) {
			overrideFromFlag(&merged, flags, fl.Name)
		})
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(merged.LogLevel)); err != nil {
		return serverSettings{}, fmt.Errorf("--log-level %q: want debug, info, warn or error", merged.LogLevel)
	}
	if merged.ShutdownTimeout <= 0 {
		return serverSettings{}, fmt.Errorf("--shutdown-timeout must be > 0 (got %v)", merged.ShutdownTimeout)
	}
	peers, err := server.ParseInitialCluster(merged.InitialCluster)
	if err != nil {
		return serverSettings{}, err
	}
	cfg := server.Config{
		ID:                  pb.NodeID(merged.ID),
		DataDir:             merged.DataDir,
		PeerAddr:            merged.PeerAddr,
		RedisAddr:           merged.RedisAddr,
		HTTPAddr:            merged.HTTPAddr,
		InitialCluster:      peers,
		InitialClusterToken: merged.InitialToken,
		Join:                merged.Join,
		MaxValueBytes:       merged.MaxValueSize,
		MaxArgs:             merged.MaxArgs,
		MaxPendingPerConn:   merged.MaxPipeline,
		MaxInflightBytes:    merged.MaxInflightBytes,
		MaxConns:            merged.MaxConns,
		StaleReads:          merged.StaleReads,
		RequestTimeout:      merged.RequestTimeout,
		TickInterval:        merged.Tick,
		ElectionTicks:       merged.ElectionTicks,
		HeartbeatTicks:      merged.HeartbeatTicks,
		SnapshotEvery:       merged.SnapshotEvery,
		NoSync:              merged.UnsafeNoFsync,
		EnablePprof:         merged.EnablePprof,
		PeerCertFile:        merged.PeerCert,
		PeerKeyFile:         merged.PeerKey,
		PeerCAFile:          merged.PeerCA,
	}
	// Flags default to positive values; zero or negative from the command
	// line or file is an explicit, invalid choice, not "use the default".
	var errs []error
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"--max-value-size", int64(merged.MaxValueSize)}, {"--max-args", int64(merged.MaxArgs)},
		{"--max-pipeline", int64(merged.MaxPipeline)}, {"--max-inflight-bytes", merged.MaxInflightBytes},
		{"--max-conns", int64(merged.MaxConns)}, {"--tick", int64(merged.Tick)},
		{"--election-ticks", int64(merged.ElectionTicks)}, {"--heartbeat-ticks", int64(merged.HeartbeatTicks)},
		{"--snapshot-every", int64(merged.SnapshotEvery)},
	} {
		if c.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0", c.name))
		}
	}
	if merged.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("--request-timeout must be >= 0 (got %v)", merged.RequestTimeout))
	}
	if merged.TimerSlack < 0 {
		errs = append(errs, fmt.Errorf("--timer-slack must be >= 0 (got %v)", merged.TimerSlack))
	}
	if merged.SysmonSlack < 0 {
		errs = append(errs, fmt.Errorf("--sysmon-slack must be >= 0 (got %v)", merged.SysmonSlack))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return serverSettings{}, err
	}
	return serverSettings{cfg: cfg, level: level, shutdownTimeout: merged.ShutdownTimeout,
		timerSlack: merged.TimerSlack, sysmonSlack: merged.SysmonSlack}, nil
}

// readServerFlags reads every setting back from the flag set, by the flag
// names (which are the config file's keys).
func readServerFlags(fs *pflag.FlagSet) (serverFile, error) {
	var f serverFile
	v := reflect.ValueOf(&f).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("yaml")
		fv := v.Field(i)
		var err error
		switch fv.Interface().(type) {
		case time.Duration:
			var d time.Duration
			d, err = fs.GetDuration(name)
			fv.Set(reflect.ValueOf(d))
		case uint64:
			var n uint64
			n, err = fs.GetUint64(name)
			fv.SetUint(n)
		case int:
			var n int
			n, err = fs.GetInt(name)
			fv.SetInt(int64(n))
		case int64:
			var n int64
			n, err = fs.GetInt64(name)
			fv.SetInt(n)
		case bool:
			var b bool
			b, err = fs.GetBool(name)
			fv.SetBool(b)
		case string:
			var s string
			s, err = fs.GetString(name)
			fv.SetString(s)
		default:
			err = fmt.Errorf("unsupported setting type %s", fv.Type())
		}
		if err != nil {
			return f, fmt.Errorf("flag --%s: %w", name, err)
		}
	}
	return f, nil
}

// overrideFromFlag copies the field whose yaml key is name (the flag's name)
// from flags into dst.
func overrideFromFlag(dst *serverFile, flags serverFile, name string) {
	dv := reflect.ValueOf(dst).Elem()
	sv := reflect.ValueOf(flags)
	t := dv.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("yaml") == name {
			dv.Field(i).Set(sv.Field(i))
			return
		}
	}
}

// oneLine folds a multi-line parser message into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// runServer starts the member and blocks until the command's context ends
// (main cancels it on SIGTERM or SIGINT) or such a signal arrives, then stops
// it gracefully within --shutdown-timeout.
func runServer(cmd *cobra.Command, cfg server.Config, shutdownTimeout time.Duration) error {
	logger := cfg.Logger
	m, err := server.New(cfg)
	if err != nil {
		return &usageError{err}
	}
	if err := m.Start(); err != nil {
		if errors.Is(err, server.ErrInvalidDataDir) {
			return &usageError{err}
		}
		return err
	}
	a := m.Addrs()
	logger.Info("member started", "id", cfg.ID, "peer_addr", a.Peer, "redis_addr", a.Redis, "http_addr", a.HTTP, "data_dir", cfg.DataDir)
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case <-ctx.Done():
		logger.Info("stopping gracefully")
	case sig := <-sigs:
		logger.Info("stopping gracefully", "signal", sig.String())
	case <-m.Done():
		logger.Error("member stopped on its own", "err", m.Err())
		_ = m.Stop(context.Background())
		return fmt.Errorf("server: member stopped: %w", m.Err())
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := m.Stop(stopCtx); err != nil {
		return fmt.Errorf("server: graceful stop incomplete: %w", err)
	}
	logger.Info("stopped")
	return nil
}
