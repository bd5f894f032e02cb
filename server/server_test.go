package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/listen"
)

const (
	testRealm  = "ferry.test"
	testUser   = "alice"
	testPass   = "wonderland"
	testSecret = "rest-secret-1"
)

// fixture is a running server on loopback sockets.
type fixture struct {
	srv   *Server
	authn *auth.Authenticator
	udp   net.Addr
	tcp   net.Addr
	tls   net.Addr
	dtls  net.Addr
	certs *x509.CertPool

	store             *listen.Certs // served by tls:// and dtls://
	certFile, keyFile string
}

type fixtureOpts struct {
	family        string // "4" or "6"
	allowLoopback bool
	externalIP    string
	secrets       []string
	withTLS       bool
	withDTLS      bool
	udpSockets    int
	configure     func(*config.Config) // adjusts the config before Validate
}

func startServer(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	if o.family == "" {
		o.family = "4"
	}
	host := "127.0.0.1"
	if o.family == "6" {
		host = "[::1]"
		if !testutil.HasIPv6Loopback() {
			t.Skip("no IPv6 loopback on this host")
		}
	}
	if o.secrets == nil {
		o.secrets = []string{testSecret}
	}
	if o.udpSockets == 0 {
		o.udpSockets = 2
	}
	cfg := config.Default()
	cfg.Realm = testRealm
	cfg.Relay.AllowLoopbackPeers = o.allowLoopback
	cfg.Relay.Ports = "40000-49999"
	cfg.Auth.Users = []string{testUser + "=" + testPass}
	cfg.Auth.Secrets = o.secrets
	if o.externalIP != "" {
		cfg.Relay.ExternalIP = []string{o.externalIP}
	}
	cfg.Listen = []string{"udp://" + host + ":0", "tcp://" + host + ":0"}
	f := &fixture{}
	var certs *listen.Certs
	if o.withTLS || o.withDTLS {
		cert := testutil.SelfSigned(t)
		f.certs = cert.Pool
		f.certFile, f.keyFile = cert.CertFile, cert.KeyFile
		var err error
		certs, err = listen.LoadCerts(cert.CertFile, cert.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		f.store = certs
		cfg.TLS.Cert, cfg.TLS.Key = cert.CertFile, cert.KeyFile
		if o.withTLS {
			cfg.Listen = append(cfg.Listen, "tls://"+host+":0")
		}
		if o.withDTLS {
			cfg.Listen = append(cfg.Listen, "dtls://"+host+":0")
		}
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ls, _ := cfg.Listeners()
	ctx := context.Background()
	var socks Sockets
	for _, l := range ls {
		switch l.Transport {
		case config.UDP:
			pcs, err := listen.UDP(ctx, l, o.udpSockets)
			if err != nil {
				t.Fatal(err)
			}
			socks.Packet = append(socks.Packet, pcs...)
			f.udp = pcs[0].LocalAddr()
		case config.TCP:
			ln, err := listen.TCP(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			socks.Stream = append(socks.Stream, ln)
			f.tcp = ln.Addr()
		case config.TLSt:
			ln, err := listen.TLS(ctx, l, certs)
			if err != nil {
				t.Fatal(err)
			}
			socks.Stream = append(socks.Stream, ln)
			f.tls = ln.Addr()
		case config.DTLS:
			ln, err := listen.DTLS(l, certs)
			if err != nil {
				t.Fatal(err)
			}
			socks.Stream = append(socks.Stream, ln)
			f.dtls = ln.Addr()
		}
	}
	snap, err := auth.NewSnapshot(cfg.Realm, cfg.Auth.Users, cfg.Auth.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	f.authn = auth.New(snap, testutil.Logger(t), time.Now)
	relay4, relay6 := netip.MustParseAddr("127.0.0.1"), netip.Addr{}
	if testutil.HasIPv6Loopback() {
		relay6 = netip.IPv6Loopback()
	}
	f.srv, err = New(Options{
		Config:  cfg,
		RelayV4: relay4,
		RelayV6: relay6,
		Auth:    f.authn,
		Log:     testutil.Logger(t),
	}, socks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

// clientConn opens the client side of a transport to the fixture.
func (f *fixture) clientConn(t *testing.T, transport string) (net.PacketConn, net.Addr) {
	t.Helper()
	switch transport {
	case "udp":
		network := "udp4"
		local := "127.0.0.1:0"
		if strings.HasPrefix(f.udp.String(), "[") {
			network, local = "udp6", "[::1]:0"
		}
		c, err := net.ListenPacket(network, local)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c, f.udp
	case "tcp":
		c, err := net.Dial("tcp", f.tcp.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return turn.NewSTUNConn(c), f.tcp
	case "tls":
		c, err := tls.Dial("tcp", f.tls.String(), &tls.Config{RootCAs: f.certs, ServerName: "ferry.test", MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return turn.NewSTUNConn(c), f.tls
	case "dtls":
		network := "udp4" // pion's client infers the relay family from the local address
		if strings.HasPrefix(f.dtls.String(), "[") {
			network = "udp6"
		}
		c, err := dtls.DialWithOptions(network, f.dtls.(*net.UDPAddr),
			dtls.WithRootCAs(f.certs), dtls.WithServerName("ferry.test"),
			dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return turn.NewSTUNConn(c), f.dtls
	}
	t.Fatalf("unknown transport %s", transport)
	return nil, nil
}

func (f *fixture) client(t *testing.T, transport, user, pass string) *turn.Client {
	t.Helper()
	conn, addr := f.clientConn(t, transport)
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr.String(),
		TURNServerAddr: addr.String(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		RTO:            200 * time.Millisecond,
		LoggerFactory:  pionLoggerFactory{log: testutil.Logger(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestBindingReturnsClientAddress(t *testing.T) {
	for _, fam := range []string{"4", "6"} {
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(fam+"/"+tr, func(t *testing.T) {
				f := startServer(t, fixtureOpts{family: fam})
				conn, addr := f.clientConn(t, tr)
				req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
				res := roundTrip(t, conn, addr, req)
				var xor stun.XORMappedAddress
				if err := xor.GetFrom(res); err != nil {
					t.Fatalf("no XOR-MAPPED-ADDRESS: %v", err)
				}
				local := localAddrOf(conn)
				if !xor.IP.Equal(local.IP) || xor.Port != local.Port {
					t.Fatalf("mapped %s:%d, client is %s", xor.IP, xor.Port, local)
				}
				var sw stun.Software
				if err := sw.GetFrom(res); err != nil || sw.String() != "ferry" {
					t.Fatalf("SOFTWARE = %q, %v", sw.String(), err)
				}
				if err := stun.Fingerprint.Check(res); err != nil {
					t.Fatalf("FINGERPRINT: %v", err)
				}
			})
		}
	}
}

func localAddrOf(conn net.PacketConn) *net.UDPAddr {
	if sc, ok := conn.(*turn.STUNConn); ok {
		a := sc.Conn().LocalAddr().(*net.TCPAddr)
		return &net.UDPAddr{IP: a.IP, Port: a.Port}
	}
	return conn.LocalAddr().(*net.UDPAddr)
}

// roundTrip sends a STUN message and returns the response with the same
// transaction ID.
func roundTrip(t *testing.T, conn net.PacketConn, to net.Addr, req *stun.Message) *stun.Message {
	t.Helper()
	if _, err := conn.WriteTo(req.Raw, to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1600)
	deadline := time.Now().Add(3 * time.Second)
	_ = conn.SetReadDeadline(deadline)
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no response to %s: %v", req.Type, err)
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := res.Decode(); err != nil {
			continue
		}
		if res.TransactionID == req.TransactionID {
			return res
		}
	}
}

func TestAllocateAndRelay(t *testing.T) {
	for _, fam := range []string{"4", "6"} {
		for _, tr := range []string{"udp", "tcp", "tls"} {
			t.Run(fam+"/"+tr, func(t *testing.T) {
				f := startServer(t, fixtureOpts{family: fam, allowLoopback: true, withTLS: true})
				c := f.client(t, tr, testUser, testPass)
				relayConn, err := c.Allocate()
				if err != nil {
					t.Fatalf("allocate: %v", err)
				}
				defer relayConn.Close()
				ra := relayConn.LocalAddr().(*net.UDPAddr)
				wantIP := "127.0.0.1"
				peerNet, peerAddr := "udp4", "127.0.0.1:0"
				if fam == "6" {
					wantIP, peerNet, peerAddr = "::1", "udp6", "[::1]:0"
				}
				if ra.IP.String() != wantIP {
					t.Fatalf("relay address %s, want family of %s", ra, wantIP)
				}
				peer := testutil.EchoPeer(t, peerNet, peerAddr).LocalAddr()
				relayRoundTrips(t, relayConn, peer, 20)
				if f.srv.AllocationCount() != 1 {
					t.Fatalf("AllocationCount = %d", f.srv.AllocationCount())
				}
			})
		}
	}
}

// relayRoundTrips sends n packets through the relay to an echo peer and
// expects each back. pion's client uses a Send indication first and a
// ChannelBind after, so both paths are covered.
func relayRoundTrips(t *testing.T, relayConn net.PacketConn, peer net.Addr, n int) {
	t.Helper()
	buf := make([]byte, 1600)
	for i := 0; i < n; i++ {
		msg := []byte("ferry-relay-" + string(rune('a'+i%26)))
		got := false
		for attempt := 0; attempt < 5 && !got; attempt++ {
			if _, err := relayConn.WriteTo(msg, peer); err != nil {
				t.Fatalf("write to peer: %v", err)
			}
			_ = relayConn.SetReadDeadline(time.Now().Add(time.Second))
			for {
				m, from, err := relayConn.ReadFrom(buf)
				if err != nil {
					break
				}
				if from.String() == peer.String() && string(buf[:m]) == string(msg) {
					got = true
					break
				}
			}
		}
		if !got {
			t.Fatalf("packet %d not echoed through the relay", i)
		}
	}
}

func TestAuthFailuresAre401(t *testing.T) {
	now := time.Now()
	freshU, freshP := auth.Mint(testSecret, "bob", time.Hour, now)
	expU, expP := auth.Mint(testSecret, "bob", -time.Minute, now)
	otherU, otherP := auth.Mint("not-our-secret", "bob", time.Hour, now)
	tests := []struct {
		name, user, pass string
		code             int
	}{
		{"static ok", testUser, testPass, 0},
		{"static wrong password", testUser, "nope", 401},
		{"unknown user", "mallory", "x", 401},
		{"rest ok", freshU, freshP, 0},
		{"rest expired", expU, expP, 401},
		{"rest wrong secret", otherU, otherP, 401},
	}
	f := startServer(t, fixtureOpts{})
	for _, tt := range tests {
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+tr, func(t *testing.T) {
				c := f.client(t, tr, tt.user, tt.pass)
				rc, err := c.Allocate()
				if rc != nil {
					defer rc.Close()
				}
				if got := testutil.TURNCode(err); got != tt.code {
					t.Fatalf("allocate error %v (code %d), want code %d", err, got, tt.code)
				}
			})
		}
	}
}

func TestSecretRotation(t *testing.T) {
	now := time.Now()
	f := startServer(t, fixtureOpts{secrets: []string{"old-secret"}})
	oldU, oldP := auth.Mint("old-secret", "carol", time.Hour, now)
	newU, newP := auth.Mint("new-secret", "carol", time.Hour, now)
	allocate := func(u, p string) int {
		c := f.client(t, "udp", u, p)
		rc, err := c.Allocate()
		if rc != nil {
			_ = rc.Close()
		}
		return testutil.TURNCode(err)
	}
	if code := allocate(newU, newP); code != 401 {
		t.Fatalf("new secret before rotation: code %d, want 401", code)
	}
	// Rotate: the new secret signs, the old one is still accepted.
	snap, err := auth.NewSnapshot(testRealm, nil, []string{"new-secret", "old-secret"})
	if err != nil {
		t.Fatal(err)
	}
	f.authn.Swap(snap)
	if code := allocate(newU, newP); code != 0 {
		t.Fatalf("new secret after rotation: code %d", code)
	}
	if code := allocate(oldU, oldP); code != 0 {
		t.Fatalf("old secret after rotation: code %d", code)
	}
	u, p, err := snap.Mint("dave", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if u2, p2 := auth.Mint("new-secret", "dave", time.Hour, now); u != u2 || p != p2 {
		t.Fatal("rotation does not sign with the first secret")
	}
	// Retire the old secret.
	snap2, _ := auth.NewSnapshot(testRealm, nil, []string{"new-secret"})
	f.authn.Swap(snap2)
	if code := allocate(oldU, oldP); code != 401 {
		t.Fatalf("old secret after retirement: code %d, want 401", code)
	}
}

// rawAllocate authenticates and allocates with raw STUN so tests can send
// any request on the allocation and read the exact response code.
type rawClient struct {
	t     *testing.T
	conn  net.PacketConn
	to    net.Addr
	nonce stun.Nonce
	integ stun.MessageIntegrity
	user  stun.Username
	realm stun.Realm
}

func newRawClient(t *testing.T, f *fixture, transport string) *rawClient {
	conn, to := f.clientConn(t, transport)
	rc := &rawClient{t: t, conn: conn, to: to, user: stun.NewUsername(testUser), realm: stun.NewRealm(testRealm)}
	rc.integ = stun.NewLongTermIntegrity(testUser, testRealm, testPass)
	res := roundTrip(t, conn, to, stun.MustBuild(stun.TransactionID,
		stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP{}, stun.Fingerprint))
	if err := rc.nonce.GetFrom(res); err != nil {
		t.Fatalf("no NONCE in the 401 challenge: %v", err)
	}
	if code := errorCode(res); code != 401 {
		t.Fatalf("challenge code %d, want 401", code)
	}
	res = rc.do(stun.MethodAllocate, requestedUDP{})
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("allocate: code %d", errorCode(res))
	}
	return rc
}

func (rc *rawClient) do(method stun.Method, attrs ...stun.Setter) *stun.Message {
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	setters = append(setters, &rc.user, &rc.realm, &rc.nonce, &rc.integ, stun.Fingerprint)
	return roundTrip(rc.t, rc.conn, rc.to, stun.MustBuild(setters...))
}

type requestedUDP struct{}

func (requestedUDP) AddTo(m *stun.Message) error {
	m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})
	return nil
}

type peerAddr struct {
	ip   net.IP
	port int
}

func (p peerAddr) AddTo(m *stun.Message) error {
	return stun.XORMappedAddress{IP: p.ip, Port: p.port}.AddToAs(m, stun.AttrXORPeerAddress)
}

type channelNumber uint16

func (c channelNumber) AddTo(m *stun.Message) error {
	m.Add(stun.AttrChannelNumber, []byte{byte(c >> 8), byte(c), 0, 0})
	return nil
}

func errorCode(m *stun.Message) int {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return 0
	}
	return int(ec.Code)
}

func TestPeerPolicy403(t *testing.T) {
	tests := []struct {
		name          string
		allowLoopback bool
		peer          string
		want          int
	}{
		{"loopback refused by default", false, "127.0.0.2", 403},
		{"other loopback refused by default", false, "127.0.0.9", 403},
		// 127.0.0.1 is the fixture's relay address: relay to relay through
		// one ferry is admitted (only relay ports are reachable on it).
		{"own relay address admitted", false, "127.0.0.1", 0},
		{"private refused", true, "10.1.2.3", 403},
		{"metadata refused", true, "169.254.169.254", 403},
		{"loopback allowed with flag", true, "127.0.0.1", 0},
		{"public allowed", false, "8.8.8.8", 0},
	}
	for _, tt := range tests {
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+tr, func(t *testing.T) {
				f := startServer(t, fixtureOpts{allowLoopback: tt.allowLoopback})
				rc := newRawClient(t, f, tr)
				ip := net.ParseIP(tt.peer)
				res := rc.do(stun.MethodCreatePermission, peerAddr{ip, 9})
				if got := errorCode(res); got != tt.want {
					t.Fatalf("CreatePermission to %s: code %d, want %d", tt.peer, got, tt.want)
				}
				res = rc.do(stun.MethodChannelBind, channelNumber(0x4001), peerAddr{ip, 9})
				if got := errorCode(res); got != tt.want {
					t.Fatalf("ChannelBind to %s: code %d, want %d", tt.peer, got, tt.want)
				}
			})
		}
	}
}

func TestExternalAddressAdvertised(t *testing.T) {
	f := startServer(t, fixtureOpts{externalIP: "203.0.113.10"})
	c := f.client(t, "udp", testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ra := rc.LocalAddr().(*net.UDPAddr)
	if ra.IP.String() != "203.0.113.10" || ra.Port < 40000 || ra.Port > 49999 {
		t.Fatalf("XOR-RELAYED-ADDRESS %s, want 203.0.113.10 with a port in 40000-49999", ra)
	}
}

func TestCloseIsIdempotentAndFreesPorts(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: true})
	c := f.client(t, "udp", testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	relayPort := rc.LocalAddr().(*net.UDPAddr).Port
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	_ = f.srv.Close()
	// The relay port is released once the server is closed.
	deadline := time.Now().Add(3 * time.Second)
	for {
		pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(relayPort)))
		if err == nil {
			_ = pc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay port %d still bound after Close: %v", relayPort, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRequestedAddressFamily covers RFC 6156: a client on an IPv4 listener
// asks for an IPv6 relay and the reverse, and relays to a peer of that
// family.
func TestRequestedAddressFamily(t *testing.T) {
	if !testutil.HasIPv6Loopback() {
		t.Skip("no IPv6 loopback on this host")
	}
	tests := []struct {
		name       string
		listener   string
		family     turn.RequestedAddressFamily
		wantRelay  string
		peerNet    string
		peerListen string
	}{
		{"v4 listener, v6 relay", "4", turn.RequestedAddressFamilyIPv6, "::1", "udp6", "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startServer(t, fixtureOpts{family: tt.listener, allowLoopback: true})
			conn, addr := f.clientConn(t, "udp")
			c, err := turn.NewClient(&turn.ClientConfig{
				STUNServerAddr:         addr.String(),
				TURNServerAddr:         addr.String(),
				Conn:                   conn,
				Username:               testUser,
				Password:               testPass,
				Realm:                  testRealm,
				RTO:                    200 * time.Millisecond,
				RequestedAddressFamily: tt.family,
				LoggerFactory:          pionLoggerFactory{log: testutil.Logger(t)},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Listen(); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rc, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer rc.Close()
			if ip := rc.LocalAddr().(*net.UDPAddr).IP.String(); ip != tt.wantRelay {
				t.Fatalf("relay %s, want family of %s", ip, tt.wantRelay)
			}
			relayRoundTrips(t, rc, testutil.EchoPeer(t, tt.peerNet, tt.peerListen).LocalAddr(), 5)
		})
	}
}

// TestRequestedAddressFamilyIPv4OnIPv6Listener sends REQUESTED-ADDRESS-FAMILY
// IPv4 explicitly (pion's client never does) on an IPv6 listener.
func TestRequestedAddressFamilyIPv4OnIPv6Listener(t *testing.T) {
	f := startServer(t, fixtureOpts{family: "6", allowLoopback: true})
	conn, to := f.clientConn(t, "udp")
	res := roundTrip(t, conn, to, stun.MustBuild(stun.TransactionID,
		stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP{}, stun.Fingerprint))
	var nonce stun.Nonce
	if err := nonce.GetFrom(res); err != nil {
		t.Fatal(err)
	}
	user, realm := stun.NewUsername(testUser), stun.NewRealm(testRealm)
	integ := stun.NewLongTermIntegrity(testUser, testRealm, testPass)
	family := stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{0x01, 0, 0, 0}}
	res = roundTrip(t, conn, to, stun.MustBuild(stun.TransactionID,
		stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP{}, family,
		&user, &realm, &nonce, &integ, stun.Fingerprint))
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("allocate: code %d", errorCode(res))
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		t.Fatal(err)
	}
	if relayed.IP.To4() == nil || !relayed.IP.IsLoopback() {
		t.Fatalf("XOR-RELAYED-ADDRESS %s, want an IPv4 loopback relay", relayed.IP)
	}
}

// TestRelayToRelay: two clients relay-only through the same ferry (both
// behind NATs that block a direct path) reach each other's relay address,
// although ferry's relay address is its own and, here, loopback, which the
// default policy refuses for any other peer.
func TestRelayToRelay(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: false})
	a := f.client(t, "udp", testUser, testPass)
	b := f.client(t, "tcp", testUser, testPass)
	ra, err := a.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := b.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	// B must permit A before A's packets are relayed to B.
	if _, err := rb.WriteTo([]byte("hello a"), ra.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for i := 0; i < 10; i++ {
		if _, err := ra.WriteTo([]byte("hello b"), rb.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = rb.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, from, err := rb.ReadFrom(buf)
		if err != nil {
			continue
		}
		if string(buf[:n]) != "hello b" || from.String() != ra.LocalAddr().String() {
			t.Fatalf("got %q from %s", buf[:n], from)
		}
		return
	}
	t.Fatal("nothing relayed from A's relay to B's relay")
}
