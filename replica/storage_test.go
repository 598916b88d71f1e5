package replica

import (
	"path/filepath"
	"sync"
	"testing"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/wal"
)

// walStorages returns a factory of real WALs in dir, one per member, that
// reopens a member's WAL after its previous one is closed (a restart). The
// WALs are closed at the end of the test.
func walStorages(t testing.TB, dir string) func(pb.NodeID) Storage {
	var mu sync.Mutex
	open := make(map[pb.NodeID]*wal.Log)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range open {
			l.Close()
		}
	})
	return func(id pb.NodeID) Storage {
		mu.Lock()
		defer mu.Unlock()
		if old, ok := open[id]; ok {
			old.Close()
		}
		l, err := wal.Open(filepath.Join(dir, id.String()), wal.Identity{ClusterID: 42, MemberID: uint64(id)}, wal.Options{})
		if err != nil {
			t.Fatalf("open WAL of member %d: %v", id, err)
		}
		open[id] = l
		return AdaptStorage(l)
	}
}

// storageForTests returns the storage the TCP tests run on: real WALs in
// a temporary directory.
func storageForTests(t testing.TB) func(pb.NodeID) Storage { return walStorages(t, t.TempDir()) }

// storageForBench returns the storage the benchmark runs on: real WALs
// (fsync included) on the disk that holds the temporary directory.
func storageForBench(b testing.TB) func(pb.NodeID) Storage { return walStorages(b, b.TempDir()) }
