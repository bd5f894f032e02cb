package udpbatch

import (
	"encoding/binary"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr: Go's alignment gives it C's layout.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batch is the memory one recvmmsg call fills: count buffers of size
// bytes, their iovecs, source address slots and headers pointing at them.
type batch struct {
	size  int
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ring  []byte
}

func newBatch(count, size int) *batch {
	b := &batch{
		size:  size,
		hdrs:  make([]mmsghdr, count),
		iovs:  make([]unix.Iovec, count),
		names: make([]unix.RawSockaddrInet6, count),
		ring:  make([]byte, count*size),
	}
	for i := range count {
		b.iovs[i].Base = &b.ring[i*size]
		b.iovs[i].SetLen(size)
		h := &b.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
	}
	return b
}

// reset readies the headers for the next call.
func (b *batch) reset() {
	for i := range b.hdrs {
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.hdrs[i].hdr.Flags = 0
		b.hdrs[i].n = 0
	}
}

// datagram returns the i-th datagram read.
func (b *batch) datagram(i int) []byte {
	return b.ring[i*b.size : i*b.size+int(b.hdrs[i].n)]
}

// reader is the recvmmsg state of one socket. Only the reading goroutine
// touches it.
type reader struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	pool  *Pool  // nil: b is the socket's own
	b     *batch // with a pool: borrowed while a batch is being handed out
	recv  func(fd uintptr) bool
	got   int // datagrams in the current batch
	next  int // next one to hand out
	err   error
	addrs addrCache
}

func newReader(c *net.UDPConn, o Options) *reader {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	r := &reader{conn: c, rc: rc, pool: o.Pool, addrs: addrCache{max: o.Addrs}}
	r.recv = r.recvmmsg
	if r.pool == nil {
		r.b = newBatch(o.Batch, o.Size)
	}
	return r
}

func (r *reader) readFrom(p []byte) (int, net.Addr, error) {
	for {
		for r.next >= r.got {
			if err := r.fill(); err != nil {
				return 0, nil, err
			}
		}
		i := r.next
		r.next++
		n := copy(p, r.b.datagram(i))
		k, ok := keyOf(&r.b.names[i])
		if r.pool != nil && r.next == r.got {
			r.pool.put(r.b) // drained: an idle socket holds no buffers
			r.b = nil
		}
		if ok { // else not an IP source: skip it
			return n, r.addrs.get(k), nil
		}
	}
}

// fill reads the next batch, waiting for at least one datagram.
func (r *reader) fill() error {
	r.got, r.next, r.err = 0, 0, nil
	err := r.rc.Read(r.recv)
	if err == nil {
		err = r.err
	}
	if err != nil {
		if r.pool != nil && r.b != nil {
			r.pool.put(r.b)
			r.b = nil
		}
		return &net.OpError{Op: "read", Net: "udp", Source: r.conn.LocalAddr(), Err: err}
	}
	return nil
}

// recvmmsg is the RawConn.Read callback: false asks to wait until the
// socket is readable. With a pool the batch is borrowed only while
// datagrams are there to read. The call is raw, outside the scheduler, for
// the reason writer gives: with MSG_DONTWAIT it cannot block.
func (r *reader) recvmmsg(fd uintptr) bool {
	if r.b == nil {
		r.b = r.pool.get()
	}
	r.b.reset()
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.b.hdrs[0])),
			uintptr(len(r.b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.got = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if r.pool != nil {
				r.pool.put(r.b)
				r.b = nil
			}
			return false
		}
		r.err = os.NewSyscallError("recvmmsg", e)
		return true
	}
}

// keyOf reads a source address the kernel wrote.
func keyOf(sa *unix.RawSockaddrInet6) (addrKey, bool) {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		k := addrKey{port: portOf(sa4.Port), v4: true}
		copy(k.ip[:], sa4.Addr[:])
		return k, true
	case unix.AF_INET6:
		return addrKey{ip: sa.Addr, port: portOf(sa.Port), scope: sa.Scope_id}, true
	}
	return addrKey{}, false
}

// portOf converts a port in network byte order as stored in a sockaddr.
func portOf(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}
