package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlots checks that a results table becomes two SVGs naming every target.
func TestPlots(t *testing.T) {
	dir := t.TempDir()
	tsv := filepath.Join(dir, "r.tsv")
	os.WriteFile(tsv, []byte("target\top\tclients\tops_per_sec\tp50_ms\tp99_ms\tcpu_ms_per_op\n"+
		"raftkv\tset\t1\t900\t1.0\t2.0\t0.1\nraftkv\tset\t64\t20000\t3\t9\t0.05\n"+
		"etcd\tset\t1\t800\t1.2\t2.2\t\netcd\tset\t64\t7000\t8\t25\t\n"), 0o644)
	rows, err := read(tsv)
	if err != nil || len(rows) != 4 {
		t.Fatalf("read %d rows, %v", len(rows), err)
	}
	for name, svg := range map[string]string{"throughput": throughput(rows), "latency": latency(rows)} {
		if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "raftkv") || !strings.Contains(svg, "etcd") {
			t.Errorf("%s chart misses a target or is not SVG: %.200s", name, svg)
		}
	}
}
