package edge

import (
	"net"
	"time"

	"github.com/ferryrtc/ferry/internal/udpbatch"
)

var _ net.PacketConn = (*packetConn)(nil)

// packetConn is the UDP wrapper.
type packetConn struct {
	inner net.PacketConn
	rd    net.PacketConn // reads inner, in batches when it is a *net.UDPConn
	wr    net.PacketConn // writes inner, with raw sendto when it is a *net.UDPConn
	cfg   *config
	sh    *shard
	last  lastRequest // the request pion is answering (amplification cap)
	stale staleRing   // requests whose stale nonce was stripped
}

// clientAddrs bounds the per-socket cache of client addresses handed to
// pion (emptied when full): 16384 addresses take about 2 MiB.
const clientAddrs = 16384

// WrapPacketConn wraps a client-facing UDP socket for pion's
// PacketConnConfig. ReadFrom returns only ChannelData and well-formed STUN
// smaller than the MTU, dropping and counting the rest; WriteTo applies the
// response fix-ups. Closing the wrapper closes pc.
func WrapPacketConn(pc net.PacketConn, o Options) net.PacketConn {
	cfg := newConfig(o)
	rd := pc
	if u, ok := pc.(*net.UDPConn); ok {
		rd = udpbatch.Wrap(u, udpbatch.Options{Size: cfg.mtu, Addrs: clientAddrs})
	}
	return &packetConn{inner: pc, rd: rd, wr: rd, cfg: cfg, sh: cfg.counters.shard()}
}

// ReadFrom reads the next acceptable datagram into p. A UDP socket is read
// with recvmmsg, a burst per system call; the source address is an
// immutable *net.UDPAddr shared by every datagram from that client (pion
// keeps it in the allocation's 5-tuple). Not for concurrent use: pion has
// one read goroutine per socket.
func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.rd.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if m, ok := c.accept(p[:n], addr); ok {
			return m, addr, nil
		}
	}
}

// accept classifies and counts one datagram, runs STUN requests through
// admit, and reports whether (and how much of) it goes to pion.
func (c *packetConn) accept(b []byte, addr net.Addr) (int, bool) {
	if len(b) >= c.cfg.mtu {
		c.sh.oversized.Add(1)
		return 0, false
	}
	in := classifyDatagram(b)
	if in.kind == kindInvalid {
		c.sh.malformed.Add(1)
		return 0, false
	}
	c.sh.countPassed(in)
	if in.kind != kindRequest && in.kind != kindBindingRequest {
		return len(b), true
	}
	c.last.set(b[8:stunHeaderSize], len(b))
	n, reply, v := c.cfg.admit(b, in, addr, c.inner.LocalAddr(), c.sh, &c.stale)
	switch v {
	case admitDrop:
		return 0, false
	case admitReply:
		if _, err := c.WriteTo(reply, addr); err != nil {
			c.cfg.log.Debug("edge: send reply", "client", addr, "error", err)
		}
		return 0, false
	}
	return n, true
}

// WriteTo sends b to addr, rewritten if it is a response ferry fixes up,
// or not at all if it is a response over the amplification cap. It
// reports len(b) on success even when the rewritten message differs in
// length or was dropped.
func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !isResponse(b) {
		return c.wr.WriteTo(b, addr) // ChannelData, indications: the data path
	}
	o := outCtx{software: c.cfg.software, guard: c.cfg.guard, stale: &c.stale,
		dst: ipOf(addr), limit: c.last.size(b[8:stunHeaderSize])}
	p, act := planRewrite(b, o)
	switch act {
	case sendAsIs:
		return c.wr.WriteTo(b, addr)
	case dropResponse:
		c.sh.amplificationDropped.Add(1)
		return len(b), nil
	}
	bp := c.cfg.getBuf()
	out := appendRewritten((*bp)[:0], b, p, o)
	_, err := c.wr.WriteTo(out, addr)
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
