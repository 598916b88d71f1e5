package vfs_test

import (
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/raftkv/raftkv/internal/vfs"
)

// Only what was synced is certain to survive a crash: the file's bytes
// after File.Sync, its name after SyncDir of its directory.
func Example() {
	fs := vfs.NewMem()
	f, _ := fs.Create("/log")
	f.Write([]byte("durable;"))
	f.Sync()
	fs.SyncDir("/")
	f.Write([]byte("maybe lost"))

	fs.Crash(rand.New(rand.NewPCG(1, 2)))

	g, _ := fs.Open("/log")
	b, _ := io.ReadAll(g)
	fmt.Println(string(b[:8]))
	_, err := f.Write([]byte("x"))
	fmt.Println(err)
	// Output:
	// durable;
	// write /log: vfs: file handle did not survive a crash
}
