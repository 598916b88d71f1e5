package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// Exit codes. Scripts rely on 2 meaning "you called me wrongly" (the usual
// convention of getopt-based tools) as distinct from 1, "the operation failed".
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks an error caused by how the command was invoked (bad flag,
// missing argument) so that main exits with exitUsage instead of exitError.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// quietRedisLog discards go-redis's internal log lines (one per failed dial,
// printed straight to stderr): the CLI reports failures itself, in one line.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func main() {
	// go-redis's logger is process-wide; main owns the process.
	redis.SetLogger(quietRedisLog{})
	mayReexec = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one invocation of the CLI and returns the process exit code.
// Every failure is reported as exactly one line on stderr.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// One line, always: joined errors (several config problems, several
	// unreachable members) are listed on it separated by "; ".
	msg := strings.Join(strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' }), "; ")
	fmt.Fprintf(stderr, "raftkv: %s\n", msg)
	var ue *usageError
	if errors.As(err, &ue) || strings.HasPrefix(msg, "unknown command ") {
		return exitUsage
	}
	return exitError
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "raftkv",
		Short: "A replicated, Redis-compatible key-value store built on Raft",
		Long: `raftkv is a replicated key-value store and cache built on an embeddable Raft
library. It speaks the Redis protocol (RESP), so redis-cli and Redis client
libraries work against any member, and it has an HTTP API for administration.

Data commands (get, set, del, incr, keys, shell, bench) talk RESP to
--endpoints (env RAFTKV_ENDPOINTS). Admin commands (status, members, leader,
snapshot) talk HTTP to --http-endpoints (env RAFTKV_HTTP_ENDPOINTS). Both
default to the ports of 'raftkv dev': RESP 6379-6381, HTTP 8379-8381.

Exit status: 0 on success, 1 when the operation failed (including an
unreachable cluster), 2 when the command line is wrong.`,
		Example: `  raftkv dev                                  # a local 3-member cluster
  raftkv set greeting hello
  raftkv get greeting --endpoints 10.0.0.1:6379,10.0.0.2:6379
  raftkv status --http-endpoints 10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Bad flags are usage errors (exit 2) with one line naming the flag.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%s: %w (see '%s --help')", cmd.CommandPath(), err, cmd.CommandPath())}
	})
	root.AddCommand(newServerCmd())
	addCommands(root)
	for _, c := range root.Commands() {
		markUsage(c)
	}
	return root
}

// markUsage makes positional-argument validation failures usage errors too,
// recursively, so that `raftkv get` (no key) exits 2 like a bad flag does.
func markUsage(c *cobra.Command) {
	if c.Args != nil {
		validate := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := validate(cmd, args); err != nil {
				return &usageError{fmt.Errorf("%s: %w (see '%s --help')", cmd.CommandPath(), err, cmd.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markUsage(sub)
	}
}
