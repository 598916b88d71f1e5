package proctest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Links is the network between members that a test can break: the in-tree
// TCP proxies (Network) or one Linux network namespace per member (Netns).
type Links interface {
	// Apply sets the mode of every directed link (from, to) to f(from, to).
	Apply(f func(from, to int) LinkMode)
	// Heal sets every link back to normal.
	Heal()
	// Close undoes everything the network set up.
	Close()
}

// Netns gives each member its own network stack: a namespace with a veth
// pair into a bridge in the test's namespace, and an address in
// 198.18.0.0/15, the range set aside for network test setups (RFC 2544),
// which exists only inside these namespaces. Links are cut, and packets
// dropped at random, with iptables rules inside the receiving member's
// namespace, so the kernel's real TCP sees the loss. Delay needs netem,
// which not every kernel has: a LinkMode's Delay is ignored here.
type Netns struct {
	t      testing.TB
	run    string // short id in every name, so concurrent runs never collide
	subnet int    // third octet: 198.18.<subnet>.<member>
	bridge string
	ns     map[int]string
	mu     sync.Mutex
	rules  map[int][]string // per member: the iptables rules in force (to delete on Heal)
}

// netnsCount makes every Netns of this process distinct.
var netnsCount atomic.Uint64

// NetnsAvailable reports why namespaces cannot be used here, or "" if they can.
func NetnsAvailable() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found (apt-get install iproute2 iptables)"
		}
	}
	name := fmt.Sprintf("rkvprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "ip netns add failed: " + strings.TrimSpace(string(out))
	}
	exec.Command("ip", "netns", "del", name).Run()
	return ""
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// memberIP is member id's address; BridgeIP is the test's own.
func (n *Netns) memberIP(id int) string { return fmt.Sprintf("198.18.%d.%d", n.subnet, id) }

// NewNetns creates a namespace per member id 1..members and the bridge.
func NewNetns(t testing.TB, members int, seed uint64) (*Netns, error) {
	k := netnsCount.Add(1)
	r := rand.New(rand.NewPCG(seed, uint64(os.Getpid())<<8|k))
	// Interface names are at most 15 bytes: rkv + 5 + h + id.
	n := &Netns{t: t, run: fmt.Sprintf("%03x%02x", os.Getpid()&0xfff, k&0xff), subnet: 1 + r.IntN(250),
		ns: map[int]string{}, rules: map[int][]string{}}
	n.bridge = "rkvbr" + n.run
	steps := [][]string{
		{"ip", "link", "add", n.bridge, "type", "bridge"},
		{"ip", "addr", "add", fmt.Sprintf("198.18.%d.254/24", n.subnet), "dev", n.bridge},
		{"ip", "link", "set", n.bridge, "up"},
		// Docker sets the host's FORWARD policy to DROP, and bridged frames
		// traverse it when br_netfilter is loaded: let this bridge's own
		// traffic through (and nothing else).
		{"iptables", "-I", "FORWARD", "-i", n.bridge, "-o", n.bridge, "-j", "ACCEPT"},
	}
	for id := 1; id <= members; id++ {
		ns := fmt.Sprintf("rkv%s-%d", n.run, id)
		n.ns[id] = ns
		host, peer := fmt.Sprintf("rkv%sh%d", n.run, id), fmt.Sprintf("rkv%sp%d", n.run, id)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
			[]string{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"ip", "link", "set", peer, "netns", ns},
			[]string{"ip", "link", "set", host, "master", n.bridge},
			[]string{"ip", "link", "set", host, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "addr", "add", n.memberIP(id) + "/24", "dev", peer},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"},
		)
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// Exec returns the command line that runs argv inside member id's namespace.
func (n *Netns) Exec(id int, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.ns[id]}, argv...)
}

// Apply replaces every member's rules: for each link from->to that is down
// or lossy, a rule in to's namespace drops (all, or a random share of) the
// packets arriving from from.
func (n *Netns) Apply(f func(from, to int) LinkMode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flush()
	for to, ns := range n.ns {
		for from := range n.ns {
			if from == to {
				continue
			}
			m := f(from, to)
			var rule []string
			switch {
			case m.Down:
				rule = []string{"-s", n.memberIP(from), "-j", "DROP"}
			case m.Loss > 0:
				rule = []string{"-s", n.memberIP(from), "-m", "statistic", "--mode", "random",
					"--probability", fmt.Sprintf("%.4f", m.Loss), "-j", "DROP"}
			default:
				continue
			}
			if err := sh(append([]string{"ip", "netns", "exec", ns, "iptables", "-A", "INPUT"}, rule...)...); err != nil {
				n.t.Errorf("proctest: netns: %v", err)
			}
			n.rules[to] = append(n.rules[to], strings.Join(rule, " "))
		}
	}
}

// flush removes every rule Apply added. Called with mu held.
func (n *Netns) flush() {
	for to := range n.rules {
		if err := sh("ip", "netns", "exec", n.ns[to], "iptables", "-F", "INPUT"); err != nil {
			n.t.Errorf("proctest: netns: %v", err)
		}
	}
	n.rules = map[int][]string{}
}

// Heal removes every rule.
func (n *Netns) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flush()
}

// Close deletes the namespaces (and with them the veth pairs) and the bridge.
func (n *Netns) Close() {
	for id, ns := range n.ns {
		sh("ip", "link", "del", fmt.Sprintf("rkv%sh%d", n.run, id)) // takes its peer with it
		sh("ip", "netns", "del", ns)
	}
	sh("iptables", "-D", "FORWARD", "-i", n.bridge, "-o", n.bridge, "-j", "ACCEPT")
	sh("ip", "link", "del", n.bridge)
}

// NewNetnsCluster is NewCluster with one network namespace per member:
// members listen on their own addresses, dial each other directly, and the
// test reaches them through the bridge. It skips the test when namespaces
// cannot be made (not root, no iproute2/iptables).
func NewNetnsCluster(t testing.TB, members int, dir string, seed uint64, extra ...string) *Cluster {
	if why := NetnsAvailable(); why != "" {
		t.Skipf("network namespaces unavailable (%s): use NewCluster's proxies", why)
	}
	nn, err := NewNetns(t, members, seed)
	if err != nil {
		t.Fatalf("proctest: netns: %v", err)
	}
	c := &Cluster{t: t, bin: BuildBinary(t), dir: dir, extra: extra, Net: nn, netns: nn}
	var ic []string
	for id := 1; id <= members; id++ {
		ip := nn.memberIP(id)
		m := &Member{ID: id, PeerAddr: ip + ":7000", RedisAddr: ip + ":6379", HTTPAddr: ip + ":8000",
			DataDir: filepath.Join(dir, fmt.Sprintf("m%d", id)), LogPath: filepath.Join(dir, fmt.Sprintf("m%d.log", id))}
		c.Members = append(c.Members, m)
		ic = append(ic, fmt.Sprintf("%d=%s", id, m.PeerAddr))
	}
	for _, m := range c.Members {
		m.Args = append([]string{"server", "--id", fmt.Sprint(m.ID), "--data-dir", m.DataDir,
			"--peer-addr", m.PeerAddr, "--redis-addr", m.RedisAddr, "--http-addr", m.HTTPAddr,
			"--initial-cluster", strings.Join(ic, ",")}, extra...)
	}
	return c
}
