package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// The defaults point at `raftkv dev` with its default --base-port, whose first
// member also sits on Redis's usual port: a client command run next to a dev
// cluster (or a single member on 6379) works without flags.
const (
	defaultEndpoints     = "127.0.0.1:6379,127.0.0.1:6380,127.0.0.1:6381"
	defaultHTTPEndpoints = "127.0.0.1:8379,127.0.0.1:8380,127.0.0.1:8381"
	envEndpoints         = "RAFTKV_ENDPOINTS"
	envHTTPEndpoints     = "RAFTKV_HTTP_ENDPOINTS"
)

// respFlags are the flags of commands that talk RESP to the cluster.
type respFlags struct {
	endpoints string
	timeout   time.Duration
}

func (f *respFlags) register(cmd *cobra.Command) {
	def := defaultEndpoints
	if v := os.Getenv(envEndpoints); v != "" {
		def = v
	}
	cmd.Flags().StringVar(&f.endpoints, "endpoints", def,
		"members' RESP addresses, HOST:PORT,... (env "+envEndpoints+")")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Second, "give up on the command after this long")
}

func (f *respFlags) client() (*client.Client, error) {
	eps, err := splitEndpoints("--endpoints", f.endpoints)
	if err != nil {
		return nil, err
	}
	if f.timeout <= 0 {
		return nil, usagef("--timeout must be > 0 (got %v)", f.timeout)
	}
	c, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		return nil, &usageError{err}
	}
	return c, nil
}

// httpFlags are the flags of commands that talk to the members' HTTP admin API.
type httpFlags struct {
	endpoints string
	timeout   time.Duration
}

func (f *httpFlags) register(cmd *cobra.Command) {
	f.registerEndpoints(cmd)
	cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Second, "give up on the command after this long")
}

// registerEndpoints registers --http-endpoints alone, for commands that also
// speak RESP and so already have --timeout.
func (f *httpFlags) registerEndpoints(cmd *cobra.Command) {
	def := defaultHTTPEndpoints
	if v := os.Getenv(envHTTPEndpoints); v != "" {
		def = v
	}
	cmd.Flags().StringVar(&f.endpoints, "http-endpoints", def,
		"members' HTTP API addresses, HOST:PORT,... (env "+envHTTPEndpoints+")")
}

func (f *httpFlags) admin() (*client.Admin, error) {
	eps, err := splitEndpoints("--http-endpoints", f.endpoints)
	if err != nil {
		return nil, err
	}
	if f.timeout <= 0 {
		return nil, usagef("--timeout must be > 0 (got %v)", f.timeout)
	}
	a, err := client.NewAdmin(client.AdminConfig{Endpoints: eps, Timeout: min(f.timeout, 5*time.Second)})
	if err != nil {
		return nil, &usageError{err}
	}
	return a, nil
}

func splitEndpoints(flag, s string) ([]string, error) {
	var eps []string
	for _, ep := range strings.Split(s, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 {
		return nil, usagef("%s is empty", flag)
	}
	return eps, nil
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("want %d argument(s) %s, got %d", n, names, len(args))
		}
		return nil
	}
}
