package proctest

import (
	"fmt"
	"syscall"
	"testing"
)

// RefusedAddr returns a loopback address that refuses connections until the
// test ends. A socket holds the port, bound but never listening: a closed
// listener's port would be free for any other test binary running at the
// same time (go test runs packages in parallel) to listen on, and a client
// that expected "connection refused" would talk to that server instead.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("proctest: socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
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
