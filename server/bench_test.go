package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkRESPPipelinedSet: the RESP front door's cost per SET when a
// client pipelines 16 of them (redis-benchmark -P 16), over loopback TCP,
// with Raft replaced by a node that applies at once. Compare commits with
// benchstat: ns/op is per command.
func BenchmarkRESPPipelinedSet(b *testing.B) {
	for _, depth := range []int{1, 16} {
		b.Run(fmt.Sprintf("P%d", depth), func(b *testing.B) {
			n := newLocalNode(b)
			addr, _ := startRESP(b, n, testConfig())
			c := newClient(b, addr)
			ctx := context.Background()
			val := strings.Repeat("v", 256)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += depth {
				p := c.Pipeline()
				for j := range min(depth, b.N-i) {
					p.Set(ctx, fmt.Sprintf("key:%d", (i+j)%10000), val, 0)
				}
				if _, err := p.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
