// Package e2e holds process-level tests of raftkv: they build the raftkv
// binary, start real `raftkv server` processes on free 127.0.0.1 ports with
// the flags of the operator contract, talk to them with real Redis clients
// (go-redis, and redis-cli when installed) and HTTP, and kill them with
// SIGKILL.
//
// Run with: go test ./test/e2e/ (about a minute; -short skips them).
package e2e
