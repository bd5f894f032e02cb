package udpbatch

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

var _ net.PacketConn = (*Conn)(nil)

// Conn is a net.PacketConn whose ReadFrom reads in batches and whose WriteTo
// sends with a raw sendto(2) (see writer). Deadlines, LocalAddr and Close go
// to the wrapped socket. ReadFrom must not be called concurrently (one
// reader goroutine, as pion has per socket); everything else may be.
type Conn struct {
	*net.UDPConn
	r *reader
	w *writer
}

// Options sizes a Conn.
type Options struct {
	// Batch is how many datagrams one system call may read; 0 means 32.
	Batch int
	// Size is the buffer per datagram; a longer datagram is truncated to
	// it, as a read into a buffer of that size would. 0 means 2048.
	Size int
	// Addrs bounds the source address cache; when full it is emptied. 0
	// means 1024.
	Addrs int
	// Pool, if set, lends the batch buffers (and sets Batch and Size):
	// the socket holds them only while it hands out a batch, so idle
	// sockets (one per relay allocation) cost no buffer memory. The
	// sockets sharing it also share their per-send state.
	Pool *Pool
}

// Pool lends batch buffers to the Conns sharing it. It is safe for
// concurrent use.
type Pool struct {
	batch, size int
	p           sync.Pool
	ops         sync.Pool // *sendOp
}

// NewPool returns a pool of buffers for batch datagrams of size bytes
// each (0: 32 and 2048).
func NewPool(batch, size int) *Pool {
	if batch <= 0 {
		batch = 32
	}
	if size <= 0 {
		size = 2048
	}
	return &Pool{batch: batch, size: size}
}

func (p *Pool) get() *batch {
	if b, ok := p.p.Get().(*batch); ok {
		return b
	}
	return newBatch(p.batch, p.size)
}

func (p *Pool) put(b *batch) { p.p.Put(b) }

// Wrap returns c reading in batches. Where batched reads are not
// supported (not Linux, or no raw access to the socket) ReadFrom reads one
// datagram per call, as c does.
func Wrap(c *net.UDPConn, o Options) *Conn {
	if o.Batch <= 0 {
		o.Batch = 32
	}
	if o.Size <= 0 {
		o.Size = 2048
	}
	if o.Pool != nil {
		o.Batch, o.Size = o.Pool.batch, o.Pool.size
	}
	if o.Addrs <= 0 {
		o.Addrs = 1024
	}
	ops := new(sync.Pool)
	if o.Pool != nil {
		ops = &o.Pool.ops
	}
	return &Conn{UDPConn: c, r: newReader(c, o), w: newWriter(c, ops)}
}

// ReadFrom returns the next datagram and its source address.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.r == nil {
		return c.UDPConn.ReadFrom(p)
	}
	return c.r.readFrom(p)
}

// WriteTo sends p to addr. It reports errors as (*net.UDPConn).WriteTo
// does.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.w != nil {
		n, ok, err := c.w.writeTo(p, addr)
		if ok {
			if err != nil {
				return n, &net.OpError{Op: "write", Net: "udp", Source: c.UDPConn.LocalAddr(), Addr: addr, Err: err}
			}
			return n, nil
		}
	}
	return c.UDPConn.WriteTo(p, addr)
}

// Unwrap returns the socket.
func (c *Conn) Unwrap() net.PacketConn { return c.UDPConn }

// SetReadDeadline sets the socket's read deadline. Datagrams already read
// in a batch are still returned after it passed.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.UDPConn.SetReadDeadline(t) }

// addrKey is a source address as the kernel reports it.
type addrKey struct {
	ip    [16]byte
	port  uint16
	v4    bool
	scope uint32
}

// addrCache maps source addresses to immutable *net.UDPAddr values.
type addrCache struct {
	m   map[addrKey]*net.UDPAddr
	max int
}

func (a *addrCache) get(k addrKey) *net.UDPAddr {
	if u, ok := a.m[k]; ok {
		return u
	}
	var ip netip.Addr
	if k.v4 {
		ip = netip.AddrFrom4([4]byte(k.ip[:4]))
	} else {
		ip = netip.AddrFrom16(k.ip)
	}
	u := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, k.port))
	if k.scope != 0 {
		u.Zone = zoneName(k.scope)
	}
	if a.m == nil {
		a.m = make(map[addrKey]*net.UDPAddr)
	}
	if len(a.m) >= a.max {
		clear(a.m)
	}
	a.m[k] = u
	return u
}

// zoneName is the interface name of a scope ID, as the net package
// reports it.
func zoneName(id uint32) string {
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(id), 10)
}
