package kv_test

import (
	"fmt"

	"github.com/raftkv/raftkv/kv"
	pb "github.com/raftkv/raftkv/raft/raftpb"
)

// The write path, without Raft: encode a command, apply it as a committed
// entry, read the result and the state.
func Example() {
	s, err := kv.New(kv.Config{})
	if err != nil {
		panic(err)
	}
	const now = 1_700_000_000_000 // the proposer's clock, Unix ms
	set := kv.Command{Session: 42, Seq: 1, Now: now, Op: kv.OpSet, Key: []byte("greeting"), Value: []byte("hello"),
		Flags: kv.FlagEX, Int: 10}
	data, err := set.Encode()
	if err != nil {
		panic(err)
	}
	incr := kv.Command{Session: 42, Seq: 2, Now: now, Op: kv.OpIncrBy, Key: []byte("hits"), Int: 1}
	data2, _ := incr.Encode()

	// The same INCR bytes twice (a retried proposal) apply once.
	res, err := s.Apply([]pb.Entry{{Index: 1, Data: data}, {Index: 2, Data: data2}, {Index: 3, Data: data2}})
	if err != nil {
		panic(err)
	}
	for _, r := range res {
		fmt.Println(r)
	}
	v, _ := s.Get([]byte("greeting"), now)
	fmt.Println(string(v), s.TTL([]byte("greeting"), now))
	hits, _ := s.Get([]byte("hits"), now)
	fmt.Println(string(hits))
	_, ok := s.Get([]byte("greeting"), now+10_000)
	fmt.Println(ok)
	// Output:
	// OK
	// (integer) 1
	// (integer) 1
	// hello 10
	// 1
	// false
}
