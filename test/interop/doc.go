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
//
// The offload pass (scripts/test.sh offload-e2e) runs the relay tests again
// inside a network namespace of its own with FERRY_TEST_OFFLOAD=lo: every
// ferry then runs with --relay-offload tc --relay-offload-interface lo and
// its metrics on, a test fails unless ferry logged its kernel fast path on,
// and the relay tests require, from ferry's metrics, that the kernel
// relayed every message of their runs over UDP with channels
// (testutil.RequireOffloaded). Without FERRY_TEST_OFFLOAD nothing changes.
package interop
