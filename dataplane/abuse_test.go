package dataplane

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// udpFrom opens a UDP client socket on the loopback address ip (Linux
// routes all of 127.0.0.0/8 to lo), to be another client IP.
func udpFrom(t *testing.T, ip string) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Skipf("cannot bind %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// tryRoundTrip is roundTrip that reports a missing answer instead of
// failing.
func tryRoundTrip(t *testing.T, conn net.PacketConn, to net.Addr, req []byte, wait time.Duration) *stun.Message {
	t.Helper()
	if _, err := conn.WriteTo(req, to); err != nil {
		t.Fatal(err)
	}
	var tid [stun.TransactionIDSize]byte
	copy(tid[:], req[8:20])
	buf := make([]byte, 1600)
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	for {
		n, _, err := conn.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if res.Decode() == nil && res.TransactionID == tid {
			return res
		}
	}
}

func unauthAllocate() []byte {
	return stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP{}).Raw
}

// TestAllocateRateLimit: past limits.allocate-burst, an address's
// Allocate requests are dropped unanswered; other addresses are not
// affected.
func TestAllocateRateLimit(t *testing.T) {
	f := startServer(t, fixtureOpts{configure: func(c *config.Config) {
		c.Limits.AllocateRate = 1 // per minute: nothing refills during the test
		c.Limits.AllocateBurst = 3
	}})
	t.Run("udp", func(t *testing.T) {
		c := udpFrom(t, "127.0.0.1")
		for i := range 5 {
			res := tryRoundTrip(t, c, f.udp, unauthAllocate(), 300*time.Millisecond)
			if answered := res != nil; answered != (i < 3) {
				t.Fatalf("request %d answered: %v", i, answered)
			}
		}
		// Another address still gets its challenge.
		if tryRoundTrip(t, udpFrom(t, "127.0.0.2"), f.udp, unauthAllocate(), time.Second) == nil {
			t.Fatal("another client address was limited too")
		}
	})
	t.Run("tcp", func(t *testing.T) {
		// A connection's address is proven by its handshake: not limited.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
		nc, err := d.Dial("tcp4", f.tcp.String())
		if err != nil {
			t.Skip(err)
		}
		defer nc.Close()
		for i := range 5 {
			if _, err := nc.Write(unauthAllocate()); err != nil {
				t.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 1600)
			if _, err := nc.Read(buf); err != nil {
				t.Fatalf("request %d over TCP not answered: %v", i, err)
			}
		}
	})
	if got := f.srv.Stats().Dropped[engine.DropRateLimit]; got != 2 {
		t.Errorf("rate-limited drops = %d, want 2", got)
	}
}

// TestAuthFailureLimit: past limits.auth-failure-burst refused
// credentials of one user name from one address, that user name's requests
// from that address are answered 401 unverified, even correct ones, while
// the same user from other addresses and other users from the same address
// authenticate (regression 14).
func TestAuthFailureLimit(t *testing.T) {
	f := startServer(t, fixtureOpts{configure: func(c *config.Config) {
		c.Limits.AuthFailureRate = 1
		c.Limits.AuthFailureBurst = 2
	}})
	attempt := func(c net.PacketConn, pass string) *stun.Message {
		ch := tryRoundTrip(t, c, f.udp, unauthAllocate(), time.Second)
		if ch == nil {
			t.Fatal("no challenge")
		}
		var nonce stun.Nonce
		if err := nonce.GetFrom(ch); err != nil {
			t.Fatal(err)
		}
		req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP{},
			stun.NewUsername(testUser), stun.NewRealm(testRealm), nonce, stun.NewLongTermIntegrity(testUser, testRealm, pass), stun.Fingerprint)
		return tryRoundTrip(t, c, f.udp, req.Raw, 300*time.Millisecond)
	}
	c := udpFrom(t, "127.0.0.1")
	for i := range 2 {
		if res := attempt(c, "wrong"); res == nil || errorCode(res) != 401 {
			t.Fatalf("wrong password %d: %v, want 401", i, res)
		}
	}
	// Past the limit nothing is verified: right or wrong, the answer is 401.
	for _, pass := range []string{"wrong", testPass} {
		if res := attempt(c, pass); res == nil || errorCode(res) != 401 {
			t.Fatalf("password %q from a limited address: %v, want an unverified 401", pass, res)
		}
	}
	if res := attempt(udpFrom(t, "127.0.0.2"), testPass); res == nil || res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("another address: %v, want an allocation", res)
	}
	// Another user behind the guessing address is not affected.
	u, p := auth.Mint(testSecret, "bob", time.Hour, time.Now())
	bob := f.client(t, "udp", u, p)
	if rc, err := bob.Allocate(); err != nil {
		t.Fatalf("another user from the same address: %v", err)
	} else {
		_ = rc.Close()
	}
	if got := f.srv.Stats().AuthFailures[0]; got != 4 {
		t.Errorf("refused Allocate credentials = %d, want 4 (2 checked, 2 throttled)", got)
	}
}

// TestNonceBoundToClient: a nonce sent to one address is stale (438, with
// a fresh nonce) from another; the fresh one works there.
func TestNonceBoundToClient(t *testing.T) {
	f := startServer(t, fixtureOpts{})
	a, b := udpFrom(t, "127.0.0.1"), udpFrom(t, "127.0.0.4")
	nonceFor := func(c net.PacketConn) stun.Nonce {
		var n stun.Nonce
		if err := n.GetFrom(tryRoundTrip(t, c, f.udp, unauthAllocate(), time.Second)); err != nil {
			t.Fatal(err)
		}
		return n
	}
	authed := func(c net.PacketConn, n stun.Nonce) *stun.Message {
		req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP{},
			stun.NewUsername(testUser), stun.NewRealm(testRealm), n, stun.NewLongTermIntegrity(testUser, testRealm, testPass), stun.Fingerprint)
		return tryRoundTrip(t, c, f.udp, req.Raw, time.Second)
	}
	na, nb := nonceFor(a), nonceFor(b)
	if string(na) == string(nb) || !strings.EqualFold(string(na), string(nb)) {
		t.Logf("nonces %s and %s", na, nb) // same pion nonce, cased per address (unless issued in different minutes)
	}
	res := authed(b, na)
	if res == nil || errorCode(res) != 438 {
		t.Fatalf("nonce of another address: %v, want 438", res)
	}
	var fresh stun.Nonce
	if err := fresh.GetFrom(res); err != nil {
		t.Fatalf("438 without a fresh NONCE: %v", err)
	}
	if res := authed(b, fresh); res == nil || res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("fresh nonce: %v, want an allocation", res)
	}
	if got := f.srv.Stats().StaleNonces; got != 1 {
		t.Errorf("stale nonces = %d, want 1", got)
	}
}

type rawAttr struct {
	typ stun.AttrType
	val []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.typ, a.val)
	return nil
}

// TestNoAmplification sends every request that gets an unauthenticated
// answer over UDP, small and padded, and checks each answer against the
// request's size: no reason phrases, the 401 and 438 challenges at their
// bare minimum, Binding answers with XOR-MAPPED-ADDRESS only, and nothing
// above 4 times the request (regression 13).
func TestNoAmplification(t *testing.T) {
	f := startServer(t, fixtureOpts{})
	c := udpFrom(t, "127.0.0.1")
	pad := stun.NewSoftware(strings.Repeat("p", 120))
	alloc := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	nonce := stun.Nonce(stun.NewNonce("x"))
	ch := tryRoundTrip(t, c, f.udp, unauthAllocate(), time.Second)
	if err := nonce.GetFrom(ch); err != nil {
		t.Fatal(err)
	}
	unknown := rawAttr{0x7ff0, nil} // comprehension-required, unknown to pion: 420
	integ := stun.NewLongTermIntegrity(testUser, testRealm, testPass)
	tests := []struct {
		name    string
		req     []stun.Setter
		code    int     // expected answer, 0 for success, -1 for none (dropped)
		maxGrow float64 // answer size / request size allowed
	}{
		{"401 challenge, smallest Allocate", []stun.Setter{alloc, requestedUDP{}}, 401, 3},
		{"401 challenge, padded Allocate", []stun.Setter{alloc, requestedUDP{}, pad}, 401, 1},
		{"401 to CreatePermission", []stun.Setter{stun.NewType(stun.MethodCreatePermission, stun.ClassRequest)}, 401, 4},
		// Unknown attributes are looked at after the credential (RFC 8489
		// §6.3.1): an unauthenticated request gets its challenge.
		{"unknown attribute, smallest", []stun.Setter{alloc, unknown}, 401, 4},
		{"unknown attribute, padded", []stun.Setter{alloc, unknown, pad}, 401, 1},
		{"400, integrity without nonce", []stun.Setter{alloc, requestedUDP{}, stun.NewUsername(testUser), stun.NewRealm(testRealm), integ}, 400, 1},
		{"401, wrong password", []stun.Setter{alloc, requestedUDP{}, stun.NewUsername(testUser), stun.NewRealm(testRealm), nonce,
			stun.NewLongTermIntegrity(testUser, testRealm, "wrong")}, 401, 1},
		{"438, forged nonce", []stun.Setter{alloc, requestedUDP{}, stun.NewUsername(testUser), stun.NewRealm(testRealm),
			stun.NewNonce("0123456789ABCDEFGHIJ01234"), integ}, 438, 1},
		{"Binding, smallest", []stun.Setter{stun.BindingRequest}, 0, 2},
		{"Binding with FINGERPRINT", []stun.Setter{stun.BindingRequest, stun.Fingerprint}, 0, 2},
		{"Binding 420", []stun.Setter{stun.BindingRequest, rawAttr{stun.AttrChangeRequest, []byte{0, 0, 0, 6}}}, 420, 2},
		{"Binding with an unknown attribute", []stun.Setter{stun.BindingRequest, unknown}, 420, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := stun.MustBuild(append([]stun.Setter{stun.TransactionID}, tt.req...)...).Raw
			res := tryRoundTrip(t, c, f.udp, req, 300*time.Millisecond)
			if tt.code < 0 {
				if res != nil {
					t.Fatalf("%d-byte request answered with %d bytes (code %d), want nothing", len(req), len(res.Raw), errorCode(res))
				}
				return
			}
			if res == nil {
				t.Fatalf("%d-byte request not answered", len(req))
			}
			if got := errorCode(res); got != tt.code {
				t.Fatalf("code %d, want %d", got, tt.code)
			}
			grow := float64(len(res.Raw)) / float64(len(req))
			t.Logf("request %d bytes, answer %d bytes (%.2fx)", len(req), len(res.Raw), grow)
			if grow > tt.maxGrow {
				t.Fatalf("answer %.2fx the request, want at most %.2fx", grow, tt.maxGrow)
			}
			var ec stun.ErrorCodeAttribute
			if ec.GetFrom(res) == nil && len(ec.Reason) > 0 {
				t.Errorf("unauthenticated answer with a reason phrase %q", ec.Reason)
			}
			for _, a := range res.Attributes {
				switch a.Type {
				case stun.AttrErrorCode, stun.AttrNonce, stun.AttrRealm, stun.AttrUnknownAttributes,
					stun.AttrXORMappedAddress, stun.AttrFingerprint:
				default:
					t.Errorf("unauthenticated answer carries %v", a.Type)
				}
			}
		})
	}
}

// TestFloodKeepsRelaying floods the UDP listener for a few seconds with
// malformed datagrams, unauthenticated and wrongly authenticated requests
// from other loopback addresses, while an honest client relays through a
// channel to an echo peer; the client must lose under 1%.
func TestFloodKeepsRelaying(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	const (
		duration  = 3 * time.Second
		honestPPS = 200
		flooders  = 4
		floodPPS  = 2500 // per flooder: 10000 datagrams/s in all
	)
	f := startServer(t, fixtureOpts{allowLoopback: true})
	c := f.client(t, "udp", testUser, testPass)
	relayConn, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	peer := testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr()
	relayRoundTrips(t, relayConn, peer, 3) // permission and channel in place

	stop := make(chan struct{})
	var flood sync.WaitGroup
	var sent atomic.Int64
	for i := range flooders {
		src := udpFrom(t, "127.0.0."+string(rune('5'+i)))
		// Password guesses carry a genuine nonce of the flooder's address,
		// so they reach the credential check (and its limit).
		var nonce stun.Nonce
		if err := nonce.GetFrom(tryRoundTrip(t, src, f.udp, unauthAllocate(), time.Second)); err != nil {
			t.Fatal(err)
		}
		flood.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			garbage := make([]byte, 200)
			// No FINGERPRINT: it would no longer verify once the
			// transaction ID is changed, and the guess be dropped as
			// malformed before its credential is checked.
			badAuth := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
				stun.NewUsername(testUser), stun.NewRealm(testRealm), nonce,
				stun.NewLongTermIntegrity(testUser, testRealm, "guess")).Raw
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				for range floodPPS / 100 {
					var b []byte
					switch rng.IntN(4) {
					case 0: // random bytes
						for j := range garbage {
							garbage[j] = byte(rng.Uint32())
						}
						b = garbage[:1+rng.IntN(len(garbage))]
					case 1: // a STUN header announcing more than it has
						b = append(unauthAllocate()[:20:20], 0, 0)
						b[3] = 200
					case 2:
						b = unauthAllocate()
					default:
						b = badAuth
						copy(b[8:20], garbage[:12])
					}
					_, _ = src.WriteTo(b, f.udp)
					sent.Add(1)
				}
			}
		})
	}

	// The honest client sends a numbered packet every 5ms and counts echoes.
	var got atomic.Int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 1600)
		for {
			_ = relayConn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, _, err := relayConn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == 100 && buf[0] == 'h' {
				got.Add(1)
			}
		}
	}()
	total := 0
	msg := make([]byte, 100)
	msg[0] = 'h'
	tick := time.NewTicker(time.Second / honestPPS)
	for deadline := time.Now().Add(duration); time.Now().Before(deadline); {
		<-tick.C
		if _, err := relayConn.WriteTo(msg, peer); err != nil {
			t.Fatal(err)
		}
		total++
	}
	tick.Stop()
	close(stop)
	flood.Wait()
	<-readDone
	lost := total - int(got.Load())
	st := f.srv.Stats()
	malformed, limited, refused := st.Dropped[engine.DropMalformed], st.Dropped[engine.DropRateLimit], st.AuthFailures[1]
	t.Logf("honest client: %d sent, %d echoed, %d lost (%.2f%%); flood: %d datagrams; malformed %d, rate-limited %d, refused Refresh credentials %d",
		total, got.Load(), lost, 100*float64(lost)/float64(total), sent.Load(), malformed, limited, refused)
	if float64(lost) >= 0.01*float64(total) {
		t.Errorf("honest client lost %d of %d packets (>= 1%%)", lost, total)
	}
	if malformed == 0 || limited == 0 || refused == 0 {
		t.Errorf("flood not dropped and counted: malformed %d, rate-limited %d, refused %d", malformed, limited, refused)
	}
}
