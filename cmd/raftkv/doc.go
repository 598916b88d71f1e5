// Command raftkv runs and operates a raftkv cluster.
//
// `raftkv server` runs one member (server.go), `raftkv dev` a local
// three-member cluster in one process, and the other commands are clients of
// a running cluster: get, set, del, incr, keys, shell and bench speak RESP to
// --endpoints; status, members, leader and snapshot speak HTTP to
// --http-endpoints. Each command is a thin layer over the client and server
// packages; `raftkv --help` lists them and every command has --help with an
// example.
//
// Exit status: 0 on success, 1 when the operation failed (including an
// unreachable cluster or, for status, a cluster without a leader), 2 when the
// command line is wrong. Every failure is one line on stderr.
package main
