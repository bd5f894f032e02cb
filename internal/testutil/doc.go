// Package testutil holds test helpers shared by ferry's tests: loggers that
// write to t.Log, UDP echo peers, free ports, self-signed certificates,
// polling and goroutine-leak checks, tools that skip outside CI, and a
// built ferry binary run as a child process.
//
// It imports testing and is imported only from _test.go files; the
// dependency test in cmd/ferry keeps it out of the ferry binary.
package testutil
