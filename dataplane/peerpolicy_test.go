package dataplane

import (
	"net"
	"testing"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/testutil"
)

type requestedFamily byte

func (f requestedFamily) AddTo(m *stun.Message) error {
	m.Add(stun.AttrRequestedAddressFamily, []byte{byte(f), 0, 0, 0})
	return nil
}

// deniedV4 has an address in every IPv4 range the default policy refuses.
// 127.0.0.1 and ::1 are the fixture's relay addresses, which are admitted
// (relay to relay through one ferry, relay ports only: TestRelayToRelay);
// other loopback addresses stand for the range here, and relay/policy_test
// covers ::1 itself.
var deniedV4 = []string{
	"0.0.0.1", "10.20.30.40", "100.64.0.1", "127.0.0.2", "127.255.255.254",
	"169.254.169.254", "172.16.0.1", "172.31.255.254", "192.0.0.9", "192.0.2.1",
	"192.88.99.1", "192.168.1.1", "198.18.0.1", "198.19.255.254", "198.51.100.7",
	"203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
}

// deniedV6 has an address in every IPv6 range the default policy refuses.
var deniedV6 = []string{
	"::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "ff0e::1",
	"2001:db8::1", "64:ff9b:1::1", "100::1", "2001::1", "2001:2::1", "3fff::1",
	"5f00::1", "fec0::1", "4000::1", "::2:1",
}

// embeddings are the IPv6 forms of a denied IPv4 address a.b.c.d, by
// name: IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002:AABB:CCDD::.
func embeddings(v4 string) map[string]string {
	ip := net.ParseIP(v4).To4()
	b := func(i int) byte { return ip[i] }
	return map[string]string{
		"compatible": net.IP{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b(0), b(1), b(2), b(3)}.String(),
		"nat64":      net.IP{0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, b(0), b(1), b(2), b(3)}.String(),
		"6to4":       net.IP{0x20, 0x02, b(0), b(1), b(2), b(3), 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}.String(),
	}
}

// TestPeerPolicyRanges asks for a permission, a channel (UDP relays) and a
// connection (TCP relays, RFC 6062) to an address of every denied range and
// every IPv6 form embedding a denied IPv4 address, on IPv4 and IPv6 relays
// of both transports, with the default policy: each gets 403. Nothing is
// sent to any peer: the refusal comes before.
func TestPeerPolicyRanges(t *testing.T) {
	if !testutil.HasIPv6Loopback() {
		t.Skip("no IPv6 loopback for IPv6 relays")
	}
	type peerCase struct{ name, ip string }
	var v4, v6 []peerCase
	for _, a := range deniedV4 {
		v4 = append(v4, peerCase{a, a})
		// IPv4-mapped addresses belong to IPv4 relays (pion answers 443 on
		// IPv6 ones).
		v4 = append(v4, peerCase{"mapped " + a, "::ffff:" + a})
	}
	for _, a := range deniedV6 {
		v6 = append(v6, peerCase{a, a})
	}
	for _, a := range []string{"10.0.0.1", "127.0.0.1", "169.254.169.254", "192.168.0.1", "100.64.1.1", "0.0.0.0", "224.0.0.251"} {
		for kind, ip := range embeddings(a) {
			v6 = append(v6, peerCase{kind + " " + a, ip})
		}
	}
	f := startServer(t, fixtureOpts{})
	for _, relay := range []struct {
		transport string // client transport
		tcp       bool   // RFC 6062 TCP relay
		family    byte
		peers     []peerCase
	}{
		{"udp", false, 1, v4}, {"udp", false, 2, v6},
		{"tcp", true, 1, v4}, {"tcp", true, 2, v6},
	} {
		name := map[bool]string{false: "udp-relay", true: "tcp-relay"}[relay.tcp] +
			map[byte]string{1: "/ipv4", 2: "/ipv6"}[relay.family]
		t.Run(name, func(t *testing.T) {
			var attrs []stun.Setter
			if relay.tcp {
				attrs = append(attrs, requestedTCP{})
			} else {
				attrs = append(attrs, requestedUDP{})
			}
			if relay.family == 2 {
				attrs = append(attrs, requestedFamily(2))
			}
			rc := newRawClientWith(t, f, relay.transport, attrs...)
			for _, p := range relay.peers {
				ip := net.ParseIP(p.ip)
				if got := errorCode(rc.do(stun.MethodCreatePermission, peerAddr{ip, 9})); got != 403 {
					t.Errorf("CreatePermission %s (%s): code %d, want 403", p.name, p.ip, got)
				}
				if relay.tcp {
					if got := errorCode(rc.do(stun.MethodConnect, peerAddr{ip, 9})); got != 403 {
						t.Errorf("Connect %s (%s): code %d, want 403", p.name, p.ip, got)
					}
				} else if got := errorCode(rc.do(stun.MethodChannelBind, channelNumber(0x4001), peerAddr{ip, 9})); got != 403 {
					t.Errorf("ChannelBind %s (%s): code %d, want 403", p.name, p.ip, got)
				}
			}
		})
	}
}

// TestAllowedDeniedPeers: relay.allowed-peers lets a refused range
// through, relay.denied-peers refuses a public one and wins over
// allowed-peers, on UDP and TCP relays. Only permissions are asked for, so
// no packet goes to these addresses.
func TestAllowedDeniedPeers(t *testing.T) {
	f := startServer(t, fixtureOpts{configure: func(c *config.Config) {
		c.Relay.AllowedPeers = []string{"10.1.2.0/24", "192.168.7.7", "8.8.0.0/16"}
		c.Relay.DeniedPeers = []string{"8.8.8.0/24"}
	}})
	tests := []struct {
		peer string
		want int
	}{
		{"10.1.2.3", 0},
		{"::ffff:10.1.2.4", 0},
		{"10.1.3.3", 403},
		{"192.168.7.7", 0},
		{"192.168.7.8", 403},
		{"8.8.8.8", 403}, // denied wins over the allowed 8.8.0.0/16
		{"8.8.4.4", 0},
		{"9.9.9.9", 0},
	}
	for _, relay := range []struct {
		name string
		attr stun.Setter
	}{{"udp-relay", requestedUDP{}}, {"tcp-relay", requestedTCP{}}} {
		t.Run(relay.name, func(t *testing.T) {
			rc := newRawClientWith(t, f, "tcp", relay.attr)
			for _, tt := range tests {
				if got := errorCode(rc.do(stun.MethodCreatePermission, peerAddr{net.ParseIP(tt.peer), 9})); got != tt.want {
					t.Errorf("CreatePermission %s: code %d, want %d", tt.peer, got, tt.want)
				}
			}
		})
	}
}
