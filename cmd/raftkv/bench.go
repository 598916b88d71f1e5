package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/chzyer/readline"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

type benchOptions struct {
	endpoints []string
	clients   int
	duration  time.Duration
	valueSize int
	readRatio float64
	keySpace  int
	pipeline  int
	asJSON    bool
	seed      uint64
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	var rf respFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generator: throughput and a latency percentile table",
		Long: `Run --clients concurrent connections (spread over --endpoints) for --duration,
each sending --pipeline commands per round trip: GET with probability
--read-ratio, else SET of a --value-size byte value, on keys drawn uniformly
from --key-space keys. Shows a live progress line on a terminal and ends with
throughput and a latency percentile table (HdrHistogram, per command; a
command's latency is its pipeline's round trip). --json prints the result as
JSON. Writes go through Raft: this measures the replicated write path.`,
		Example: `  raftkv bench
  raftkv bench --clients 100 --duration 30s --value-size 1024 --read-ratio 0.9
  raftkv bench --pipeline 16 --json > result.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := splitEndpoints("--endpoints", rf.endpoints)
			if err != nil {
				return err
			}
			o.endpoints = eps
			if err := o.validate(); err != nil {
				return err
			}
			progress := io.Discard
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && readline.IsTerminal(int(f.Fd())) && !o.asJSON {
				progress = f
			}
			res, err := runBench(cmd.Context(), o, progress)
			if err != nil {
				return err
			}
			if o.asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else if err := res.writeText(cmd.OutOrStdout()); err != nil {
				return err
			}
			if res.Ops == 0 {
				return fmt.Errorf("bench: no command succeeded (first error: %s)", res.FirstError)
			}
			return nil
		},
	}
	rf.register(cmd)
	cmd.Flags().IntVar(&o.clients, "clients", 50, "concurrent connections")
	cmd.Flags().DurationVar(&o.duration, "duration", 10*time.Second, "how long to run")
	cmd.Flags().IntVar(&o.valueSize, "value-size", 100, "bytes per SET value")
	cmd.Flags().Float64Var(&o.readRatio, "read-ratio", 0.5, "fraction of commands that are GETs, 0..1")
	cmd.Flags().IntVar(&o.keySpace, "key-space", 10000, "number of distinct keys")
	cmd.Flags().IntVar(&o.pipeline, "pipeline", 1, "commands per round trip")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the result as JSON")
	cmd.Flags().Uint64Var(&o.seed, "seed", 0, "random seed for key and command choice (0: time-based)")
	return cmd
}

func (o benchOptions) validate() error {
	var errs []error
	if o.clients < 1 {
		errs = append(errs, fmt.Errorf("--clients must be >= 1 (got %d)", o.clients))
	}
	if o.duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration must be > 0 (got %v)", o.duration))
	}
	if o.valueSize < 0 {
		errs = append(errs, fmt.Errorf("--value-size must be >= 0 (got %d)", o.valueSize))
	}
	if !(o.readRatio >= 0 && o.readRatio <= 1) {
		errs = append(errs, fmt.Errorf("--read-ratio must be within 0..1 (got %v)", o.readRatio))
	}
	if o.keySpace < 1 {
		errs = append(errs, fmt.Errorf("--key-space must be >= 1 (got %d)", o.keySpace))
	}
	if o.pipeline < 1 {
		errs = append(errs, fmt.Errorf("--pipeline must be >= 1 (got %d)", o.pipeline))
	}
	if len(errs) > 0 {
		return &usageError{fmt.Errorf("bench: %w", errors.Join(errs...))}
	}
	return nil
}

// benchResult is the outcome of a run; its JSON form is --json's output.
type benchResult struct {
	Clients    int                `json:"clients"`
	Pipeline   int                `json:"pipeline"`
	ValueSize  int                `json:"value_size"`
	ReadRatio  float64            `json:"read_ratio"`
	KeySpace   int                `json:"key_space"`
	Endpoints  []string           `json:"endpoints"`
	Seconds    float64            `json:"seconds"`
	Ops        int64              `json:"ops"`
	Reads      int64              `json:"reads"`
	Writes     int64              `json:"writes"`
	Errors     int64              `json:"errors"`
	OpsPerSec  float64            `json:"ops_per_sec"`
	FirstError string             `json:"first_error,omitempty"`
	LatencyUS  map[string]latency `json:"latency_us"` // "all", "read", "write"
}

// latency holds percentiles in microseconds.
type latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p99_9"`
	P9999 int64   `json:"p99_99"`
	Max   int64   `json:"max"`
}

func summarize(h *hdrhistogram.Histogram) latency {
	return latency{
		Count: h.TotalCount(), Mean: h.Mean(),
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), P9999: h.ValueAtQuantile(99.99), Max: h.Max(),
	}
}

func newHist() *hdrhistogram.Histogram {
	// 1µs to 1 minute, 3 significant digits.
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
}

// benchWorker is one client connection's state; only its goroutine touches it
// until the run ends.
type benchWorker struct {
	rdb          *redis.Client
	rng          *rand.Rand
	reads, write *hdrhistogram.Histogram
	firstErr     error
}

func runBench(ctx context.Context, o benchOptions, progress io.Writer) (*benchResult, error) {
	seed := o.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	value := make([]byte, o.valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	workers := make([]*benchWorker, o.clients)
	for i := range workers {
		workers[i] = &benchWorker{
			rdb: redis.NewClient(&redis.Options{
				Addr: o.endpoints[i%len(o.endpoints)], Protocol: 2, DisableIdentity: true,
				MaxRetries: -1, PoolSize: 1, DialTimeout: 2 * time.Second,
				ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
				DialerRetries: 1,
			}),
			rng:   rand.New(rand.NewPCG(seed, uint64(i))),
			reads: newHist(), write: newHist(),
		}
	}
	defer func() {
		for _, w := range workers {
			w.rdb.Close()
		}
	}()

	var ops, reads, writes, errCount atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	start := time.Now()

	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-runCtx.Done():
				fmt.Fprint(progress, "\r\033[K")
				return
			case <-tick.C:
				n := ops.Load()
				fmt.Fprintf(progress, "\r\033[K%5.0fs  %d ops  %d ops/s  %d errors",
					time.Since(start).Seconds(), n, n-last, errCount.Load())
				last = n
			}
		}
	}()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			cmds := make([]*redis.Cmd, o.pipeline)
			isRead := make([]bool, o.pipeline)
			for runCtx.Err() == nil {
				pipe := w.rdb.Pipeline()
				for j := range cmds {
					key := "bench:" + strconv.Itoa(w.rng.IntN(o.keySpace))
					isRead[j] = w.rng.Float64() < o.readRatio
					if isRead[j] {
						cmds[j] = redis.NewCmd(runCtx, "GET", key)
					} else {
						cmds[j] = redis.NewCmd(runCtx, "SET", key, value)
					}
					_ = pipe.Process(runCtx, cmds[j])
				}
				t0 := time.Now()
				_, _ = pipe.Exec(runCtx)
				us := max(time.Since(t0).Microseconds(), 1)
				if runCtx.Err() != nil {
					return // cut off by the end of the run: neither success nor failure
				}
				for j, c := range cmds {
					if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
						errCount.Add(1)
						if w.firstErr == nil {
							w.firstErr = err
						}
						continue
					}
					ops.Add(1)
					if isRead[j] {
						reads.Add(1)
						_ = w.reads.RecordValue(us)
					} else {
						writes.Add(1)
						_ = w.write.RecordValue(us)
					}
				}
				if w.firstErr != nil && ops.Load() == 0 && errCount.Load() > int64(10*o.clients) {
					// Nothing works (cluster unreachable): stop early.
					cancel()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cancel()
	<-progressDone

	all, rd, wr := newHist(), newHist(), newHist()
	res := &benchResult{
		Clients: o.clients, Pipeline: o.pipeline, ValueSize: o.valueSize, ReadRatio: o.readRatio,
		KeySpace: o.keySpace, Endpoints: o.endpoints, Seconds: elapsed.Seconds(),
		Ops: ops.Load(), Reads: reads.Load(), Writes: writes.Load(), Errors: errCount.Load(),
	}
	for _, w := range workers {
		rd.Merge(w.reads)
		wr.Merge(w.write)
		all.Merge(w.reads)
		all.Merge(w.write)
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
	}
	res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	res.LatencyUS = map[string]latency{"all": summarize(all), "read": summarize(rd), "write": summarize(wr)}
	if ctx.Err() != nil && res.Ops == 0 {
		return nil, fmt.Errorf("bench: interrupted: %w", ctx.Err())
	}
	return res, nil
}

func (r *benchResult) writeText(w io.Writer) error {
	fmt.Fprintf(w, "%d clients, pipeline %d, %d-byte values, %.0f%% reads, %d keys, %.1fs\n",
		r.Clients, r.Pipeline, r.ValueSize, 100*r.ReadRatio, r.KeySpace, r.Seconds)
	fmt.Fprintf(w, "throughput: %.0f ops/s (%d ops: %d reads, %d writes; %d errors)\n",
		r.OpsPerSec, r.Ops, r.Reads, r.Writes, r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	fmt.Fprintln(w, "latency (ms):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tall\tread\twrite\t")
	ms := func(us int64) string { return strconv.FormatFloat(float64(us)/1000, 'f', 3, 64) }
	row := func(name string, get func(latency) int64) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name,
			ms(get(r.LatencyUS["all"])), ms(get(r.LatencyUS["read"])), ms(get(r.LatencyUS["write"])))
	}
	row("p50", func(l latency) int64 { return l.P50 })
	row("p90", func(l latency) int64 { return l.P90 })
	row("p99", func(l latency) int64 { return l.P99 })
	row("p99.9", func(l latency) int64 { return l.P999 })
	row("p99.99", func(l latency) int64 { return l.P9999 })
	row("max", func(l latency) int64 { return l.Max })
	return tw.Flush()
}
