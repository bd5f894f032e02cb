package listen

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/config"
)

// TestUDPSteersByClientIP checks that every source port of one client IP
// reaches the same socket of the SO_REUSEPORT set (pion keeps reservations
// per socket), while the set still serves several sockets.
func TestUDPSteersByClientIP(t *testing.T) {
	for _, tc := range []struct {
		name, listen string
		clients      []string
	}{
		{"ipv4", "udp://127.0.0.1:0", []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}},
		{"ipv6", "udp://[::1]:0", []string{"::1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := config.ParseListener(tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			const n = 4
			conns, err := UDP(context.Background(), l, n)
			if err != nil {
				if l.Addr.Addr().Is6() {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			defer func() {
				for _, c := range conns {
					_ = c.Close()
				}
			}()
			got := make(chan [2]string, 256)
			for i, c := range conns {
				go func() {
					buf := make([]byte, 64)
					for {
						_, from, err := c.ReadFrom(buf)
						if err != nil {
							return
						}
						ap := netip.MustParseAddrPort(from.String())
						got <- [2]string{ap.Addr().Unmap().String(), string(rune('0' + i))}
					}
				}()
			}
			dst := conns[0].LocalAddr()
			const ports = 16
			sent := 0
			for _, ip := range tc.clients {
				for p := 0; p < ports; p++ {
					c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
					if err != nil {
						t.Fatal(err)
					}
					if _, err := c.WriteTo([]byte("x"), dst); err != nil {
						t.Fatal(err)
					}
					_ = c.Close()
					sent++
				}
			}
			socketOf := map[string]string{}
			used := map[string]bool{}
			for i := 0; i < sent; i++ {
				select {
				case g := <-got:
					if s, ok := socketOf[g[0]]; ok && s != g[1] {
						t.Fatalf("client %s reached sockets %s and %s", g[0], s, g[1])
					}
					socketOf[g[0]] = g[1]
					used[g[1]] = true
				case <-time.After(3 * time.Second):
					t.Fatalf("received %d of %d datagrams", i, sent)
				}
			}
			if len(tc.clients) > 4 && len(used) < 2 {
				t.Fatalf("%d client IPs all reached one socket; the set does not spread load", len(tc.clients))
			}
		})
	}
}

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
	conns, err := UDP(context.Background(), l, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer conns[0].Close()
	rc, err := conns[0].(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var rcv int
	_ = rc.Control(func(fd uintptr) { rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	// The kernel reports double what was set; without the force options
	// (not root) it stays at rmem_max, which is at least the default.
	if os.Geteuid() == 0 && rcv < udpBuffer {
		t.Fatalf("SO_RCVBUF %d, want at least %d as root", rcv, udpBuffer)
	}
}
