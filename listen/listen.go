package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/sockopt"
)

// udpBuffer is the receive and send buffer asked for on client-facing UDP
// sockets. The kernel default (about 208 KiB) overflows under bursts of a
// few thousand packets while the read goroutine is descheduled, and every
// overflow is a lost media packet.
const udpBuffer = 4 << 20

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
