package dataplane

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr; Go's alignment gives it C's layout.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// cmsgSpace is room for one IP_PKTINFO or IPV6_PKTINFO control message.
const cmsgSpace = 64

// rxBatch is the memory one recvmmsg call fills: count buffers, each with
// engine.Headroom before and room after the datagram, and the source
// address and control message slots.
type rxBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte
	bufs  [][]byte // whole buffers, headroom included
}

func newRxBatch(count, headroom, size, tailroom int) *rxBatch {
	b := &rxBatch{
		hdrs:  make([]mmsghdr, count),
		iovs:  make([]unix.Iovec, count),
		names: make([]unix.RawSockaddrInet6, count),
		ctrl:  make([]byte, count*cmsgSpace),
		bufs:  make([][]byte, count),
	}
	ring := make([]byte, count*(headroom+size+tailroom))
	for i := range count {
		buf := ring[i*(headroom+size+tailroom) : (i+1)*(headroom+size+tailroom)]
		b.bufs[i] = buf
		b.iovs[i].Base = &buf[headroom]
		b.iovs[i].SetLen(size)
		h := &b.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
	}
	return b
}

// reset readies the first n headers for a call; control messages are
// asked for when ctrl is set.
func (b *rxBatch) reset(n int, ctrl bool) {
	for i := range n {
		h := &b.hdrs[i].hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
		if ctrl {
			h.Control = &b.ctrl[i*cmsgSpace]
			h.SetControllen(cmsgSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		b.hdrs[i].n = 0
	}
}

// recvmmsg reads up to len(b.hdrs) datagrams without blocking; 0 when
// there are none.
func (b *rxBatch) recvmmsg(fd int, ctrl bool) (int, unix.Errno) {
	b.reset(len(b.hdrs), ctrl)
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])),
			uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return int(n), 0
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, 0
		}
		return 0, e
	}
}

// source returns the i-th datagram's source address.
func (b *rxBatch) source(i int) (netip.AddrPort, bool) {
	return sockaddrToAddrPort(&b.names[i])
}

// truncated reports whether the i-th datagram did not fit its buffer.
func (b *rxBatch) truncated(i int) bool { return b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 }

// destination returns the local address the i-th datagram was sent to,
// from its IP_PKTINFO or IPV6_PKTINFO control message.
func (b *rxBatch) destination(i int, port uint16) (netip.AddrPort, bool) {
	h := &b.hdrs[i].hdr
	ctrl := b.ctrl[i*cmsgSpace : i*cmsgSpace+int(h.Controllen)]
	for len(ctrl) >= unix.SizeofCmsghdr {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(cm.Len)
		if l < unix.SizeofCmsghdr || l > len(ctrl) {
			return netip.AddrPort{}, false
		}
		data := ctrl[unix.SizeofCmsghdr:l]
		switch {
		case cm.Level == unix.IPPROTO_IP && cm.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrPortFrom(netip.AddrFrom4(pi.Addr), port), true
		case cm.Level == unix.IPPROTO_IPV6 && cm.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrPortFrom(netip.AddrFrom16(pi.Addr).Unmap(), port), true
		}
		ctrl = ctrl[cmsgAlign(l):]
	}
	return netip.AddrPort{}, false
}

func cmsgAlign(n int) int { return (n + 7) &^ 7 }

// sockaddrToAddrPort reads an address the kernel wrote.
func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port)), true
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// putSockaddr writes ap into sa for a socket of family v6 (an IPv4
// address on an IPv6 socket is written IPv4-mapped) and returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	if !v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		sa4.Port = htons(ap.Port())
		sa4.Addr = ap.Addr().Unmap().As4()
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Port = htons(ap.Port())
	sa.Flowinfo = 0
	sa.Addr = ap.Addr().As16()
	sa.Scope_id = 0
	return unix.SizeofSockaddrInet6
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}

func htons(p uint16) uint16 {
	var v uint16
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&v))[:], p)
	return v
}

// UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18): consecutive
// datagrams to one destination of one size (the last may be shorter) leave
// as one message, which the kernel cuts into datagrams as late as it can.
const (
	maxSegments = 64    // UDP_MAX_SEGMENTS
	maxGSOBytes = 65000 // under the 64 KiB a UDP message may carry
)

// gsoSupported reports whether the kernel takes UDP_SEGMENT.
func gsoSupported() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT, 0) == nil
}

// txBatch collects datagrams for one sendmmsg call on one socket.
type txBatch struct {
	fd   int
	v6   bool
	info bool // add a PKTINFO control message with the source address
	gso  bool // coalesce datagrams into UDP_SEGMENT messages
	n    int  // messages queued
	hdrs []mmsghdr
	iovs []unix.Iovec // maxSegments per message
	// Per message: destination and source, segments, bytes, the
	// segment size, and whether a shorter (last) segment closed it.
	to, src []netip.AddrPort
	segs    []int
	bytes   []int
	size    []int
	closed  []bool
	names   []unix.RawSockaddrInet6
	ctrl    []byte
}

func newTxBatch(count int, gso bool) *txBatch {
	b := &txBatch{
		fd:     -1,
		gso:    gso,
		hdrs:   make([]mmsghdr, count),
		iovs:   make([]unix.Iovec, count*maxSegments),
		to:     make([]netip.AddrPort, count),
		src:    make([]netip.AddrPort, count),
		segs:   make([]int, count),
		bytes:  make([]int, count),
		size:   make([]int, count),
		closed: make([]bool, count),
		names:  make([]unix.RawSockaddrInet6, count),
		ctrl:   make([]byte, count*cmsgSpace),
	}
	for i := range count {
		h := &b.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i*maxSegments]
	}
	return b
}

// add queues data to to, from src when the batch sets PKTINFO. It reports
// false when the batch is full.
func (b *txBatch) add(data []byte, to, src netip.AddrPort) bool {
	if b.gso && b.n > 0 && len(data) > 0 {
		i := b.n - 1
		if b.to[i] == to && b.src[i] == src && !b.closed[i] && b.segs[i] < maxSegments &&
			len(data) <= b.size[i] && b.bytes[i]+len(data) <= maxGSOBytes {
			iov := &b.iovs[i*maxSegments+b.segs[i]]
			iov.Base = &data[0]
			iov.SetLen(len(data))
			b.segs[i]++
			b.bytes[i] += len(data)
			b.closed[i] = len(data) < b.size[i]
			return true
		}
	}
	if b.n == len(b.hdrs) {
		return false
	}
	i := b.n
	b.to[i], b.src[i] = to, src
	b.segs[i], b.bytes[i], b.size[i], b.closed[i] = 1, len(data), len(data), false
	iov := &b.iovs[i*maxSegments]
	if len(data) == 0 {
		iov.Base = nil
	} else {
		iov.Base = &data[0]
	}
	iov.SetLen(len(data))
	b.n++
	return true
}

// header fills message i's header: destination, iovecs, control messages
// (PKTINFO with the source address, UDP_SEGMENT when it holds several
// datagrams).
func (b *txBatch) header(i int) {
	h := &b.hdrs[i].hdr
	h.Namelen = putSockaddr(&b.names[i], b.to[i], b.v6)
	h.SetIovlen(b.segs[i])
	c := b.ctrl[i*cmsgSpace : (i+1)*cmsgSpace]
	clear(c)
	off := 0
	if src := b.src[i]; b.info && src.IsValid() && !src.Addr().IsUnspecified() {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		if b.v6 {
			cm.Level, cm.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
			cm.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&c[unix.SizeofCmsghdr]))
			pi.Addr = src.Addr().As16()
			off = unix.CmsgSpace(unix.SizeofInet6Pktinfo)
		} else {
			cm.Level, cm.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
			cm.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&c[unix.SizeofCmsghdr]))
			pi.Spec_dst = src.Addr().Unmap().As4()
			off = unix.CmsgSpace(unix.SizeofInet4Pktinfo)
		}
	}
	if b.segs[i] > 1 {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[off]))
		cm.Level, cm.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		cm.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&c[off+unix.SizeofCmsghdr])) = uint16(b.size[i])
		off += unix.CmsgSpace(2)
	}
	if off == 0 {
		h.Control = nil
	} else {
		h.Control = &c[0]
	}
	h.SetControllen(off)
}

// flush sends the queued datagrams and returns how many the kernel took;
// the rest (a full socket buffer, an unreachable destination) are dropped.
func (b *txBatch) flush() (sent, dropped int) {
	for i := range b.n {
		b.header(i)
	}
	off := 0
	for off < b.n {
		var n uintptr
		var e unix.Errno
		if b.n-off == 1 {
			// One message (most sends from a relay socket to its peer):
			// sendmsg spares sendmmsg's vector handling.
			_, _, e = unix.RawSyscall(unix.SYS_SENDMSG, uintptr(b.fd), uintptr(unsafe.Pointer(&b.hdrs[off].hdr)), unix.MSG_DONTWAIT)
			if e == 0 {
				n = 1
			}
		} else {
			n, _, e = unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(b.fd), uintptr(unsafe.Pointer(&b.hdrs[off])),
				uintptr(b.n-off), unix.MSG_DONTWAIT, 0, 0)
		}
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			// The first message failed (EAGAIN, ECONNREFUSED from an ICMP
			// error, EMSGSIZE): drop it and go on with the rest. A
			// segmented one the device refused turns segmentation off.
			if b.segs[off] > 1 && (e == unix.EIO || e == unix.EINVAL || e == unix.EOPNOTSUPP) {
				b.gso = false
			}
			dropped += b.segs[off]
			off++
		default:
			for _, k := range b.segs[off : off+int(n)] {
				sent += k
			}
			off += int(n)
		}
	}
	b.n = 0
	return sent, dropped
}
