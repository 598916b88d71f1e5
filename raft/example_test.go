package raft_test

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// Example runs a one-node group: bootstrap, campaign, propose, and handle
// each Ready in the documented order until the proposal is applied.
func Example() {
	storage := raft.NewMemoryStorage()
	ents, cs := raft.Bootstrap([]pb.NodeID{1})
	if err := storage.Append(ents); err != nil {
		panic(err)
	}
	storage.SetConfState(cs)

	rn, err := raft.NewRawNode(raft.Config{ID: 1, Storage: storage})
	if err != nil {
		panic(err)
	}

	// handle does one round of the loop; a real runtime would send
	// rd.Messages to peers (a single node has none).
	handle := func() {
		for rn.HasReady() {
			rd := rn.Ready()
			// 1. Persist.
			if err := storage.Append(rd.Entries); err != nil {
				panic(err)
			}
			if !rd.HardState.IsEmpty() {
				storage.SetHardState(rd.HardState)
			}
			// 2. Send rd.Messages (none here).
			// 3. Apply.
			for _, e := range rd.CommittedEntries {
				switch {
				case e.Type == pb.EntryConfChange:
					var cc pb.ConfChange
					if err := cc.UnmarshalBinary(e.Data); err != nil {
						panic(err)
					}
					storage.SetConfState(rn.ApplyConfChange(cc))
				case len(e.Data) > 0:
					fmt.Printf("applied %q at index %d, term %d\n", e.Data, e.Index, e.Term)
				}
			}
			// 4. Advance.
			rn.Advance(rd)
		}
	}

	if err := rn.Campaign(); err != nil {
		panic(err)
	}
	handle()
	fmt.Println("role:", rn.Status().SoftState.Role)

	if err := rn.Propose([]byte("hello")); err != nil {
		panic(err)
	}
	handle()
	// Output:
	// role: leader
	// applied "hello" at index 3, term 2
}
