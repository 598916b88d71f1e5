package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/client"
)

// Example shows the client's calls; it needs a running cluster (for instance
// `raftkv dev`), so it is compiled but not run by go test.
func Example() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:6379", "127.0.0.1:6380", "127.0.0.1:6381"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := c.Set(ctx, "greeting", "hello", time.Hour); err != nil {
		fmt.Println(err)
		return
	}
	v, err := c.Get(ctx, "greeting")
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("gone already")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println(v)
	}
	n, err := c.Incr(ctx, "visits")
	if errors.Is(err, client.ErrUnknownOutcome) {
		// The INCR may or may not have been applied: read before deciding.
		fmt.Println("unknown outcome")
		return
	}
	fmt.Println(n, err)

	admin, err := client.NewAdmin(client.AdminConfig{Endpoints: []string{"127.0.0.1:8379"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	view, err := admin.Cluster(ctx)
	if err == nil {
		fmt.Println("leader:", view.Leader)
	}
}
