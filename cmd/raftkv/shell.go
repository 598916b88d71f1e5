package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chzyer/readline"
	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// shellRedisCommands are the RESP commands offered by tab completion (the
// contract's command list).
var shellRedisCommands = []string{
	"APPEND", "CLIENT", "COMMAND", "DBSIZE", "DECR", "DECRBY", "DEL", "ECHO", "EXISTS", "EXPIRE",
	"FLUSHALL", "FLUSHDB", "GET", "GETDEL", "GETSET", "INCR", "INCRBY", "INFO", "KEYS", "MGET",
	"MSET", "PERSIST", "PEXPIRE", "PING", "PTTL", "SCAN", "SET", "SETNX", "STRLEN", "TTL",
	"TYPE", "UNLINK",
}

// shellAdminCommands run the raftkv command of the same name, with the
// shell's endpoints.
var shellAdminCommands = map[string]bool{"status": true, "members": true, "leader": true, "snapshot": true}

func newShellCmd() *cobra.Command {
	var rf respFlags
	var hf httpFlags
	var historyFile string
	cmd := &cobra.Command{
		Use:   "shell",
		Short: "Interactive shell: Redis commands plus status, members, leader, snapshot",
		Long: `An interactive shell on the cluster. Type Redis commands (SET k v, GET k,
INCR n, KEYS *, ...) or the admin commands status, members list|add|remove|promote,
leader transfer [--to ID] and snapshot; 'help' lists them, 'exit' leaves.
Tab completes command names; history is kept in --history.

With stdin not a terminal (a pipe or file), it runs one command per line with
no prompt, prints the replies, and exits 1 if any command failed.`,
		Example: `  raftkv shell
  printf 'SET a 1\nINCR a\nGET a\n' | raftkv shell`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			sh := &shell{client: c, resp: &rf, http: &hf, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}
			in := cmd.InOrStdin()
			if f, ok := in.(*os.File); ok && readline.IsTerminal(int(f.Fd())) {
				return sh.interactive(cmd.Context(), historyFile)
			}
			return sh.batch(cmd.Context(), in)
		},
	}
	rf.register(cmd)
	hf.registerEndpoints(cmd)
	home, _ := os.UserHomeDir()
	defHistory := ""
	if home != "" {
		defHistory = filepath.Join(home, ".raftkv_history")
	}
	cmd.Flags().StringVar(&historyFile, "history", defHistory, "history file (empty: no history kept)")
	return cmd
}

type shell struct {
	client      *client.Client
	resp        *respFlags
	http        *httpFlags
	out, errOut io.Writer
}

// completer offers every shell command (and the admin subcommands).
func (sh *shell) completer() *readline.PrefixCompleter {
	var items []readline.PrefixCompleterInterface
	for _, c := range shellRedisCommands {
		items = append(items, readline.PcItem(c), readline.PcItem(strings.ToLower(c)))
	}
	items = append(items,
		readline.PcItem("status"),
		readline.PcItem("members", readline.PcItem("list"), readline.PcItem("add"), readline.PcItem("remove"), readline.PcItem("promote")),
		readline.PcItem("leader", readline.PcItem("transfer", readline.PcItem("--to"))),
		readline.PcItem("snapshot"),
		readline.PcItem("help"), readline.PcItem("exit"), readline.PcItem("quit"),
	)
	return readline.NewPrefixCompleter(items...)
}

func (sh *shell) interactive(ctx context.Context, historyFile string) error {
	rl, err := readline.NewEx(&readline.Config{
		Prompt:            "raftkv> ",
		HistoryFile:       historyFile,
		AutoComplete:      sh.completer(),
		InterruptPrompt:   "^C",
		EOFPrompt:         "exit",
		HistorySearchFold: true,
	})
	if err != nil {
		return fmt.Errorf("shell: %w", err)
	}
	defer rl.Close()
	fmt.Fprintln(sh.out, "Connected to", strings.Join(sh.client.Endpoints(), ","), "- 'help' for commands, 'exit' to leave.")
	for {
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			if line == "" {
				return nil
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("shell: %w", err)
		}
		if quit, _ := sh.exec(ctx, line); quit {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (sh *shell) batch(ctx context.Context, in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var failed, total int
	for sc.Scan() {
		quit, err := sh.exec(ctx, sc.Text())
		if err != nil {
			failed++
		}
		if quit {
			break
		}
		if strings.TrimSpace(sc.Text()) != "" {
			total++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("shell: read input: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("shell: %d of %d commands failed", failed, total)
	}
	return nil
}

// exec runs one line and prints its result; quit reports "exit"/"quit".
func (sh *shell) exec(ctx context.Context, line string) (quit bool, err error) {
	args, err := splitLine(line)
	if err != nil {
		fmt.Fprintf(sh.out, "(error) %v\n", err)
		return false, err
	}
	if len(args) == 0 {
		return false, nil
	}
	switch strings.ToLower(args[0]) {
	case "exit", "quit":
		return true, nil
	case "help", "?":
		sh.help()
		return false, nil
	}
	if shellAdminCommands[strings.ToLower(args[0])] {
		return false, sh.admin(ctx, args)
	}
	cctx, cancel := context.WithTimeout(ctx, sh.resp.timeout)
	defer cancel()
	v, err := sh.client.Do(cctx, args...)
	if err != nil {
		fmt.Fprintf(sh.out, "(error) %v\n", err)
		return false, err
	}
	writeReply(sh.out, v, "")
	return false, nil
}

// admin runs an admin command through the command tree, with this shell's
// HTTP endpoints and output.
func (sh *shell) admin(ctx context.Context, args []string) error {
	root := newRootCmd()
	full := append([]string{strings.ToLower(args[0])}, args[1:]...)
	hasEndpoints := false
	for _, a := range args {
		if a == "--http-endpoints" || strings.HasPrefix(a, "--http-endpoints=") {
			hasEndpoints = true
		}
	}
	// Only a command that has the flag gets it: "members" alone or a typo
	// ("members lst") should say what is wrong, not "unknown flag".
	target, _, findErr := root.Find(full)
	if !hasEndpoints && findErr == nil && target.Flags().Lookup("http-endpoints") != nil {
		full = append(full, "--http-endpoints", sh.http.endpoints)
	}
	root.SetArgs(full)
	root.SetOut(sh.out)
	root.SetErr(sh.out)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(sh.out, "(error) %v\n", err)
	}
	return err
}

func (sh *shell) help() {
	fmt.Fprintln(sh.out, `Redis commands (sent to the cluster as typed):
  `+strings.Join(shellRedisCommands, " ")+`
Admin commands (HTTP, same as the raftkv commands of the same name):
  status | members list|add ID ADDR|remove ID|promote ID | leader transfer [--to ID] | snapshot
Shell: help, exit (or quit, Ctrl-D). Quote arguments with spaces: SET k "a b".`)
}

// writeReply prints a reply the way redis-cli does.
func writeReply(w io.Writer, v any, indent string) {
	switch v := v.(type) {
	case nil:
		fmt.Fprintln(w, "(nil)")
	case int64:
		fmt.Fprintf(w, "(integer) %d\n", v)
	case string:
		if v == "OK" || v == "PONG" {
			fmt.Fprintln(w, v)
		} else {
			fmt.Fprintln(w, strconv.Quote(v))
		}
	case []any:
		if len(v) == 0 {
			fmt.Fprintln(w, "(empty array)")
			return
		}
		width := len(strconv.Itoa(len(v)))
		for i, e := range v {
			prefix := fmt.Sprintf("%*d) ", width, i+1)
			if i > 0 {
				fmt.Fprint(w, indent)
			}
			fmt.Fprint(w, prefix)
			writeReply(w, e, indent+strings.Repeat(" ", len(prefix)))
		}
	default:
		fmt.Fprintf(w, "%v\n", v)
	}
}

// splitLine splits a command line into words, honouring "double" (with
// backslash escapes) and 'single' quotes.
func splitLine(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '"' || ch == '\'':
			inWord = true
			quote := ch
			closed := false
			for i++; i < len(line); i++ {
				c := line[i]
				if c == quote {
					closed = true
					break
				}
				if c == '\\' && quote == '"' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						c = '\n'
					case 't':
						c = '\t'
					case 'r':
						c = '\r'
					default:
						c = line[i]
					}
				}
				cur.WriteByte(c)
			}
			if !closed {
				return nil, errors.New("unbalanced quotes")
			}
		default:
			inWord = true
			cur.WriteByte(ch)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
