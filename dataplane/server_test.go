package dataplane

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/internal/testutil"
)

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
				// SOFTWARE over TCP; over UDP only what the request needs
				// (regression 13).
				var sw stun.Software
				if err := sw.GetFrom(res); (err == nil) != (tr == "tcp") || (tr == "tcp" && sw.String() != "ferry") {
					t.Fatalf("SOFTWARE = %q, %v", sw.String(), err)
				}
				if tr == "udp" && (res.Contains(stun.AttrMappedAddress) || res.Contains(stun.AttrResponseOrigin)) {
					t.Fatal("UDP Binding answer carries MAPPED-ADDRESS or RESPONSE-ORIGIN without RFC 5780")
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
	f.srv.SetCredentials(snap)
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
	f.srv.SetCredentials(snap2)
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
		port          int
		want          int
	}{
		{"loopback refused by default", false, "127.0.0.2", 9, 403},
		{"other loopback refused by default", false, "127.0.0.9", 9, 403},
		// 127.0.0.1 is the fixture's relay address: relay to relay through
		// one ferry is admitted, on relay ports only.
		{"own relay address admitted", false, "127.0.0.1", 40001, 0},
		{"own relay address, not a relay port", false, "127.0.0.1", 9, -1},
		{"private refused", true, "10.1.2.3", 9, 403},
		{"metadata refused", true, "169.254.169.254", 9, 403},
		{"loopback allowed with flag", true, "127.0.0.1", 9, 0},
		{"public allowed", false, "8.8.8.8", 9, 0},
	}
	for _, tt := range tests {
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+tr, func(t *testing.T) {
				f := startServer(t, fixtureOpts{allowLoopback: tt.allowLoopback})
				rc := newRawClient(t, f, tr)
				ip := net.ParseIP(tt.peer)
				// A permission is for the IP address; a channel for a
				// transport address, whose port the policy checks too (-1:
				// permitted, but no channel to that port).
				perm, bind := tt.want, tt.want
				if tt.want < 0 {
					perm, bind = 0, 403
				}
				res := rc.do(stun.MethodCreatePermission, peerAddr{ip, tt.port})
				if got := errorCode(res); got != perm {
					t.Fatalf("CreatePermission to %s: code %d, want %d", tt.peer, got, perm)
				}
				res = rc.do(stun.MethodChannelBind, channelNumber(0x4001), peerAddr{ip, tt.port})
				if got := errorCode(res); got != bind {
					t.Fatalf("ChannelBind to %s:%d: code %d, want %d", tt.peer, tt.port, got, bind)
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
				LoggerFactory:          testutil.PionLogger(t),
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
