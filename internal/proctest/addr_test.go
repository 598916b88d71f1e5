package proctest

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// TestRefusedAddrRefusesAndStaysTaken checks both halves of RefusedAddr's
// promise: connecting is refused, and nobody else can listen on the port
// while the test runs.
func TestRefusedAddrRefusesAndStaysTaken(t *testing.T) {
	addr := RefusedAddr(t)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded, want connection refused", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("listen on %s succeeded while RefusedAddr holds it", addr)
	}
}
