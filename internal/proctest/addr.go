package proctest

import (
	"fmt"
	"syscall"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address reserved for the rest of the test.
// A socket holds the port, bound with SO_REUSEADDR but never listening: a
// member may listen there (Go's listeners set SO_REUSEADDR too), also again
// after a restart, while the kernel gives the port to nobody who asks for
// any free one. A port found by closing a listener would be free for any
// test binary running at the same time (go test runs packages in parallel)
// to take before the member starts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return reserve(t, true)
}

// FreeAddrs returns n addresses reserved as FreeAddr's are.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = reserve(t, true)
	}
	return addrs
}

// RefusedAddr returns a loopback address that refuses connections until the
// test ends: a socket holds the port, bound but never listening, and without
// SO_REUSEADDR nobody else can listen there either. (A closed listener's port
// could be taken by another test's server, and a client that expected
// "connection refused" would talk to it instead.)
func RefusedAddr(t testing.TB) string {
	t.Helper()
	return reserve(t, false)
}

// reserve binds a socket to a free 127.0.0.1 port for the rest of the test.
func reserve(t testing.TB, shared bool) string {
	t.Helper()
	// Close-on-exec, so that no member the test starts inherits the port;
	// ForkLock keeps a fork from slipping in before it is set (SOCK_CLOEXEC
	// would do both, but only on Linux).
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatalf("proctest: socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if shared {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			t.Fatalf("proctest: SO_REUSEADDR: %v", err)
		}
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("proctest: bind a loopback port: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("proctest: getsockname: %v", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		t.Fatalf("proctest: getsockname returned %T", sa)
	}
	return fmt.Sprintf("127.0.0.1:%d", in4.Port)
}
