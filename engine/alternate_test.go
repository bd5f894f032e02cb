package engine

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

// A draining or full node sends new allocations to its alternate with an
// authenticated 300; without one for the client's transport and family
// it refuses with 508 as before; a user over quota still gets 486.
func TestRedirectToAlternate(t *testing.T) {
	alts := &Alternates{}
	alts[UDP][0] = Alternate{Addr: netip.MustParseAddrPort("203.0.113.7:3478")}
	alts[TLS][0] = Alternate{Addr: netip.MustParseAddrPort("203.0.113.7:5349"), Domain: "b.turn.example.com"}
	tests := []struct {
		name      string
		transport Transport
		remote    string
		drain     bool
		total     int // quota.total-allocations, 0: none
		user      int // quota.user-allocations
		code      int
		alternate string
		domain    string
	}{
		{"draining, udp", UDP, "198.51.100.1:1000", true, 0, 0, 300, "203.0.113.7:3478", ""},
		{"draining, tls with its domain", TLS, "198.51.100.1:1000", true, 0, 0, 300, "203.0.113.7:5349", "b.turn.example.com"},
		{"draining, no alternate for tcp", TCP, "198.51.100.1:1000", true, 0, 0, 508, "", ""},
		{"draining, no alternate for ipv6", UDP, "[2001:db8::1]:1000", true, 0, 0, 508, "", ""},
		{"full", UDP, "198.51.100.1:1000", false, 1, 0, 300, "203.0.113.7:3478", ""},
		{"user over quota stays 486", UDP, "198.51.100.1:1000", false, 0, 1, 486, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, simOpts{configure: func(c *Config) {
				c.TotalAllocations, c.UserAllocations = tt.total, tt.user
				c.RelayV6 = true
			}})
			s.sh.SetAlternates(alts)
			if tt.total > 0 || tt.user > 0 {
				s.client(UDP, "198.51.100.9:9", "alice", "wonderland").allocate()
			}
			if tt.drain {
				s.sh.Drain()
			}
			cl := s.client(tt.transport, tt.remote, "alice", "wonderland")
			res := cl.do(stun.MethodAllocate, requestedTransport(17))
			if code := errorCode(res); code != tt.code {
				t.Fatalf("Allocate: %d, want %d", code, tt.code)
			}
			if tt.code != 300 {
				if _, err := res.Get(stun.AttrAlternateServer); err == nil {
					t.Fatal("ALTERNATE-SERVER without 300")
				}
				return
			}
			if err := cl.verify(res); err != nil {
				t.Fatalf("300 not signed with the credential: %v", err)
			}
			var alt stun.AlternateServer
			if err := alt.GetFrom(res); err != nil || (&net.UDPAddr{IP: alt.IP, Port: alt.Port}).String() != tt.alternate {
				t.Fatalf("ALTERNATE-SERVER %v (%v), want %s", alt, err, tt.alternate)
			}
			dom, err := res.Get(stun.AttrAlternateDomain)
			if string(dom) != tt.domain || (tt.domain == "") != (err != nil) {
				t.Fatalf("ALTERNATE-DOMAIN %q, want %q", dom, tt.domain)
			}
			// A REALM and a NONCE for the alternate (valid there with a
			// shared nonce key).
			var realm stun.Realm
			var nonce stun.Nonce
			if realm.GetFrom(res) != nil || realm.String() != testRealm || nonce.GetFrom(res) != nil {
				t.Fatalf("300 without REALM or NONCE: %v", res)
			}
			if s.stats().Refused[RefusedRedirected] != 1 {
				t.Fatal("redirect not counted")
			}
		})
	}
}
