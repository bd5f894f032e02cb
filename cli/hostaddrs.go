package cli

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/netwatch"
	"github.com/ferryrtc/ferry/listen"
)

// checkHostAddrs refuses, at serve's start, listener, relay.ip and alt-ip
// addresses that are not addresses of this host (host lists them; wildcard
// addresses are fine): binding them would fail, or a relay socket bound
// later would, and every Allocate get 508. config.Validate cannot check
// this, since it does no I/O. A family whose non-local binds the kernel
// allows (net.ipv4.ip_nonlocal_bind, net.ipv6.ip_nonlocal_bind, for an
// address that moves between hosts) is not checked; nonlocal reports it.
func checkHostAddrs(cfg config.Config, ls []config.Listener, host []netip.Addr, nonlocal func(v6 bool) bool) error {
	has := func(a netip.Addr) bool {
		a = a.Unmap().WithZone("")
		if a.IsUnspecified() || nonlocal(a.Is6()) {
			return true
		}
		for _, h := range host {
			h = h.Unmap().WithZone("")
			// Linux answers for all of 127.0.0.0/8 on lo.
			if h == a || a.Is4() && a.IsLoopback() && h.Is4() && h.IsLoopback() {
				return true
			}
		}
		return false
	}
	var bad []string
	seen := map[string]bool{}
	add := func(key string, a netip.Addr, what string) {
		if has(a) || seen[key+what] {
			return
		}
		seen[key+what] = true
		bad = append(bad, fmt.Sprintf("%s: %s is not an address of this host", key, what))
	}
	for _, l := range ls {
		add("listen", l.Addr.Addr(), l.String())
	}
	if len(cfg.Relay.IP) > 0 {
		v4, v6, err := cfg.Relay.RelayIPs()
		if err == nil {
			for _, a := range []netip.Addr{v4, v6} {
				if a.IsValid() {
					add("relay.ip", a, a.String())
				}
			}
		}
	}
	if alt, err := cfg.AltAddr(); err == nil && alt.IsValid() {
		add("alt-ip", alt, alt.String())
	}
	if len(bad) == 0 {
		return nil
	}
	var have []string
	for _, h := range host {
		if !h.IsLinkLocalUnicast() && !h.IsMulticast() {
			have = append(have, h.String())
		}
	}
	slices.Sort(have)
	have = slices.Compact(have)
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return fmt.Errorf("%s\n  this host has %s; use one of those, or 0.0.0.0 / [::] (every address) for listen, "+
		"or leave relay.ip empty to detect one. If the address comes up after ferry starts (DHCP, a floating IP), "+
		"start ferry after it does, or allow non-local binds (sysctl net.ipv4.ip_nonlocal_bind=1)",
		strings.Join(bad, "\n  "), list)
}

// nonlocalBind reports whether the kernel lets sockets of the family bind
// addresses the host does not have.
func nonlocalBind(v6 bool) bool {
	path := "/proc/sys/net/ipv4/ip_nonlocal_bind"
	if v6 {
		path = "/proc/sys/net/ipv6/ip_nonlocal_bind"
	}
	b, err := os.ReadFile(path)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// hostAddrs returns the host's addresses for checkHostAddrs: netwatch's
// list, else (it failed) those of the interfaces that are up.
func hostAddrs(ifAddrs []netip.Addr) []netip.Addr {
	if addrs, err := netwatch.Addrs(); err == nil && len(addrs) > 0 {
		return addrs
	}
	return ifAddrs
}

// logRelayAddrs logs, for each family, the relay address detected and why
// it was picked (when relay.ip is empty), and warns when the address
// relays advertise is private or carrier-grade NAT while relay.external-ip
// does not say which public address clients reach it at: clients outside
// the network could not use those relays.
func logRelayAddrs(cfg config.Config, relay4, relay6 netip.Addr, ifAddrs []netip.Addr, log *slog.Logger) {
	ext4, ext6, _ := cfg.Relay.ExternalIPs()
	if len(cfg.Relay.IP) == 0 {
		c4, c6 := listen.DetectRelayIPsWhy(ifAddrs)
		for _, c := range []listen.RelayChoice{c4, c6} {
			if c.Addr.IsValid() && (c.Addr == relay4 || c.Addr == relay6) {
				log.Info("relay address detected (relay.ip is empty)", "addr", c.Addr.String(), "why", c.Why)
			}
		}
	}
	for _, f := range []struct{ relay, ext netip.Addr }{{relay4, ext4}, {relay6, ext6}} {
		if !f.relay.IsValid() || f.ext.IsValid() {
			continue
		}
		if kind := listen.PrivateKind(f.relay); kind != "" {
			log.Warn(fmt.Sprintf("relays advertise %s, a %s address: clients outside this network cannot reach it; set relay.external-ip", f.relay, kind),
				"relay", f.relay.String())
		}
	}
}
