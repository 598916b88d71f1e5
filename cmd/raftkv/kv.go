package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// withClient runs fn with a RESP client bounded by the command's --timeout.
func withClient(cmd *cobra.Command, f *respFlags, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	return fn(ctx, c)
}

func newGetCmd() *cobra.Command {
	var f respFlags
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of a key",
		Long: `Print the value of KEY (linearizable: it reflects every write acknowledged
before the command started). A missing key prints nothing and exits 1.`,
		Example: "  raftkv get greeting\n  raftkv get greeting --endpoints 10.0.0.1:6379,10.0.0.2:6379",
		Args:    exactArgs(1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, &f, func(ctx context.Context, c *client.Client) error {
				v, err := c.Get(ctx, args[0])
				if errors.Is(err, client.ErrNotFound) {
					return fmt.Errorf("get %q: key not found", args[0])
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), v)
				return nil
			})
		},
	}
	f.register(cmd)
	return cmd
}

func newSetCmd() *cobra.Command {
	var f respFlags
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Set a key to a value, optionally with a time to live",
		Long: `Set KEY to VALUE. The command returns once the write is committed by a
majority of members and applied. With --ttl the key expires after that long.
Put -- before a value that starts with a dash, so it is not read as a flag.`,
		Example: "  raftkv set greeting hello\n  raftkv set session:42 alice --ttl 30m\n  raftkv set offset -- -42",
		Args:    exactArgs(2, "KEY VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < 0 {
				return usagef("--ttl must be >= 0 (got %v)", ttl)
			}
			return withClient(cmd, &f, func(ctx context.Context, c *client.Client) error {
				if err := c.Set(ctx, args[0], args[1], ttl); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "OK")
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire the key after this long (e.g. 90s, 30m); 0 = never")
	return cmd
}

func newDelCmd() *cobra.Command {
	var f respFlags
	cmd := &cobra.Command{
		Use:     "del KEY...",
		Short:   "Delete keys and print how many existed",
		Example: "  raftkv del greeting\n  raftkv del a b c",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, &f, func(ctx context.Context, c *client.Client) error {
				n, err := c.Del(ctx, args...)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), n)
				return nil
			})
		},
	}
	f.register(cmd)
	return cmd
}

func newIncrCmd() *cobra.Command {
	var f respFlags
	var by int64
	cmd := &cobra.Command{
		Use:   "incr KEY",
		Short: "Increment an integer key and print the new value",
		Long: `Increment the integer at KEY (a missing key counts as 0) and print the new
value. If the connection fails after the command was sent, raftkv does not
resend it (it might be applied twice) and reports that the outcome is unknown.`,
		Example: "  raftkv incr visits\n  raftkv incr stock --by -3",
		Args:    exactArgs(1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, &f, func(ctx context.Context, c *client.Client) error {
				n, err := c.IncrBy(ctx, args[0], by)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), n)
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().Int64Var(&by, "by", 1, "increment (may be negative)")
	return cmd
}

func newKeysCmd() *cobra.Command {
	var f respFlags
	cmd := &cobra.Command{
		Use:   "keys [PATTERN]",
		Short: "List keys matching a glob pattern (default: all)",
		Long: `List the keys matching PATTERN (Redis glob syntax: * ? [abc]), one per line.
It scans the whole key space: fine for development, slow on big datasets.`,
		Example: "  raftkv keys\n  raftkv keys 'session:*'",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pattern := "*"
			if len(args) == 1 {
				pattern = args[0]
			}
			return withClient(cmd, &f, func(ctx context.Context, c *client.Client) error {
				keys, err := c.Keys(ctx, pattern)
				if err != nil {
					return err
				}
				for _, k := range keys {
					fmt.Fprintln(cmd.OutOrStdout(), k)
				}
				return nil
			})
		},
	}
	f.register(cmd)
	return cmd
}
