package cli

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/dataplane"
	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/offload"
)

// openFastPath opens the kernel fast path of cfg.Relay.Offload on the
// interfaces it names or, by default, on those carrying the UDP listeners'
// and the relays' addresses. It returns nil, having logged why, when the
// fast path stays off: ferry then relays everything in user space.
func openFastPath(cfg config.Config, bound []config.Listener, relay4, relay6 netip.Addr, log *slog.Logger) *offload.Offload {
	const off = "kernel fast path off; relaying in user space"
	if cfg.Relay.Offload == config.OffloadOff {
		log.Info(off, "reason", "relay.offload is off")
		return nil
	}
	if cfg.Quota.AllocationBandwidth > 0 || cfg.Quota.UserBandwidth > 0 {
		log.Info(off, "reason", "a bandwidth quota (quota.allocation-bandwidth, quota.user-bandwidth) is enforced in user space only")
		return nil
	}
	names := cfg.Relay.OffloadInterfaces
	if len(names) == 0 {
		var err error
		if names, err = fastPathInterfaces(bound, relay4, relay6); err != nil {
			log.Warn(off, "reason", err.Error())
			return nil
		}
		if len(names) == 0 {
			log.Info(off, "reason", "no interface but loopback carries a UDP listener or relay address; name the interfaces (lo too) in relay.offload-interfaces")
			return nil
		}
	}
	fp, err := offload.Open(offload.Options{Mode: cfg.Relay.Offload, Interfaces: names, Log: log})
	if err != nil {
		log.Warn(off, "reason", err.Error())
		return nil
	}
	attrs := []any{"mode", cfg.Relay.Offload}
	for _, a := range fp.Attached() {
		attrs = append(attrs, "attached", a.Interface+" ("+a.Mode+")")
	}
	log.Info("kernel fast path on: channel-bound UDP traffic is relayed in the kernel", attrs...)
	for _, a := range fp.Attached() {
		v4, v6 := offload.Forwarding(a.Interface)
		if strings.HasPrefix(a.Mode, "xdp") && (relay4.IsValid() && !v4 || relay6.IsValid() && !v6) {
			log.Warn("XDP fast path without IP forwarding on "+a.Interface+": the kernel's route lookup refuses, so every packet goes to user space; "+
				"enable net.ipv4.conf."+a.Interface+".forwarding (and net.ipv6.conf."+a.Interface+".forwarding) or use relay.offload: tc",
				"interface", a.Interface)
		}
	}
	return fp
}

// fastPathInterfaces lists the interfaces, loopback excepted, that carry a
// UDP listener's address or a relay address. A wildcard listener's
// datagrams come in where the relay addresses are.
func fastPathInterfaces(bound []config.Listener, relay4, relay6 netip.Addr) ([]string, error) {
	want := map[netip.Addr]bool{}
	for _, a := range []netip.Addr{relay4, relay6} {
		if a.IsValid() && !a.IsUnspecified() {
			want[a.Unmap()] = true
		}
	}
	for _, l := range bound {
		if l.Transport == config.UDP && !l.Addr.Addr().IsUnspecified() {
			want[l.Addr.Addr().Unmap()] = true
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 || ifi.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if ok && want[ip.Unmap()] && !slices.Contains(names, ifi.Name) {
				names = append(names, ifi.Name)
			}
		}
	}
	return names, nil
}

// fastPath is the kernel fast path as the data plane writes it.
type fastPath struct{ o *offload.Offload }

func channelOf(c engine.OffloadChannel) offload.Channel {
	return offload.Channel{Client: c.Client, Listener: c.Listener, Relay: c.Relay, Peer: c.Peer, Number: c.Number, Expires: c.Expires}
}

func (f fastPath) Put(c engine.OffloadChannel) error    { return f.o.Put(channelOf(c)) }
func (f fastPath) Delete(c engine.OffloadChannel) error { return f.o.Delete(channelOf(c)) }

func (f fastPath) Counters(c engine.OffloadChannel) (engine.OffloadCounters, error) {
	n, err := f.o.Counters(channelOf(c))
	if err != nil {
		return engine.OffloadCounters{}, err
	}
	return engine.OffloadCounters{
		ToPeerPackets: n.ToPeerPackets, ToPeerBytes: n.ToPeerBytes,
		FromPeerPackets: n.FromPeerPackets, FromPeerBytes: n.FromPeerBytes,
	}, nil
}

// withFastPath is the TURN server and its fast path: closing it closes
// the server, which removes every entry, then detaches the program.
type withFastPath struct {
	*dataplane.Server
	fp *offload.Offload
}

func (w withFastPath) Close() error {
	err := w.Server.Close()
	if w.fp != nil {
		err = errors.Join(err, w.fp.Close())
	}
	return err
}
