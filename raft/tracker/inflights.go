package tracker

import pb "github.com/raftkv/raftkv/raft/raftpb"

// Inflights is the pipeline window towards one follower: the last index of
// each MsgApp sent and not yet acknowledged, oldest first, in a ring buffer.
// When it is full the leader stops sending to that follower until an
// acknowledgement frees a slot, which bounds both the messages queued in the
// transport and the leader's memory for a slow follower.
type Inflights struct {
	start  int
	count  int
	buffer []pb.Index // grows up to size lazily: most followers never fill it
	size   int
}

// NewInflights returns a window of at most size messages.
func NewInflights(size int) *Inflights {
	return &Inflights{size: size}
}

// Add records a MsgApp whose last entry is index. Indexes must be added in
// increasing order; Add on a full window is a broken invariant of the caller.
func (in *Inflights) Add(index pb.Index) {
	if in.Full() {
		panic("tracker: Add on a full in-flight window")
	}
	next := in.start + in.count
	if next >= in.size {
		next -= in.size
	}
	if next >= len(in.buffer) {
		in.grow()
	}
	in.buffer[next] = index
	in.count++
}

func (in *Inflights) grow() {
	n := 2 * len(in.buffer)
	if n == 0 {
		n = 1
	}
	if n > in.size {
		n = in.size
	}
	b := make([]pb.Index, n)
	copy(b, in.buffer)
	in.buffer = b
}

// FreeLE frees every message whose last index is <= to: the follower has
// acknowledged them (acknowledgements are cumulative).
func (in *Inflights) FreeLE(to pb.Index) {
	if in.count == 0 || to < in.buffer[in.start] {
		return
	}
	idx := in.start
	i := 0
	for ; i < in.count; i++ {
		if to < in.buffer[idx] {
			break
		}
		idx++
		if idx >= in.size {
			idx -= in.size
		}
	}
	in.count -= i
	in.start = idx
	if in.count == 0 {
		in.start = 0
	}
}

// Full reports whether no more messages may be sent.
func (in *Inflights) Full() bool { return in.count >= in.size }

// Count returns the number of messages in flight.
func (in *Inflights) Count() int { return in.count }

// Reset empties the window.
func (in *Inflights) Reset() {
	in.count = 0
	in.start = 0
}

// FreeFirstOne frees the oldest message in flight.
func (in *Inflights) FreeFirstOne() {
	if in.count > 0 {
		in.FreeLE(in.buffer[in.start])
	}
}
