package dataplane

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/proxyproto"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// The client a proxy's header names: only a header value, nothing is ever
// sent to it.
var proxiedClient = netip.MustParseAddrPort("203.0.113.7:4444")

// proxyFixture is a server with a tcp:// and a tls:// listener that read
// PROXY protocol headers, trusting trusted.
type proxyFixture struct {
	*fixture
	tcp, tls netip.AddrPort // the proxy-protocol listeners
}

func startProxyServer(t *testing.T, trusted ...string) *proxyFixture {
	t.Helper()
	f := startServer(t, fixtureOpts{allowLoopback: true, withTLS: true, configure: func(c *config.Config) {
		c.Listen = append(c.Listen, "tcp://127.0.0.1:0?proxy-protocol=v2", "tls://127.0.0.1:0?proxy-protocol=v2")
		c.ProxyProtocol.Trusted = trusted
	}, tune: func(o *Options) { o.ProxyHeaderTimeout = 300 * time.Millisecond }})
	pf := &proxyFixture{fixture: f}
	for _, sl := range f.srv.streamLs {
		if !sl.ProxyProtocol {
			continue
		}
		a := addrPortOf(sl.Listener.Addr())
		if sl.TLS != nil {
			pf.tls = a
		} else {
			pf.tcp = a
		}
	}
	if !pf.tcp.IsValid() || !pf.tls.IsValid() {
		t.Fatalf("proxy-protocol listeners not found: tcp %v, tls %v", pf.tcp, pf.tls)
	}
	return pf
}

// dialProxied connects to a proxy-protocol listener as a load balancer
// would: the header h first, then (tls) the TLS handshake. It returns the
// connection the client's bytes go over.
func (pf *proxyFixture) dialProxied(t *testing.T, to netip.AddrPort, h proxyproto.Header, withTLS bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Write(h.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if !withTLS {
		return c
	}
	tc := tls.Client(c, &tls.Config{RootCAs: pf.certs, ServerName: "ferry.test", MinVersion: tls.VersionTLS12})
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake after the PROXY header: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}

// mappedAddress sends a Binding request over c and returns its
// XOR-MAPPED-ADDRESS.
func mappedAddress(t *testing.T, c net.Conn) netip.AddrPort {
	t.Helper()
	res := roundTrip(t, turn.NewSTUNConn(c), c.RemoteAddr(), stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint))
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(res); err != nil {
		t.Fatalf("no XOR-MAPPED-ADDRESS: %v", err)
	}
	ip, _ := netip.AddrFromSlice(xor.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(xor.Port))
}

// expectClosed checks that the server closes c without answering what was
// written, within wait.
func expectClosed(t *testing.T, c net.Conn, wait time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %s", wait)
	}
	if len(b) > 0 {
		t.Fatalf("server answered %d bytes on a connection it should refuse", len(b))
	}
}

func (pf *proxyFixture) rejected(t *testing.T, reason string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := pf.srv.ProxyProtocolRejected()[reason]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rejected{reason=%q} = %d, want %d (all: %v)", reason, got, want, pf.srv.ProxyProtocolRejected())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProxyProtocolBinding: over TCP and over TLS (header before the
// handshake), a trusted proxy's header makes its source the client's
// address, IPv4 or IPv6; a LOCAL header keeps the real peer.
func TestProxyProtocolBinding(t *testing.T) {
	pf := startProxyServer(t, "127.0.0.0/8")
	v6 := netip.MustParseAddrPort("[2001:db8::7]:5555")
	for _, withTLS := range []bool{false, true} {
		to, name := pf.tcp, "tcp"
		if withTLS {
			to, name = pf.tls, "tls"
		}
		t.Run(name, func(t *testing.T) {
			for _, src := range []netip.AddrPort{proxiedClient, v6} {
				c := pf.dialProxied(t, to, proxyproto.Header{Command: proxyproto.Proxy, Source: src, Destination: to}, withTLS)
				if got := mappedAddress(t, c); got != src {
					t.Fatalf("XOR-MAPPED-ADDRESS %s, want the header's source %s", got, src)
				}
				// The connection goes on serving.
				if got := mappedAddress(t, c); got != src {
					t.Fatalf("second Binding: %s", got)
				}
			}
			c := pf.dialProxied(t, to, proxyproto.Header{Command: proxyproto.Local}, withTLS)
			real := addrPortOf(c.LocalAddr())
			if got := mappedAddress(t, c); got != real {
				t.Fatalf("LOCAL: XOR-MAPPED-ADDRESS %s, want the real peer %s", got, real)
			}
		})
	}
	for _, r := range []string{"untrusted", "malformed", "timeout"} {
		pf.rejected(t, r, 0)
	}
}

// TestProxyProtocolUntrusted: a peer outside proxy-protocol.trusted is
// closed unread, whatever it sends; a header never reaches the engine.
func TestProxyProtocolUntrusted(t *testing.T) {
	pf := startProxyServer(t, "127.0.0.2/32") // the test dials from 127.0.0.1
	for i, to := range []netip.AddrPort{pf.tcp, pf.tls} {
		c, err := net.Dial("tcp", to.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		_, _ = c.Write(append(proxyproto.Header{Command: proxyproto.Proxy, Source: proxiedClient, Destination: to}.Append(nil), req.Raw...))
		expectClosed(t, c, 3*time.Second)
		pf.rejected(t, "untrusted", uint64(i+1))
	}
	// The plain listeners of the same server are not affected.
	conn, addr := pf.clientConn(t, "udp")
	res := roundTrip(t, conn, addr, stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint))
	if res.Type != stun.BindingSuccess {
		t.Fatalf("UDP Binding: %v", res.Type)
	}
	pf.rejected(t, "malformed", 0)
}

// TestProxyProtocolRefusals: from a trusted peer, a connection without an
// acceptable header is closed and counted: no header (STUN or TLS at
// once), a version 1 header, a header that stops (timeout).
func TestProxyProtocolRefusals(t *testing.T) {
	pf := startProxyServer(t, "127.0.0.1")
	tests := []struct {
		name   string
		to     netip.AddrPort
		send   []byte
		reason string
	}{
		{"stun without header", pf.tcp, stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw, "malformed"},
		{"tls without header", pf.tls, []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x00, 0x00, 0x00}, "malformed"},
		{"version 1", pf.tcp, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 4444 3478\r\n"), "malformed"},
		{"unspecified source", pf.tcp, proxyproto.Header{Command: proxyproto.Proxy, Source: netip.MustParseAddrPort("0.0.0.0:1")}.Append(nil), "malformed"},
		{"stalls", pf.tcp, proxyproto.Signature[:8], "timeout"},
		{"silent", pf.tls, nil, "timeout"},
	}
	counts := map[string]uint64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tt.to.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c, 3*time.Second)
			counts[tt.reason]++
			pf.rejected(t, tt.reason, counts[tt.reason])
		})
	}
	// A connection closed before its first byte (a balancer's TCP health
	// check) is no refused header.
	c, err := net.Dial("tcp", pf.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	time.Sleep(100 * time.Millisecond)
	pf.rejected(t, "malformed", counts["malformed"])
	pf.rejected(t, "untrusted", 0)
}

// TestProxyProtocolAllocate: TURN through a trusted proxy over TCP and
// TLS: pion's client allocates a UDP relay and relays through it, and the
// admin listing names the header's client; an RFC 6062 TCP relay's data
// connection comes through the proxy too.
func TestProxyProtocolAllocate(t *testing.T) {
	pf := startProxyServer(t, "127.0.0.1/32", "::1")
	for _, withTLS := range []bool{false, true} {
		to, name := pf.tcp, "tcp"
		if withTLS {
			to, name = pf.tls, "tls"
		}
		t.Run(name, func(t *testing.T) {
			c := pf.proxiedClient(t, to, proxiedClient, withTLS)
			mapped, err := c.SendBindingRequest()
			if err != nil {
				t.Fatal(err)
			}
			if mapped.String() != proxiedClient.String() {
				t.Fatalf("mapped %s, want %s", mapped, proxiedClient)
			}
			rc, err := c.Allocate()
			if err != nil {
				t.Fatalf("Allocate through the proxy: %v", err)
			}
			defer rc.Close()
			relayRoundTrips(t, rc, testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr(), 3)
			found := false
			for _, a := range pf.srv.List() {
				if a.Relay == rc.LocalAddr().String() {
					found = true
					if a.Client != proxiedClient.String() || a.Transport != name || a.Server != to.String() {
						t.Fatalf("admin listing: client %s, transport %s, server %s; want %s, %s, %s",
							a.Client, a.Transport, a.Server, proxiedClient, name, to)
					}
				}
			}
			if !found {
				t.Fatalf("allocation %s not listed", rc.LocalAddr())
			}
			if withTLS {
				return
			}
			// RFC 6062 (on a control connection of its own): it Connects,
			// the data connection arrives through the proxy as well.
			ctrl := netip.AddrPortFrom(proxiedClient.Addr(), proxiedClient.Port()+1)
			alloc, err := pf.proxiedClient(t, to, ctrl, false).AllocateTCP()
			if err != nil {
				t.Fatalf("AllocateTCP through the proxy: %v", err)
			}
			defer alloc.Close()
			cid, err := alloc.Connect(tcpEchoPeer(t))
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			dataSrc := netip.AddrPortFrom(proxiedClient.Addr(), proxiedClient.Port()+2)
			data := pf.dialProxied(t, to, proxyproto.Header{Command: proxyproto.Proxy, Source: dataSrc, Destination: to}, false)
			connectionBind(t, data, uint32(cid))
			echoThrough(t, data, bytes.Repeat([]byte("proxied "), 200))
		})
	}
	pf.rejected(t, "untrusted", 0)
	pf.rejected(t, "malformed", 0)
}

// proxiedClient is pion's TURN client on a connection through a proxy
// that names src.
func (pf *proxyFixture) proxiedClient(t *testing.T, to, src netip.AddrPort, withTLS bool) *turn.Client {
	t.Helper()
	conn := pf.dialProxied(t, to, proxyproto.Header{Command: proxyproto.Proxy, Source: src, Destination: to}, withTLS)
	return listeningClient(t, turn.NewSTUNConn(conn), to.String(), testUser, testPass)
}

// TestProxyProtocolClose: Close does not wait for connections still
// owing their header.
func TestProxyProtocolClose(t *testing.T) {
	pf := startProxyServer(t, "127.0.0.1")
	c, err := net.Dial("tcp", pf.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(proxyproto.Signature[:4]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // accepted, header being read
	start := time.Now()
	if err := pf.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %s with a header pending", took)
	}
	expectClosed(t, c, time.Second)
	if n := len(serverGoroutines()); n != 0 {
		t.Fatalf("%d server goroutines left", n)
	}
}
