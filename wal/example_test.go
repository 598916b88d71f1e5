package wal_test

import (
	"fmt"

	"github.com/raftkv/raftkv/internal/vfs"
	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/wal"
)

// The runtime's loop: persist each Ready's entries and hard state, durably,
// before acting on it; after a restart, read the state back.
func Example() {
	fs := vfs.NewMem()
	id := wal.Identity{ClusterID: 0xc1, MemberID: 1}
	l, err := wal.Open("/data/member1", id, wal.Options{FS: fs, NoPreallocate: true})
	if err != nil {
		panic(err)
	}
	fmt.Println("new:", l.IsNew())
	ents := []pb.Entry{{Term: 1, Index: 1, Data: []byte("a")}, {Term: 1, Index: 2, Data: []byte("b")}}
	if err := l.Save(pb.HardState{Term: 1, Vote: 1, Commit: 1}, ents, true); err != nil {
		panic(err)
	}
	l.Close()

	l, err = wal.Open("/data/member1", id, wal.Options{FS: fs, NoPreallocate: true})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	hs, _, _ := l.InitialState()
	last, _ := l.LastIndex()
	got, _ := l.Entries(1, last+1, 1<<20)
	fmt.Println("new:", l.IsNew(), "term:", hs.Term, "vote:", hs.Vote, "last:", last, "data:", string(got[0].Data)+string(got[1].Data))
	// Output:
	// new: true
	// new: false term: 1 vote: 1 last: 2 data: ab
}
