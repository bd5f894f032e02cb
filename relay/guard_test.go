package relay

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func TestPolicyAdmitsOwnRelays(t *testing.T) {
	relayIP := netip.MustParseAddr("10.0.0.5")
	extIP := netip.MustParseAddr("203.0.113.7")
	p, err := NewPolicy(PolicyOptions{
		Self:         []netip.Addr{relayIP, extIP, netip.MustParseAddr("10.0.0.6")},
		Relays:       []netip.Addr{relayIP, extIP},
		Denied:       []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")},
		RelayMinPort: 49152,
		RelayMaxPort: 65535,
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.0.0.5", true},        // own relay, although private and in Self
		{"::ffff:10.0.0.5", true}, // its IPv4-mapped form
		{"10.0.0.6", false},       // another of ferry's addresses
		{"10.0.0.7", false},       // private
		{"203.0.113.7", false},    // own relay, but explicitly denied
	}
	for _, tt := range tests {
		if ok, why := p.Check(netip.MustParseAddr(tt.ip)); ok != tt.want {
			t.Errorf("Check(%s) = %v (%s), want %v", tt.ip, ok, why, tt.want)
		}
	}
	ports := []struct {
		ap   string
		want bool
	}{
		{"10.0.0.5:49152", true},
		{"10.0.0.5:65535", true},
		{"10.0.0.5:3478", false},
		{"10.0.0.5:22", false},
		{"[::ffff:10.0.0.5]:3478", false},
		{"198.51.100.1:22", true}, // not ferry's: the port is the peer's business
	}
	for _, tt := range ports {
		if got := p.PortAllowed(netip.MustParseAddrPort(tt.ap)); got != tt.want {
			t.Errorf("PortAllowed(%s) = %v, want %v", tt.ap, got, tt.want)
		}
	}
	ap := netip.MustParseAddrPort("10.0.0.5:3478")
	if n := testing.AllocsPerRun(100, func() { p.PortAllowed(ap) }); n != 0 {
		t.Fatalf("PortAllowed allocates %v times", n)
	}
}

func TestPortGuardDropsOwnNonRelayPorts(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	target, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	tport := target.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	relayConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	rport := relayConn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	// The relay range holds only the relay socket's own port, not the
	// target's: the target stands for a listener on ferry's host.
	p, err := NewPolicy(PolicyOptions{Relays: []netip.Addr{lo}, RelayMinPort: rport, RelayMaxPort: rport})
	if err != nil {
		t.Fatal(err)
	}
	var dropped atomic.Uint64
	g := &portGuard{PacketConn: relayConn, policy: p, dropped: &dropped}
	if n, err := g.WriteTo([]byte("x"), target.LocalAddr()); err != nil || n != 1 {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	_ = target.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := target.ReadFrom(make([]byte, 8)); err == nil {
		t.Fatalf("datagram to ferry's own port %d got through", tport)
	}
	if dropped.Load() != 1 {
		t.Fatalf("dropped = %d, want 1", dropped.Load())
	}
}

// TestPortAllowedWhenPolicyAdmitsRelay: with AllowLoopback a loopback relay
// address is an ordinary admitted peer, so every port stays reachable
// (local development with peers on 127.0.0.1).
func TestPortAllowedWhenPolicyAdmitsRelay(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	p, err := NewPolicy(PolicyOptions{AllowLoopback: true, Self: []netip.Addr{lo}, Relays: []netip.Addr{lo}, RelayMinPort: 50000, RelayMaxPort: 50010})
	if err != nil {
		t.Fatal(err)
	}
	if !p.PortAllowed(netip.AddrPortFrom(lo, 9)) {
		t.Fatal("AllowLoopback policy restricts ports on a loopback relay address")
	}
	strict, err := NewPolicy(PolicyOptions{Self: []netip.Addr{lo}, Relays: []netip.Addr{lo}, RelayMinPort: 50000, RelayMaxPort: 50010})
	if err != nil {
		t.Fatal(err)
	}
	if strict.PortAllowed(netip.AddrPortFrom(lo, 9)) || !strict.PortAllowed(netip.AddrPortFrom(lo, 50005)) {
		t.Fatal("default policy does not confine a loopback relay address to relay ports")
	}
}
