package edge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

const (
	testRealm    = "ferry.test"
	testUser     = "alice"
	testPass     = "secret"
	testSoftware = "ferry-test/1"
)

// deniedPeer is refused by the test server's PermissionHandler.
func deniedPeer() net.IP { return net.IPv4(127, 0, 0, 66) }

// inspectLog records what Options.Screen saw, passing everything on.
type inspectLog struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (l *inspectLog) inspect(raw []byte, _ net.Addr) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, bytes.Clone(raw))
	return nil
}

func (l *inspectLog) transactionIDs(t *testing.T) [][stun.TransactionIDSize]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids [][stun.TransactionIDSize]byte
	for _, m := range l.msgs {
		ids = append(ids, decode(t, m).TransactionID)
	}
	return ids
}

type testServer struct {
	srv      *turn.Server
	addr     net.Addr // client-facing address
	counters *Counters
	inspect  *inspectLog
}

// startServer runs pion's turn.Server behind the edge wrappers on one
// client-facing socket of the given transport (udp, tcp, tls, dtls).
func startServer(t *testing.T, transport string) *testServer {
	t.Helper()
	return startServerWith(t, transport, nil)
}

// startServerWith is startServer with the Options adjusted by configure.
func startServerWith(t *testing.T, transport string, configure func(*Options)) *testServer {
	t.Helper()
	log := testutil.Logger(t)
	ts := &testServer{counters: &Counters{}, inspect: &inspectLog{}}
	o := Options{Software: testSoftware, Screen: ts.inspect.inspect, Counters: ts.counters, Log: log}
	if configure != nil {
		configure(&o)
	}
	relay := func() turn.RelayAddressGenerator {
		return &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}
	}
	perm := func(_ net.Addr, peer net.IP) bool { return !peer.Equal(deniedPeer()) }
	key := turn.GenerateAuthKey(testUser, testRealm, testPass)
	cfg := turn.ServerConfig{
		Realm: testRealm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username != testUser {
				return "", nil, false
			}
			return testUser, key, true
		},
		LoggerFactory: testutil.PionLogger(t),
	}
	switch transport {
	case "udp":
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ts.addr = pc.LocalAddr()
		cfg.PacketConnConfigs = []turn.PacketConnConfig{{
			PacketConn: WrapPacketConn(pc, o), RelayAddressGenerator: relay(), PermissionHandler: perm,
		}}
	default:
		var l net.Listener
		var err error
		switch transport {
		case "tcp":
			l, err = net.Listen("tcp4", "127.0.0.1:0")
		case "tls":
			l, err = tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{testutil.SelfSigned(t).TLS}})
		case "dtls":
			l, err = dtls.ListenWithOptions("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)},
				dtls.WithCertificates(testutil.SelfSigned(t).TLS),
				dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
		default:
			t.Fatalf("unknown transport %q", transport)
		}
		if err != nil {
			t.Fatal(err)
		}
		ts.addr = l.Addr()
		cfg.ListenerConfigs = []turn.ListenerConfig{{
			Listener: WrapListener(l, o), RelayAddressGenerator: relay(), PermissionHandler: perm,
		}}
	}
	srv, err := turn.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = srv
	t.Cleanup(func() { _ = srv.Close() })
	return ts
}

// dialServer returns the client-side net.PacketConn for ts: a UDP socket,
// or pion's STUNConn over a TCP, TLS or DTLS connection.
func dialServer(t *testing.T, transport string, ts *testServer) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	switch transport {
	case "udp":
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c = pc
	case "tcp":
		nc, err := net.Dial("tcp4", ts.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		c = turn.NewSTUNConn(nc)
	case "tls":
		nc, err := tls.Dial("tcp4", ts.addr.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test server
		if err != nil {
			t.Fatal(err)
		}
		c = turn.NewSTUNConn(nc)
	case "dtls":
		nc, err := dtls.DialWithOptions("udp4", ts.addr.(*net.UDPAddr),
			dtls.WithInsecureSkipVerify(true),
			dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
		if err != nil {
			t.Fatal(err)
		}
		c = turn.NewSTUNConn(nc)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recorder keeps a copy of every STUN message the client receives.
type recorder struct {
	net.PacketConn
	mu  sync.Mutex
	msg [][]byte
}

func (r *recorder) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := r.PacketConn.ReadFrom(p)
	if err == nil && stun.IsMessage(p[:n]) {
		r.mu.Lock()
		r.msg = append(r.msg, bytes.Clone(p[:n]))
		r.mu.Unlock()
	}
	return n, a, err
}

func (r *recorder) find(typ stun.MessageType) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msg {
		if be16(m[0:2]) == int(typ.Value()) {
			return m
		}
	}
	return nil
}

// TestPionBehindEdge runs pion's client against pion's server behind the
// wrappers on every transport: Binding (with SOFTWARE and a valid
// FINGERPRINT on the wire), Allocate, CreatePermission, and data through
// the relay both as Send/Data indications and as ChannelData.
func TestPionBehindEdge(t *testing.T) {
	for _, transport := range []string{"udp", "tcp", "tls", "dtls"} {
		before := runtime.NumGoroutine()
		t.Run(transport, func(t *testing.T) {
			func() {
				ts := startServer(t, transport)
				rec := &recorder{PacketConn: dialServer(t, transport, ts)}
				client, err := turn.NewClient(&turn.ClientConfig{
					STUNServerAddr: ts.addr.String(),
					TURNServerAddr: ts.addr.String(),
					Conn:           rec,
					Username:       testUser,
					Password:       testPass,
					Realm:          testRealm,
					LoggerFactory:  testutil.PionLogger(t),
				})
				if err != nil {
					t.Fatal(err)
				}
				defer client.Close()
				if err := client.Listen(); err != nil {
					t.Fatal(err)
				}

				if _, err := client.SendBindingRequest(); err != nil {
					t.Fatalf("binding: %v", err)
				}
				raw := rec.find(stun.BindingSuccess)
				if raw == nil {
					t.Fatal("no Binding success response recorded")
				}
				m := decode(t, raw)
				var sw stun.Software
				if err := sw.GetFrom(m); err != nil || sw.String() != testSoftware {
					t.Fatalf("SOFTWARE = %q, %v", sw, err)
				}
				if err := stun.Fingerprint.Check(m); err != nil {
					t.Fatalf("FINGERPRINT: %v", err)
				}

				relayConn, err := client.Allocate()
				if err != nil {
					t.Fatalf("allocate: %v", err)
				}
				defer relayConn.Close()
				peer := testutil.EchoPeer(t, "udp4", "127.0.0.1:0")
				if err := client.CreatePermission(peer.LocalAddr()); err != nil {
					t.Fatalf("create permission: %v", err)
				}
				buf := make([]byte, 1500)
				for i := 0; ; i++ {
					msg := fmt.Appendf(nil, "ping %d", i)
					if _, err := relayConn.WriteTo(msg, peer.LocalAddr()); err != nil {
						t.Fatalf("write through relay: %v", err)
					}
					_ = relayConn.SetReadDeadline(time.Now().Add(2 * time.Second))
					n, from, err := relayConn.ReadFrom(buf)
					if err != nil {
						t.Fatalf("read through relay: %v", err)
					}
					if !bytes.Equal(buf[:n], msg) || from.String() != peer.LocalAddr().String() {
						t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, msg, peer.LocalAddr())
					}
					if ts.counters.Snapshot().ChannelDataPackets >= 3 {
						break // the channel is bound and used
					}
					if i == 200 {
						t.Fatalf("no ChannelData after %d packets: %+v", i, ts.counters.Snapshot())
					}
					time.Sleep(10 * time.Millisecond)
				}
				s := ts.counters.Snapshot()
				if s.Malformed+s.Oversized+s.InvalidFrames != 0 || s.BindingRequests != 1 || s.SoftwareAdded == 0 {
					t.Fatalf("counters %+v", s)
				}
				if s.Indications == 0 {
					t.Fatalf("no Send indication before the channel was bound: %+v", s)
				}
			}()
		})
		// The subtest's Cleanups closed the server and the client conn.
		testutil.CheckGoroutines(t, before)
	}
}

// rawClient speaks raw STUN to the server, to see responses on the wire.
type rawClient struct {
	t      *testing.T
	conn   net.PacketConn
	server net.Addr
	nonce  stun.Nonce
	realm  stun.Realm
}

// do sends msg and returns the raw response with its transaction ID.
func (r *rawClient) do(msg []byte) []byte {
	r.t.Helper()
	if _, err := r.conn.WriteTo(msg, r.server); err != nil {
		r.t.Fatal(err)
	}
	id := decode(r.t, msg).TransactionID
	buf := make([]byte, 1600)
	_ = r.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			r.t.Fatalf("waiting for response: %v", err)
		}
		if stun.IsMessage(buf[:n]) && decode(r.t, buf[:n]).TransactionID == id {
			return bytes.Clone(buf[:n])
		}
	}
}

// authed builds an authenticated request.
func (r *rawClient) authed(setters ...stun.Setter) []byte {
	setters = append(setters, stun.NewUsername(testUser), r.realm, r.nonce,
		stun.NewLongTermIntegrity(testUser, testRealm, testPass), stun.Fingerprint)
	return build(r.t, setters...)
}

// TestResponseFixups drives pion with raw requests and checks the
// responses on the wire: the ChannelBind refusal is 403, the genuine 401
// challenge stays 401, integrity-protected responses are untouched, and
// Screen sees exactly the requests carrying MESSAGE-INTEGRITY.
func TestResponseFixups(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			ts := startServer(t, transport)
			rc := &rawClient{t: t, conn: dialServer(t, transport, ts), server: ts.addr}
			key := stun.MessageIntegrity(turn.GenerateAuthKey(testUser, testRealm, testPass))
			var wantInspected [][stun.TransactionIDSize]byte

			// Binding: no integrity, not inspected.
			decode(t, rc.do(msgBindingRequest(t)))

			// Unauthenticated Allocate: a genuine 401 challenge.
			m := decode(t, rc.do(build(t, typeOf(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP(), stun.Fingerprint)))
			if code := errorCode(t, m); code != 401 {
				t.Fatalf("challenge code %d, want 401", code)
			}
			if err := rc.nonce.GetFrom(m); err != nil {
				t.Fatalf("challenge without NONCE: %v", err)
			}
			if err := rc.realm.GetFrom(m); err != nil {
				t.Fatal(err)
			}
			// Over UDP the challenge is larger than the 36-byte request, so the
			// amplification cap leaves SOFTWARE out; streams get it.
			if got, want := m.Contains(stun.AttrSoftware), transport != "udp"; got != want {
				t.Fatalf("401 challenge carries SOFTWARE: %v, want %v", got, want)
			}

			// Authenticated Allocate: success with integrity, untouched.
			req := rc.authed(typeOf(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())
			wantInspected = append(wantInspected, decode(t, req).TransactionID)
			m = decode(t, rc.do(req))
			if m.Type != typeOf(stun.MethodAllocate, stun.ClassSuccessResponse) {
				t.Fatalf("allocate: %v code %d", m.Type, errorCode(t, m))
			}
			if err := key.Check(m); err != nil {
				t.Fatalf("allocate response integrity: %v", err)
			}
			if m.Contains(stun.AttrSoftware) {
				t.Fatal("SOFTWARE added to an integrity-protected response")
			}

			// ChannelBind to a refused peer: pion says 401, the wire says 403.
			req = rc.authed(typeOf(stun.MethodChannelBind, stun.ClassRequest), channelNumber(0x4000), xorPeer(deniedPeer(), 5000))
			wantInspected = append(wantInspected, decode(t, req).TransactionID)
			raw := rc.do(req)
			m = decode(t, raw)
			if m.Type != typeOf(stun.MethodChannelBind, stun.ClassErrorResponse) {
				t.Fatalf("channel bind: %v", m.Type)
			}
			var ec stun.ErrorCodeAttribute
			if err := ec.GetFrom(m); err != nil || ec.Code != stun.CodeForbidden || string(ec.Reason) != "Forbidden" {
				t.Fatalf("channel bind refusal: %v %q %v, want 403 Forbidden", ec.Code, ec.Reason, err)
			}
			if _, err := checkWellFormed(raw); err != nil {
				t.Fatal(err)
			}

			// CreatePermission to a refused peer: pion's own 403 with
			// integrity, untouched.
			req = rc.authed(typeOf(stun.MethodCreatePermission, stun.ClassRequest), xorPeer(deniedPeer(), 5000))
			wantInspected = append(wantInspected, decode(t, req).TransactionID)
			m = decode(t, rc.do(req))
			if code := errorCode(t, m); code != 403 {
				t.Fatalf("create permission refusal code %d", code)
			}
			if err := key.Check(m); err != nil {
				t.Fatalf("create permission response integrity: %v", err)
			}

			// ChannelBind to an allowed peer still succeeds.
			req = rc.authed(typeOf(stun.MethodChannelBind, stun.ClassRequest), channelNumber(0x4001), xorPeer(net.IPv4(127, 0, 0, 1), 5000))
			wantInspected = append(wantInspected, decode(t, req).TransactionID)
			m = decode(t, rc.do(req))
			if m.Type != typeOf(stun.MethodChannelBind, stun.ClassSuccessResponse) {
				t.Fatalf("allowed channel bind: %v code %d", m.Type, errorCode(t, m))
			}

			got := ts.inspect.transactionIDs(t)
			if fmt.Sprint(got) != fmt.Sprint(wantInspected) {
				t.Fatalf("inspected %d requests %x, want %d %x", len(got), got, len(wantInspected), wantInspected)
			}
			if s := ts.counters.Snapshot(); s.Rewritten403 != 1 {
				t.Fatalf("counters %+v", s)
			}
		})
	}
}

// TestGarbageDropped sends garbage to the UDP server while a client keeps
// working.
func TestGarbageDropped(t *testing.T) {
	ts := startServer(t, "udp")
	binding := msgBindingRequest(t)
	badCookie := bytes.Clone(binding)
	badCookie[4] = 0
	badLen := bytes.Clone(binding)
	badLen[3] = 9
	garbage := [][]byte{
		{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06},
		binding[:len(binding)-4],
		badCookie,
		badLen,
		channelData(0x4000, []byte("abcdef"), false)[:6],
	}
	oversized := make([]byte, 2000)
	copy(oversized, channelData(0x4000, make([]byte, 1996), false))

	attacker, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	for _, g := range append(garbage, oversized) {
		if _, err := attacker.WriteTo(g, ts.addr); err != nil {
			t.Fatal(err)
		}
	}

	rc := &rawClient{t: t, conn: dialServer(t, "udp", ts), server: ts.addr}
	m := decode(t, rc.do(msgBindingRequest(t)))
	if m.Type != stun.BindingSuccess {
		t.Fatalf("binding after garbage: %v", m.Type)
	}
	testutil.WaitFor(t, 5*time.Second, "garbage counted", func() bool {
		s := ts.counters.Snapshot()
		return s.Malformed == uint64(len(garbage)) && s.Oversized == 1
	})
	// Nothing was answered to the attacker.
	_ = attacker.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := attacker.ReadFrom(make([]byte, 100)); err == nil {
		t.Fatalf("garbage got a %d-byte answer", n)
	}
}

// TestStreamGarbageClosesConnection: a TCP client sending something other
// than TURN is cut off; another client is not affected.
func TestStreamGarbageClosesConnection(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want CounterValues
	}{
		// 'G' is 0x47: the stream parses as ChannelData of 0x5420 bytes.
		{"HTTP", []byte("GET / HTTP/1.1\r\n\r\n"), CounterValues{Oversized: 1}},
		{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, CounterValues{InvalidFrames: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, "tcp")
			bad, err := net.Dial("tcp4", ts.addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			if _, err := bad.Write(tt.data); err != nil {
				t.Fatal(err)
			}
			_ = bad.SetReadDeadline(time.Now().Add(3 * time.Second))
			var ne net.Error
			if _, err := bad.Read(make([]byte, 10)); err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("garbage connection not closed: %v", err)
			}
			if s := ts.counters.Snapshot(); s != tt.want {
				t.Fatalf("counters %+v\nwant     %+v", s, tt.want)
			}
			rc := &rawClient{t: t, conn: dialServer(t, "tcp", ts), server: ts.addr}
			if m := decode(t, rc.do(msgBindingRequest(t))); m.Type != stun.BindingSuccess {
				t.Fatalf("binding: %v", m.Type)
			}
		})
	}
}

// TestServerCloseClosesStreamConns: pion's Server.Close closes listeners
// only; the wrapper closes the connections they accepted, so clients see
// the server go away and no read goroutine is left behind.
func TestServerCloseClosesStreamConns(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("serve", func(t *testing.T) {
		ts := startServer(t, "tcp")
		nc, err := net.Dial("tcp4", ts.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		rc := &rawClient{t: t, conn: turn.NewSTUNConn(nc), server: ts.addr}
		if m := decode(t, rc.do(msgBindingRequest(t))); m.Type != stun.BindingSuccess {
			t.Fatalf("binding: %v", m.Type)
		}
		if err := ts.srv.Close(); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		var ne net.Error
		if _, err := nc.Read(make([]byte, 10)); err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("client still connected after server close: %v", err)
		}
	})
	testutil.CheckGoroutines(t, before)
}
