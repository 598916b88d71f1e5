package sim

import (
	"math/rand/v2"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// NetConfig describes how unreliable the simulated network is. Rates are per
// mille (0..1000) and apply to every message independently.
type NetConfig struct {
	// DropPerMille is the chance a message is lost.
	DropPerMille int
	// DupPerMille is the chance a message is delivered twice.
	DupPerMille int
	// MaxDelay is the largest delay, in ticks, added to a message. Messages
	// become deliverable after their delay and are then delivered in random
	// order, so any MaxDelay > 0 or any queue of two or more reorders.
	MaxDelay int
}

// envelope is a message in flight, with what the network knows about it.
type envelope struct {
	msg       pb.Message
	sender    pb.NodeID // who sent it (a forwarded request keeps its originator in msg.From)
	fromEpoch int       // the sender's incarnation; a crash makes older envelopes undeliverable
	deliverAt int64     // virtual tick from which it may be delivered
	snapChain uint64
}

// network holds messages in flight and the current partition.
type network struct {
	cfg      NetConfig
	rng      *rand.Rand
	inflight []envelope
	// cut[from][to] is set when the link from->to is down (asymmetric).
	cut map[[2]pb.NodeID]bool
	// sent counts messages handed to the network, per type.
	sent map[pb.MessageType]int
	// rejects counts MsgAppResp rejections (log backtracking rounds).
	rejects int
}

func newNetwork(cfg NetConfig, rng *rand.Rand) *network {
	return &network{cfg: cfg, rng: rng, cut: map[[2]pb.NodeID]bool{}, sent: map[pb.MessageType]int{}}
}

func (n *network) linkUp(from, to pb.NodeID) bool { return !n.cut[[2]pb.NodeID{from, to}] }

// send queues e, subject to loss, duplication and delay. It reports whether
// the message was dropped at once (a cut link: the sender would notice).
func (n *network) send(e envelope, now int64) (dropped bool) {
	n.sent[e.msg.Type]++
	if e.msg.Type == pb.MsgAppResp && e.msg.Reject {
		n.rejects++
	}
	if !n.linkUp(e.sender, e.msg.To) {
		return true
	}
	if n.cfg.DropPerMille > 0 && n.rng.IntN(1000) < n.cfg.DropPerMille {
		return true
	}
	copies := 1
	if n.cfg.DupPerMille > 0 && n.rng.IntN(1000) < n.cfg.DupPerMille {
		copies = 2
	}
	for range copies {
		e.deliverAt = now
		if n.cfg.MaxDelay > 0 {
			e.deliverAt += int64(n.rng.IntN(n.cfg.MaxDelay + 1))
		}
		n.inflight = append(n.inflight, e)
	}
	return false
}

// deliverable returns the number of messages that may be delivered at now.
func (n *network) deliverable(now int64) int {
	c := 0
	for i := range n.inflight {
		if n.inflight[i].deliverAt <= now {
			c++
		}
	}
	return c
}

// take removes and returns a random deliverable message.
func (n *network) take(now int64) (envelope, bool) {
	c := n.deliverable(now)
	if c == 0 {
		return envelope{}, false
	}
	pick := n.rng.IntN(c)
	for i := range n.inflight {
		if n.inflight[i].deliverAt > now {
			continue
		}
		if pick == 0 {
			e := n.inflight[i]
			last := len(n.inflight) - 1
			n.inflight[i] = n.inflight[last]
			n.inflight[last] = envelope{}
			n.inflight = n.inflight[:last]
			return e, true
		}
		pick--
	}
	return envelope{}, false
}

// partition cuts every link between nodes of different groups; nodes in no
// group are cut off from everyone.
func (n *network) partition(all []pb.NodeID, groups ...[]pb.NodeID) {
	n.cut = map[[2]pb.NodeID]bool{}
	group := map[pb.NodeID]int{}
	for g, ids := range groups {
		for _, id := range ids {
			group[id] = g + 1
		}
	}
	for _, a := range all {
		for _, b := range all {
			if a != b && (group[a] == 0 || group[a] != group[b]) {
				n.cut[[2]pb.NodeID{a, b}] = true
			}
		}
	}
}

func (n *network) heal() { n.cut = map[[2]pb.NodeID]bool{} }
