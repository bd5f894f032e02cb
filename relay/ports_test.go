package relay

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/sockopt"
	"github.com/ferryrtc/ferry/internal/testutil"
)

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
	// Advertised addresses are only written into responses, never contacted.
	ext4 = netip.MustParseAddr("203.0.113.7")
	ext6 = netip.MustParseAddr("2001:db8::7")
)

func TestNewPortAllocatorErrors(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name string
		cfg  PortAllocatorConfig
		want string // "" means success
	}{
		{"no family", PortAllocatorConfig{}, "no bind address"},
		{"v4 wildcard without advertise", PortAllocatorConfig{Bind4: a("0.0.0.0")}, "IPv4 bind address 0.0.0.0 is a wildcard"},
		{"v6 wildcard without advertise", PortAllocatorConfig{Bind6: a("::")}, "IPv6 bind address :: is a wildcard"},
		{"v4 wildcard with advertise", PortAllocatorConfig{Bind4: a("0.0.0.0"), Advertise4: ext4}, ""},
		{"v6 wildcard with advertise", PortAllocatorConfig{Bind6: a("::"), Advertise6: ext6}, ""},
		{"advertise without bind", PortAllocatorConfig{Bind6: lo6, Advertise4: ext4}, "IPv4 advertise address 203.0.113.7 given without"},
		{"v6 as Bind4", PortAllocatorConfig{Bind4: lo6}, "IPv4 bind address ::1 is not an IPv4 address"},
		{"v4 as Bind6", PortAllocatorConfig{Bind6: lo4}, "IPv6 bind address 127.0.0.1 is not an IPv6 address"},
		{"mapped as Bind6", PortAllocatorConfig{Bind6: a("::ffff:127.0.0.1")}, "not an IPv6 address"},
		{"mapped Bind4 is unmapped", PortAllocatorConfig{Bind4: a("::ffff:127.0.0.1")}, ""},
		{"v6 as Advertise4", PortAllocatorConfig{Bind4: lo4, Advertise4: ext6}, "IPv4 advertise address 2001:db8::7 is not an IPv4"},
		{"wildcard advertise", PortAllocatorConfig{Bind4: lo4, Advertise4: a("0.0.0.0")}, "advertise address 0.0.0.0 is a wildcard"},
		{"zoned bind", PortAllocatorConfig{Bind6: a("fe80::1%lo")}, "has a zone"},
		{"multicast advertise", PortAllocatorConfig{Bind4: lo4, Advertise4: a("224.0.0.1")}, "multicast"},
		{"min above max", PortAllocatorConfig{Bind4: lo4, MinPort: 5000, MaxPort: 4000}, "minimum above maximum"},
		{"min zero", PortAllocatorConfig{Bind4: lo4, MaxPort: 4000}, "ports must be 1-65535"},
		{"max zero", PortAllocatorConfig{Bind4: lo4, MinPort: 4000}, "ports must be 1-65535"},
		{"single port", PortAllocatorConfig{Bind4: lo4, MinPort: 4000, MaxPort: 4000}, ""},
		{"any port", PortAllocatorConfig{Bind4: lo4}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pa, err := NewPortAllocator(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("NewPortAllocator: %v", err)
				}
				if err := pa.Validate(); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewPortAllocator error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestFamiliesAndAddrs(t *testing.T) {
	pa, err := NewPortAllocator(PortAllocatorConfig{Bind4: netip.MustParseAddr("0.0.0.0"), Advertise4: ext4, Bind6: lo6})
	if err != nil {
		t.Fatal(err)
	}
	if v4, v6 := pa.Families(); !v4 || !v6 {
		t.Errorf("Families() = %v, %v; want true, true", v4, v6)
	}
	got := pa.Addrs()
	want := []AddrPair{{netip.MustParseAddr("0.0.0.0"), ext4}, {lo6, lo6}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Addrs() = %v, want %v", got, want)
	}
	if s := pa.LogValue().String(); !strings.Contains(s, "203.0.113.7") || !strings.Contains(s, "any") {
		t.Errorf("LogValue() = %s", s)
	}
	pa4, _ := NewPortAllocator(PortAllocatorConfig{Bind4: lo4})
	if v4, v6 := pa4.Families(); !v4 || v6 {
		t.Errorf("Families() = %v, %v; want true, false", v4, v6)
	}
}

type famCase struct {
	name      string
	bind, adv netip.Addr // adv invalid: advertise the bind address
	udp, tcp  string
}

func famCases(t *testing.T) []famCase {
	cases := []famCase{
		{"v4 advertised", lo4, ext4, "udp4", "tcp4"},
		{"v4 bind advertised", lo4, netip.Addr{}, "udp4", "tcp4"},
		{"v6 advertised", lo6, ext6, "udp6", "tcp6"},
		{"v6 bind advertised", lo6, netip.Addr{}, "udp6", "tcp6"},
	}
	if !testutil.HasIPv6Loopback() {
		t.Log("no IPv6 loopback on this host: skipping ::1 cases")
		cases = cases[:2]
	}
	return cases
}

func newAllocator(t *testing.T, bind, adv netip.Addr, lo, hi uint16, policy *Policy) *PortAllocator {
	t.Helper()
	cfg := PortAllocatorConfig{MinPort: lo, MaxPort: hi, Policy: policy, Log: testutil.Logger(t)}
	if bind.Is4() {
		cfg.Bind4, cfg.Advertise4 = bind, adv
	} else {
		cfg.Bind6, cfg.Advertise6 = bind, adv
	}
	pa, err := NewPortAllocator(cfg)
	if err != nil {
		t.Fatalf("NewPortAllocator: %v", err)
	}
	return pa
}

// TestAllocate checks that relays bind the family's bind address, return
// the advertised address with the real port, and actually carry traffic.
func TestAllocate(t *testing.T) {
	for _, fc := range famCases(t) {
		t.Run(fc.name, func(t *testing.T) {
			lo, hi := testutil.FreePortRange(t, fc.bind, 20)
			pa := newAllocator(t, fc.bind, fc.adv, lo, hi, nil)
			wantIP := fc.adv
			if !wantIP.IsValid() {
				wantIP = fc.bind
			}

			t.Run("udp", func(t *testing.T) {
				conn, addr, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: fc.udp, UserID: "alice"})
				if err != nil {
					t.Fatalf("AllocatePacketConn: %v", err)
				}
				defer conn.Close()
				local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
				got := addr.(*net.UDPAddr).AddrPort()
				if local.Addr().Unmap() != fc.bind {
					t.Errorf("bound to %s, want %s", local, fc.bind)
				}
				if got != netip.AddrPortFrom(wantIP, local.Port()) {
					t.Errorf("returned %s, want %s port %d", got, wantIP, local.Port())
				}
				if local.Port() < lo || local.Port() > hi {
					t.Errorf("port %d outside %d-%d", local.Port(), lo, hi)
				}
				// The socket is live on the bind address.
				peer, err := net.ListenUDP(fc.udp, net.UDPAddrFromAddrPort(netip.AddrPortFrom(fc.bind, 0)))
				if err != nil {
					t.Fatal(err)
				}
				defer peer.Close()
				if _, err := peer.WriteToUDPAddrPort([]byte("ping"), local); err != nil {
					t.Fatal(err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 16)
				n, _, err := conn.ReadFrom(buf)
				if err != nil || string(buf[:n]) != "ping" {
					t.Fatalf("ReadFrom = %q, %v", buf[:n], err)
				}
			})

			t.Run("tcp", func(t *testing.T) {
				ln, addr, err := pa.AllocateListener(turn.AllocateListenerConfig{Network: fc.tcp})
				if err != nil {
					t.Fatalf("AllocateListener: %v", err)
				}
				defer ln.Close()
				local := ln.Addr().(*net.TCPAddr).AddrPort()
				got := addr.(*net.TCPAddr).AddrPort()
				if local.Addr().Unmap() != fc.bind {
					t.Errorf("bound to %s, want %s", local, fc.bind)
				}
				if got != netip.AddrPortFrom(wantIP, local.Port()) {
					t.Errorf("returned %s, want %s port %d", got, wantIP, local.Port())
				}
				if local.Port() < lo || local.Port() > hi {
					t.Errorf("port %d outside %d-%d", local.Port(), lo, hi)
				}
				c, err := net.DialTCP(fc.tcp, nil, net.TCPAddrFromAddrPort(local))
				if err != nil {
					t.Fatalf("dial relay listener: %v", err)
				}
				defer c.Close()
				s, err := ln.Accept()
				if err != nil {
					t.Fatalf("Accept: %v", err)
				}
				_ = s.Close()
			})
		})
	}
}

func TestAllocateAnyPort(t *testing.T) {
	pa := newAllocator(t, lo4, ext4, 0, 0, nil)
	conn, addr, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.UDPAddr).Port
	if port == 0 || addr.String() != netip.AddrPortFrom(ext4, uint16(port)).String() {
		t.Errorf("returned %s for socket on port %d", addr, port)
	}
	ln, laddr, err := pa.AllocateListener(turn.AllocateListenerConfig{Network: "tcp4"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if p := ln.Addr().(*net.TCPAddr).Port; p == 0 || laddr.(*net.TCPAddr).Port != p {
		t.Errorf("returned %s for listener on port %d", laddr, p)
	}
}

func TestUnsupportedFamily(t *testing.T) {
	only4 := newAllocator(t, lo4, netip.Addr{}, 0, 0, nil)
	only6, err := NewPortAllocator(PortAllocatorConfig{Bind6: lo6}) // never binds here
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pa      *PortAllocator
		network string
		call    string
		family  bool   // want ErrFamilyUnsupported
		want    string // in the message
	}{
		{"udp6 on v4 only", only4, "udp6", "packet", true, "IPv6 relay requested (udp6)"},
		{"tcp6 on v4 only", only4, "tcp6", "listener", true, "IPv6 relay requested (tcp6)"},
		{"connect tcp6 on v4 only", only4, "tcp6", "conn", true, "IPv6 relay requested (tcp6)"},
		{"udp4 on v6 only", only6, "udp4", "packet", true, "IPv4 relay requested (udp4)"},
		{"tcp4 on v6 only", only6, "tcp4", "listener", true, "IPv4 relay requested (tcp4)"},
		{"unknown network", only4, "udp", "packet", false, `unsupported relay network "udp"`},
		{"udp network for listener", only4, "udp4", "listener", false, `unsupported relay network "udp4"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			switch tt.call {
			case "packet":
				var c net.PacketConn
				c, _, err = tt.pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: tt.network, UserID: "alice"})
				if c != nil {
					_ = c.Close()
				}
			case "listener":
				var l net.Listener
				l, _, err = tt.pa.AllocateListener(turn.AllocateListenerConfig{Network: tt.network})
				if l != nil {
					_ = l.Close()
				}
			case "conn":
				var c net.Conn
				c, err = tt.pa.AllocateConn(turn.AllocateConnConfig{Network: tt.network,
					LocalAddr: &net.TCPAddr{IP: net.IPv6loopback, Port: 1}, RemoteAddr: &net.TCPAddr{IP: net.IPv6loopback, Port: 1}})
				if c != nil {
					_ = c.Close()
				}
			}
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrFamilyUnsupported) != tt.family || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q: want ErrFamilyUnsupported=%v and %q", err, tt.family, tt.want)
			}
		})
	}
}

// allocator abstracts the UDP and TCP variants for the range tests.
type allocFn func(pa *PortAllocator, requested int) (io.Closer, uint16, error)

func udpAlloc(network string) allocFn {
	return func(pa *PortAllocator, requested int) (io.Closer, uint16, error) {
		c, addr, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: network, RequestedPort: requested, UserID: "alice"})
		if err != nil {
			return nil, 0, err
		}
		return c, uint16(addr.(*net.UDPAddr).Port), nil
	}
}

func tcpAlloc(network string) allocFn {
	return func(pa *PortAllocator, requested int) (io.Closer, uint16, error) {
		l, addr, err := pa.AllocateListener(turn.AllocateListenerConfig{Network: network, RequestedPort: requested})
		if err != nil {
			return nil, 0, err
		}
		return l, uint16(addr.(*net.TCPAddr).Port), nil
	}
}

// TestPortsExhausted fills a 3-port range, expects ErrPortsExhausted
// promptly, frees one port and expects exactly that one back. Repeated so
// the random first picks collide often: every port must come out once.
func TestPortsExhausted(t *testing.T) {
	for _, tt := range []struct {
		name  string
		alloc allocFn
	}{{"udp", udpAlloc("udp4")}, {"tcp", tcpAlloc("tcp4")}} {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := testutil.FreePortRange(t, lo4, 3)
			pa := newAllocator(t, lo4, ext4, lo, hi, nil)
			for round := 0; round < 5; round++ {
				held := map[uint16]io.Closer{}
				for i := 0; i < 3; i++ {
					c, port, err := tt.alloc(pa, 0)
					if err != nil {
						t.Fatalf("round %d allocation %d: %v", round, i, err)
					}
					if _, dup := held[port]; dup {
						t.Fatalf("round %d: port %d handed out twice", round, port)
					}
					held[port] = c
				}
				start := time.Now()
				c, _, err := tt.alloc(pa, 0)
				if err == nil {
					_ = c.Close()
					t.Fatal("fourth allocation in a 3-port range succeeded")
				}
				if !errors.Is(err, ErrPortsExhausted) {
					t.Fatalf("error %v does not wrap ErrPortsExhausted", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Fatalf("exhaustion took %v", d)
				}
				freed := lo + uint16(round%3)
				_ = held[freed].Close()
				delete(held, freed)
				c, port, err := tt.alloc(pa, 0)
				if err != nil {
					t.Fatalf("allocation after freeing %d: %v", freed, err)
				}
				if port != freed {
					t.Errorf("got port %d, want freed port %d", port, freed)
				}
				held[port] = c
				for _, c := range held {
					_ = c.Close()
				}
			}
		})
	}
}

// TestTCPPortHeldElsewhere checks that a TCP port held by a foreign
// SO_REUSEPORT listener (another allocator or process) is skipped rather
// than shared, and a foreign UDP socket likewise.
func TestTCPPortHeldElsewhere(t *testing.T) {
	for _, tt := range []struct {
		name  string
		alloc allocFn
		hold  func(ap netip.AddrPort) (io.Closer, error)
	}{
		{"tcp", tcpAlloc("tcp4"), func(ap netip.AddrPort) (io.Closer, error) {
			lc := net.ListenConfig{Control: sockopt.ReuseAddrPort}
			return lc.Listen(t.Context(), "tcp4", ap.String())
		}},
		{"udp", udpAlloc("udp4"), func(ap netip.AddrPort) (io.Closer, error) {
			return net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := testutil.FreePortRange(t, lo4, 2)
			foreign, err := tt.hold(netip.AddrPortFrom(lo4, lo))
			if err != nil {
				t.Fatal(err)
			}
			defer foreign.Close()
			pa := newAllocator(t, lo4, netip.Addr{}, lo, hi, nil)
			for i := 0; i < 5; i++ {
				c, port, err := tt.alloc(pa, 0)
				if err != nil {
					t.Fatal(err)
				}
				if port != hi {
					t.Errorf("got port %d held by a foreign socket", port)
				}
				_ = c.Close()
			}
		})
	}
}

func TestRequestedPort(t *testing.T) {
	for _, tt := range []struct {
		name  string
		alloc allocFn
	}{{"udp", udpAlloc("udp4")}, {"tcp", tcpAlloc("tcp4")}} {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := testutil.FreePortRange(t, lo4, 4)
			pa := newAllocator(t, lo4, ext4, lo, hi, nil)
			want := lo + 2
			c, port, err := tt.alloc(pa, int(want))
			if err != nil {
				t.Fatalf("requested port %d: %v", want, err)
			}
			defer c.Close()
			if port != want {
				t.Fatalf("got port %d, want requested %d", port, want)
			}
			// Held: the exact port fails; no other port is substituted.
			c2, _, err := tt.alloc(pa, int(want))
			if err == nil {
				_ = c2.Close()
				t.Fatal("second allocation of a held requested port succeeded")
			}
			if !errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, ErrPortsExhausted) {
				t.Fatalf("error %v: want EADDRINUSE, not exhaustion", err)
			}
			// Outside the range.
			c3, _, err := tt.alloc(pa, int(hi)+1)
			if err == nil {
				_ = c3.Close()
				t.Fatal("requested port outside the range was bound")
			}
			if !strings.Contains(err.Error(), "outside range") {
				t.Fatalf("error %v: want outside range", err)
			}
		})
	}
}

// TestBindErrorNotRetried: an address not on this host fails every port the
// same way, so it is reported at once and not as exhaustion. Binding only;
// nothing is sent.
func TestBindErrorNotRetried(t *testing.T) {
	pa := newAllocator(t, netip.MustParseAddr("192.0.2.1"), netip.Addr{}, 1024, 65535, nil)
	start := time.Now()
	_, _, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "alice"})
	if err == nil {
		t.Skip("192.0.2.1 is bindable on this host")
	}
	if errors.Is(err, ErrPortsExhausted) || !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("error %v: want EADDRNOTAVAIL, not exhaustion", err)
	}
	if !strings.Contains(err.Error(), "192.0.2.1") {
		t.Errorf("error %v does not name the address", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("took %v: the range was scanned", d)
	}
}

// TestAllocateConn: a denied peer is refused before any connection attempt;
// an allowed one is dialled from the relay port (bind address, not the
// advertised one pion passes as LocalAddr) while the relay listener keeps
// listening on it.
func TestAllocateConn(t *testing.T) {
	type tc struct {
		name    string
		bind    netip.Addr
		network string
	}
	cases := []tc{{"v4", lo4, "tcp4"}}
	if testutil.HasIPv6Loopback() {
		cases = append(cases, tc{"v6", lo6, "tcp6"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			adv := ext4
			if c.bind.Is6() {
				adv = ext6
			}
			peer, err := net.Listen(c.network, netip.AddrPortFrom(c.bind, 0).String())
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			peerAddr := peer.Addr().(*net.TCPAddr)
			lo, hi := testutil.FreePortRange(t, c.bind, 10)

			t.Run("denied", func(t *testing.T) {
				denyAll := mustPolicy(t, PolicyOptions{}) // no loopback
				pa := newAllocator(t, c.bind, adv, lo, hi, denyAll)
				ln, relayAddr, err := pa.AllocateListener(turn.AllocateListenerConfig{Network: c.network})
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				conn, err := pa.AllocateConn(turn.AllocateConnConfig{Network: c.network, LocalAddr: relayAddr, RemoteAddr: peerAddr})
				if err == nil {
					_ = conn.Close()
					t.Fatal("AllocateConn to a loopback peer succeeded without AllowLoopback")
				}
				if !errors.Is(err, ErrPeerDenied) || !strings.Contains(err.Error(), "loopback") {
					t.Fatalf("error %v: want ErrPeerDenied naming loopback", err)
				}
				_ = peer.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
				if s, err := peer.Accept(); err == nil {
					_ = s.Close()
					t.Fatal("the denied peer received a connection")
				}
			})

			t.Run("allowed", func(t *testing.T) {
				_ = peer.(*net.TCPListener).SetDeadline(time.Time{})
				pa := newAllocator(t, c.bind, adv, lo, hi, mustPolicy(t, PolicyOptions{AllowLoopback: true}))
				ln, relayAddr, err := pa.AllocateListener(turn.AllocateListenerConfig{Network: c.network})
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				relayPort := relayAddr.(*net.TCPAddr).Port
				if got := relayAddr.(*net.TCPAddr).AddrPort().Addr(); got != adv {
					t.Fatalf("relay address %s, want advertised %s", relayAddr, adv)
				}
				conn, err := pa.AllocateConn(turn.AllocateConnConfig{Network: c.network, LocalAddr: relayAddr, RemoteAddr: peerAddr})
				if err != nil {
					t.Fatalf("AllocateConn: %v", err)
				}
				defer conn.Close()
				want := netip.AddrPortFrom(c.bind, uint16(relayPort))
				if got := conn.LocalAddr().(*net.TCPAddr).AddrPort(); got != want {
					t.Errorf("dialled from %s, want relay %s", got, want)
				}
				s, err := peer.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if got := s.RemoteAddr().(*net.TCPAddr).AddrPort(); got != want {
					t.Errorf("peer sees %s, want relay %s", got, want)
				}
				if _, err := conn.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 1)
				_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(s, buf); err != nil || buf[0] != 'x' {
					t.Fatalf("peer read %q, %v", buf, err)
				}
				// The relay listener still accepts inbound peers.
				in, err := net.Dial(c.network, ln.Addr().String())
				if err != nil {
					t.Fatalf("dial relay listener: %v", err)
				}
				defer in.Close()
				a, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				_ = a.Close()

				// Wrong family for the relay.
				other := &net.TCPAddr{IP: net.IPv6loopback, Port: peerAddr.Port}
				if c.bind.Is6() {
					other = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: peerAddr.Port}
				}
				if bad, err := pa.AllocateConn(turn.AllocateConnConfig{Network: c.network, LocalAddr: relayAddr, RemoteAddr: other}); err == nil {
					_ = bad.Close()
					t.Error("AllocateConn across families succeeded")
				}
			})
		})
	}
}
