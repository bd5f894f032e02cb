package listen

import (
	"net/netip"
	"os"
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
	}
	for _, tt := range tests {
		v4, v6 := DetectRelayIPs(tt.in)
		if v4.String() != tt.v4 || v6.String() != tt.v6 {
			t.Errorf("DetectRelayIPs(%v) = %s, %s; want %s, %s", tt.in, v4, v6, tt.v4, tt.v6)
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
