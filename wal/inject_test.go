package wal

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/raftkv/raftkv/internal/vfs"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// TestErrorInjection fails, in turn, the Nth operation of every kind
// (write, sync, rename, read, create, remove, syncdir, ...) during Open and
// a random workload. It checks that the error surfaces from the call that
// hit it, that after a failed log write or fsync the log refuses all
// further writes even once the disk "recovers" (fsyncgate), and that after
// a crash the log holds a prefix of what was written at least as long as
// what was reported durable.
func TestErrorInjection(t *testing.T) {
	seed := uint64(11)
	if *flagSeed != 0 {
		seed = *flagSeed
	}
	ops := genWorkload(rand.New(rand.NewPCG(seed, 2)), 40)
	dry := vfs.NewInjector(vfs.NewMem())
	l, err := Open(testDir, testID, testOpts(dry))
	if err != nil {
		t.Fatal(err)
	}
	if res := runWorkload(l, ops); res.err != nil {
		t.Fatalf("dry run: %v", res.err)
	}
	l.Close()
	for _, op := range vfs.Ops() {
		count := dry.Count(op)
		if count == 0 {
			continue
		}
		step := max(1, count/25) // bound the run time; -seed varies which ones
		for n := 1; n <= count; n += step {
			t.Run(fmt.Sprintf("%s#%d", op, n), func(t *testing.T) {
				injectOne(t, seed, ops, op, n)
			})
		}
	}
}

func injectOne(t *testing.T, seed uint64, ops []wop, op vfs.Op, n int) {
	mem := vfs.NewMem()
	in := vfs.NewInjector(mem)
	in.FailNth(op, n, nil)
	var res runResult
	l, err := Open(testDir, testID, testOpts(in))
	if err == nil {
		res = runWorkload(l, ops)
		err = res.err
	}
	fired := in.Count(op) >= n
	switch {
	case err != nil && !errors.Is(err, vfs.ErrInjected):
		t.Fatalf("got error %v, want the injected one", err)
	case err == nil && fired && op != vfs.OpClose:
		// A failed close of a read-only file loses nothing; every other
		// injected failure must reach the caller.
		t.Fatalf("injected %s error #%d was swallowed", op, n)
	}
	if l != nil && errors.Is(err, ErrFailed) {
		in.Clear()
		if err := l.Save(pb.HardState{}, nil, true); !errors.Is(err, ErrFailed) {
			t.Fatalf("after %v, Save returned %v, want ErrFailed", res.err, err)
		}
		if err := l.Close(); !errors.Is(err, ErrFailed) {
			t.Fatalf("after %v, Close returned %v, want ErrFailed", res.err, err)
		}
	}
	mem.Crash(rand.New(rand.NewPCG(seed, uint64(op)<<32|uint64(n))))
	ctx := fmt.Sprintf("%s error #%d (seed %d)", op, n, seed)
	reopen := func() *Log {
		l, err := Open(testDir, testID, testOpts(mem))
		if err != nil {
			t.Fatalf("%s: reopen: %v\n%s", ctx, err, mem)
		}
		return l
	}
	l2 := reopen()
	checkRecovered(t, l2, res, ctx)
	checkWritable(t, l2, reopen, ctx)
}

// TestFsyncGate: after one failed fsync the log refuses every later write,
// even though the next fsync would succeed: the kernel may have dropped
// the dirty pages and a successful retry would vouch for data that is gone.
func TestFsyncGate(t *testing.T) {
	mem := vfs.NewMem()
	in := vfs.NewInjector(mem)
	l, err := Open(testDir, testID, testOpts(in))
	if err != nil {
		t.Fatal(err)
	}
	e1 := []pb.Entry{{Term: 1, Index: 1, Data: []byte("one")}}
	if err := l.Save(pb.HardState{Term: 1}, e1, true); err != nil {
		t.Fatal(err)
	}
	in.FailNth(vfs.OpSync, in.Count(vfs.OpSync)+1, errors.New("EIO"))
	e2 := []pb.Entry{{Term: 1, Index: 2, Data: []byte("two")}}
	if err := l.Save(pb.HardState{}, e2, true); !errors.Is(err, ErrFailed) || !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Save with failing fsync = %v, want ErrFailed wrapping the injected error", err)
	}
	for _, c := range []struct {
		name string
		f    func() error
	}{
		{"Save", func() error { return l.Save(pb.HardState{Term: 2}, nil, true) }},
		{"Save nosync", func() error { return l.Save(pb.HardState{Term: 3}, nil, false) }},
		{"Sync", l.Sync},
		{"SetConfState", func() error { return l.SetConfState(pb.ConfState{Voters: []pb.NodeID{1}}) }},
		{"Compact", func() error { return l.Compact(0) }},
		{"Close", l.Close}, // last: it reports the failure too
	} {
		if err := c.f(); !errors.Is(err, ErrFailed) {
			t.Errorf("%s after a failed fsync = %v, want ErrFailed", c.name, err)
		}
	}
	mem.Crash(rand.New(rand.NewPCG(1, 1)))
	l, err = Open(testDir, testID, testOpts(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if last, _ := l.LastIndex(); last < 1 {
		t.Fatalf("durable entry 1 lost: last index %d", last)
	}
}
