// Command plot turns a bench/run.sh results table into two SVG charts:
// throughput against clients (one line per target, one panel per operation)
// and p50/p99 latency per target at the largest client count.
//
//	go run ./bench/plot -in bench/results/latest.tsv -out docs
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type row struct {
	target, op    string
	clients       int
	ops, p50, p99 float64
}

var palette = []string{"#e4572e", "#2e86ab", "#76b041", "#a23b72", "#f3a712", "#555"}

func main() {
	in := flag.String("in", "bench/results/latest.tsv", "results table written by bench/run.sh")
	out := flag.String("out", "docs", "directory for the SVG files")
	flag.Parse()
	rows, err := read(*in)
	if err == nil && len(rows) == 0 {
		err = fmt.Errorf("%s has no results", *in)
	}
	if err == nil {
		err = write(filepath.Join(*out, "bench-throughput.svg"), throughput(rows))
	}
	if err == nil {
		err = write(filepath.Join(*out, "bench-latency.svg"), latency(rows))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func read(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		c := strings.Split(sc.Text(), "\t")
		if line == 0 || len(c) < 6 {
			continue
		}
		r := row{target: c[0], op: c[1]}
		r.clients, _ = strconv.Atoi(c[2])
		r.ops, _ = strconv.ParseFloat(c[3], 64)
		r.p50, _ = strconv.ParseFloat(c[4], 64)
		r.p99, _ = strconv.ParseFloat(c[5], 64)
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

func write(path string, svg string) error { return os.WriteFile(path, []byte(svg), 0o644) }

func uniq(rows []row, f func(row) string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rows {
		if k := f(r); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

const panelW, panelH, pad = 420.0, 280.0, 50.0

// throughput draws one panel per operation: ops/s (y) against clients (x, log scale).
func throughput(rows []row) string {
	ops := uniq(rows, func(r row) string { return r.op })
	targets := uniq(rows, func(r row) string { return r.target })
	var b strings.Builder
	w := float64(len(ops))*(panelW+pad) + pad
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`, w, panelH+2*pad+20*float64(len(targets)))
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>`)
	for i, op := range ops {
		x0, y0 := pad+float64(i)*(panelW+pad), pad
		var maxOps, maxC float64 = 1, 1
		for _, r := range rows {
			if r.op == op {
				maxOps, maxC = math.Max(maxOps, r.ops), math.Max(maxC, float64(r.clients))
			}
		}
		xOf := func(c int) float64 { return x0 + math.Log2(float64(c))/math.Max(1, math.Log2(maxC))*panelW }
		yOf := func(v float64) float64 { return y0 + panelH - v/maxOps*panelH }
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s: ops/s vs clients</text>`, x0, y0-15, op)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, x0, y0, panelW, panelH)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%.0f</text>`, x0-4, y0+10, maxOps)
		for ti, t := range targets {
			var pts []row
			for _, r := range rows {
				if r.op == op && r.target == t && r.ops > 0 {
					pts = append(pts, r)
				}
			}
			sort.Slice(pts, func(i, j int) bool { return pts[i].clients < pts[j].clients })
			var path []string
			for _, p := range pts {
				path = append(path, fmt.Sprintf("%.1f,%.1f", xOf(p.clients), yOf(p.ops)))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, xOf(p.clients), yOf(p.ops), palette[ti%len(palette)])
				fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#666">%d</text>`, xOf(p.clients), y0+panelH+14, p.clients)
			}
			if len(path) > 0 {
				fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`, strings.Join(path, " "), palette[ti%len(palette)])
			}
		}
	}
	legend(&b, targets, panelH+2*pad)
	b.WriteString(`</svg>`)
	return b.String()
}

// latency draws p50 and p99 bars per target and operation at the largest client count.
func latency(rows []row) string {
	maxC := 0
	for _, r := range rows {
		maxC = max(maxC, r.clients)
	}
	var sel []row
	var maxMs float64 = 0.1
	for _, r := range rows {
		if r.clients == maxC && r.ops > 0 {
			sel = append(sel, r)
			maxMs = math.Max(maxMs, r.p99)
		}
	}
	var b strings.Builder
	barW := 26.0
	w := pad*2 + float64(len(sel))*(2*barW+30)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`, math.Max(w, 400), panelH+2*pad+40)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>`)
	fmt.Fprintf(&b, `<text x="%.0f" y="30" font-weight="bold">latency at %d clients (ms): p50 light, p99 dark</text>`, pad, maxC)
	for i, r := range sel {
		x := pad + float64(i)*(2*barW+30)
		for j, v := range []float64{r.p50, r.p99} {
			h := v / maxMs * panelH
			color := []string{"#9ecae1", "#3182bd"}[j]
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, x+float64(j)*barW, pad+panelH-h, barW-2, h, color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%.1f</text>`, x+float64(j)*barW+barW/2, pad+panelH-h-3, v)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x+barW, pad+panelH+15, r.target)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#666">%s</text>`, x+barW, pad+panelH+29, r.op)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func legend(b *strings.Builder, targets []string, y float64) {
	for i, t := range targets {
		fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`,
			pad, y+float64(i)*18, palette[i%len(palette)], pad+18, y+10+float64(i)*18, t)
	}
}
