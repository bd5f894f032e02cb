package edge

import (
	"bytes"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/stun/v3"
)

func mustGuard(t testing.TB, o GuardOptions) *Guard {
	t.Helper()
	g, err := NewGuard(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestNewGuardErrors(t *testing.T) {
	for _, o := range []GuardOptions{
		{AllocateRate: -1},
		{AuthFailureBurst: -1},
		{TrackedIPs: -5},
		{NonceLifetime: 30 * time.Second},
		{NonceLifetime: 2 * time.Hour},
	} {
		if _, err := NewGuard(o); err == nil {
			t.Errorf("NewGuard(%+v) accepted", o)
		}
	}
}

// TestGuardLimits drives the per-IP limits on a fake clock.
func TestGuardLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := mustGuard(t, GuardOptions{AllocateRate: 60, AllocateBurst: 2, AuthFailureRate: 6, AuthFailureBurst: 1})
		a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
		for i, want := range []bool{true, true, false} {
			if got := g.allowAttempt(a); got != want {
				t.Fatalf("attempt %d allowed %v: allocate burst of 2 not honoured", i, got)
			}
		}
		if !g.allowAttempt(b) {
			t.Fatal("other address limited")
		}
		time.Sleep(time.Second) // 60 per minute: one back
		if !g.allowAttempt(a) || g.allowAttempt(a) {
			t.Fatal("one attempt should be back after a second")
		}
		if g.authBlocked(a) {
			t.Fatal("blocked before any failure")
		}
		g.authFailed(a)
		if !g.authBlocked(a) || g.authBlocked(b) {
			t.Fatal("one failure should block a (burst 1), and only a")
		}
		time.Sleep(10 * time.Second) // 6 per minute
		if g.authBlocked(a) {
			t.Fatal("still blocked after the refill")
		}
		// Unlimited guard and nil guard admit everything.
		var nilGuard *Guard
		for _, g := range []*Guard{mustGuard(t, GuardOptions{}), nilGuard} {
			for range 1000 {
				if !g.allowAttempt(a) {
					t.Fatal("unlimited guard limited")
				}
				g.authFailed(a)
			}
			if g.authBlocked(a) {
				t.Fatal("unlimited guard blocked")
			}
		}
	})
}

// pionNonce gets a real nonce from pion's 401 challenge.
func pionNonce(t *testing.T) string {
	t.Helper()
	ts := startServer(t, "udp")
	rc := &rawClient{t: t, conn: dialServer(t, "udp", ts), server: ts.addr}
	m := decode(t, rc.do(build(t, typeOf(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())))
	var n stun.Nonce
	if err := n.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	return string(n)
}

func TestPionNonceMinute(t *testing.T) {
	n := pionNonce(t)
	got, ok := pionNonceMinute([]byte(n))
	now := time.Now().Unix() / 60
	if !ok || got < now-1 || got > now {
		t.Fatalf("pion nonce %q: minute %d (%v), want about %d", n, got, ok, now)
	}
	if _, ok := pionNonceMinute([]byte(string(bytes.ToLower([]byte(n))))); !ok {
		t.Fatal("lower-case nonce not decoded")
	}
	for _, bad := range []string{"", "not base36!", "ZZZZZZZZZZZZZZZZZZZZZZZZZZ", "0123456789abcdef0123456789abcdef"} {
		if _, ok := pionNonceMinute([]byte(bad)); ok {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestNonceBinding(t *testing.T) {
	g := mustGuard(t, GuardOptions{BindNonces: true})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	orig := []byte("1ABCDEFGHIJKLMNOPQRSTUVWX")
	na, nb := bytes.Clone(orig), bytes.Clone(orig)
	g.bindNonce(na, a)
	g.bindNonce(nb, b)
	if !bytes.EqualFold(na, orig) || !bytes.EqualFold(nb, orig) {
		t.Fatal("binding changed more than the case")
	}
	if bytes.Equal(na, nb) {
		t.Fatal("two addresses got the same case pattern")
	}
	if g.checkNonce(na, a) != nonceOK || g.checkNonce(nb, b) != nonceOK {
		t.Fatal("bound nonce refused at its own address")
	}
	if g.checkNonce(na, b) != nonceForeign || g.checkNonce(orig, a) != nonceForeign {
		t.Fatal("nonce accepted at another address")
	}
	again := bytes.Clone(na)
	g.bindNonce(again, a)
	if !bytes.Equal(again, na) {
		t.Fatal("binding is not idempotent")
	}
	other := mustGuard(t, GuardOptions{BindNonces: true})
	if other.checkNonce(na, a) == nonceOK && other.checkNonce(nb, b) == nonceOK {
		t.Fatal("case patterns are not keyed per Guard")
	}
}

// TestStaleNonce438 runs pion behind the edge with a 10 minute nonce
// lifetime on a clock the test moves: a nonce 11 minutes old gets 438 with
// a fresh nonce, which then works, over UDP and TCP.
func TestStaleNonce438(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			var skew atomic.Int64
			g := mustGuard(t, GuardOptions{NonceLifetime: 10 * time.Minute, BindNonces: true,
				Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
			ts := startServerWith(t, transport, func(o *Options) { o.Guard = g })
			rc := &rawClient{t: t, conn: dialServer(t, transport, ts), server: ts.addr}
			m := decode(t, rc.do(build(t, typeOf(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())))
			if err := rc.nonce.GetFrom(m); err != nil {
				t.Fatal(err)
			}
			if err := rc.realm.GetFrom(m); err != nil {
				t.Fatal(err)
			}
			skew.Store(int64(11 * time.Minute))
			m = decode(t, rc.do(rc.authed(typeOf(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())))
			if code := errorCode(t, m); code != 438 {
				t.Fatalf("expired nonce: code %d, want 438", code)
			}
			if m.Contains(stun.AttrMessageIntegrity) {
				t.Fatal("438 carries MESSAGE-INTEGRITY")
			}
			if err := rc.nonce.GetFrom(m); err != nil {
				t.Fatalf("438 without a fresh NONCE: %v", err)
			}
			skew.Store(0)
			m = decode(t, rc.do(rc.authed(typeOf(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())))
			if m.Type != typeOf(stun.MethodAllocate, stun.ClassSuccessResponse) {
				t.Fatalf("fresh nonce: %v code %d", m.Type, errorCode(t, m))
			}
			if got := ts.counters.Snapshot().StaleNonces; got != 1 {
				t.Errorf("StaleNonces = %d, want 1", got)
			}
		})
	}
}

// TestGuardedPathsAllocateNothing: the per-packet paths with a Guard,
// nonce rules and an amplification cap allocate nothing: ChannelData in,
// a Binding and an authenticated request through admit (nonce checked,
// Screen and Gate passing), responses out.
func TestGuardedPathsAllocateNothing(t *testing.T) {
	g := mustGuard(t, GuardOptions{AllocateRate: 1 << 30, AllocateBurst: 1 << 20, AuthFailureRate: 60, AuthFailureBurst: 10,
		NonceLifetime: 10 * time.Minute, BindNonces: true})
	cfg := newConfig(Options{Software: "ferry", Guard: g,
		Screen: func([]byte, net.Addr) []byte { return nil },
		Gate:   func([]byte, net.Addr, net.Addr) []byte { return nil }})
	src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000}
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
	nonce := []byte("1ABCDEFGHIJKLMNOPQRSTUVWX")
	g.bindNonce(nonce, netip.MustParseAddr("192.0.2.1"))
	authed := build(t, typeOf(stun.MethodRefresh, stun.ClassRequest), stun.NewUsername("u"), stun.NewRealm("r"),
		stun.Nonce(nonce), stun.NewLongTermIntegrity("u", "r", "p"), stun.Fingerprint)
	binding := msgBindingRequest(t)
	challenge := build(t, typeOf(stun.MethodAllocate, stun.ClassErrorResponse), &stun.ErrorCodeAttribute{Code: 401},
		stun.NewNonce(string(nonce)), stun.NewRealm("ferry"))
	cd := channelData(0x4000, make([]byte, 100), false)
	nop := &nopConn{addr: local}
	pc := &packetConn{inner: nop, rd: nop, wr: nop, cfg: cfg, sh: cfg.counters.shard()}
	var sh shard
	var stale staleRing
	buf := make([]byte, 1600)
	n := testing.AllocsPerRun(200, func() {
		if _, ok := pc.accept(cd, src); !ok {
			t.Fatal("ChannelData dropped")
		}
		for _, req := range [][]byte{binding, authed} {
			b := buf[:copy(buf, req)]
			in := classifyDatagram(b)
			if _, _, v := cfg.admit(b, in, src, local, &sh, &stale); v != admitPass {
				t.Fatalf("request not passed: %d", v)
			}
		}
		pc.last.set(binding[8:20], len(binding))
		_, _ = pc.WriteTo(challenge, src)
	})
	if n != 0 {
		t.Fatalf("%v allocations per round", n)
	}
}

// nopConn is a PacketConn that discards writes.
type nopConn struct {
	net.PacketConn
	addr net.Addr
}

func (c *nopConn) WriteTo(p []byte, _ net.Addr) (int, error) { return len(p), nil }
func (c *nopConn) LocalAddr() net.Addr                       { return c.addr }
