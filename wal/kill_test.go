package wal

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// killChildEnv, when set, makes TestKillChild act as the writer process of
// TestSIGKILL, writing to the directory it names.
const killChildEnv = "RAFTKV_WAL_KILL_CHILD_DIR"

func killData(i pb.Index) []byte {
	return []byte(fmt.Sprintf("entry %d %s", i, strings.Repeat("x", int(i%97))))
}

// TestKillChild is the child half of TestSIGKILL; run alone it skips. It
// appends batches forever, printing "ACK <last index>" after each durable
// Save, until it is killed.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("only runs as TestSIGKILL's child process")
	}
	l, err := Open(dir, testID, Options{SegmentSize: 256 << 10})
	if err != nil {
		fmt.Printf("ERR %v\n", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	last, _ := l.LastIndex()
	for n := 0; ; n++ {
		batch := make([]pb.Entry, 1+n%16)
		for i := range batch {
			idx := last + 1 + pb.Index(i)
			batch[i] = pb.Entry{Term: 1, Index: idx, Data: killData(idx)}
		}
		if err := l.Save(pb.HardState{Term: 1, Commit: last}, batch, true); err != nil {
			fmt.Printf("ERR %v\n", err)
			os.Exit(2)
		}
		last += pb.Index(len(batch))
		fmt.Fprintf(out, "ACK %d\n", last)
		out.Flush()
	}
}

// TestSIGKILL runs a writer in a separate process on the real disk,
// SIGKILLs it mid-stream, reopens the log, and checks that every entry the
// child reported durable (over a pipe) is there, intact, and that nothing
// beyond what the child wrote appeared. Three rounds on one directory:
// each restart also recovers whatever torn tail the last kill left.
func TestSIGKILL(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	var acked pb.Index
	for round := 1; round <= 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		target := acked + 3000
		killed := false
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "ERR ") {
				t.Fatalf("child: %s", line)
			}
			if !strings.HasPrefix(line, "ACK ") {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimPrefix(line, "ACK "), 10, 64)
			if err != nil {
				t.Fatalf("child wrote %q", line)
			}
			acked = max(acked, pb.Index(n)) // acks read after the kill count too
			if !killed && acked >= target {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("child exited before the kill: %v\n%s", err, stderr.String())
		}
		l, err := Open(dir, testID, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		last, _ := l.LastIndex()
		if last < acked {
			t.Fatalf("round %d: log ends at %d but the child had %d acknowledged", round, last, acked)
		}
		got, err := l.Entries(1, last+1, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range got {
			if e.Index != pb.Index(i+1) || e.Term != 1 || !bytes.Equal(e.Data, killData(e.Index)) {
				t.Fatalf("round %d: entry %d is %d/%d %q", round, i+1, e.Index, e.Term, e.Data)
			}
		}
		t.Logf("round %d: %d acknowledged, %d recovered", round, acked, last)
		acked = last
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
