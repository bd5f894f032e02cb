package udpbatch

import (
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writer sends datagrams with sendto(2) made as a raw system call.
//
// Why not (*net.UDPConn).WriteTo: it enters the system call through the Go
// scheduler (entersyscall/exitsyscall). A loopback or LAN send does the
// receiver's delivery in the sender's context and often takes longer than
// the 20 µs after which sysmon takes the P away from a goroutine in a
// system call and hands it to another thread, so at relay rates each send
// could cost a thread wake-up and a P hand-off (the scheduler and context
// switches were ~30% of ferry's CPU per relayed packet). The socket is
// non-blocking (the net package makes it so) and MSG_DONTWAIT is set, so
// the call never blocks: EAGAIN goes back to the runtime poller through
// RawConn.Write, which also keeps the descriptor open and honours write
// deadlines, as the standard path does.
type writer struct {
	rc  syscall.RawConn
	v6  bool       // an AF_INET6 socket: IPv4 destinations are sent v4-mapped
	ops *sync.Pool // of *sendOp, shared by the sockets of a Pool
}

// sendOp is one send's arguments and result, pooled so that the callback
// handed to RawConn.Write (a method value bound once) allocates nothing.
type sendOp struct {
	p     []byte
	sa    unix.RawSockaddrInet6 // or a RawSockaddrInet4 in its first bytes
	salen uint32
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func newWriter(c *net.UDPConn, ops *sync.Pool) *writer {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var family int
	cerr := rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		switch {
		case err != nil:
		case isInet4(sa):
			family = unix.AF_INET
		case isInet6(sa):
			family = unix.AF_INET6
		}
	})
	if cerr != nil || family == 0 {
		return nil
	}
	return &writer{rc: rc, v6: family == unix.AF_INET6, ops: ops}
}

func isInet4(sa unix.Sockaddr) bool { _, ok := sa.(*unix.SockaddrInet4); return ok }
func isInet6(sa unix.Sockaddr) bool { _, ok := sa.(*unix.SockaddrInet6); return ok }

func (w *writer) op() *sendOp {
	if o, ok := w.ops.Get().(*sendOp); ok {
		return o
	}
	o := &sendOp{}
	o.fn = o.send
	return o
}

// writeTo sends p to addr. ok is false when addr is one it leaves to the
// standard path (not a *net.UDPAddr, a zoned IPv6 address, or a family the
// socket cannot reach), which then reports the error the net package would.
func (w *writer) writeTo(p []byte, addr net.Addr) (n int, ok bool, err error) {
	ua, isUDP := addr.(*net.UDPAddr)
	if !isUDP || ua.Zone != "" || ua.Port < 0 || ua.Port > 0xffff {
		return 0, false, nil
	}
	o := w.op()
	if !o.setAddr(ua.IP, uint16(ua.Port), w.v6) {
		w.ops.Put(o)
		return 0, false, nil
	}
	o.p, o.n, o.errno = p, 0, 0 // the callback may not run (closed, deadline)
	err = w.rc.Write(o.fn)
	if oe, isOp := err.(*net.OpError); isOp {
		err = oe.Err // "raw-write": the caller names the operation
	}
	n, errno := o.n, o.errno
	o.p = nil
	w.ops.Put(o)
	if err == nil && errno != 0 {
		err = os.NewSyscallError("sendto", errno)
	}
	return n, true, err
}

// setAddr fills the destination sockaddr; false if the socket's family
// cannot reach ip.
func (o *sendOp) setAddr(ip net.IP, port uint16, v6 bool) bool {
	ip4 := ip.To4()
	if !v6 {
		if ip4 == nil {
			return false
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&o.sa))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET}
		putPort(&sa.Port, port)
		copy(sa.Addr[:], ip4)
		o.salen = unix.SizeofSockaddrInet4
		return true
	}
	o.sa = unix.RawSockaddrInet6{Family: unix.AF_INET6}
	putPort(&o.sa.Port, port)
	switch {
	case ip4 != nil:
		o.sa.Addr[10], o.sa.Addr[11] = 0xff, 0xff
		copy(o.sa.Addr[12:], ip4)
	case len(ip) == net.IPv6len:
		copy(o.sa.Addr[:], ip)
	default:
		return false
	}
	o.salen = unix.SizeofSockaddrInet6
	return true
}

// putPort stores port in network byte order into a sockaddr's port field.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}

// send is the RawConn.Write callback: false asks to wait until the socket
// is writable.
func (o *sendOp) send(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(o.p))), uintptr(len(o.p)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&o.sa)), uintptr(o.salen))
		switch e {
		case 0:
			o.n, o.errno = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		o.n, o.errno = 0, e
		return true
	}
}
