package dataplane

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/internal/sockopt"
)

// errPortsExhausted is returned when no port of the range could be bound.
var errPortsExhausted = errors.New("no free relay port in the range")

// relayBuffer is the receive and send buffer of a UDP relay socket: room
// for a burst from peers while the loop is busy. Memory is charged only
// for queued datagrams.
const relayBuffer = 256 << 10

// ports binds relay sockets in the relay port range. The kernel is the
// book of which ports are taken (by ferry or anyone else): a port is tried
// by binding it. It is safe for concurrent use.
type ports struct {
	v4, v6 netip.Addr // bind addresses; invalid: family not offered
	lo, hi uint16

	mu  sync.Mutex
	rng *rand.Rand
	// tcp are the TCP relay ports ferry listens on: their listeners set
	// SO_REUSEPORT (an RFC 6062 Connect dials from the same port), so the
	// kernel would let a second one bind; this book keeps them unique.
	tcp map[netip.AddrPort]bool
}

func newPorts(v4, v6 netip.Addr, lo, hi uint16) *ports {
	return &ports{v4: v4, v6: v6, lo: lo, hi: hi, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		tcp: map[netip.AddrPort]bool{}}
}

func (p *ports) bindIP(family uint8) (netip.Addr, error) {
	ip := p.v4
	if family == 6 {
		ip = p.v6
	}
	if !ip.IsValid() {
		return ip, fmt.Errorf("no IPv%d relay address", family)
	}
	return ip, nil
}

// start returns a random first port to try.
func (p *ports) start() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.IntN(int(p.hi) - int(p.lo) + 1)
}

// udpSock is a bound UDP relay socket.
type udpRelay struct {
	fd   int
	addr netip.AddrPort
}

// openUDP binds a UDP relay socket of family: an even port when even is
// set, and then also the next port when pair is set (returned second). It
// scans the whole range from a random port before giving up.
func (p *ports) openUDP(family uint8, even, pair, df bool) (udpRelay, udpRelay, error) {
	ip, err := p.bindIP(family)
	if err != nil {
		return udpRelay{}, udpRelay{}, err
	}
	size := int(p.hi) - int(p.lo) + 1
	first := p.start()
	for i := range size {
		port := uint16(int(p.lo) + (first+i)%size)
		if even && port%2 == 1 {
			continue
		}
		if pair && port == p.hi {
			continue
		}
		a, err := bindUDP(netip.AddrPortFrom(ip, port), df)
		if errors.Is(err, unix.EADDRINUSE) {
			continue
		}
		if err != nil {
			return udpRelay{}, udpRelay{}, err
		}
		if !pair {
			return a, udpRelay{}, nil
		}
		b, err := bindUDP(netip.AddrPortFrom(ip, port+1), df)
		if err == nil {
			return a, b, nil
		}
		_ = unix.Close(a.fd)
		if !errors.Is(err, unix.EADDRINUSE) {
			return udpRelay{}, udpRelay{}, err
		}
	}
	return udpRelay{}, udpRelay{}, errPortsExhausted
}

// bindUDP opens a non-blocking UDP socket bound to addr.
func bindUDP(addr netip.AddrPort, df bool) (udpRelay, error) {
	ip := addr.Addr()
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return udpRelay{}, fmt.Errorf("relay socket: %w", err)
	}
	var sa unix.Sockaddr
	if fam == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
		if df {
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1)
		}
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	} else {
		if df {
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		}
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, relayBuffer)
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return udpRelay{}, err
		}
		return udpRelay{}, fmt.Errorf("bind relay %s: %w", addr, err)
	}
	return udpRelay{fd: fd, addr: addr}, nil
}

// openTCP binds an RFC 6062 TCP relay listener of family.
func (p *ports) openTCP(family uint8) (*net.TCPListener, netip.AddrPort, error) {
	ip, err := p.bindIP(family)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	lc := net.ListenConfig{Control: sockopt.ReuseAddrPort}
	size := int(p.hi) - int(p.lo) + 1
	first := p.start()
	for i := range size {
		port := uint16(int(p.lo) + (first+i)%size)
		addr := netip.AddrPortFrom(ip, port)
		if !p.claimTCP(addr) {
			continue
		}
		// A TCP relay's port must be free for UDP too: the address is
		// handed out without its protocol in places (logs, admin).
		if probe, err := bindUDP(addr, false); err == nil {
			_ = unix.Close(probe.fd)
		} else {
			p.releaseTCP(addr)
			continue
		}
		ln, err := lc.Listen(context.Background(), "tcp", addr.String())
		if err == nil {
			return ln.(*net.TCPListener), addr, nil
		}
		p.releaseTCP(addr)
		if !errors.Is(err, unix.EADDRINUSE) {
			return nil, netip.AddrPort{}, fmt.Errorf("listen tcp relay %s: %w", addr, err)
		}
	}
	return nil, netip.AddrPort{}, errPortsExhausted
}

// claimTCP books addr for a TCP relay listener; false when it is taken.
func (p *ports) claimTCP(addr netip.AddrPort) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tcp[addr] {
		return false
	}
	p.tcp[addr] = true
	return true
}

// releaseTCP gives back a TCP relay port.
func (p *ports) releaseTCP(addr netip.AddrPort) {
	p.mu.Lock()
	delete(p.tcp, addr)
	p.mu.Unlock()
}
