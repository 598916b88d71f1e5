// Command raftkv runs and operates a raftkv cluster.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "raftkv: under construction")
	os.Exit(1)
}
