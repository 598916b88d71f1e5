package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// withAdmin runs fn with an HTTP admin client bounded by --timeout.
func withAdmin(cmd *cobra.Command, f *httpFlags, fn func(ctx context.Context, a *client.Admin) error) error {
	a, err := f.admin()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	return fn(ctx, a)
}

// errNoLeader makes `raftkv status` exit non-zero after printing the table.
var errNoLeader = errors.New("status: the cluster has no leader (no quorum, or an election is in progress)")

func newStatusCmd() *cobra.Command {
	var f httpFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every member: role, term, commit, applied, lag, health",
		Long: `Ask each member's HTTP API for its status and print one row per member of the
cluster's configuration. Lag is how many entries a member's applied index trails
the leader's commit index. Exits 1 if no reachable member knows a leader.

A member that did not answer is listed from the configuration with the role
"unreachable" (its known HTTP address did not answer) or "unknown" (no HTTP
address of it is known: pass every member's in --http-endpoints); endpoints
that did not answer are listed below the table.`,
		Example: "  raftkv status\n  raftkv status --http-endpoints 10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080\n  raftkv status --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, &f, func(ctx context.Context, a *client.Admin) error {
				view, err := a.Cluster(ctx)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if asJSON {
					if err := writeStatusJSON(out, view); err != nil {
						return err
					}
				} else {
					tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tPEER ADDRESS\tHTTP ADDRESS\tROLE\tTERM\tCOMMIT\tAPPLIED\tLAG\tHEALTHY")
					for _, m := range view.Members {
						if m.Status == nil {
							role := "unreachable"
							if !m.Asked {
								role = "unknown" // its HTTP address is unknown: pass it in --http-endpoints
							}
							fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t-\t-\t-\t-\tno\n", m.ID, dash(m.PeerAddr), dash(m.HTTPAddr), role)
							continue
						}
						st := m.Status
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", m.ID, dash(m.PeerAddr), dash(m.HTTPAddr),
							st.Role, st.Term, st.CommitIndex, st.AppliedIndex, m.Lag, yesNo(m.Healthy))
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					for _, u := range view.Unanswered {
						fmt.Fprintf(out, "no answer from %s: %v\n", u.Endpoint, u.Err)
					}
				}
				if view.Leader == 0 {
					return errNoLeader
				}
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func writeStatusJSON(out interface{ Write([]byte) (int, error) }, view *client.ClusterView) error {
	type row struct {
		ID       uint64         `json:"id"`
		PeerAddr string         `json:"peer_addr"`
		HTTPAddr string         `json:"http_addr,omitempty"`
		Voter    bool           `json:"voter"`
		Status   *client.Status `json:"status,omitempty"`
		Error    string         `json:"error,omitempty"`
		Lag      uint64         `json:"lag"`
		Healthy  bool           `json:"healthy"`
	}
	type unanswered struct {
		Endpoint string `json:"endpoint"`
		Error    string `json:"error"`
	}
	doc := struct {
		Leader     uint64       `json:"leader"`
		Term       uint64       `json:"term"`
		Members    []row        `json:"members"`
		Unanswered []unanswered `json:"unanswered,omitempty"`
	}{Leader: view.Leader, Term: view.Term, Members: []row{}}
	for _, u := range view.Unanswered {
		doc.Unanswered = append(doc.Unanswered, unanswered{Endpoint: u.Endpoint, Error: u.Err.Error()})
	}
	for _, m := range view.Members {
		r := row{ID: m.ID, PeerAddr: m.PeerAddr, HTTPAddr: m.HTTPAddr, Voter: m.Voter, Status: m.Status, Lag: m.Lag, Healthy: m.Healthy}
		if m.Err != nil {
			r.Error = m.Err.Error()
		}
		doc.Members = append(doc.Members, r)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("member id %q is not an integer >= 1", s)
	}
	return id, nil
}

func newMembersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List, add, remove and promote cluster members",
		Long: `Manage the cluster's membership through any member's HTTP API. New members
join as learners (they receive the log but do not vote) and become voters once
promoted, so a slow new member never costs the cluster its quorum.`,
		Example: `  raftkv members list
  raftkv members add 4 10.0.0.4:7000
  raftkv members promote 4
  raftkv members remove 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("members: missing subcommand: list, add, remove or promote (see 'raftkv members --help')")
		},
	}

	var listF httpFlags
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the members of the cluster's configuration",
		Example: "  raftkv members list --http-endpoints 127.0.0.1:8379",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, &listF, func(ctx context.Context, a *client.Admin) error {
				ms, err := a.Members(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPEER ADDRESS\tKIND")
				for _, m := range ms {
					kind := "learner"
					if m.Voter {
						kind = "voter"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\n", m.ID, dash(m.PeerAddr), kind)
				}
				return tw.Flush()
			})
		},
	}
	listF.register(list)

	var addF httpFlags
	var addHTTP, addRedis string
	add := &cobra.Command{
		Use:   "add ID PEER_ADDR",
		Short: "Add a member (as a learner) with its Raft peer address",
		Long: `Add member ID, reachable by the others at PEER_ADDR, as a learner. Then start
it with 'raftkv server --id ID --peer-addr PEER_ADDR --join HTTP_ADDR ...' and
promote it with 'raftkv members promote ID' once it has caught up.`,
		Example: "  raftkv members add 4 10.0.0.4:7000 --http-addr 10.0.0.4:8080 --redis-addr 10.0.0.4:6379",
		Args:    exactArgs(2, "ID PEER_ADDR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, &addF, func(ctx context.Context, a *client.Admin) error {
				if err := a.AddMember(ctx, client.NewMember{ID: id, PeerAddr: args[1], HTTPAddr: addHTTP, RedisAddr: addRedis}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "added member %d (%s) as a learner\n", id, args[1])
				return nil
			})
		},
	}
	addF.register(add)
	add.Flags().StringVar(&addHTTP, "http-addr", "", "the new member's HTTP API address (recorded so that status can reach it)")
	add.Flags().StringVar(&addRedis, "redis-addr", "", "the new member's RESP address (recorded for clients)")

	var rmF httpFlags
	remove := &cobra.Command{
		Use:     "remove ID",
		Short:   "Remove a member from the cluster",
		Example: "  raftkv members remove 2",
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, &rmF, func(ctx context.Context, a *client.Admin) error {
				if err := a.RemoveMember(ctx, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed member %d\n", id)
				return nil
			})
		},
	}
	rmF.register(remove)

	var prF httpFlags
	promote := &cobra.Command{
		Use:     "promote ID",
		Short:   "Turn a learner into a voting member",
		Example: "  raftkv members promote 4",
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, &prF, func(ctx context.Context, a *client.Admin) error {
				if err := a.PromoteMember(ctx, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "promoted member %d to voter\n", id)
				return nil
			})
		},
	}
	prF.register(promote)

	cmd.AddCommand(list, add, remove, promote)
	return cmd
}

func newLeaderCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "leader",
		Short:   "Leadership operations",
		Example: "  raftkv leader transfer --to 2",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("leader: missing subcommand: transfer (see 'raftkv leader --help')")
		},
	}
	var f httpFlags
	var to uint64
	transfer := &cobra.Command{
		Use:   "transfer",
		Short: "Hand leadership to another member",
		Long: `Ask the leader to hand leadership over: to member --to, or without --to to the
most caught-up voter. Useful before maintenance on the leader's machine.`,
		Example: "  raftkv leader transfer\n  raftkv leader transfer --to 3",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, &f, func(ctx context.Context, a *client.Admin) error {
				res, err := a.TransferLeader(ctx, to)
				if err != nil {
					return err
				}
				if res.Leader != 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "leader is now member %d (term %d)\n", res.Leader, res.Term)
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), "leadership transferred")
				}
				return nil
			})
		},
	}
	f.register(transfer)
	transfer.Flags().Uint64Var(&to, "to", 0, "member id to hand leadership to (default: the most caught-up voter)")
	cmd.AddCommand(transfer)
	return cmd
}

func newSnapshotCmd() *cobra.Command {
	var f httpFlags
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Make a member take a snapshot now",
		Long: `Ask the first reachable member in --http-endpoints to snapshot its state now
(compacting its log). The snapshot lives in that member's --data-dir; see
docs/operations.md for backups.`,
		Example: "  raftkv snapshot --http-endpoints 127.0.0.1:8379",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, &f, func(ctx context.Context, a *client.Admin) error {
				res, err := a.Snapshot(ctx)
				if err != nil {
					return err
				}
				if res.Index != 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "snapshot taken at index %d (term %d)\n", res.Index, res.Term)
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), "snapshot taken")
				}
				return nil
			})
		},
	}
	f.register(cmd)
	return cmd
}
