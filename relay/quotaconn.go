package relay

import (
	"net"
	"time"
)

// Compile-time interface guards.
var (
	_ net.PacketConn = (*quotaPacketConn)(nil)
	_ net.PacketConn = (*quotaWriter)(nil)
	_ net.Listener   = (*quotaListener)(nil)
	_ net.Conn       = (*quotaConn)(nil)
)

// The bandwidth caps wrap a UDP relay socket twice around the Tracker's
// wrapper, so the Tracker counts only what was relayed: quotaPacketConn,
// next to the socket, drops datagrams from peers over the cap before the
// Tracker sees them and uncounts the allocation when pion closes the
// socket; quotaWriter, outermost (what pion holds), drops datagrams to
// peers over the cap before they reach the Tracker.
//
//	pion -> quotaWriter -> Tracker wrapper -> quotaPacketConn -> socket

// wrapPacketConn wraps a bound UDP relay socket of a counted allocation.
func (a *allocQuota) wrapPacketConn(pc net.PacketConn) net.PacketConn {
	if a == nil {
		return pc
	}
	return &quotaPacketConn{PacketConn: pc, a: a, shape: a.q.shaping()}
}

// wrapWriter adds the client-to-peer cap to what pion gets.
func (a *allocQuota) wrapWriter(pc net.PacketConn) net.PacketConn {
	if a == nil || !a.q.shaping() {
		return pc
	}
	return &quotaWriter{PacketConn: pc, a: a}
}

// wrapListener wraps a TCP relay listener (RFC 6062) of a counted
// allocation: peer connections it accepts are shaped.
func (a *allocQuota) wrapListener(l net.Listener) net.Listener {
	if a == nil {
		return l
	}
	return &quotaListener{Listener: l, a: a}
}

// wrapConn shapes a TCP peer connection of a counted allocation.
func (a *allocQuota) wrapConn(c net.Conn) net.Conn {
	if a == nil || !a.q.shaping() {
		return c
	}
	return &quotaConn{Conn: c, a: a}
}

// quotaPacketConn is next to a UDP relay socket.
type quotaPacketConn struct {
	net.PacketConn
	a     *allocQuota
	shape bool
}

// ReadFrom returns the next datagram from a peer within the cap, dropping
// (and counting) those over it.
func (c *quotaPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.shape || c.a.allow(false, n) {
			return n, addr, err
		}
	}
}

// Close closes the socket and uncounts the allocation.
func (c *quotaPacketConn) Close() error {
	err := c.PacketConn.Close()
	c.a.release()
	return err
}

// quotaWriter is what pion holds when a bandwidth cap is set.
type quotaWriter struct {
	net.PacketConn
	a *allocQuota
}

// WriteTo sends a client's datagram to a peer if the cap allows; a
// datagram over the cap is dropped and counted, and reported as sent (pion
// would otherwise log every one as an error).
func (c *quotaWriter) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.a.allow(true, len(p)) {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// quotaListener is a TCP relay listener of a counted allocation.
type quotaListener struct {
	net.Listener
	a *allocQuota
}

// Accept returns the next peer connection, shaped.
func (l *quotaListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.a.wrapConn(c), nil
}

// Close closes the listener and uncounts the allocation.
func (l *quotaListener) Close() error {
	err := l.Listener.Close()
	l.a.release()
	return err
}

// quotaConn is an RFC 6062 peer data connection slowed to the caps: bytes
// cannot be dropped from a stream, so reads and writes wait for their
// tokens and TCP flow control pushes back on the sender.
type quotaConn struct {
	net.Conn
	a *allocQuota
}

// Read reads peer data bound for the client, then waits out the cap.
func (c *quotaConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		sleep(c.a.delay(false, n))
	}
	return n, err
}

// Write waits out the cap, then sends client data to the peer.
func (c *quotaConn) Write(p []byte) (int, error) {
	sleep(c.a.delay(true, len(p)))
	return c.Conn.Write(p)
}

func sleep(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}
