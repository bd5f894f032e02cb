package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/sockopt"
)

// udpBuffer is the receive and send buffer asked for on client-facing UDP
// sockets. The kernel default (about 208 KiB) overflows under bursts of a
// few thousand packets while the read goroutine is descheduled, and every
// overflow is a lost media packet.
const udpBuffer = 4 << 20

// bigBuffers raises the socket's buffers to udpBuffer: with SO_RCVBUFFORCE
// and SO_SNDBUFFORCE when ferry has CAP_NET_ADMIN (as root), else as far as
// net.core.rmem_max/wmem_max allow. Failing to raise them is not an error.
func bigBuffers(c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, udpBuffer)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, udpBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, udpBuffer)
		}
	})
}

// UDP opens n UDP sockets bound to l's address with SO_REUSEPORT, steering
// each client IP address to one socket (see steerBySourceIP). With port 0
// the first socket picks the port and the others join it. On error every
// socket opened so far is closed.
func UDP(ctx context.Context, l config.Listener, n int) ([]net.PacketConn, error) {
	if n < 1 {
		n = 1
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		if err := sockopt.ReuseAddrPort(network, address, c); err != nil {
			return err
		}
		return bigBuffers(c)
	}}
	addr := l.Addr.String()
	conns := make([]net.PacketConn, 0, n)
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(ctx, l.Network(), addr)
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("listen %s (socket %d of %d): %w", l, i+1, n, err)
		}
		if i == 0 {
			// Later sockets join the port the first one got.
			addr = pc.LocalAddr().String()
		}
		conns = append(conns, pc)
	}
	if n > 1 {
		if err := steerBySourceIP(conns[0], n, l.Addr.Addr().Is6()); err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("listen %s: %w", l, err)
		}
	}
	return conns, nil
}

// TCP opens a TCP listener on l's address. It binds without SO_REUSEPORT:
// a port another process holds is an error wrapping ErrPortInUse.
func TCP(ctx context.Context, l config.Listener) (net.Listener, error) {
	lc := net.ListenConfig{Control: sockopt.ReuseAddr}
	ln, err := lc.Listen(ctx, l.Network(), l.Addr.String())
	if err != nil {
		return nil, portError(l, err)
	}
	return ln, nil
}

// portError names the port of a listener that could not be opened.
func portError(l config.Listener, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen %s: %s port %d: %w", l, l.Network()[:3], l.Addr.Port(), ErrPortInUse)
	}
	return fmt.Errorf("listen %s: %w", l, err)
}

// Unavailable reports whether err means the host lacks the address family
// or address (an IPv6 wildcard on a host without IPv6), as opposed to a real
// failure such as a port in use.
func Unavailable(err error) bool {
	return errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL) ||
		errors.Is(err, syscall.EPROTONOSUPPORT)
}

// InterfaceAddrs returns every unicast address configured on the host's
// interfaces that are up.
func InterfaceAddrs() []netip.Addr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// DetectRelayIPs picks, per family, the address relays bind to when none is
// configured: the first global unicast address on an interface that is up,
// else the first private one, else loopback. A family with none
// of these comes back invalid: relays of that family are not offered.
func DetectRelayIPs(addrs []netip.Addr) (v4, v6 netip.Addr) {
	rank := func(a netip.Addr) int {
		switch {
		case a.IsLoopback():
			return 1
		case a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast():
			return 0
		case a.IsPrivate():
			return 2
		case a.IsGlobalUnicast():
			return 3
		}
		return 0
	}
	best4, best6 := 0, 0
	for _, a := range addrs {
		r := rank(a)
		if a.Is4() && r > best4 {
			v4, best4 = a, r
		}
		if a.Is6() && r > best6 {
			v6, best6 = a, r
		}
	}
	return v4, v6
}

// HostPort joins an address and port for net.Dial-style APIs.
func HostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}

// skfNetOff is SKF_NET_OFF (-0x100000) as the uint32 a BPF load offset
// holds: loads at this negative offset read from the packet's network (IP)
// header.
const skfNetOff = 0xFFF00000

// steerBySourceIP attaches a classic BPF program to the SO_REUSEPORT group
// that picks the socket from a hash of the client's IP address alone, not
// the kernel's default 4-tuple hash. pion keeps allocations and
// RESERVATION-TOKENs per socket (one allocation manager per PacketConn), so
// a client's RTP and RTCP allocations (different source ports, one token)
// must land on the same socket, or the second Allocate fails with 508.
func steerBySourceIP(pc net.PacketConn, n int, v6 bool) error {
	srcWord := uint32(12) // IPv4 source address
	if v6 {
		srcWord = 20 // last 32 bits of the IPv6 source address
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: skfNetOff + srcWord, Size: 4},
		bpf.TAX{},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 16},
		bpf.ALUOpX{Op: bpf.ALUOpXor},
		bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(n)},
		bpf.RetA{},
	})
	if err != nil {
		return fmt.Errorf("assemble reuseport program: %w", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return errors.New("socket has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("attach reuseport program: %w", serr)
	}
	return nil
}
