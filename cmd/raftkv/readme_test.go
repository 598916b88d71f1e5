package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeLibraryExampleIsTheTestedOne keeps README.md's Go snippet true:
// every line of it must appear, in order, in raft's Example test, whose
// output `go test ./raft` checks.
func TestReadmeLibraryExampleIsTheTestedOne(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../raft/example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```go\n")
	if !ok {
		t.Fatal("README.md has no Go code block")
	}
	snippet, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README.md's Go code block is not closed")
	}
	src := string(example)
	pos := 0
	for _, line := range strings.Split(snippet, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		i := strings.Index(src[pos:], line)
		if i < 0 {
			t.Fatalf("README line %q is not in raft/example_test.go (after offset %d)", line, pos)
		}
		pos += i + len(line)
	}
}
