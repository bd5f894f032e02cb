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
// configured: the first public address on an interface that is up, else
// the first private one (RFC 1918, ULA), else the first carrier-grade NAT
// one (100.64.0.0/10), else loopback. A family with none of these comes back
// invalid: relays of that family are not offered.
func DetectRelayIPs(addrs []netip.Addr) (v4, v6 netip.Addr) {
	c4, c6 := DetectRelayIPsWhy(addrs)
	return c4.Addr, c6.Addr
}

// RelayChoice is a detected relay address and why it was picked.
type RelayChoice struct {
	Addr netip.Addr
	// Why says which kind of address it is and what it was preferred
	// over, for the log.
	Why string
}

// Ranks of the addresses DetectRelayIPsWhy picks from, best last.
const (
	rankNone = iota
	rankLoopback
	rankCGNAT
	rankPrivate
	rankPublic
)

// cgnat is RFC 6598 shared address space: a carrier's NAT, or an overlay
// such as Tailscale. Peers and clients on the Internet cannot reach it,
// nor usually those on the LAN; a LAN address is preferred.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func relayRank(a netip.Addr) int {
	switch {
	case a.IsLoopback():
		return rankLoopback
	case a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast():
		return rankNone
	case a.IsPrivate():
		return rankPrivate
	case cgnat.Contains(a):
		return rankCGNAT
	case a.IsGlobalUnicast():
		return rankPublic
	}
	return rankNone
}

// PrivateKind names the kind of an address that clients outside its
// network cannot reach: "private (RFC 1918)", "unique local (fc00::/7)" or
// "carrier-grade NAT (100.64.0.0/10)"; "" for others (public, loopback).
func PrivateKind(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.Is4() && a.IsPrivate():
		return "private (RFC 1918)"
	case a.IsPrivate():
		return "unique local (fc00::/7)"
	case cgnat.Contains(a):
		return "carrier-grade NAT (100.64.0.0/10)"
	}
	return ""
}

// DetectRelayIPsWhy is DetectRelayIPs, saying why each address was picked.
func DetectRelayIPsWhy(addrs []netip.Addr) (v4, v6 RelayChoice) {
	var best [2]int
	var pick [2]netip.Addr
	var passed [2][]netip.Addr // CGNAT addresses a private one was preferred to
	for _, a := range addrs {
		a = a.Unmap()
		f := 0
		if a.Is6() {
			f = 1
		}
		r := relayRank(a)
		if r == rankCGNAT {
			passed[f] = append(passed[f], a)
		}
		if r > best[f] {
			pick[f], best[f] = a, r
		}
	}
	why := func(f int) RelayChoice {
		c := RelayChoice{Addr: pick[f]}
		switch best[f] {
		case rankPublic:
			c.Why = "a public address"
		case rankPrivate:
			c.Why = "no public address; a " + PrivateKind(pick[f]) + " address"
			if len(passed[f]) > 0 {
				c.Why += fmt.Sprintf(", preferred over the carrier-grade NAT address %s (100.64.0.0/10: a carrier's NAT or a VPN overlay, which LAN clients rarely reach)", passed[f][0])
			}
		case rankCGNAT:
			c.Why = "no public or LAN address; a carrier-grade NAT (100.64.0.0/10) address"
		case rankLoopback:
			c.Why = "only loopback addresses"
		}
		return c
	}
	return why(0), why(1)
}

// HostPort joins an address and port for net.Dial-style APIs.
func HostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}
