package testutil

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// EchoPeer listens on network and addr ("udp4", "127.0.0.1:0") and sends
// every datagram back to where it came from, until the test ends.
func EchoPeer(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	return pc
}

// HasIPv6Loopback reports whether ::1 can be bound.
func HasIPv6Loopback() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// FreePort returns a port free for both UDP and TCP on 127.0.0.1 right now.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = pc.Close()
		if err != nil {
			continue
		}
		_ = ln.Close()
		return port
	}
	t.Fatal("free port: no port free for both UDP and TCP on 127.0.0.1")
	return 0
}

// FreePortRange returns n consecutive ports on bind that are free for both
// UDP and TCP right now. The base is random below the kernel's ephemeral
// range (32768 and up on Linux), so other sockets rarely take the ports
// meanwhile; it is never a fixed port.
func FreePortRange(t testing.TB, bind netip.Addr, n int) (lo, hi uint16) {
	t.Helper()
	const minPort, maxPort = 20000, 32000
	udp, tcp := "udp4", "tcp4"
	if bind.Is6() {
		udp, tcp = "udp6", "tcp6"
	}
	for range 200 {
		base := uint16(minPort + rand.IntN(maxPort-minPort-n))
		ok := true
		var closers []func() error
		for i := 0; i < n && ok; i++ {
			ap := netip.AddrPortFrom(bind, base+uint16(i))
			u, err := net.ListenUDP(udp, net.UDPAddrFromAddrPort(ap))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, u.Close)
			l, err := net.ListenTCP(tcp, net.TCPAddrFromAddrPort(ap))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, l.Close)
		}
		for _, c := range closers {
			_ = c()
		}
		if ok {
			return base, base + uint16(n) - 1
		}
	}
	t.Fatalf("no %d free consecutive ports on %s in %d-%d", n, bind, minPort, maxPort)
	return 0, 0
}
