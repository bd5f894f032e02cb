// Package interop runs the ferry binary against third-party clients.
//
// The tests build ./cmd/ferry once per run, start `ferry serve` on free
// loopback ports and drive it with coturn's client tools
// (turnutils_stunclient, turnutils_uclient, turnutils_peer), parsing their
// output for loss and errors. Tools come from scripts/install-test-deps.sh.
// A missing tool skips its test locally and fails it when CI=true.
//
// When the tests run with -race, the ferry binary is built with -race too,
// and a data race reported by the server fails the test that started it.
//
// All traffic stays on 127.0.0.1.
package interop
