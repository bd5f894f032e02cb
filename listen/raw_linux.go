package listen

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/config"
)

// UDPSocket is a bound, non-blocking UDP socket as a raw descriptor,
// outside Go's netpoller: the data plane reads it from its own event loops.
// Close it once (the data plane does, once it is handed over).
type UDPSocket struct {
	FD   int
	Addr netip.AddrPort // as bound: the real port when 0 was asked for
	// PacketInfo is set on wildcard sockets, which learn each datagram's
	// destination address (IP_PKTINFO, IPV6_RECVPKTINFO) so answers leave
	// from the address the client sent to.
	PacketInfo bool
}

// Close closes the descriptor.
func (s UDPSocket) Close() error { return unix.Close(s.FD) }

// ErrPortInUse is wrapped when a listener's port is held by another
// process.
var ErrPortInUse = errors.New("the port is in use by another process (is another ferry running?)")

// UDPSet opens n UDP sockets on l's address that share it with
// SO_REUSEPORT (the kernel spreads clients over them by 4-tuple, so one
// client always reaches the same socket). Before that it binds the address
// once without SO_REUSEPORT: if another process holds the port, that fails
// and UDPSet returns an error wrapping ErrPortInUse, instead of joining the
// other process's group and taking its traffic. Wildcard sockets get
// packet info. With port 0 the first socket picks the port. On error every
// socket opened is closed.
func UDPSet(l config.Listener, n int) ([]UDPSocket, error) {
	n = max(n, 1)
	addr := l.Addr
	if addr.Port() != 0 {
		probe, err := rawUDP(addr, false)
		if err != nil {
			if errors.Is(err, unix.EADDRINUSE) {
				return nil, fmt.Errorf("listen %s: udp port %d: %w", l, addr.Port(), ErrPortInUse)
			}
			return nil, fmt.Errorf("listen %s: %w", l, err)
		}
		_ = probe.Close()
	}
	out := make([]UDPSocket, 0, n)
	for i := range n {
		s, err := rawUDP(addr, true)
		if err != nil {
			for _, s := range out {
				_ = s.Close()
			}
			return nil, fmt.Errorf("listen %s (socket %d of %d): %w", l, i+1, n, err)
		}
		addr = s.Addr
		out = append(out, s)
	}
	return out, nil
}

// UDPAt opens one UDP socket bound to addr, without SO_REUSEPORT (RFC 5780
// alternate sockets).
func UDPAt(addr netip.AddrPort) (UDPSocket, error) {
	s, err := rawUDP(addr, false)
	if err != nil {
		return UDPSocket{}, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	return s, nil
}

// rawUDP opens and binds one UDP socket.
func rawUDP(addr netip.AddrPort, reusePort bool) (UDPSocket, error) {
	ip := addr.Addr().Unmap()
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return UDPSocket{}, fmt.Errorf("socket: %w", err)
	}
	s := UDPSocket{FD: fd, PacketInfo: ip.IsUnspecified()}
	fail := func(what string, err error) (UDPSocket, error) {
		_ = unix.Close(fd)
		return UDPSocket{}, fmt.Errorf("%s: %w", what, err)
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("SO_REUSEPORT", err)
		}
	}
	var sa unix.Sockaddr
	if fam == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
		if s.PacketInfo {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
				return fail("IPV6_RECVPKTINFO", err)
			}
		}
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	} else {
		if s.PacketInfo {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
				return fail("IP_PKTINFO", err)
			}
		}
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	}
	setBuffers(fd)
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		s.Addr = netip.AddrPortFrom(netip.AddrFrom4(b.Addr), uint16(b.Port))
	case *unix.SockaddrInet6:
		s.Addr = netip.AddrPortFrom(netip.AddrFrom16(b.Addr), uint16(b.Port))
	}
	return s, nil
}

// setBuffers raises a socket's buffers to udpBuffer as far as allowed.
func setBuffers(fd int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpBuffer)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, udpBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, udpBuffer)
	}
}

// CheckBindable reports whether the host has ip: it binds a UDP socket to
// ip with port 0 and closes it. A relay address the host lacks would make
// every Allocate fail, so ferry refuses to start with one.
func CheckBindable(ip netip.Addr) error {
	s, err := rawUDP(netip.AddrPortFrom(ip, 0), false)
	if err != nil {
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("%s is not an address of this host", ip)
		}
		return err
	}
	return s.Close()
}
