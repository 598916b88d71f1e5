package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors returned by Client; match them with errors.Is.
var (
	// ErrNotFound: GET of a key that does not exist (the RESP nil reply).
	ErrNotFound = errors.New("client: key not found")
	// ErrUnknownOutcome: a write was sent but no answer came back (connection
	// lost, timeout, or the member answered -UNKNOWN). It may or may not have
	// been applied; the client does not resend it.
	ErrUnknownOutcome = errors.New("client: outcome unknown (the write may or may not have been applied)")
	// ErrUnavailable: every attempt failed with a retryable error (members
	// unreachable, no leader, no quorum).
	ErrUnavailable = errors.New("client: cluster unavailable")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client: closed")
)

// ReplyError is an error reply from a member (for example "WRONGTYPE ..." or
// "ERR value is not an integer or out of range"). It is final: the command
// was executed (or refused) and retrying elsewhere would give the same answer.
type ReplyError struct {
	// Endpoint is the member that answered.
	Endpoint string
	// Msg is the reply without the leading '-'.
	Msg string
}

func (e *ReplyError) Error() string { return e.Msg }

// Code is the first word of the reply ("ERR", "WRONGTYPE", "TRYAGAIN"...).
func (e *ReplyError) Code() string {
	code, _, _ := strings.Cut(e.Msg, " ")
	return code
}

// Config configures a Client. Zero values mean the defaults noted.
type Config struct {
	// Endpoints are the members' RESP addresses (HOST:PORT). At least one.
	Endpoints []string
	// DialTimeout bounds connecting to one member. Default 2s.
	DialTimeout time.Duration
	// CommandTimeout bounds one attempt on one member (write and reply).
	// It must exceed the server's request timeout, or slow but successful
	// writes turn into ErrUnknownOutcome. Default 10s.
	CommandTimeout time.Duration
	// MaxAttempts bounds the attempts of one call across all endpoints.
	// Default 3 rounds over the endpoints, at least 5.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the pause between attempts after a
	// -TRYAGAIN/-CLUSTERDOWN or after every endpoint failed once; it doubles
	// each time. Defaults 50ms and 1s.
	MinBackoff, MaxBackoff time.Duration
	// PoolSize is the number of connections kept per endpoint. Default 10.
	PoolSize int
	// Logger receives retry decisions at debug level. Nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 10 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = max(3*len(c.Endpoints), 5)
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 50 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = time.Second
	}
	if c.PoolSize == 0 {
		c.PoolSize = 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("client: config: no endpoints"))
	}
	for _, ep := range c.Endpoints {
		if err := checkHostPort(ep); err != nil {
			errs = append(errs, fmt.Errorf("client: config: endpoint %q: %w", ep, err))
		}
	}
	if c.DialTimeout < 0 || c.CommandTimeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 {
		errs = append(errs, errors.New("client: config: timeouts and backoffs must be >= 0"))
	}
	if c.MaxAttempts < 0 || c.PoolSize < 0 {
		errs = append(errs, errors.New("client: config: MaxAttempts and PoolSize must be >= 0"))
	}
	return errors.Join(errs...)
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want HOST:PORT")
	}
	if host == "" {
		return errors.New("empty host")
	}
	var n int
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n <= 0 || n > 65535 || fmt.Sprint(n) != port {
		return fmt.Errorf("port %q is not a number in 1..65535", port)
	}
	return nil
}

// Client is a leader-agnostic RESP client of a raftkv cluster. It is safe for
// concurrent use.
type Client struct {
	cfg   Config
	conns []*redis.Client // one pool per endpoint, same order as cfg.Endpoints

	mu     sync.Mutex
	cur    int // index of the endpoint that answered last
	closed bool
}

// New returns a client; it connects lazily, on the first command.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{cfg: cfg}
	for _, ep := range cfg.Endpoints {
		c.conns = append(c.conns, redis.NewClient(&redis.Options{
			Addr:     ep,
			Protocol: 2,
			// The retry policy is ours (it knows which commands are safe to
			// resend); go-redis must not resend anything on its own.
			MaxRetries:            -1,
			DialTimeout:           cfg.DialTimeout,
			ReadTimeout:           cfg.CommandTimeout,
			WriteTimeout:          cfg.CommandTimeout,
			ContextTimeoutEnabled: true,
			PoolSize:              cfg.PoolSize,
			DisableIdentity:       true,
			// One dial per attempt: moving to the next endpoint beats redialing a dead one.
			DialerRetries:      1,
			DialerRetryTimeout: time.Millisecond,
		}))
	}
	return c, nil
}

// Close closes every connection. Calls after Close return ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, rc := range c.conns {
		if err := rc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Endpoints returns the configured endpoints.
func (c *Client) Endpoints() []string { return append([]string(nil), c.cfg.Endpoints...) }

// Get returns the value of key, or an error matching ErrNotFound.
func (c *Client) Get(ctx context.Context, key string) (string, error) {
	v, err := c.Do(ctx, "GET", key)
	if err != nil {
		return "", err
	}
	if v == nil {
		return "", fmt.Errorf("client: GET %q: %w", key, ErrNotFound)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("client: GET %q: unexpected reply %T", key, v)
	}
	return s, nil
}

// Set sets key to value; ttl > 0 makes it expire after ttl (millisecond
// precision), ttl == 0 means no expiry.
func (c *Client) Set(ctx context.Context, key, value string, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("client: SET %q: negative ttl %v", key, ttl)
	}
	args := []string{"SET", key, value}
	if ttl > 0 {
		ms := ttl.Milliseconds()
		if ms == 0 {
			ms = 1
		}
		args = append(args, "PX", fmt.Sprint(ms))
	}
	_, err := c.Do(ctx, args...)
	return err
}

// Del deletes keys and returns how many existed.
func (c *Client) Del(ctx context.Context, keys ...string) (int64, error) {
	return c.doInt(ctx, append([]string{"DEL"}, keys...)...)
}

// Incr increments the integer at key by one and returns the new value.
func (c *Client) Incr(ctx context.Context, key string) (int64, error) {
	return c.doInt(ctx, "INCR", key)
}

// IncrBy increments the integer at key by delta and returns the new value.
func (c *Client) IncrBy(ctx context.Context, key string, delta int64) (int64, error) {
	return c.doInt(ctx, "INCRBY", key, fmt.Sprint(delta))
}

// Keys returns the keys matching a glob pattern ("*" for all).
func (c *Client) Keys(ctx context.Context, pattern string) ([]string, error) {
	v, err := c.Do(ctx, "KEYS", pattern)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("client: KEYS: unexpected reply %T", v)
	}
	keys := make([]string, 0, len(arr))
	for _, k := range arr {
		s, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("client: KEYS: unexpected element %T", k)
		}
		keys = append(keys, s)
	}
	return keys, nil
}

// Ping checks that some member answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Do(ctx, "PING")
	return err
}

func (c *Client) doInt(ctx context.Context, args ...string) (int64, error) {
	v, err := c.Do(ctx, args...)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("client: %s: unexpected reply %T", strings.ToUpper(args[0]), v)
	}
	return n, nil
}

// Do sends one command and returns its reply: string for bulk and simple
// strings, int64 for integers, []any for arrays, nil for the nil reply. An
// error reply is a *ReplyError. Retries follow the package rules: commands
// that only read are resent after any transport failure; others only when
// they provably were not executed.
func (c *Client) Do(ctx context.Context, args ...string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("client: empty command")
	}
	name := strings.ToUpper(args[0])
	readOnly := IsReadOnly(args)
	anyArgs := make([]any, len(args))
	for i, a := range args {
		anyArgs[i] = a
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	start := c.cur
	c.mu.Unlock()

	n := len(c.conns)
	backoff := c.cfg.MinBackoff
	var lastErr error
	for attempt := 0; attempt < c.cfg.MaxAttempts; attempt++ {
		i := (start + attempt) % n
		ep := c.cfg.Endpoints[i]
		cmd := redis.NewCmd(ctx, anyArgs...)
		_ = c.conns[i].Process(ctx, cmd)
		val, err := cmd.Result()
		if err == nil || errors.Is(err, redis.Nil) {
			c.mu.Lock()
			c.cur = i
			c.mu.Unlock()
			if err != nil {
				return nil, nil
			}
			return val, nil
		}
		kind := classify(err)
		// An answer (even a refusal) is what happened, deadline or not; only
		// a command cut off without an answer has an unknown outcome.
		if ctxErr := ctx.Err(); ctxErr != nil && kind != kindFinal {
			if readOnly || kind == kindNotSent || kind == kindTryAgain {
				return nil, fmt.Errorf("client: %s: %w", name, ctxErr)
			}
			return nil, fmt.Errorf("client: %s on %s: %w: %w", name, ep, ErrUnknownOutcome, ctxErr)
		}
		switch kind {
		case kindFinal:
			if errors.Is(err, redis.ErrClosed) {
				return nil, ErrClosed
			}
			var re redis.Error
			if errors.As(err, &re) {
				return nil, &ReplyError{Endpoint: ep, Msg: re.Error()}
			}
			return nil, fmt.Errorf("client: %s on %s: %w", name, ep, err)
		case kindUnknown:
			if !readOnly {
				return nil, fmt.Errorf("client: %s on %s: %w: %w", name, ep, ErrUnknownOutcome, err)
			}
		case kindNotSent, kindTryAgain:
		}
		lastErr = err
		if !strings.Contains(err.Error(), ep) {
			lastErr = fmt.Errorf("%s: %w", ep, err)
		}
		c.cfg.Logger.Debug("retrying", "cmd", name, "endpoint", ep, "attempt", attempt+1, "err", err)

		// Pause when the whole cluster said "not now" or after a full round
		// of failures; moving on to an untried member needs no pause.
		if kind == kindTryAgain || (attempt+1)%n == 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, &wrapped{
					msg:  fmt.Sprintf("client: %s: %v (last error: %v)", name, ctx.Err(), lastErr),
					errs: []error{ctx.Err(), lastErr},
				}
			case <-t.C:
			}
			backoff = min(2*backoff, c.cfg.MaxBackoff)
		}
	}
	return nil, &wrapped{
		msg:  fmt.Sprintf("client: %s: cluster unavailable after %d attempts: %v", name, c.cfg.MaxAttempts, lastErr),
		errs: []error{ErrUnavailable, lastErr},
	}
}

// wrapped is an error with its own message that still matches the errors it
// wraps (to avoid "client: GET: client: cluster unavailable" stutter).
type wrapped struct {
	msg  string
	errs []error
}

func (w *wrapped) Error() string   { return w.msg }
func (w *wrapped) Unwrap() []error { return w.errs }

type errKind int

const (
	kindFinal    errKind = iota // an answer: do not retry
	kindNotSent                 // the command never reached a member
	kindTryAgain                // the member refused it without executing it
	kindUnknown                 // sent, no answer: outcome unknown
)

func classify(err error) errKind {
	if errors.Is(err, redis.ErrClosed) {
		return kindFinal
	}
	var re redis.Error
	if errors.As(err, &re) {
		code, _, _ := strings.Cut(re.Error(), " ")
		switch code {
		case "TRYAGAIN", "CLUSTERDOWN", "LOADING", "BUSY":
			return kindTryAgain
		case "UNKNOWN":
			return kindUnknown
		}
		return kindFinal
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return kindNotSent
	}
	if errors.Is(err, redis.ErrPoolTimeout) {
		return kindNotSent
	}
	return kindUnknown
}

// readOnlyCommands never change data: resending them after a lost answer is safe.
var readOnlyCommands = map[string]bool{
	"GET": true, "MGET": true, "EXISTS": true, "STRLEN": true, "TTL": true, "PTTL": true,
	"TYPE": true, "KEYS": true, "SCAN": true, "DBSIZE": true, "PING": true, "ECHO": true,
	"INFO": true, "COMMAND": true, "TIME": true,
}

// IsReadOnly reports whether the command (name first) only reads, and so may
// be resent when its answer was lost.
func IsReadOnly(args []string) bool {
	if len(args) == 0 {
		return false
	}
	return readOnlyCommands[strings.ToUpper(args[0])]
}
