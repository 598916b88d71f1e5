package replica_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	pb "github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/replica"
	"github.com/raftkv/raftkv/wal"
)

// counter is a tiny state machine: it adds each entry's length.
type counter struct{ total int }

func (c *counter) Apply(ents []pb.Entry) ([]any, error) {
	res := make([]any, len(ents))
	for i, e := range ents {
		c.total += len(e.Data)
		res[i] = c.total
	}
	return res, nil
}

func (c *counter) Snapshot() (replica.SnapshotFunc, error) {
	total := c.total
	return func(w io.Writer) error { _, err := fmt.Fprintf(w, "%d", total); return err }, nil
}

func (c *counter) Restore(r io.Reader) error {
	_, err := fmt.Fscan(r, &c.total)
	return err
}

// lonely is a Sender for a group of one: there is nobody to send to.
type lonely struct{}

func (lonely) Send([]pb.Message)                                   {}
func (lonely) SendSnapshot(_ pb.Message, d io.ReadCloser, _ int64) { d.Close() }

func Example() {
	dir, _ := os.MkdirTemp("", "replica-example")
	defer os.RemoveAll(dir)
	log, err := wal.Open(filepath.Join(dir, "1"), wal.Identity{ClusterID: 7, MemberID: 1}, wal.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer log.Close()

	r, err := replica.New(replica.Config{
		ID:           1,
		StateMachine: &counter{},
		Storage:      replica.AdaptStorage(log),
		Transport:    lonely{},
		Peers:        []replica.Peer{{ID: 1, Addr: "127.0.0.1:7001"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	r.Start()
	defer r.Stop()

	ctx := context.Background()
	if err := r.Campaign(ctx); err != nil { // a group of one need not wait for a timeout
		fmt.Println(err)
		return
	}
	for { // wait to lead: take the channel first, then check, then wait
		changed := r.LeaderChanged()
		if r.IsLeader() {
			break
		}
		<-changed
	}
	for _, cmd := range []string{"abc", "de"} {
		res, err := r.Propose(ctx, []byte(cmd))
		fmt.Println(res, err)
	}
	fmt.Println(r.ReadIndex(ctx))
	// Output:
	// 3 <nil>
	// 5 <nil>
	// <nil>
}
