package rfc5780

import (
	"net"
	"net/netip"
	"time"
)

var _ net.PacketConn = (*packetConn)(nil)

// packetConn is a wrapped primary socket.
type packetConn struct {
	inner net.PacketConn
	r     *Responder
	local netip.AddrPort // RESPONSE-ORIGIN without alternates
}

// Wrap wraps a primary (A1:P1) socket of the Responder's listener for pion:
// ReadFrom answers Binding requests itself and returns every other datagram
// unchanged. Closing the wrapper closes pc, not the Responder. With
// alternates, the first wrapped socket also sends the answers that
// CHANGE-REQUESTs arriving on alternate sockets ask to come from A1:P1.
func (r *Responder) Wrap(pc net.PacketConn) net.PacketConn {
	c := &packetConn{inner: pc, r: r}
	c.local, _ = addrPort(pc.LocalAddr())
	if r.hasAlt {
		if c.local != r.addrs[rolePrimary] {
			r.log.Warn("rfc5780: primary socket is not on the address the alternates imply",
				"socket", pc.LocalAddr(), "primary", r.addrs[rolePrimary])
		}
		c.local = r.addrs[rolePrimary]
		r.primary.CompareAndSwap(nil, &sender{pc: pc})
	}
	return c
}

// ReadFrom reads the next datagram that is not a Binding request into p,
// answering Binding requests on the way.
func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.inner.ReadFrom(p)
		if err != nil || !isBindingRequest(p[:n]) {
			return n, addr, err
		}
		c.r.handle(rolePrimary, c.inner, c.local, p[:n], addr)
	}
}

// WriteTo sends b to addr unchanged.
func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) { return c.inner.WriteTo(b, addr) }

// Close closes the wrapped socket.
func (c *packetConn) Close() error { return c.inner.Close() }

// LocalAddr returns the wrapped socket's local address.
func (c *packetConn) LocalAddr() net.Addr { return c.inner.LocalAddr() }

// SetDeadline sets the wrapped socket's deadlines.
func (c *packetConn) SetDeadline(t time.Time) error { return c.inner.SetDeadline(t) }

// SetReadDeadline sets the wrapped socket's read deadline.
func (c *packetConn) SetReadDeadline(t time.Time) error { return c.inner.SetReadDeadline(t) }

// SetWriteDeadline sets the wrapped socket's write deadline.
func (c *packetConn) SetWriteDeadline(t time.Time) error { return c.inner.SetWriteDeadline(t) }

// Unwrap returns the wrapped socket.
func (c *packetConn) Unwrap() net.PacketConn { return c.inner }
