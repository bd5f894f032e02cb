package interop

import "testing"

// TestUClientTCPRelay runs turnutils_uclient -T: RFC 6062 TCP relays
// (Allocate with REQUESTED-TRANSPORT TCP, Connect, ConnectionAttempt,
// ConnectionBind) over TCP control connections, the clients connecting to
// each other's relays (-T implies -t -y -c). Every message must come back.
func TestUClientTCPRelay(t *testing.T) {
	t.Parallel()
	runUClientRelays(t, []relayRun{
		{name: "tcp-relay", args: []string{"-T"}, auth: []string{"-u", user, "-w", password}},
		{name: "tcp-relay-rest", args: []string{"-T"}, auth: []string{"-W", restSecret, "-u", "interop-tcp"}},
	})
}
