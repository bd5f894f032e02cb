package listen

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/config"
)

func TestDetectRelayIPs(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tests := []struct {
		in     []netip.Addr
		v4, v6 string
	}{
		{[]netip.Addr{a("127.0.0.1"), a("::1"), a("10.0.0.5"), a("fe80::1"), a("203.0.113.9"), a("2001:db8::5")}, "203.0.113.9", "2001:db8::5"},
		{[]netip.Addr{a("127.0.0.1"), a("::1")}, "127.0.0.1", "::1"},
		{[]netip.Addr{a("10.0.0.5"), a("fe80::1")}, "10.0.0.5", "invalid IP"},
		{nil, "invalid IP", "invalid IP"},
		// A LAN address is preferred to a carrier-grade NAT one (a VPN
		// overlay, a carrier's NAT), a public one to both.
		{[]netip.Addr{a("100.101.102.103"), a("192.168.1.20")}, "192.168.1.20", "invalid IP"},
		{[]netip.Addr{a("100.64.0.1"), a("127.0.0.1")}, "100.64.0.1", "invalid IP"},
		{[]netip.Addr{a("100.64.0.1"), a("10.0.0.5"), a("198.51.100.4")}, "198.51.100.4", "invalid IP"},
		{[]netip.Addr{a("100.128.0.1"), a("10.0.0.5")}, "100.128.0.1", "invalid IP"}, // outside 100.64.0.0/10: public
		{[]netip.Addr{a("fd00::5"), a("::1")}, "invalid IP", "fd00::5"},
	}
	for _, tt := range tests {
		v4, v6 := DetectRelayIPs(tt.in)
		if v4.String() != tt.v4 || v6.String() != tt.v6 {
			t.Errorf("DetectRelayIPs(%v) = %s, %s; want %s, %s", tt.in, v4, v6, tt.v4, tt.v6)
		}
	}
}

func TestDetectRelayIPsWhy(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tests := []struct {
		in   []netip.Addr
		want string // v4's reason
	}{
		{[]netip.Addr{a("203.0.113.9"), a("10.0.0.5")}, "a public address"},
		{[]netip.Addr{a("100.101.102.103"), a("192.168.1.20")}, "no public address; a private (RFC 1918) address, preferred over the carrier-grade NAT address 100.101.102.103"},
		{[]netip.Addr{a("10.0.0.5")}, "no public address; a private (RFC 1918) address"},
		{[]netip.Addr{a("100.64.0.1")}, "no public or LAN address; a carrier-grade NAT (100.64.0.0/10) address"},
		{[]netip.Addr{a("127.0.0.1")}, "only loopback addresses"},
		{nil, ""},
	}
	for _, tt := range tests {
		v4, _ := DetectRelayIPsWhy(tt.in)
		if !strings.HasPrefix(v4.Why, tt.want) || tt.want == "" && v4.Why != "" {
			t.Errorf("DetectRelayIPsWhy(%v) = %q, want %q", tt.in, v4.Why, tt.want)
		}
	}
}

func TestPrivateKind(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3": "private (RFC 1918)", "172.31.0.1": "private (RFC 1918)", "192.168.9.9": "private (RFC 1918)",
		"fd00::1": "unique local (fc00::/7)", "100.64.0.1": "carrier-grade NAT (100.64.0.0/10)",
		"100.127.1.1": "carrier-grade NAT (100.64.0.0/10)", "203.0.113.1": "", "127.0.0.1": "", "2001:db8::1": "",
		"::ffff:192.168.0.1": "private (RFC 1918)",
	} {
		if got := PrivateKind(netip.MustParseAddr(in)); got != want {
			t.Errorf("PrivateKind(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestUDPBuffersRaised(t *testing.T) {
	l, err := config.ParseListener("udp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	socks, err := UDPSet(l, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer socks[0].Close()
	rcv, _ := unix.GetsockoptInt(socks[0].FD, unix.SOL_SOCKET, unix.SO_RCVBUF)
	// The kernel reports double what was set; without the force options
	// (not root) it stays at rmem_max, which is at least the default.
	if os.Geteuid() == 0 && rcv < udpBuffer {
		t.Fatalf("SO_RCVBUF %d, want at least %d as root", rcv, udpBuffer)
	}
}
