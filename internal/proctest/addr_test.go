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

// TestFreeAddrIsListenableAndNotHandedOut checks FreeAddr's promise: a
// server can listen on the address, twice in a row as a restarted member
// would, and a listener asking for any free port never gets it.
func TestFreeAddrIsListenableAndNotHandedOut(t *testing.T) {
	addr := FreeAddr(t)
	for range 2 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on the reserved %s: %v", addr, err)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		c.Close()
		ln.Close()
	}
	// The kernel picks from about 28,000 ports at random: were the reserved
	// one among them, this many tries would most likely meet it.
	for range 30000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := ln.Addr().String()
		ln.Close()
		if got == addr {
			t.Fatalf("a listener on 127.0.0.1:0 was given the reserved %s", addr)
		}
	}
}
