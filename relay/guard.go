package relay

import (
	"net"
	"sync/atomic"
)

// portGuard drops what a client sends to one of ferry's own relay
// addresses outside the relay port range. The policy admits ferry's relay
// addresses as peers (relay to relay through one server); this keeps that
// from reaching ferry's listeners or other services on the same host.
type portGuard struct {
	net.PacketConn
	policy  *Policy
	dropped *atomic.Uint64
}

var _ net.PacketConn = (*portGuard)(nil)

// WriteTo sends p unless addr is a relay address of ferry's outside the
// relay port range; such a datagram is dropped, counted and reported as
// sent (pion would log every refused write as an error).
func (g *portGuard) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok && !g.policy.PortAllowed(ua.AddrPort()) {
		g.dropped.Add(1)
		return len(p), nil
	}
	return g.PacketConn.WriteTo(p, addr)
}
