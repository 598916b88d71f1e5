package proctest

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// LinkMode is what a proxy does to the bytes of one directed link.
type LinkMode struct {
	Down  bool          // refuse and cut every connection
	Delay time.Duration // added to each chunk forwarded
	Loss  float64       // chance per chunk that the connection is cut (its in-flight bytes lost)
}

// link forwards member From's connections to member To's peer listener.
// Raft's transport dials one connection per direction, so a link carries
// exactly the messages From sends to To.
type link struct {
	from, to int
	ln       net.Listener
	target   string

	mu    sync.Mutex
	mode  LinkMode
	conns map[net.Conn]struct{}
	rng   *rand.Rand
	wg    sync.WaitGroup
}

func newLink(from, to int, target string, seed uint64) (*link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &link{from: from, to: to, ln: ln, target: target, conns: map[net.Conn]struct{}{},
		rng: rand.New(rand.NewPCG(seed, uint64(from)<<32|uint64(to)))}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) setMode(m LinkMode) {
	l.mu.Lock()
	l.mode = m
	var cut []net.Conn
	if m.Down {
		for c := range l.conns {
			cut = append(cut, c)
		}
	}
	l.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
}

// chunk decides the fate of one chunk: its delay, and whether to cut.
func (l *link) chunk() (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mode.Down {
		return 0, true
	}
	cut := l.mode.Loss > 0 && l.rng.Float64() < l.mode.Loss
	d := l.mode.Delay
	if d > 0 {
		d += time.Duration(l.rng.Int64N(int64(d)))
	}
	return d, cut
}

func (l *link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mode.Down || l.conns == nil {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *link) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	c.Close()
}

func (l *link) accept() {
	defer l.wg.Done()
	for {
		in, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.track(in) {
			in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", l.target, time.Second)
		if err != nil || !l.track(out) {
			if out != nil {
				out.Close()
			}
			l.untrack(in)
			continue
		}
		l.wg.Add(2)
		go l.pipe(in, out)
		go l.pipe(out, in)
	}
}

// pipe copies src to dst chunk by chunk, applying the link's mode to each.
func (l *link) pipe(src, dst net.Conn) {
	defer l.wg.Done()
	defer l.untrack(src)
	defer l.untrack(dst)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			delay, cut := l.chunk()
			if cut {
				return
			}
			if delay > 0 {
				time.Sleep(delay) // the fault itself: this link is slow
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a cut: the other direction sees it too
		}
	}
}

func (l *link) close() {
	l.ln.Close()
	l.mu.Lock()
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	l.wg.Wait()
}

// Network is the full mesh of links between n members.
type Network struct {
	links map[[2]int]*link // [from, to]
}

func NewNetwork(peerAddrs map[int]string, seed uint64) (*Network, error) {
	n := &Network{links: map[[2]int]*link{}}
	for from := range peerAddrs {
		for to, target := range peerAddrs {
			if from == to {
				continue
			}
			l, err := newLink(from, to, target, seed)
			if err != nil {
				n.Close()
				return nil, err
			}
			n.links[[2]int{from, to}] = l
		}
	}
	return n, nil
}

// AddrFor is the address member from dials to reach member to.
func (n *Network) AddrFor(from, to int) string { return n.links[[2]int{from, to}].addr() }

// Apply sets the mode of every link (from, to) to f(from, to).
func (n *Network) Apply(f func(from, to int) LinkMode) {
	for k, l := range n.links {
		l.setMode(f(k[0], k[1]))
	}
}

// Heal sets every link back to normal.
func (n *Network) Heal() { n.Apply(func(int, int) LinkMode { return LinkMode{} }) }

// Close stops every proxy and cuts their connections.
func (n *Network) Close() {
	for _, l := range n.links {
		l.close()
	}
}
