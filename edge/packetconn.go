package edge

import (
	"net"
	"time"
)

var _ net.PacketConn = (*packetConn)(nil)

// packetConn is the UDP wrapper.
type packetConn struct {
	inner net.PacketConn
	cfg   *config
	sh    *shard
}

// WrapPacketConn wraps a client-facing UDP socket for pion's
// PacketConnConfig. ReadFrom returns only ChannelData and well-formed STUN
// smaller than the MTU, dropping and counting the rest; WriteTo applies the
// response fix-ups. Closing the wrapper closes pc.
func WrapPacketConn(pc net.PacketConn, o Options) net.PacketConn {
	cfg := newConfig(o)
	return &packetConn{inner: pc, cfg: cfg, sh: cfg.counters.shard()}
}

// ReadFrom reads the next acceptable datagram into p.
func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.inner.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if c.accept(p[:n], addr) {
			return n, addr, nil
		}
	}
}

// accept classifies and counts one datagram, screens it, and reports
// whether it goes to pion.
func (c *packetConn) accept(b []byte, addr net.Addr) bool {
	if len(b) >= c.cfg.mtu {
		c.sh.oversized.Add(1)
		return false
	}
	in := classifyDatagram(b)
	if in.kind == kindInvalid {
		c.sh.malformed.Add(1)
		return false
	}
	c.sh.countPassed(in)
	if in.integrity && c.cfg.screen != nil {
		if reply := c.cfg.screen(b, addr); reply != nil {
			c.sh.authRefused.Add(1)
			if _, err := c.WriteTo(reply, addr); err != nil {
				c.cfg.log.Debug("edge: send 401", "client", addr, "error", err)
			}
			return false
		}
	}
	return true
}

// WriteTo sends b to addr, rewritten if it is a response ferry fixes up.
// It reports len(b) on success even when the rewritten message differs in
// length.
func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	p, ok := planRewrite(b, c.cfg.software)
	if !ok {
		return c.inner.WriteTo(b, addr)
	}
	bp := c.cfg.getBuf()
	out := appendRewritten((*bp)[:0], b, p, c.cfg.software)
	_, err := c.inner.WriteTo(out, addr)
	c.cfg.putBuf(bp, out)
	if err != nil {
		return 0, err
	}
	c.sh.countRewrite(p)
	return len(b), nil
}

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
