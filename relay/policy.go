package relay

import (
	"fmt"
	"net/netip"
)

// reason is why a peer address is refused; reasonNone and reasonGlobal admit.
type reason uint8

const (
	reasonNone   reason = iota // no table entry covers the address
	reasonGlobal               // explicitly globally reachable (a carve-out)
	reasonInvalid
	reasonUnconfigured
	reasonDenied
	reasonSelf
	reasonUnspecified
	reasonLoopback
	reasonPrivate
	reasonCGNAT
	reasonLinkLocal
	reasonIETF
	reasonDocumentation
	reasonBenchmarking
	reason6to4Relay
	reasonMulticast
	reasonReserved
	reasonBroadcast
	reasonSiteLocal
	reasonDiscard
	reasonNAT64Local
	reasonTeredo
	reasonSRv6
	reasonCount
)

const embeddedPrefix = "ipv4-embedded:"

// String returns the reason as logged and counted: a constant string.
func (r reason) String() string {
	switch r {
	case reasonNone, reasonGlobal:
		return ""
	case reasonInvalid:
		return "invalid"
	case reasonUnconfigured:
		return "unconfigured"
	case reasonDenied:
		return "denied-list"
	case reasonSelf:
		return "self"
	case reasonUnspecified:
		return "unspecified"
	case reasonLoopback:
		return "loopback"
	case reasonPrivate:
		return "private"
	case reasonCGNAT:
		return "cgnat"
	case reasonLinkLocal:
		return "metadata/link-local"
	case reasonIETF:
		return "ietf-protocol"
	case reasonDocumentation:
		return "documentation"
	case reasonBenchmarking:
		return "benchmarking"
	case reason6to4Relay:
		return "6to4-relay"
	case reasonMulticast:
		return "multicast"
	case reasonReserved:
		return "reserved"
	case reasonBroadcast:
		return "broadcast"
	case reasonSiteLocal:
		return "site-local"
	case reasonDiscard:
		return "discard-only"
	case reasonNAT64Local:
		return "nat64-local-use"
	case reasonTeredo:
		return "teredo"
	case reasonSRv6:
		return "srv6-sid"
	}
	return "unknown"
}

// embedded returns the reason for an IPv6 address refused because of the
// IPv4 address it embeds. Only reasons an IPv4 address can get appear.
func (r reason) embedded() string {
	switch r {
	case reasonDenied:
		return embeddedPrefix + "denied-list"
	case reasonSelf:
		return embeddedPrefix + "self"
	case reasonUnspecified:
		return embeddedPrefix + "unspecified"
	case reasonLoopback:
		return embeddedPrefix + "loopback"
	case reasonPrivate:
		return embeddedPrefix + "private"
	case reasonCGNAT:
		return embeddedPrefix + "cgnat"
	case reasonLinkLocal:
		return embeddedPrefix + "metadata/link-local"
	case reasonIETF:
		return embeddedPrefix + "ietf-protocol"
	case reasonDocumentation:
		return embeddedPrefix + "documentation"
	case reasonBenchmarking:
		return embeddedPrefix + "benchmarking"
	case reason6to4Relay:
		return embeddedPrefix + "6to4-relay"
	case reasonMulticast:
		return embeddedPrefix + "multicast"
	case reasonReserved:
		return embeddedPrefix + "reserved"
	case reasonBroadcast:
		return embeddedPrefix + "broadcast"
	}
	return embeddedPrefix + "unknown"
}

func (r reason) denies() bool { return r > reasonGlobal }

// Reasons lists every reason Check can return, for creating metric label
// sets up front. It allocates; call it once.
func Reasons() []string {
	var out []string
	for r := reasonInvalid; r < reasonCount; r++ {
		out = append(out, r.String())
	}
	for r := reasonDenied; r <= reasonBroadcast; r++ {
		out = append(out, r.embedded())
	}
	return out
}

// defaultV4 is the IPv4 part of IANA's special-purpose address registry
// marked not globally reachable, plus multicast. 192.0.0.0/24 is refused
// whole, including the anycast service addresses 192.0.0.9 and 192.0.0.10:
// an anycast service reaches whatever instance is nearest the relay, which is
// not a peer a client should be able to aim at. Globally reachable entries
// (192.31.196.0/24, 192.52.193.0/24, 192.175.48.0/24) are ordinary unicast.
func defaultV4() []tableEntry {
	return []tableEntry{
		{netip.MustParsePrefix("0.0.0.0/8"), reasonUnspecified},
		{netip.MustParsePrefix("10.0.0.0/8"), reasonPrivate},
		{netip.MustParsePrefix("100.64.0.0/10"), reasonCGNAT},
		{netip.MustParsePrefix("127.0.0.0/8"), reasonLoopback},
		{netip.MustParsePrefix("169.254.0.0/16"), reasonLinkLocal},
		{netip.MustParsePrefix("172.16.0.0/12"), reasonPrivate},
		{netip.MustParsePrefix("192.0.0.0/24"), reasonIETF},
		{netip.MustParsePrefix("192.0.2.0/24"), reasonDocumentation},
		{netip.MustParsePrefix("192.88.99.0/24"), reason6to4Relay},
		{netip.MustParsePrefix("192.168.0.0/16"), reasonPrivate},
		{netip.MustParsePrefix("198.18.0.0/15"), reasonBenchmarking},
		{netip.MustParsePrefix("198.51.100.0/24"), reasonDocumentation},
		{netip.MustParsePrefix("203.0.113.0/24"), reasonDocumentation},
		{netip.MustParsePrefix("224.0.0.0/4"), reasonMulticast},
		{netip.MustParsePrefix("240.0.0.0/4"), reasonReserved},
		{netip.MustParsePrefix("255.255.255.255/32"), reasonBroadcast},
	}
}

// defaultV6 is the IPv6 policy: only 2000::/3 (global unicast) minus IANA's
// not-globally-reachable special-purpose blocks, plus those blocks outside it
// that are judged by an embedded IPv4 address (IPv4-mapped, IPv4-compatible
// and 64:ff9b::/96 are handled before this table; 2002::/16 too). In
// 2001::/23 the globally reachable AMT, AS112, ORCHIDv2 and DET blocks are
// admitted; the anycast service addresses in 2001:1::/32 are not, for the
// same reason as 192.0.0.0/24.
func defaultV6() []tableEntry {
	return []tableEntry{
		{netip.MustParsePrefix("::/0"), reasonReserved},
		{netip.MustParsePrefix("2000::/3"), reasonGlobal},
		{netip.MustParsePrefix("::/128"), reasonUnspecified},
		{netip.MustParsePrefix("::1/128"), reasonLoopback},
		{netip.MustParsePrefix("64:ff9b:1::/48"), reasonNAT64Local},
		{netip.MustParsePrefix("100::/64"), reasonDiscard},
		{netip.MustParsePrefix("2001::/23"), reasonIETF},
		{netip.MustParsePrefix("2001::/32"), reasonTeredo},
		{netip.MustParsePrefix("2001:2::/48"), reasonBenchmarking},
		{netip.MustParsePrefix("2001:3::/32"), reasonGlobal},
		{netip.MustParsePrefix("2001:4:112::/48"), reasonGlobal},
		{netip.MustParsePrefix("2001:20::/28"), reasonGlobal},
		{netip.MustParsePrefix("2001:30::/28"), reasonGlobal},
		{netip.MustParsePrefix("2001:db8::/32"), reasonDocumentation},
		{netip.MustParsePrefix("3fff::/20"), reasonDocumentation},
		{netip.MustParsePrefix("5f00::/16"), reasonSRv6},
		{netip.MustParsePrefix("fc00::/7"), reasonPrivate},
		{netip.MustParsePrefix("fe80::/10"), reasonLinkLocal},
		{netip.MustParsePrefix("fec0::/10"), reasonSiteLocal},
		{netip.MustParsePrefix("ff00::/8"), reasonMulticast},
	}
}

// PolicyOptions adjusts the default peer policy.
type PolicyOptions struct {
	// AllowLoopback admits 127.0.0.0/8, ::1 and the IPv4-mapped forms of
	// 127.0.0.0/8, even when they are listed in Self (a development server
	// listening on 127.0.0.1 must reach local peers). Tests and local
	// development only.
	AllowLoopback bool
	// Allowed admits peers the default policy refuses. IPv4-mapped prefixes
	// (::ffff:a.b.c.d/n, n >= 96) are taken as the IPv4 prefix.
	Allowed []netip.Prefix
	// Denied refuses peers whatever else says; it wins over Allowed.
	Denied []netip.Prefix
	// Self lists ferry's own listening and relay addresses; relaying to them
	// is refused even if Allowed covers them.
	Self []netip.Addr
	// Relays lists ferry's relay addresses (bound and advertised). They are
	// admitted as peers, before Self and the default policy, so that two
	// clients both relaying through this ferry reach each other's relay
	// address — the usual case when both sit behind NATs that block a
	// direct path. Only ports in RelayMinPort..RelayMaxPort are reachable on
	// them (PortAllowed), so a relay cannot be used to reach ferry's
	// listeners or anything else on its own host. Denied still wins.
	Relays []netip.Addr
	// RelayMinPort and RelayMaxPort bound the ports reachable on Relays.
	RelayMinPort, RelayMaxPort uint16
}

// Policy decides which peer addresses a relay may reach. It is immutable
// after NewPolicy and safe for concurrent use; Check allocates nothing and
// takes no lock.
//
// Precedence: Denied, then Self, then Allowed, then the default policy (only
// globally reachable unicast, AllowLoopback lifting loopback). IPv6 addresses
// that embed an IPv4 address (IPv4-mapped, IPv4-compatible, 64:ff9b::/96,
// 6to4 2002::/16) are judged by the embedded address, after the IPv6 address
// itself was checked against Denied, Self and Allowed.
type Policy struct {
	configured    bool
	allowLoopback bool
	denied4       table
	denied6       table
	self4         table
	self6         table
	allowed4      table
	allowed6      table
	default4      table
	default6      table
	relays        []netip.Addr
	restricted    []netip.Addr // relays the policy admits only as relays
	relayMin      uint16
	relayMax      uint16
}

// NewPolicy builds a policy from o.
func NewPolicy(o PolicyOptions) (*Policy, error) {
	denied4, denied6, err := prefixTables(o.Denied, reasonDenied)
	if err != nil {
		return nil, fmt.Errorf("relay: denied peers: %w", err)
	}
	allowed4, allowed6, err := prefixTables(o.Allowed, reasonGlobal)
	if err != nil {
		return nil, fmt.Errorf("relay: allowed peers: %w", err)
	}
	var self4, self6 []tableEntry
	for i, a := range o.Self {
		if !a.IsValid() {
			return nil, fmt.Errorf("relay: self address %d is invalid", i)
		}
		a = a.Unmap().WithZone("")
		if a.Is4() {
			self4 = append(self4, tableEntry{netip.PrefixFrom(a, 32), reasonSelf})
		} else {
			self6 = append(self6, tableEntry{netip.PrefixFrom(a, 128), reasonSelf})
		}
	}
	relays := make([]netip.Addr, 0, len(o.Relays))
	for i, a := range o.Relays {
		if !a.IsValid() {
			return nil, fmt.Errorf("relay: relay address %d is invalid", i)
		}
		relays = append(relays, a.Unmap().WithZone(""))
	}
	if len(relays) > 0 && o.RelayMinPort > o.RelayMaxPort {
		return nil, fmt.Errorf("relay: relay ports %d-%d are not a range", o.RelayMinPort, o.RelayMaxPort)
	}
	p := &Policy{
		relayMin:      o.RelayMinPort,
		relayMax:      o.RelayMaxPort,
		configured:    true,
		allowLoopback: o.AllowLoopback,
		denied4:       denied4,
		denied6:       denied6,
		self4:         buildTable(self4),
		self6:         buildTable(self6),
		allowed4:      allowed4,
		allowed6:      allowed6,
		default4:      buildTable(defaultV4()),
		default6:      buildTable(defaultV6()),
	}
	// A relay address the policy would refuse anyway (ferry's own, private,
	// ...) is reachable only on relay ports; one it admits on its own
	// (AllowLoopback on a development box, Allowed) keeps every port.
	for _, a := range relays {
		if ok, _ := p.Check(a); !ok {
			p.restricted = append(p.restricted, a)
		}
	}
	p.relays = relays
	return p, nil
}

// prefixTables validates prefixes and splits them by family.
func prefixTables(ps []netip.Prefix, v reason) (t4, t6 table, err error) {
	var e4, e6 []tableEntry
	for i, p := range ps {
		if !p.IsValid() {
			return nil, nil, fmt.Errorf("prefix %d (%v) is invalid", i, p)
		}
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		if p.Addr().Is4() {
			e4 = append(e4, tableEntry{p, v})
		} else {
			e6 = append(e6, tableEntry{p, v})
		}
	}
	return buildTable(e4), buildTable(e6), nil
}

// Check reports whether a relay may reach ip and, if not, why: a short
// constant string such as "private" or "ipv4-embedded:loopback". An IPv6
// zone is ignored. A nil or zero Policy refuses everything ("unconfigured").
func (p *Policy) Check(ip netip.Addr) (ok bool, why string) {
	if p == nil || !p.configured {
		return false, reasonUnconfigured.String()
	}
	if !ip.IsValid() {
		return false, reasonInvalid.String()
	}
	if p.isRelay(ip) {
		if p.deniedExplicitly(ip) {
			return false, reasonDenied.String()
		}
		return true, ""
	}
	if ip.Is4() {
		if r := p.check4(ip, p.allowLoopback); r.denies() {
			return false, r.String()
		}
		return true, ""
	}
	ip = ip.WithZone("")
	k := key6(ip)
	if p.denied6.lookup(k) != reasonNone {
		return false, reasonDenied.String()
	}
	if p.self6.lookup(k) != reasonNone && !(p.allowLoopback && ip.IsLoopback()) {
		return false, reasonSelf.String()
	}
	if p.allowed6.lookup(k) != reasonNone {
		return true, ""
	}
	if v4, mapped, ok := embeddedV4(ip); ok {
		if r := p.check4(v4, mapped && p.allowLoopback); r.denies() {
			return false, r.embedded()
		}
		return true, ""
	}
	r := p.default6.lookup(k)
	if r == reasonLoopback && p.allowLoopback {
		return true, ""
	}
	if r.denies() {
		return false, r.String()
	}
	return true, ""
}

// isRelay reports whether ip is one of ferry's own relay addresses (a
// handful at most: a linear scan allocates nothing).
func (p *Policy) isRelay(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, r := range p.relays {
		if r == ip {
			return true
		}
	}
	return false
}

// deniedExplicitly reports whether the Denied list covers ip.
func (p *Policy) deniedExplicitly(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return p.denied4.lookup(key4(ip)) != reasonNone
	}
	return p.denied6.lookup(key6(ip)) != reasonNone
}

// PortAllowed reports whether a relay may send to ip:port once Check
// admitted ip: on ferry's own relay addresses that the policy admits only
// because they are relays, only the relay port range is reachable. It runs
// per relayed packet, allocates nothing and takes no lock.
func (p *Policy) PortAllowed(ap netip.AddrPort) bool {
	if p == nil || len(p.restricted) == 0 {
		return true
	}
	ip := ap.Addr().Unmap().WithZone("")
	for _, r := range p.restricted {
		if r == ip {
			return ap.Port() >= p.relayMin && ap.Port() <= p.relayMax
		}
	}
	return true
}

// check4 judges an IPv4 address; loopback says whether 127.0.0.0/8 is
// admitted.
func (p *Policy) check4(a netip.Addr, loopback bool) reason {
	k := key4(a)
	if p.denied4.lookup(k) != reasonNone {
		return reasonDenied
	}
	if p.self4.lookup(k) != reasonNone && !(loopback && a.IsLoopback()) {
		return reasonSelf
	}
	if p.allowed4.lookup(k) != reasonNone {
		return reasonGlobal
	}
	r := p.default4.lookup(k)
	if r == reasonLoopback && loopback {
		return reasonGlobal
	}
	return r
}

// embeddedV4 returns the IPv4 address an IPv6 address stands for:
// IPv4-mapped ::ffff:0:0/96 (mapped is true), IPv4-compatible ::/96 (except
// :: and ::1), NAT64 64:ff9b::/96 and 6to4 2002::/16 (bits 16-47).
func embeddedV4(ip netip.Addr) (v4 netip.Addr, mapped, ok bool) {
	if ip.Is4In6() {
		return ip.Unmap(), true, true
	}
	b := ip.As16()
	tail := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	switch {
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), false, true
	case zero(b[:12]):
		if b[12]|b[13]|b[14] == 0 && b[15] <= 1 {
			return netip.Addr{}, false, false // :: and ::1 have their own entries
		}
		return tail, false, true
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zero(b[4:12]):
		return tail, false, true
	}
	return netip.Addr{}, false, false
}

func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
