package chaos

import (
	"github.com/raftkv/raftkv/internal/proctest"
	"net"
	"sort"

	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// workload drives concurrent clients, each bound to one member, as users
// would: a Redis client with no retries of its own (a retried write would be a
// second write that the history could not see).
type workload struct {
	c          *proctest.Cluster
	h          *history
	clients    int
	regKeys    []string // SET and GET
	appendKeys []string // APPEND and GET only, so every appended token must survive
	incrKeys   []string // INCR and GET
	seq        atomic.Uint64
	ops        atomic.Int64
	start      time.Time

	mu   sync.Mutex
	used map[string]bool // every key name an operation touched
}

// epochLength is how long one generation of key names is used. Rotating the
// names bounds each key's history, which keeps porcupine's per-key search
// short (its cost grows steeply with a partition's length and concurrency).
const epochLength = 4 * time.Second

// key names a key of the given base in the current generation and remembers it.
func (w *workload) key(base string) string {
	k := fmt.Sprintf("%s.%d", base, int(time.Since(w.start)/epochLength))
	w.mu.Lock()
	w.used[k] = true
	w.mu.Unlock()
	return k
}

func newWorkload(c *proctest.Cluster, h *history, clients int) *workload {
	w := &workload{c: c, h: h, clients: clients, start: time.Now(), used: map[string]bool{}}
	for i := 0; i < 4; i++ {
		w.regKeys = append(w.regKeys, fmt.Sprintf("r%d", i))
	}
	for i := 0; i < 4; i++ {
		w.appendKeys = append(w.appendKeys, fmt.Sprintf("a%d", i))
	}
	for i := 0; i < 2; i++ {
		w.incrKeys = append(w.incrKeys, fmt.Sprintf("n%d", i))
	}
	return w
}

func init() {
	// The workload dials members that are down on purpose; go-redis would
	// log every refused dial.
	redis.SetLogger(quietLogger{})
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func newRedis(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second, PoolSize: 1,
		Protocol: 2, DisableIdentity: true,
	})
}

// classify turns a reply error into the operation's fate: failed (definitely
// not done), unknown, or nil. -CLUSTERDOWN and -TRYAGAIN promise the command
// was not executed (CONTRACT.md); anything else might have been.
func classify(err error) (failed, unknown bool) {
	if err == nil || errors.Is(err, redis.Nil) {
		return false, false
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "CLUSTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN") {
		return true, false
	}
	// A connection that was never established carried no command.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true, false
	}
	return false, true
}

func (w *workload) run(ctx context.Context, seed uint64) {
	var wg sync.WaitGroup
	for i := 0; i < w.clients; i++ {
		wg.Add(1)
		go func(client int) {
			defer wg.Done()
			m := w.c.Members[client%len(w.c.Members)]
			rdb := newRedis(m.RedisAddr)
			defer rdb.Close()
			rng := rand.New(rand.NewPCG(seed, uint64(client)))
			for ctx.Err() == nil {
				w.one(ctx, client, rdb, rng)
			}
		}(i)
	}
	wg.Wait()
}

// one performs one random operation and records it.
func (w *workload) one(ctx context.Context, client int, rdb *redis.Client, rng *rand.Rand) {
	var in input
	switch p := rng.IntN(100); {
	case p < 15:
		in = input{kind: opIncr, key: w.key(w.incrKeys[rng.IntN(len(w.incrKeys))])}
	case p < 50:
		in = input{kind: opGet, key: w.key(w.pick(rng))}
	case p < 75:
		in = input{kind: opAppend, key: w.key(w.appendKeys[rng.IntN(len(w.appendKeys))]), value: fmt.Sprintf("%d.%d,", client, w.seq.Add(1))}
	default:
		in = input{kind: opSet, key: w.key(w.regKeys[rng.IntN(len(w.regKeys))]), value: fmt.Sprintf("s%d.%d,", client, w.seq.Add(1))}
	}
	call := w.h.now()
	opCtx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var out output
	var err error
	switch in.kind {
	case opGet:
		out.value, err = rdb.Get(opCtx, in.key).Result()
	case opSet:
		err = rdb.Set(opCtx, in.key, in.value, 0).Err()
	case opAppend:
		out.n, err = rdb.Append(opCtx, in.key, in.value).Result()
	case opIncr:
		out.n, err = rdb.Incr(opCtx, in.key).Result()
	}
	failed, unknown := classify(err)
	if in.kind == opGet && unknown {
		failed = true // a read with no answer constrains nothing
	}
	out.unknown = unknown
	if errors.Is(err, redis.Nil) {
		out.value = ""
	}
	w.h.record(client, in, call, out, failed)
	w.ops.Add(1)
	if failed || unknown {
		// Back off a little so a down member is not hammered; the client stays bound to it.
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(20+rng.IntN(80)) * time.Millisecond):
		}
	}
}

// pick returns any key of the workload.
func (w *workload) pick(rng *rand.Rand) string {
	switch rng.IntN(3) {
	case 0:
		return w.regKeys[rng.IntN(len(w.regKeys))]
	case 1:
		return w.appendKeys[rng.IntN(len(w.appendKeys))]
	}
	return w.incrKeys[rng.IntN(len(w.incrKeys))]
}

// usedKeys lists every key name the workload touched, sorted, with its kind.
func (w *workload) usedKeys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.used))
	for k := range w.used {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// isKind reports whether key is a generation of one of the bases.
func isKind(key string, bases []string) bool {
	for _, b := range bases {
		if strings.HasPrefix(key, b+".") {
			return true
		}
	}
	return false
}
