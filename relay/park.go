package relay

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// pion finds an EVEN-PORT by binding relay sockets through
// AllocatePacketConn, closing them, and binding the even port again moments
// later for the allocation (allocation.Manager.GetRandomEvenPort); the RTCP
// port after it (the RESERVATION-TOKEN's) is not held at all until the
// second Allocate. Under concurrent allocations another client can take
// either port in between, and the client gets 508. The park closes that
// gap: the probe's even port and, once it is allocated, the port after it
// stay bound here until pion asks for them by number, or until they expire.

const (
	// probeHold is how long a probed even port is kept for pion's rebind.
	probeHold = 2 * time.Second
	// reservationHold is how long the port after an even-port allocation is
	// kept for the RESERVATION-TOKEN's Allocate (RFC 8656 §7.2: 30 s).
	reservationHold = 30 * time.Second
)

// parked is a bound relay socket held for pion's next request of its port.
type parked struct {
	conn    *net.UDPConn
	expires time.Time
}

// park holds sockets by bind address and port. It is used at allocation
// time only, never per packet.
type park struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]parked
}

// put holds conn until now+hold, closing expired entries.
func (p *park) put(ap netip.AddrPort, conn *net.UDPConn, hold time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked(time.Now())
	if p.conns == nil {
		p.conns = map[netip.AddrPort]parked{}
	}
	if old, ok := p.conns[ap]; ok {
		_ = old.conn.Close()
	}
	p.conns[ap] = parked{conn: conn, expires: time.Now().Add(hold)}
}

// take returns the socket held for ap, if any.
func (p *park) take(ap netip.AddrPort) *net.UDPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked(time.Now())
	e, ok := p.conns[ap]
	if !ok {
		return nil
	}
	delete(p.conns, ap)
	return e.conn
}

func (p *park) sweepLocked(now time.Time) {
	for ap, e := range p.conns {
		if now.After(e.expires) {
			_ = e.conn.Close()
			delete(p.conns, ap)
		}
	}
}

// probeConn is what pion's even-port probe gets: closing an even port parks
// it instead.
type probeConn struct {
	*net.UDPConn
	park *park
	ap   netip.AddrPort
}

// Close parks an even port for pion's rebind and closes an odd one.
func (c *probeConn) Close() error {
	if c.ap.Port()%2 == 0 {
		c.park.put(c.ap, c.UDPConn, probeHold)
		return nil
	}
	return c.UDPConn.Close()
}
