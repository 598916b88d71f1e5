package wal

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/raftkv/raftkv/internal/vfs"
)

var (
	flagSeed  = flag.Uint64("seed", 0, "run the crash tests for this one seed only")
	flagSeeds = flag.Int("seeds", 0, "number of seeds for the crash tests (default: 8, or 3 with -short)")
)

const testDir = "/data/wal"

var testID = Identity{ClusterID: 0xabc, MemberID: 7}

// testOpts: tiny segments, so that workloads rotate often. Preallocation
// is off: its background goroutine would make the numbering of filesystem
// operations (and so "crash at operation N") vary from run to run;
// TestCrashAtEveryPoint runs a second pass with it on.
func testOpts(fs vfs.FS) Options {
	return Options{FS: fs, SegmentSize: minSegmentSize, KeepSnapshots: 2, NoPreallocate: true}
}

func seeds(t *testing.T) []uint64 {
	if *flagSeed != 0 {
		return []uint64{*flagSeed}
	}
	n := 8
	if testing.Short() {
		n = 3
	}
	if *flagSeeds > 0 {
		n = *flagSeeds
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// TestCrashAtEveryPoint runs a random workload, stops the filesystem dead
// at every single operation in turn (the process "dies" there: that and
// every later operation fails), crashes the in-memory filesystem (keeping
// synced data and a random selection of the rest), reopens, and checks the
// state is that of a prefix of the records written at least as long as
// what was reported durable. Then it checks the recovered log still takes
// writes. A failure prints the line that replays it.
func TestCrashAtEveryPoint(t *testing.T) {
	for _, prealloc := range []bool{false, true} {
		t.Run(fmt.Sprintf("prealloc=%v", prealloc), func(t *testing.T) {
			o := testOpts
			if prealloc {
				o = func(fs vfs.FS) Options { opts := testOpts(fs); opts.NoPreallocate = false; return opts }
			}
			crashAtEveryPoint(t, o)
		})
	}
}

func crashAtEveryPoint(t *testing.T, testOpts func(vfs.FS) Options) {
	for _, seed := range seeds(t) {
		ops := genWorkload(rand.New(rand.NewPCG(seed, 1)), 40)
		// A dry run counts the filesystem operations.
		in := vfs.NewInjector(vfs.NewMem())
		l, err := Open(testDir, testID, testOpts(in))
		if err != nil {
			t.Fatal(err)
		}
		if res := runWorkload(l, ops); res.err != nil {
			t.Fatalf("seed %d: dry run failed at op %d: %v", seed, res.failed, res.err)
		}
		total := in.Total()
		l.Close()
		for point := 1; point <= total+1; point++ {
			crashAt(t, seed, ops, point, testOpts)
		}
	}
}

func crashAt(t *testing.T, seed uint64, ops []wop, point int, testOpts func(vfs.FS) Options) {
	t.Helper()
	ctx := fmt.Sprintf("seed %d, crash at fs op %d (replay: go test ./wal -run TestCrashAtEveryPoint -seed=%d)", seed, point, seed)
	mem := vfs.NewMem()
	in := vfs.NewInjector(mem)
	in.FailAllFrom(point, fmt.Errorf("process died"))
	var res runResult
	if l, err := Open(testDir, testID, testOpts(in)); err == nil {
		res = runWorkload(l, ops)
		_ = l // the process died: no Close
	}
	mem.Crash(rand.New(rand.NewPCG(seed, uint64(point))))
	reopen := func() *Log {
		l, err := Open(testDir, testID, testOpts(mem))
		if err != nil {
			t.Fatalf("%s: reopen: %v\nfiles:\n%s", ctx, err, mem)
		}
		return l
	}
	l := reopen()
	checkRecovered(t, l, res, ctx)
	checkWritable(t, l, reopen, ctx)
}

// TestCrashDuringRecovery crashes a workload at a random point, then
// crashes again at every operation of the Open that recovers from it
// (truncating a torn tail, removing an empty segment, syncing), and checks
// that the final reopen still holds a prefix at least as long as what was
// reported durable: recovery itself must be crash-safe.
func TestCrashDuringRecovery(t *testing.T) {
	for _, seed := range seeds(t) {
		ops := genWorkload(rand.New(rand.NewPCG(seed, 3)), 40)
		in := vfs.NewInjector(vfs.NewMem())
		l, err := Open(testDir, testID, testOpts(in))
		if err != nil {
			t.Fatal(err)
		}
		runWorkload(l, ops)
		l.Close()
		rng := rand.New(rand.NewPCG(seed, 4))
		for try := 0; try < 4; try++ {
			point := 1 + rng.IntN(in.Total())
			// build replays the same history: deterministic without preallocation.
			build := func() (*vfs.MemFS, runResult) {
				mem := vfs.NewMem()
				inj := vfs.NewInjector(mem)
				inj.FailAllFrom(point, fmt.Errorf("process died"))
				var res runResult
				if l, err := Open(testDir, testID, testOpts(inj)); err == nil {
					res = runWorkload(l, ops)
				}
				mem.Crash(rand.New(rand.NewPCG(seed, uint64(point))))
				return mem, res
			}
			mem, _ := build()
			count := vfs.NewInjector(mem)
			if l, err := Open(testDir, testID, testOpts(count)); err == nil {
				l.Close()
			}
			for p := 1; p <= count.Total(); p++ {
				ctx := fmt.Sprintf("seed %d, crash at op %d, then at op %d of recovery", seed, point, p)
				mem, res := build()
				inj := vfs.NewInjector(mem)
				inj.FailAllFrom(p, fmt.Errorf("died during recovery"))
				if l, err := Open(testDir, testID, testOpts(inj)); err == nil {
					_ = l // died: no Close
				}
				mem.Crash(rand.New(rand.NewPCG(seed, uint64(p)<<20|uint64(point))))
				l, err := Open(testDir, testID, testOpts(mem))
				if err != nil {
					t.Fatalf("%s: reopen: %v\n%s", ctx, err, mem)
				}
				checkRecovered(t, l, res, ctx)
				l.Close()
			}
		}
	}
}
