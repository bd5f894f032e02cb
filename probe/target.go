package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// DefaultPort is the STUN/TURN port used when a URL names none.
const DefaultPort = 3478

// Target is a parsed probe URL.
type Target struct {
	// Scheme is "stun" or "turn".
	Scheme string
	// Host is a DNS name or an IP address (without brackets).
	Host string
	// Port is the UDP port.
	Port uint16
}

// String returns the target as a URL.
func (t Target) String() string {
	return t.Scheme + "://" + net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// ParseTarget parses stun://host[:port] or turn://host[:port]; the RFC 7064
// forms stun:host[:port] and turn:host[:port]?transport=udp are accepted
// too. Only UDP is probed.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("%q is not a URL such as stun://host:3478 or turn://host:3478", s)
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "stun", "turn":
	case "stuns", "turns":
		return Target{}, fmt.Errorf("%q: %s (TLS) is not probed; probe the UDP listener with %s://", s, scheme, strings.TrimSuffix(scheme, "s"))
	default:
		return Target{}, fmt.Errorf("%q: scheme %q is not stun or turn", s, u.Scheme)
	}
	if tr := u.Query().Get("transport"); tr != "" && !strings.EqualFold(tr, "udp") {
		return Target{}, fmt.Errorf("%q: transport %q is not probed; only UDP", s, tr)
	}
	hostport := u.Host
	if hostport == "" {
		hostport = u.Opaque // stun:host:port
		if i := strings.IndexAny(hostport, "?/"); i >= 0 {
			hostport = hostport[:i]
		}
	}
	if u.Path != "" && u.Path != "/" {
		return Target{}, fmt.Errorf("%q: a probe URL takes no path", s)
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else {
		host = strings.Trim(host, "[]")
	}
	if host == "" {
		return Target{}, fmt.Errorf("%q: no host", s)
	}
	t := Target{Scheme: scheme, Host: host, Port: DefaultPort}
	if port != "" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return Target{}, fmt.Errorf("%q: port %q is not a port from 1 to 65535", s, port)
		}
		t.Port = uint16(p)
	}
	return t, nil
}

// resolve returns the first address of host (an IP address is returned
// as is).
func resolve(ctx context.Context, host string, port uint16) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), port), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: no addresses", host)
	}
	for _, ip := range ips { // prefer IPv4, which every NAT handles
		if ip.Unmap().Is4() {
			return netip.AddrPortFrom(ip.Unmap(), port), nil
		}
	}
	return netip.AddrPortFrom(ips[0], port), nil
}

// localIPFor returns the source address the host's routing picks for dst,
// without sending anything.
func localIPFor(dst netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %s: %w", dst, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// listenFor opens a UDP socket on the local address that reaches dst.
func listenFor(dst netip.AddrPort) (*net.UDPConn, error) {
	ip, err := localIPFor(dst)
	if err != nil {
		return nil, err
	}
	network := "udp4"
	if ip.Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return nil, fmt.Errorf("local socket on %s: %w", ip, err)
	}
	return c, nil
}
