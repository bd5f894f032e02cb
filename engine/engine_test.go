package engine

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/relay"
)

func TestAllocateChallengeAndRetransmission(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(UDP, "198.51.100.7:4000", "alice", "wonderland")
	// Unauthenticated: 401 with REALM and NONCE, no larger than allowed.
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransport(17))
	s.fromClient(&cl.c, m.Raw)
	resp := s.takeResponse(cl.c.Remote, m.TransactionID)
	if errorCode(resp) != 401 {
		t.Fatalf("unauthenticated Allocate: %d", errorCode(resp))
	}
	var realm stun.Realm
	var nonce stun.Nonce
	if realm.GetFrom(resp) != nil || string(realm) != testRealm || nonce.GetFrom(resp) != nil {
		t.Fatalf("401 without REALM/NONCE: %v", resp)
	}
	if len(resp.Raw) > 4*len(m.Raw) {
		t.Fatalf("challenge of %d bytes to a %d-byte request", len(resp.Raw), len(m.Raw))
	}
	cl.allocate()
	if cl.relay.Addr() != relayIP4 || cl.lifetime != 600 {
		t.Fatalf("relay %v lifetime %d", cl.relay, cl.lifetime)
	}
	if got := s.sh.Allocations(); got != 1 {
		t.Fatalf("%d allocations", got)
	}
	// A second Allocate on the same 5-tuple: 437, signed.
	resp = cl.do(stun.MethodAllocate, requestedTransport(17))
	if errorCode(resp) != 437 || cl.verify(resp) != nil {
		t.Fatalf("second Allocate: %d", errorCode(resp))
	}
	// A retransmission gets the same success.
	req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransport(17),
		stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce(cl.nonce), stun.MessageIntegrity(cl.key))
	// Different transaction: 437 again; same ID as the first Allocate is
	// what a retransmission is, which the client tracks itself.
	s.fromClient(&cl.c, req.Raw)
	if errorCode(s.takeResponse(cl.c.Remote, req.TransactionID)) != 437 {
		t.Fatal("mismatched Allocate not 437")
	}
}

func TestCredentialChecks(t *testing.T) {
	s := newSim(t, simOpts{})
	tests := []struct {
		name string
		cl   *simClient
		code int
	}{
		{"static user", s.client(UDP, "198.51.100.1:1", "alice", "wonderland"), 0},
		{"wrong password", s.client(UDP, "198.51.100.2:1", "alice", "nope"), 401},
		{"unknown user", s.client(UDP, "198.51.100.3:1", "mallory", "x"), 401},
		{"REST credential", s.restClient("198.51.100.4:1", "carol", testSecret, time.Hour), 0},
		{"REST credential, other secret", s.restClient("198.51.100.5:1", "carol", "other", time.Hour), 401},
		{"REST credential, expired", s.restClient("198.51.100.6:1", "carol", testSecret, -time.Minute), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.cl.do(stun.MethodAllocate, requestedTransport(17))
			if got := errorCode(resp); got != tt.code {
				t.Fatalf("code %d, want %d", got, tt.code)
			}
			if tt.code == 401 {
				var realm stun.Realm
				var nonce stun.Nonce
				if realm.GetFrom(resp) != nil || nonce.GetFrom(resp) != nil {
					t.Fatal("401 without REALM and NONCE")
				}
			}
		})
	}
	if got := s.stats().Refused[RefusedAuth]; got != 4 {
		t.Errorf("refused auth %d, want 4", got)
	}
}

// Calls outlive their credential and the secret that signed it: an expired
// REST credential and a removed secret or user keep refreshing (regression
// 3, 11).
func TestLiveCallsOutliveCredentials(t *testing.T) {
	s := newSim(t, simOpts{secrets: []string{"old-secret"}})
	rest := s.restClient("198.51.100.1:1", "carol", "old-secret", 2*time.Minute)
	rest.allocate()
	static := s.client(UDP, "198.51.100.2:1", "alice", "wonderland")
	static.allocate()
	snap, err := auth.NewSnapshot(testRealm, nil, []string{"new-secret"})
	if err != nil {
		t.Fatal(err)
	}
	s.sh.SetCredentials(snap)
	s.advance(5 * time.Minute) // past the REST credential's expiry
	for _, cl := range []*simClient{rest, static} {
		resp := cl.do(stun.MethodRefresh, lifetime(600))
		cl.mustOK("Refresh "+cl.String(), resp)
		cl.mustOK("CreatePermission "+cl.String(), cl.permit(peer(1)))
	}
	// A new Allocate with the removed secret's credential is refused.
	again := s.restClient("198.51.100.3:1", "carol", "old-secret", time.Hour)
	if code := errorCode(again.do(stun.MethodAllocate, requestedTransport(17))); code != 401 {
		t.Fatalf("Allocate with a removed secret: %d", code)
	}
}

func TestNonces(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate(lifetime(3600))
	// A nonce past its lifetime: 438, and the client goes on.
	s.advance(11 * time.Minute)
	old := cl.nonce
	cl.mustOK("Refresh after nonce expiry", cl.do(stun.MethodRefresh))
	if cl.nonce == old {
		t.Fatal("no new nonce after expiry")
	}
	// The signed request replayed from another port of the same IP: 438
	// (regression 15), and no allocation there.
	other := *cl
	other.c.Remote = netip.MustParseAddrPort("198.51.100.1:1001")
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransport(17),
		stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce(cl.nonce), stun.MessageIntegrity(cl.key))
	s.fromClient(&other.c, m.Raw)
	if code := errorCode(s.takeResponse(other.c.Remote, m.TransactionID)); code != 438 {
		t.Fatalf("replayed from another port: %d, want 438", code)
	}
	// Nonces that are not ferry's: 438, never counted as a failure.
	for _, n := range []string{"-", "", "aaaaaaaaaaaaaaaaaaaaaaa", "AQAAAAAAAAAAAAAAAAAAAAA"} {
		resp := other.raw(stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.NewUsername("alice"),
			stun.NewRealm(testRealm), stun.NewNonce(n), stun.MessageIntegrity(cl.key))
		if code := errorCode(resp); code != 438 && !(n == "" && code == 438) {
			t.Errorf("nonce %q: %d, want 438", n, code)
		}
	}
	if f := s.stats().AuthFailures; f != [numMethods]uint64{} {
		t.Fatalf("foreign nonces counted as failures: %v", f)
	}
}

// Regression 8: spoofed requests with a bogus nonce from a victim's
// address lock nothing out.
func TestSpoofedFailuresLockNobodyOut(t *testing.T) {
	s := newSim(t, simOpts{})
	victim := s.client(UDP, "198.51.100.9:5000", "alice", "wonderland")
	victim.allocate()
	spoof := s.client(UDP, "198.51.100.9:5000", "alice", "guess")
	for range 200 {
		spoof.raw(stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.NewUsername("alice"),
			stun.NewRealm("any"), stun.NewNonce("-"), stun.MessageIntegrity(spoof.key))
	}
	victim.mustOK("victim Refresh after spoofing", victim.do(stun.MethodRefresh))
	victim.mustOK("victim CreatePermission after spoofing", victim.permit(peer(1)))
}

// Regression 14: one client's wrong password does not lock out others
// behind its address; guessing is throttled per user name and address.
func TestGuessingThrottledPerUserAndAddress(t *testing.T) {
	s := newSim(t, simOpts{})
	guesser := s.client(UDP, "198.51.100.20:1000", "alice", "wrong")
	for i := range 8 {
		code := errorCode(guesser.do(stun.MethodAllocate, requestedTransport(17)))
		if code != 401 {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	// Right password, same user, same address: throttled (burst 5).
	right := s.client(UDP, "198.51.100.20:1001", "alice", "wonderland")
	if code := errorCode(right.do(stun.MethodAllocate, requestedTransport(17))); code != 401 {
		t.Fatalf("alice from the guessing address while throttled: %d, want 401", code)
	}
	// Another user behind the same address: served.
	bob := s.client(UDP, "198.51.100.20:1002", "bob", "builder")
	bob.allocate()
	rest := s.restClient("198.51.100.20:1003", "dave", testSecret, time.Hour)
	rest.allocate()
	// The same user from another address: served.
	elsewhere := s.client(UDP, "198.51.100.21:1000", "alice", "wonderland")
	elsewhere.allocate()
	// And the throttle refills.
	s.advance(10 * time.Second)
	right.nonce = ""
	right.allocate()
}

func TestRelayThroughPermissionsAndChannels(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	p := peer(1)
	// Without a permission nothing passes either way.
	cl.send(p, "early")
	if s.fromPeer(p, cl.relay, []byte("in")); len(s.takePeer(p)) != 0 {
		t.Fatal("sent to a peer without permission")
	}
	if _, _, _, ok := s.takeData(cl.c.Remote); ok {
		t.Fatal("peer data without permission reached the client")
	}
	cl.mustOK("CreatePermission", cl.permit(p))
	cl.send(p, "hello")
	got := s.takePeer(p)
	if len(got) != 1 || got[0].data != "hello" || got[0].from != cl.relay {
		t.Fatalf("to peer: %+v", got)
	}
	s.fromPeer(p, cl.relay, []byte("back"))
	ch, from, data, ok := s.takeData(cl.c.Remote)
	if !ok || ch != 0 || from != p || string(data) != "back" {
		t.Fatalf("Data indication: %v %v %q %v", ch, from, data, ok)
	}
	// Another port of a permitted IP is permitted too (permissions are per IP).
	p2 := netip.AddrPortFrom(p.Addr(), p.Port()+1)
	cl.send(p2, "port")
	if len(s.takePeer(p2)) != 1 {
		t.Fatal("permission is not per IP address")
	}
	cl.mustOK("ChannelBind", cl.bind(0x4001, p))
	cl.channelData(0x4001, "via channel")
	if got := s.takePeer(p); len(got) != 1 || got[0].data != "via channel" {
		t.Fatalf("ChannelData to peer: %+v", got)
	}
	s.fromPeer(p, cl.relay, []byte("chan back"))
	if ch, _, data, ok := s.takeData(cl.c.Remote); !ok || ch != 0x4001 || string(data) != "chan back" {
		t.Fatalf("ChannelData to client: %x %q %v", ch, data, ok)
	}
	// Unbound channel: dropped.
	cl.channelData(0x4002, "x")
	if len(s.takePeer(p)) != 0 {
		t.Fatal("unbound channel relayed")
	}
	// After 5 minutes without refresh the permission of p2's... p is kept
	// by the channel bind; let everything lapse.
	s.advance(5*time.Minute + time.Second)
	cl.send(p, "late")
	cl.channelData(0x4001, "late")
	if got := s.takePeer(p); len(got) != 0 {
		t.Fatalf("relayed after the permission expired: %+v", got)
	}
	st := s.stats()
	if st.PermissionsActive != 0 || st.PermissionsCreated != 1 {
		t.Fatalf("permissions active %d created %d", st.PermissionsActive, st.PermissionsCreated)
	}
	if st.ToPeerPackets != 3 || st.FromPeerPackets != 2 {
		t.Fatalf("relayed %d/%d", st.ToPeerPackets, st.FromPeerPackets)
	}
}

func TestChannelBindRules(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	tests := []struct {
		name   string
		number uint16
		peer   netip.AddrPort
		code   int
	}{
		{"bind", 0x4000, peer(1), 0},
		{"refresh", 0x4000, peer(1), 0},
		{"number to another peer", 0x4000, peer(2), 400},
		{"peer to another number", 0x4001, peer(1), 400},
		{"number below range", 0x3FFF, peer(3), 400},
		{"number above range", 0x7FFF, peer(3), 400},
		{"RFC 5766 number (coturn's clients)", 0x7833, peer(4), 0},
		{"private peer", 0x4002, netip.MustParseAddrPort("10.0.0.1:9"), 403},
		{"IPv6 peer on an IPv4 relay", 0x4003, netip.MustParseAddrPort("[2001:db8:1::1]:9"), 443},
		{"own relay address outside the relay ports", 0x4004, netip.AddrPortFrom(relayIP4, 3478), 403},
		{"own relay address on a relay port", 0x4005, netip.AddrPortFrom(relayIP4, 40001), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := cl.bind(tt.number, tt.peer)
			if got := errorCode(resp); got != tt.code {
				t.Fatalf("code %d, want %d", got, tt.code)
			}
			if cl.verify(resp) != nil {
				t.Fatal("answer not signed")
			}
		})
	}
	if got := s.stats().PeerDenied["private"]; got != 1 {
		t.Errorf("private peer denials %d", got)
	}
}

func TestQuotas(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) {
		c.UserAllocations = 2
		c.TotalAllocations = 3
		c.Permissions = 2
		c.Channels = 1
	}})
	var cls []*simClient
	for i := range 2 {
		cl := s.client(UDP, netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(1000+i)).String(), "alice", "wonderland")
		cl.allocate()
		cls = append(cls, cl)
	}
	third := s.client(UDP, "198.51.100.1:1002", "alice", "wonderland")
	if code := errorCode(third.do(stun.MethodAllocate, requestedTransport(17))); code != 486 {
		t.Fatalf("user over quota: %d, want 486", code)
	}
	bob := s.client(UDP, "198.51.100.2:1000", "bob", "builder")
	bob.allocate()
	bob2 := s.client(UDP, "198.51.100.2:1001", "bob", "builder")
	if code := errorCode(bob2.do(stun.MethodAllocate, requestedTransport(17))); code != 508 {
		t.Fatalf("server over quota: %d, want 508", code)
	}
	cl := cls[0]
	cl.mustOK("permission 1+2", cl.permit(peer(1), peer(2)))
	if code := errorCode(cl.permit(peer(3))); code != 508 {
		t.Fatalf("permissions over quota: %d", code)
	}
	cl.mustOK("refreshing existing permissions", cl.permit(peer(1), peer(2)))
	cl.mustOK("channel 1", cl.bind(0x4000, peer(1)))
	if code := errorCode(cl.bind(0x4001, peer(2))); code != 508 {
		t.Fatalf("channels over quota: %d", code)
	}
	// Releasing gives the quota back.
	cl.mustOK("Refresh 0", cl.do(stun.MethodRefresh, lifetime(0)))
	third.allocate()
	st := s.stats()
	if st.Refused[RefusedQuota] != 1 || st.Refused[RefusedCapacity] != 1 {
		t.Fatalf("refusals %v", st.Refused)
	}
	if st.Ended[EndClient] != 1 {
		t.Fatalf("ended by client %d", st.Ended[EndClient])
	}
}

func TestLifetimes(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.MaxLifetime = 20 * time.Minute }})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate(lifetime(7200))
	if cl.lifetime != 1200 {
		t.Fatalf("lifetime %d, want the 1200 s cap", cl.lifetime)
	}
	cl2 := s.client(UDP, "198.51.100.1:1001", "alice", "wonderland")
	cl2.allocate(lifetime(60))
	if cl2.lifetime != 600 {
		t.Fatalf("lifetime %d, want the 600 s default", cl2.lifetime)
	}
	s.advance(601 * time.Second)
	if got := s.sh.Allocations(); got != 1 {
		t.Fatalf("%d allocations after the default lifetime", got)
	}
	if code := errorCode(cl2.do(stun.MethodRefresh)); code != 437 {
		t.Fatalf("Refresh of an expired allocation: %d", code)
	}
	if s.stats().Ended[EndExpired] != 1 {
		t.Fatal("expiry not counted")
	}
}

// Regression 5: a Refresh for an allocation closed by the admin API gets
// 437 at once.
func TestAdminCloseThen437(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	e := s.eng[s.shardOf(&cl.c)]
	if n := e.CloseRelay(&s.out, cl.relay, "udp", s.now); n != 1 {
		t.Fatalf("closed %d", n)
	}
	s.exec(e.Shard())
	if len(s.relays) != 0 {
		t.Fatalf("relay sockets left open: %v", s.relays)
	}
	resp := cl.do(stun.MethodRefresh)
	if errorCode(resp) != 437 || cl.verify(resp) != nil {
		t.Fatalf("Refresh after admin close: %d", errorCode(resp))
	}
	if s.stats().Ended[EndAdmin] != 1 {
		t.Fatal("admin close not counted")
	}
}

func TestAddressFamilies(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.RelayV6 = false }})
	fam := func(f byte) stun.Setter {
		return stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{f, 0, 0, 0}}
	}
	add := stun.RawAttribute{Type: 0x8000, Value: []byte{2, 0, 0, 0}}
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	if code := errorCode(cl.do(stun.MethodAllocate, requestedTransport(17), fam(2))); code != 440 {
		t.Fatalf("IPv6 relay not offered: %d", code)
	}
	if code := errorCode(cl.do(stun.MethodAllocate, requestedTransport(17), fam(9))); code != 440 {
		t.Fatalf("unknown family: %d", code)
	}
	if code := errorCode(cl.do(stun.MethodAllocate, requestedTransport(17), fam(1), add)); code != 400 {
		t.Fatalf("both family attributes: %d", code)
	}
	// Dual allocation without IPv6: IPv4 with ADDRESS-ERROR-CODE.
	resp := cl.do(stun.MethodAllocate, requestedTransport(17), add)
	if errorCode(resp) != 0 {
		t.Fatalf("dual: %d", errorCode(resp))
	}
	if v, err := resp.Get(0x8001); err != nil || v[0] != 2 || v[2] != 4 || v[3] != 40 {
		t.Fatalf("ADDRESS-ERROR-CODE %x %v", v, err)
	}

	s6 := newSim(t, simOpts{})
	d := s6.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	d.allocate(add)
	if len(d.relays) != 2 || !d.relays[0].Addr().Is4() || !d.relays[1].Addr().Is6() {
		t.Fatalf("dual relays %v", d.relays)
	}
	p6 := netip.MustParseAddrPort("[2001:db8:1::7]:9")
	d.mustOK("permissions on both families", d.permit(peer(1), p6))
	d.send(p6, "six")
	if got := s6.takePeer(p6); len(got) != 1 || got[0].from != d.relays[1] {
		t.Fatalf("IPv6 peer reached from %+v", got)
	}
	v6 := s6.client(UDP, "[2001:db8:9::1]:1000", "alice", "wonderland")
	v6.allocate(fam(2))
	if !v6.relay.Addr().Is6() {
		t.Fatalf("REQUESTED-ADDRESS-FAMILY IPv6 gave %v", v6.relay)
	}
}

func TestEvenPortAndReservationAcrossShards(t *testing.T) {
	s := newSim(t, simOpts{shards: 2})
	rtp := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	resp := rtp.do(stun.MethodAllocate, requestedTransport(17), stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80}})
	rtp.mustOK("EVEN-PORT R", resp)
	tok, err := resp.Get(stun.AttrReservationToken)
	if err != nil || len(tok) != 8 {
		t.Fatalf("no RESERVATION-TOKEN: %v", err)
	}
	var x stun.XORMappedAddress
	if err := x.GetFromAs(resp, stun.AttrXORRelayedAddress); err != nil || x.Port%2 != 0 {
		t.Fatalf("relay %v %v, want an even port", x, err)
	}
	// Find an RTCP client port that lands on the other shard.
	var rtcp *simClient
	for p := 1001; p < 1100; p++ {
		c := s.client(UDP, netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(p)).String(), "alice", "wonderland")
		if s.shardOf(&c.c) != s.shardOf(&rtp.c) {
			rtcp = c
			break
		}
	}
	rtcp.allocate(stun.RawAttribute{Type: stun.AttrReservationToken, Value: tok})
	if int(rtcp.relay.Port()) != x.Port+1 {
		t.Fatalf("reserved relay %v, want port %d", rtcp.relay, x.Port+1)
	}
	p := peer(1)
	rtcp.mustOK("permission", rtcp.permit(p))
	rtcp.send(p, "rtcp")
	if got := s.takePeer(p); len(got) != 1 || got[0].from != rtcp.relay {
		t.Fatalf("RTCP relay: %+v", got)
	}
	// The token is single use.
	again := s.client(UDP, "198.51.100.1:2000", "alice", "wonderland")
	if code := errorCode(again.do(stun.MethodAllocate, requestedTransport(17),
		stun.RawAttribute{Type: stun.AttrReservationToken, Value: tok})); code != 508 {
		t.Fatalf("token reused: %d", code)
	}
	// An unused reservation is released after 30 s.
	r2 := s.client(UDP, "198.51.100.2:1000", "bob", "builder")
	r2.mustOK("second R", r2.do(stun.MethodAllocate, requestedTransport(17), stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80}}))
	open := len(s.relays)
	s.advance(31 * time.Second)
	if len(s.relays) != open-1 {
		t.Fatalf("reservation not released: %d relays, was %d", len(s.relays), open)
	}
}

func TestRelayBindFailureIs508(t *testing.T) {
	s := newSim(t, simOpts{})
	s.failOpen = func(OpenRelay) error { return errBindFailed }
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	resp := cl.do(stun.MethodAllocate, requestedTransport(17))
	if errorCode(resp) != 508 || cl.verify(resp) != nil {
		t.Fatalf("bind failure: %d", errorCode(resp))
	}
	if s.sh.Allocations() != 0 || s.stats().Refused[RefusedCapacity] != 1 {
		t.Fatalf("allocations %d refused %v", s.sh.Allocations(), s.stats().Refused)
	}
	s.failOpen = nil
	cl.allocate()
}

func TestDrainRefuses508(t *testing.T) {
	s := newSim(t, simOpts{})
	live := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	live.allocate()
	s.sh.Drain()
	cl := s.client(UDP, "198.51.100.1:1001", "alice", "wonderland")
	if code := errorCode(cl.do(stun.MethodAllocate, requestedTransport(17))); code != 508 {
		t.Fatalf("Allocate while draining: %d", code)
	}
	live.mustOK("Refresh while draining", live.do(stun.MethodRefresh))
	if s.stats().Refused[RefusedDraining] != 1 {
		t.Fatal("drain refusal not counted")
	}
	n := 0
	for _, e := range s.eng {
		n += e.CloseAll(&s.out, s.now)
		s.exec(e.Shard())
	}
	if n != 1 || s.stats().Ended[EndShutdown] != 1 || len(s.relays) != 0 {
		t.Fatalf("close all: %d, ended %v, relays %v", n, s.stats().Ended, s.relays)
	}
}

func TestBinding(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "", "")
	resp := cl.raw(stun.BindingRequest)
	var xm stun.XORMappedAddress
	if err := xm.GetFrom(resp); err != nil || xm.String() != cl.c.Remote.String() {
		t.Fatalf("XOR-MAPPED-ADDRESS %v %v", xm, err)
	}
	for _, a := range []stun.AttrType{stun.AttrMappedAddress, stun.AttrResponseOrigin, stun.AttrOtherAddress, stun.AttrSoftware} {
		if resp.Contains(a) {
			t.Errorf("UDP Binding answer without RFC 5780 carries %v (regression 13)", a)
		}
	}
	if len(resp.Raw) > 2*20 {
		t.Errorf("answer of %d bytes to a 20-byte request", len(resp.Raw))
	}
	// Unknown comprehension-required attribute: 420 (regression 15).
	resp = cl.raw(stun.BindingRequest, stun.RawAttribute{Type: 0x0031, Value: []byte{1, 2, 3, 4}})
	if errorCode(resp) != 420 {
		t.Fatalf("unknown attribute: %d", errorCode(resp))
	}
	if v, _ := resp.Get(stun.AttrUnknownAttributes); len(v) != 2 || v[1] != 0x31 {
		t.Fatalf("UNKNOWN-ATTRIBUTES %x", v)
	}
	// CHANGE-REQUEST without RFC 5780: 420.
	resp = cl.raw(stun.BindingRequest, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}})
	if errorCode(resp) != 420 {
		t.Fatalf("CHANGE-REQUEST without alternates: %d", errorCode(resp))
	}
	tcp := s.client(TCP, "198.51.100.1:2000", "", "")
	resp = tcp.raw(stun.BindingRequest)
	if !resp.Contains(stun.AttrSoftware) {
		t.Error("TCP Binding answer without SOFTWARE")
	}
}

func TestRFC5780(t *testing.T) {
	a1p1 := serverAddr
	a2p1 := netip.MustParseAddrPort("192.0.2.11:3478")
	a1p2 := netip.MustParseAddrPort("192.0.2.10:3479")
	a2p2 := netip.MustParseAddrPort("192.0.2.11:3479")
	s := newSim(t, simOpts{configure: func(c *Config) {
		c.NAT = []NATAddresses{{Addr: [4]netip.AddrPort{a1p1, a2p1, a1p2, a2p2}, Socket: [4]SocketID{1, 2, 3, 4}}}
	}})
	var sent []Command
	s.onCmd = func(_ int, c Command) {
		if c.Op == OpSendClient {
			sent = append(sent, c)
		}
	}
	cl := s.client(UDP, "198.51.100.1:1000", "", "")
	tests := []struct {
		name   string
		change byte
		from   netip.AddrPort
		sock   SocketID
	}{
		{"no change", 0, a1p1, 1},
		{"change IP", 4, a2p1, 2},
		{"change port", 2, a1p2, 3},
		{"change both", 6, a2p2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent = nil
			resp := cl.raw(stun.BindingRequest, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, tt.change}})
			if errorCode(resp) != 0 || len(sent) != 1 {
				t.Fatalf("code %d, %d sent", errorCode(resp), len(sent))
			}
			if sent[0].Client.Local != tt.from || sent[0].Client.Socket != tt.sock {
				t.Fatalf("answered from %v socket %d", sent[0].Client.Local, sent[0].Client.Socket)
			}
			var origin, other stun.MappedAddress
			if origin.GetFromAs(resp, stun.AttrResponseOrigin) != nil || origin.String() != tt.from.String() {
				t.Fatalf("RESPONSE-ORIGIN %v", origin)
			}
			if other.GetFromAs(resp, stun.AttrOtherAddress) != nil || other.String() != a2p2.String() {
				t.Fatalf("OTHER-ADDRESS %v", other)
			}
		})
	}
	// A request to an alternate address is answered; other methods there are dropped.
	alt := *cl
	alt.c.Local, alt.c.Socket = a2p2, 4
	if resp := alt.raw(stun.BindingRequest); errorCode(resp) != 0 {
		t.Fatal("Binding on an alternate socket not answered")
	}
	if resp := alt.raw(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransport(17)); resp != nil {
		t.Fatal("Allocate on an alternate socket answered")
	}
}

func TestAmplificationCap(t *testing.T) {
	// A realm long enough that the challenge to a minimal request would
	// be more than four times as large: dropped, not sent.
	long := "a-realm-that-is-rather-long-for-a-turn-server.example.org"
	s := newSim(t, simOpts{configure: func(c *Config) { c.Realm = long }})
	cl := s.client(UDP, "198.51.100.1:1000", "", "")
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest))
	s.fromClient(&cl.c, m.Raw)
	if resp := s.takeResponse(cl.c.Remote, m.TransactionID); resp != nil {
		t.Fatalf("sent %d bytes to a %d-byte unauthenticated request", len(resp.Raw), len(m.Raw))
	}
	if s.stats().Dropped[DropAmplification] != 1 {
		t.Fatal("not counted")
	}
	// Over TCP the source is proven: answered in full.
	tcp := s.client(TCP, "198.51.100.1:1000", "", "")
	s.fromClient(&tcp.c, m.Raw)
	if s.takeResponse(tcp.c.Remote, m.TransactionID) == nil {
		t.Fatal("TCP challenge dropped")
	}
}

func TestUnauthenticatedBudgetPerAddress(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.UnauthenticatedRate, c.UnauthenticatedBurst = 60, 10 }})
	flood := s.client(UDP, "198.51.100.66:1", "", "")
	answered := 0
	for range 50 {
		if flood.raw(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransport(17)) != nil {
			answered++
		}
	}
	if answered != 10 {
		t.Fatalf("%d challenges answered, want the burst of 10", answered)
	}
	// A client at that address holding a valid nonce is not affected.
	other := s.client(UDP, "198.51.100.67:1", "alice", "wonderland")
	other.allocate()
}

// A channel expires after 10 minutes even while its peer's permission is
// kept alive: ChannelData stops, and the peer's datagrams come as Data
// indications.
func TestChannelExpiresBeforePermission(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate(lifetime(3600))
	p := peer(1)
	cl.mustOK("ChannelBind", cl.bind(0x4000, p))
	for _, d := range []time.Duration{4 * time.Minute, 4 * time.Minute, 3 * time.Minute} {
		s.now = s.now.Add(d) // no timer tick: expiry must hold on the packet path
		cl.mustOK("CreatePermission", cl.permit(p))
	}
	cl.channelData(0x4000, "stale channel")
	if got := s.takePeer(p); len(got) != 0 {
		t.Fatalf("ChannelData on an expired channel relayed: %+v", got)
	}
	s.fromPeer(p, cl.relay, []byte("x"))
	if ch, _, _, ok := s.takeData(cl.c.Remote); !ok || ch != 0 {
		t.Fatalf("peer data after channel expiry: channel %x ok %v, want a Data indication", ch, ok)
	}
	// The number stays held for 5 minutes after expiry: another peer
	// cannot take it, the same peer can rebind it.
	if code := errorCode(cl.bind(0x4000, peer(2))); code != 400 {
		t.Fatalf("rebinding an expired number to another peer: %d", code)
	}
	cl.mustOK("rebinding to the same peer", cl.bind(0x4000, p))
}

// Regression 10: ferry's own addresses can change (a new IPv6 temporary
// address, an attached cloud IP). Once the data plane swaps in the policy
// with the new address, permissions and channels to it are dropped at the
// next tick and new ones refused. Datagrams from ferry's own relay address
// are taken only from relay ports (a relayed Binding bouncing off ferry's
// own listener is not).
func TestOwnAddressesFollowed(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	p := peer(5)
	cl.mustOK("ChannelBind", cl.bind(0x4000, p))
	cl.channelData(0x4000, "before")
	if len(s.takePeer(p)) != 1 {
		t.Fatal("not relayed before the change")
	}
	s.sh.SetPolicy(policyWithSelf(t, p.Addr()))
	s.advance(time.Second)
	cl.channelData(0x4000, "after")
	cl.send(p, "after")
	if got := s.takePeer(p); len(got) != 0 {
		t.Fatalf("relayed to a new own address: %+v", got)
	}
	if code := errorCode(cl.permit(p)); code != 403 {
		t.Fatalf("permission to a new own address: %d", code)
	}
	if st := s.stats(); st.PermissionsActive != 0 || st.ChannelsActive != 0 {
		t.Fatalf("permissions %d channels %d left", st.PermissionsActive, st.ChannelsActive)
	}
	// Inbound from ferry's own relay address: relay ports only.
	self := netip.AddrPortFrom(relayIP4, 40001)
	cl.mustOK("permission for ferry's relay address", cl.permit(self))
	// And outbound: a datagram to ferry's own listener port is dropped and
	// counted as a drop, not as relayed (regression 15).
	before := s.stats()
	listener := netip.AddrPortFrom(relayIP4, 3478)
	cl.send(listener, "to ferry itself")
	after := s.stats()
	if len(s.takePeer(listener)) != 0 || after.ToPeerPackets != before.ToPeerPackets ||
		after.Dropped[DropPolicy] != before.Dropped[DropPolicy]+1 {
		t.Fatalf("datagram to ferry's own listener: relayed %d->%d, policy drops %d->%d",
			before.ToPeerPackets, after.ToPeerPackets, before.Dropped[DropPolicy], after.Dropped[DropPolicy])
	}
	s.fromPeer(netip.AddrPortFrom(relayIP4, 3478), cl.relay, []byte("from the listener"))
	if _, _, _, ok := s.takeData(cl.c.Remote); ok {
		t.Fatal("datagram from ferry's own listener port relayed to the client")
	}
	s.fromPeer(self, cl.relay, []byte("from a relay"))
	if _, _, data, ok := s.takeData(cl.c.Remote); !ok || string(data) != "from a relay" {
		t.Fatal("datagram from another relay of ferry's not relayed")
	}
}

// policyWithSelf is the simulation's policy with extra addresses of
// ferry's own.
func policyWithSelf(t *testing.T, extra ...netip.Addr) *relay.Policy {
	t.Helper()
	pol, err := relay.NewPolicy(relay.PolicyOptions{
		Allowed:      []netip.Prefix{peerNet, peerNet6},
		Self:         append([]netip.Addr{relayIP4, relayIP6, serverAddr.Addr(), server6.Addr()}, extra...),
		Relays:       []netip.Addr{relayIP4, relayIP6},
		RelayMinPort: 40000,
		RelayMaxPort: 49999,
	})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// lineCounter is a log sink counting lines.
type lineCounter struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

func (l *lineCounter) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, x := range l.lines {
		if strings.Contains(x, sub) {
			n++
		}
	}
	return n
}

func (l *lineCounter) has(sub string) bool { return l.count(sub) > 0 }
