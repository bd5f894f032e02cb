package relay

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustPolicy(t testing.TB, o PolicyOptions) *Policy {
	t.Helper()
	p, err := NewPolicy(o)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	return p
}

// TestPolicyDefault covers every range the default policy refuses, every
// IPv6 form embedding a refused IPv4 address, and public addresses (only
// evaluated, never contacted).
func TestPolicyDefault(t *testing.T) {
	tests := []struct {
		addr   string
		ok     bool
		reason string
	}{
		// IPv4 special-purpose registry, not globally reachable.
		{"0.0.0.0", false, "unspecified"},
		{"0.1.2.3", false, "unspecified"},
		{"10.0.0.1", false, "private"},
		{"10.255.255.255", false, "private"},
		{"100.64.0.1", false, "cgnat"},
		{"100.127.255.254", false, "cgnat"},
		{"127.0.0.1", false, "loopback"},
		{"127.255.255.254", false, "loopback"},
		{"169.254.169.254", false, "metadata/link-local"},
		{"172.16.0.1", false, "private"},
		{"172.31.255.255", false, "private"},
		{"192.0.0.1", false, "ietf-protocol"},
		{"192.0.0.10", false, "ietf-protocol"},
		{"192.0.2.1", false, "documentation"},
		{"192.88.99.1", false, "6to4-relay"},
		{"192.168.1.1", false, "private"},
		{"198.18.0.1", false, "benchmarking"},
		{"198.19.255.255", false, "benchmarking"},
		{"198.51.100.7", false, "documentation"},
		{"203.0.113.9", false, "documentation"},
		{"224.0.0.1", false, "multicast"},
		{"239.255.255.250", false, "multicast"},
		{"240.0.0.1", false, "reserved"},
		{"255.255.255.254", false, "reserved"},
		{"255.255.255.255", false, "broadcast"},
		// IPv4 neighbours of refused ranges stay allowed.
		{"9.255.255.255", true, ""},
		{"11.0.0.0", true, ""},
		{"100.63.255.255", true, ""},
		{"100.128.0.0", true, ""},
		{"172.15.255.255", true, ""},
		{"172.32.0.0", true, ""},
		{"198.17.255.255", true, ""},
		{"198.20.0.0", true, ""},
		{"223.255.255.255", true, ""},
		{"192.31.196.1", true, ""}, // AS112, globally reachable
		{"8.8.8.8", true, ""},
		{"1.1.1.1", true, ""},

		// IPv6 special-purpose registry.
		{"::", false, "unspecified"},
		{"::1", false, "loopback"},
		{"fc00::1", false, "private"},
		{"fd00:ec2::254", false, "private"},
		{"fe80::1", false, "metadata/link-local"},
		{"fe80::1%eth0", false, "metadata/link-local"},
		{"febf:ffff::1", false, "metadata/link-local"},
		{"fec0::1", false, "site-local"},
		{"ff02::1", false, "multicast"},
		{"ff0e::1", false, "multicast"},
		{"2001:db8::1", false, "documentation"},
		{"2001:db8:ffff::1", false, "documentation"},
		{"2001:0::1", false, "teredo"},
		{"2001:1::1", false, "ietf-protocol"}, // PCP anycast, refused on purpose
		{"2001:1::2", false, "ietf-protocol"}, // TURN anycast
		{"2001:2::1", false, "benchmarking"},
		{"2001:10::1", false, "ietf-protocol"}, // deprecated ORCHID
		{"2001:1ff::1", false, "ietf-protocol"},
		{"100::1", false, "discard-only"},
		{"100::ffff:ffff:ffff:ffff", false, "discard-only"},
		{"100:0:0:1::1", false, "reserved"},
		{"3fff::1", false, "documentation"},
		{"3fff:fff::1", false, "documentation"},
		{"5f00::1", false, "srv6-sid"},
		{"64:ff9b:1::1", false, "nat64-local-use"},
		{"64:ff9b:1::808:808", false, "nat64-local-use"}, // whole /48 refused
		{"4000::1", false, "reserved"},
		{"::ffff:0:a00:1", false, "reserved"}, // SIIT ::ffff:0:0:0/96
		// Globally reachable blocks inside 2001::/23 and plain 2000::/3.
		{"2001:3::1", true, ""},
		{"2001:4:112::1", true, ""},
		{"2001:20::1", true, ""},
		{"2001:30::1", true, ""},
		{"2001:200::1", true, ""},
		{"2001:db7:ffff::1", true, ""},
		{"2606:4700::1111", true, ""},
		{"2001:4860:4860::8888", true, ""},
		{"3ffe:ffff::1", true, ""},
		{"3fff:1000::1", true, ""},

		// IPv4 embedded in IPv6: judged by the IPv4 address.
		{"::ffff:10.0.0.1", false, "ipv4-embedded:private"},
		{"::ffff:127.0.0.1", false, "ipv4-embedded:loopback"},
		{"::ffff:169.254.169.254", false, "ipv4-embedded:metadata/link-local"},
		{"::ffff:0.0.0.0", false, "ipv4-embedded:unspecified"},
		{"::ffff:8.8.8.8", true, ""},
		{"::10.0.0.1", false, "ipv4-embedded:private"},
		{"::127.0.0.1", false, "ipv4-embedded:loopback"},
		{"::0.0.0.2", false, "ipv4-embedded:unspecified"},
		{"::8.8.8.8", true, ""},
		{"64:ff9b::10.0.0.1", false, "ipv4-embedded:private"},
		{"64:ff9b::127.0.0.1", false, "ipv4-embedded:loopback"},
		{"64:ff9b::192.168.0.1", false, "ipv4-embedded:private"},
		{"64:ff9b::224.0.0.1", false, "ipv4-embedded:multicast"},
		{"64:ff9b::8.8.8.8", true, ""},
		{"2002:a00:1::1", false, "ipv4-embedded:private"},                 // 10.0.0.1
		{"2002:7f00:1::", false, "ipv4-embedded:loopback"},                // 127.0.0.1
		{"2002:a9fe:a9fe::1", false, "ipv4-embedded:metadata/link-local"}, // 169.254.169.254
		{"2002:c000:201::1", false, "ipv4-embedded:documentation"},        // 192.0.2.1
		{"2002:808:808::1", true, ""},                                     // 8.8.8.8
		{"2001:0:a00:1::1", false, "teredo"},                              // Teredo refused whatever it embeds
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false, "teredo"},

		{"", false, "invalid"},
	}
	p := mustPolicy(t, PolicyOptions{})
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			var ip netip.Addr
			if tt.addr != "" {
				ip = netip.MustParseAddr(tt.addr)
			}
			ok, why := p.Check(ip)
			if ok != tt.ok || why != tt.reason {
				t.Errorf("Check(%s) = %v, %q; want %v, %q", tt.addr, ok, why, tt.ok, tt.reason)
			}
		})
	}
}

func TestPolicyOptions(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	type probe struct {
		addr   string
		ok     bool
		reason string
	}
	tests := []struct {
		name   string
		opts   PolicyOptions
		probes []probe
	}{
		{
			name: "allowed admits private",
			opts: PolicyOptions{Allowed: pfx("10.1.0.0/16", "fd00:1::/32")},
			probes: []probe{
				{"10.1.2.3", true, ""},
				{"::ffff:10.1.2.3", true, ""},
				{"64:ff9b::10.1.2.3", true, ""},
				{"10.2.0.1", false, "private"},
				{"fd00:1::5", true, ""},
				{"fd00:2::5", false, "private"},
			},
		},
		{
			name: "mapped allowed prefix is taken as IPv4",
			opts: PolicyOptions{Allowed: pfx("::ffff:192.168.7.0/120")},
			probes: []probe{
				{"192.168.7.9", true, ""},
				{"192.168.8.9", false, "private"},
			},
		},
		{
			name: "denied beats allowed",
			opts: PolicyOptions{
				Allowed: pfx("10.0.0.0/8", "8.8.0.0/16", "2606:4700::/32"),
				Denied:  pfx("10.9.0.0/16", "8.8.8.8/32", "2606:4700::1111/128"),
			},
			probes: []probe{
				{"10.1.0.1", true, ""},
				{"10.9.0.1", false, "denied-list"},
				{"8.8.4.4", true, ""},
				{"8.8.8.8", false, "denied-list"},
				{"::ffff:8.8.8.8", false, "ipv4-embedded:denied-list"},
				{"64:ff9b::8.8.8.8", false, "ipv4-embedded:denied-list"},
				{"2002:808:808::1", false, "ipv4-embedded:denied-list"},
				{"2606:4700::1111", false, "denied-list"},
				{"2606:4700::1112", true, ""},
			},
		},
		{
			name: "denied public address",
			opts: PolicyOptions{Denied: pfx("1.1.1.0/24", "2001:4860::/32")},
			probes: []probe{
				{"1.1.1.1", false, "denied-list"},
				{"1.0.0.1", true, ""},
				{"2001:4860:4860::8888", false, "denied-list"},
			},
		},
		{
			name: "allow loopback",
			opts: PolicyOptions{AllowLoopback: true},
			probes: []probe{
				{"127.0.0.1", true, ""},
				{"127.9.9.9", true, ""},
				{"::1", true, ""},
				{"::ffff:127.0.0.1", true, ""},
				{"64:ff9b::127.0.0.1", false, "ipv4-embedded:loopback"},
				{"2002:7f00:1::", false, "ipv4-embedded:loopback"},
				{"::127.0.0.1", false, "ipv4-embedded:loopback"},
				{"10.0.0.1", false, "private"},
				{"169.254.169.254", false, "metadata/link-local"},
				{"::", false, "unspecified"},
				{"0.0.0.0", false, "unspecified"},
				{"fe80::1", false, "metadata/link-local"},
			},
		},
		{
			name: "self refused even if allowed",
			opts: PolicyOptions{
				Allowed: pfx("10.0.0.0/8"),
				Self:    addrs("198.51.100.1", "10.0.0.5", "2606:4700::5", "::ffff:8.8.4.4"),
			},
			probes: []probe{
				{"198.51.100.1", false, "self"},
				{"10.0.0.5", false, "self"},
				{"10.0.0.6", true, ""},
				{"2606:4700::5", false, "self"},
				{"8.8.4.4", false, "self"},
				{"::ffff:10.0.0.5", false, "ipv4-embedded:self"},
				{"64:ff9b::8.8.4.4", false, "ipv4-embedded:self"},
				{"8.8.8.8", true, ""},
			},
		},
		{
			name: "self loopback admitted with allow loopback",
			opts: PolicyOptions{AllowLoopback: true, Self: addrs("127.0.0.1", "::1", "203.0.113.1")},
			probes: []probe{
				{"127.0.0.1", true, ""},
				{"::1", true, ""},
				{"::ffff:127.0.0.1", true, ""},
				{"203.0.113.1", false, "self"},
			},
		},
		{
			name: "self loopback without allow loopback",
			opts: PolicyOptions{Self: addrs("127.0.0.1")},
			probes: []probe{
				{"127.0.0.1", false, "self"},
				{"127.0.0.2", false, "loopback"},
			},
		},
		{
			name: "allow all IPv6 does not open IPv4",
			opts: PolicyOptions{Allowed: pfx("::/0")},
			probes: []probe{
				{"fe80::1", true, ""},
				{"10.0.0.1", false, "private"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.opts)
			for _, pr := range tt.probes {
				ok, why := p.Check(netip.MustParseAddr(pr.addr))
				if ok != pr.ok || why != pr.reason {
					t.Errorf("Check(%s) = %v, %q; want %v, %q", pr.addr, ok, why, pr.ok, pr.reason)
				}
			}
		})
	}
}

func TestNewPolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		opts PolicyOptions
		want string
	}{
		{"invalid allowed", PolicyOptions{Allowed: []netip.Prefix{{}}}, "allowed peers"},
		{"invalid denied", PolicyOptions{Denied: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}}, "denied peers: prefix 1"},
		{"invalid self", PolicyOptions{Self: []netip.Addr{{}}}, "self address 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPolicy(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewPolicy error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestZeroPolicyRefuses(t *testing.T) {
	for _, p := range []*Policy{nil, {}} {
		if ok, why := p.Check(netip.MustParseAddr("8.8.8.8")); ok || why != "unconfigured" {
			t.Errorf("Check on %#v = %v, %q; want refusal", p, ok, why)
		}
	}
}

func TestReasonsCoverCheck(t *testing.T) {
	all := Reasons()
	p := mustPolicy(t, PolicyOptions{Denied: []netip.Prefix{netip.MustParsePrefix("8.8.8.8/32")}})
	for _, s := range []string{"10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "2001::1", "64:ff9b::8.8.8.8", "5f00::1"} {
		_, why := p.Check(netip.MustParseAddr(s))
		if !slices.Contains(all, why) {
			t.Errorf("reason %q for %s missing from Reasons()", why, s)
		}
	}
	for _, r := range all {
		if r == "" || r == "unknown" || strings.HasSuffix(r, ":unknown") {
			t.Errorf("Reasons() contains %q", r)
		}
	}
}

func TestCheckAllocs(t *testing.T) {
	p := mustPolicy(t, PolicyOptions{
		Allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		Denied:  []netip.Prefix{netip.MustParsePrefix("8.8.8.8/32")},
		Self:    []netip.Addr{netip.MustParseAddr("192.0.2.1")},
	})
	var ips []netip.Addr
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "10.1.0.1", "10.2.0.1", "::ffff:10.0.0.1",
		"2606:4700::1111", "fe80::1%eth0", "64:ff9b::8.8.8.8", "2002:a00:1::1", "2001::1"} {
		ips = append(ips, netip.MustParseAddr(s))
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, ip := range ips {
			p.Check(ip)
		}
	})
	if allocs != 0 {
		t.Fatalf("Check allocates %v times per run, want 0", allocs)
	}
}

// TestBuildTable compares the flattened tables with a most-specific-prefix
// scan over random nested prefixes.
func TestBuildTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v6 := range []bool{false, true} {
		for round := 0; round < 200; round++ {
			var entries []tableEntry
			for i := 0; i < 1+rng.IntN(12); i++ {
				var p netip.Prefix
				if v6 {
					var b [16]byte
					b[0] = byte(rng.IntN(4)) << 6
					b[15] = byte(rng.IntN(256))
					p = netip.PrefixFrom(netip.AddrFrom16(b), rng.IntN(129)).Masked()
				} else {
					p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(rng.IntN(4)) << 6, 0, 0, byte(rng.IntN(256))}),
						rng.IntN(33)).Masked()
				}
				entries = append(entries, tableEntry{p, reason(2 + rng.IntN(5))})
			}
			tab := buildTable(entries)
			for i := 1; i < len(tab); i++ {
				if !tab[i-1].hi.less(tab[i].lo) {
					t.Fatalf("intervals overlap or are unsorted: %+v", tab)
				}
			}
			for probe := 0; probe < 200; probe++ {
				var ip netip.Addr
				if v6 {
					var b [16]byte
					b[0] = byte(rng.IntN(4)) << 6
					if rng.IntN(2) == 0 {
						b[0] |= byte(rng.IntN(64))
					}
					b[15] = byte(rng.IntN(256))
					ip = netip.AddrFrom16(b)
				} else {
					ip = netip.AddrFrom4([4]byte{byte(rng.IntN(256)), 0, 0, byte(rng.IntN(256))})
				}
				want, bits := reasonNone, -1
				for _, e := range entries {
					if e.prefix.Contains(ip) && e.prefix.Bits() >= bits {
						want, bits = e.val, e.prefix.Bits()
					}
				}
				var k u128
				if v6 {
					k = key6(ip)
				} else {
					k = key4(ip)
				}
				if got := tab.lookup(k); got != want {
					t.Fatalf("lookup(%s) = %d, want %d; entries %v", ip, got, want, entries)
				}
			}
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	p := mustPolicy(b, PolicyOptions{
		Allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		Denied:  []netip.Prefix{netip.MustParsePrefix("8.8.8.8/32")},
	})
	for _, s := range []string{"1.1.1.1", "10.0.0.1", "2606:4700::1111", "64:ff9b::a00:1"} {
		ip := netip.MustParseAddr(s)
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Check(ip)
			}
		})
	}
}
