package chaos

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// opKind names the operations of the workload.
type opKind uint8

const (
	opGet opKind = iota
	opSet
	opAppend
	opIncr
)

func (k opKind) String() string { return [...]string{"get", "set", "append", "incr"}[k] }

// input is one operation as invoked.
type input struct {
	kind  opKind
	key   string
	value string // set/append argument
}

// output is what the operation returned. unknown: no answer, or an answer
// that says the outcome is unknown: the write may or may not have happened.
type output struct {
	unknown bool
	value   string // get: the value ("" for a missing key; the workload never writes "")
	n       int64  // append: new length; incr: new value
}

// kvModel is a per-key register with APPEND and INCR, as Redis strings.
// The state of a partition is the key's value ("" = absent).
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(input).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, in, out any) (bool, any) {
		s, i, o := state.(string), in.(input), out.(output)
		switch i.kind {
		case opGet:
			return o.unknown || o.value == s, s
		case opSet:
			return true, i.value
		case opAppend:
			next := s + i.value
			return o.unknown || o.n == int64(len(next)), next
		case opIncr:
			v := int64(0)
			if s != "" {
				var err error
				if v, err = strconv.ParseInt(s, 10, 64); err != nil {
					return false, s
				}
			}
			v++
			return o.unknown || o.n == v, strconv.FormatInt(v, 10)
		}
		return false, s
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(input), out.(output)
		res := ""
		switch {
		case o.unknown:
			res = "unknown"
		case i.kind == opGet:
			res = fmt.Sprintf("%q", o.value)
		case i.kind == opSet:
			res = "OK"
		default:
			res = strconv.FormatInt(o.n, 10)
		}
		if i.kind == opGet || i.kind == opIncr {
			return fmt.Sprintf("%s(%s) -> %s", i.kind, i.key, res)
		}
		return fmt.Sprintf("%s(%s, %q) -> %s", i.kind, i.key, i.value, res)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

// history records operations from many goroutines.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// writes remembers every append token and incr with its fate, for the
	// durability check.
	acked, unknown map[string]int // key -> count (incr) ; token -> 1 (append)
}

func newHistory() *history {
	return &history{start: time.Now(), acked: map[string]int{}, unknown: map[string]int{}}
}

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

// record adds one finished operation. failed operations (a definite error:
// the write did not happen) are left out, as they constrain nothing.
func (h *history) record(client int, in input, call int64, out output, failed bool) {
	if failed {
		return
	}
	ret := h.now()
	if out.unknown {
		// It may take effect at any point after its call: it never returns.
		ret = 1 << 62
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	if in.kind == opAppend || in.kind == opIncr {
		id := in.value
		if in.kind == opIncr {
			id = in.key
		}
		if out.unknown {
			h.unknown[id]++
		} else {
			h.acked[id]++
		}
	}
}

func (h *history) snapshot() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}
