package raft

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

var updateScripts = flag.Bool("update", false, "rewrite the expected output of raft/testdata/*.txt")

// TestScripts runs the protocol scripts in testdata/. Each file opens with
// comment lines saying what it proves, then blocks of
//
//	command args...
//	----
//	expected trace (every message delivered or dropped, every state change)
//
// separated by blank lines. Run with -update to rewrite the expectations
// after a deliberate change, then read the diff.
//
// Commands:
//
//	nodes N [prevote=false] [checkquorum=false]   found a group of voters 1..N
//	campaign ID | propose ID DATA | read ID CTX | transfer ID TO
//	tick ID [K] | tick-all [K]        tick (stabilizing after each tick)
//	isolate ID | partition 1,2 3,4,5 | heal
//	add-learner ID | add-voter ID | remove ID  (proposed on the leader)
//	compact ID                        snapshot node ID at applied and drop its log
//	report-snapshot ID TO ok|fail
//	status ID                         print role, term, commit, last index
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runScript(t, file)
		})
	}
}

type scriptBlock struct {
	cmd, want string
}

func parseScript(t *testing.T, data string) (header string, blocks []scriptBlock) {
	paras := strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n\n")
	for _, p := range paras {
		p = strings.Trim(p, "\n")
		if p == "" {
			continue
		}
		cmd, want, found := strings.Cut(p, "----")
		cmd = strings.TrimSpace(cmd)
		if !found {
			if len(blocks) == 0 && strings.HasPrefix(cmd, "#") {
				header += p + "\n"
				continue
			}
			t.Fatalf("block without ----: %q", p)
		}
		blocks = append(blocks, scriptBlock{cmd: cmd, want: strings.Trim(want, "\n")})
	}
	return header, blocks
}

func runScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	header, blocks := parseScript(t, string(data))
	if !strings.HasPrefix(header, "#") {
		t.Fatalf("%s must open with a comment saying what it proves", file)
	}
	var nw *network
	var out strings.Builder
	out.WriteString(header)
	for _, b := range blocks {
		var lines []string
		trace := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
		nw = runCommand(t, nw, b.cmd, trace)
		got := strings.Join(lines, "\n")
		if got == "" {
			got = "ok"
		}
		fmt.Fprintf(&out, "\n%s\n----\n%s\n", b.cmd, got)
		if !*updateScripts && got != b.want {
			t.Fatalf("%s: %s:\ngot:\n%s\nwant:\n%s", file, b.cmd, got, b.want)
		}
	}
	if *updateScripts {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runCommand(t *testing.T, nw *network, cmd string, trace func(string, ...any)) *network {
	f := strings.Fields(cmd)
	id := func(i int) pb.NodeID {
		if len(f) <= i {
			t.Fatalf("%q: missing argument %d", cmd, i)
		}
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		return pb.NodeID(n)
	}
	count := func(i int) int {
		if len(f) <= i {
			return 1
		}
		return int(id(i))
	}
	ids := func(s string) []pb.NodeID {
		var out []pb.NodeID
		for _, x := range strings.Split(s, ",") {
			n, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				t.Fatalf("%q: %v", cmd, err)
			}
			out = append(out, pb.NodeID(n))
		}
		return out
	}
	if f[0] != "nodes" && nw == nil {
		t.Fatalf("%q before nodes", cmd)
	}
	if nw != nil {
		nw.trace = trace
	}
	switch f[0] {
	case "nodes":
		mod := func(c *Config) {
			for _, opt := range f[2:] {
				switch opt {
				case "prevote=false":
					c.DisablePreVote = true
				case "checkquorum=false":
					c.DisableCheckQuorum = true
				default:
					t.Fatalf("unknown option %q", opt)
				}
			}
		}
		nw = newNetwork(t, int(id(1)), mod)
		nw.trace = trace
	case "campaign":
		if err := nw.nodes[id(1)].rn.Campaign(); err != nil {
			trace("error: %v", err)
		}
		nw.stabilize()
	case "propose":
		if err := nw.nodes[id(1)].rn.Propose([]byte(f[2])); err != nil {
			trace("error: %v", err)
		}
		nw.stabilize()
	case "read":
		nw.nodes[id(1)].rn.ReadIndex([]byte(f[2]))
		nw.stabilize()
	case "transfer":
		nw.nodes[id(1)].rn.TransferLeadership(id(2))
		nw.stabilize()
	case "tick":
		nw.tick(id(1), count(2))
	case "tick-all":
		nw.tickAll(count(1))
	case "isolate":
		nw.isolate(id(1))
	case "partition":
		nw.partition(ids(f[1]), ids(f[2]))
	case "heal":
		nw.heal()
	case "add-learner", "add-voter", "remove":
		typ := map[string]pb.ConfChangeType{"add-learner": pb.ConfChangeAddLearner, "add-voter": pb.ConfChangeAddVoter, "remove": pb.ConfChangeRemove}[f[0]]
		target := id(1)
		if nw.nodes[target] == nil {
			nw.addEmpty(target, nil).rn.r.logger = nw.nodes[1].rn.r.logger
		}
		lead := nw.leader()
		if lead == pb.None {
			t.Fatalf("%q: no leader", cmd)
		}
		if err := nw.nodes[lead].rn.ProposeConfChange(pb.ConfChange{Type: typ, NodeID: target}); err != nil {
			trace("error: %v", err)
		}
		nw.stabilize()
	case "compact":
		tn := nw.nodes[id(1)]
		s := tn.rn.Status()
		if _, err := tn.st.CreateSnapshot(s.Applied, &s.ConfState); err != nil {
			t.Fatal(err)
		}
		if err := tn.st.Compact(s.Applied); err != nil {
			t.Fatal(err)
		}
		trace("%d: compacted through %d", id(1), s.Applied)
	case "report-snapshot":
		nw.nodes[id(1)].rn.ReportSnapshot(id(2), len(f) > 3 && f[3] == "ok")
		nw.stabilize()
	case "status":
		s := nw.status(id(1))
		trace("%d: %s term=%d lead=%d commit=%d last=%d applied=%d voters=%v learners=%v", id(1), s.SoftState.Role,
			s.HardState.Term, s.SoftState.Lead, s.HardState.Commit, s.LastIndex, s.Applied, s.ConfState.Voters, s.ConfState.Learners)
	default:
		t.Fatalf("unknown command %q", cmd)
	}
	return nw
}
