package server

import (
	"math"
	"sync"
	"time"
)

// latencyWindow keeps proposal latencies of roughly the last minute as one
// small log-scale histogram per second, for /status's commit_latency_p99_ms.
// Memory is fixed (latencySlots x windowBuckets counters) whatever the rate.
type latencyWindow struct {
	mu    sync.Mutex
	slots [latencySlots]latencySlot
	now   func() time.Time
}

const (
	latencySlots  = 60
	windowBuckets = 72
	latencyMinMs  = 0.05 // upper bound of bucket 0
	latencyGrowth = 1.25 // each bucket's bound is 25% above the previous one
)

type latencySlot struct {
	sec    int64
	counts [windowBuckets]uint32
}

func newLatencyWindow() *latencyWindow { return &latencyWindow{now: time.Now} }

// bucketBound is the upper bound of bucket i, in milliseconds.
func bucketBound(i int) float64 { return latencyMinMs * math.Pow(latencyGrowth, float64(i)) }

func latencyBucket(ms float64) int {
	if ms <= latencyMinMs {
		return 0
	}
	i := int(math.Ceil(math.Log(ms/latencyMinMs) / math.Log(latencyGrowth)))
	return min(max(i, 0), windowBuckets-1)
}

// observe records n commands that took d (a pipelined batch is proposed
// as one, so its commands share a latency: recorded at once, not n times).
func (w *latencyWindow) observe(d time.Duration, n int) {
	b := latencyBucket(float64(d) / float64(time.Millisecond))
	sec := w.now().Unix()
	w.mu.Lock()
	s := &w.slots[sec%latencySlots]
	if s.sec != sec {
		*s = latencySlot{sec: sec}
	}
	s.counts[b] += uint32(n)
	w.mu.Unlock()
}

// p99 returns the 99th percentile of the last minute's latencies in
// milliseconds (the upper bound of its bucket, so within 25%), 0 if none.
func (w *latencyWindow) p99() float64 {
	var sum [windowBuckets]uint64
	var n uint64
	now := w.now().Unix()
	w.mu.Lock()
	for i := range w.slots {
		s := &w.slots[i]
		if s.sec <= now-latencySlots || s.sec > now {
			continue
		}
		for b, c := range s.counts {
			sum[b] += uint64(c)
			n += uint64(c)
		}
	}
	w.mu.Unlock()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(0.99 * float64(n)))
	var seen uint64
	for b, c := range sum {
		seen += c
		if seen >= rank {
			return math.Round(bucketBound(b)*1000) / 1000
		}
	}
	return bucketBound(windowBuckets - 1)
}
