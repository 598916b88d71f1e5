package raft

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbiddenImports are what a pure, deterministic core must not use: clocks,
// files, sockets, locks (there is no concurrency to guard), and the global,
// unseeded random functions. Randomness comes from Config.Rand; math/rand/v2
// is allowed for constructing a seeded generator locally.
var forbiddenImports = map[string]string{
	"time":      "no clocks: time is Tick",
	"os":        "no files or environment",
	"net":       "no sockets",
	"net/http":  "no sockets",
	"sync":      "no goroutines, hence nothing to lock",
	"math/rand": "use Config.Rand (math/rand/v2 for a seeded generator)",
	"io/ioutil": "no files",
	"syscall":   "no system calls",
	"unsafe":    "no unsafe",
}

// TestCorePurity checks that non-test files of raft/ and its sub-packages
// import nothing impure and start no goroutine.
func TestCorePurity(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if why, bad := forbiddenImports[p]; bad {
				t.Errorf("%s imports %q: %s", fset.Position(imp.Pos()), p, why)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				t.Errorf("%s starts a goroutine: the core is driven by one caller", fset.Position(g.Pos()))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("only %d files checked: is the walk rooted right?", checked)
	}
}
