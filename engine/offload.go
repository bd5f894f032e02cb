package engine

import (
	"net/netip"
	"time"
)

// Kernel fast path (issue 12): the data plane may relay a channel-bound
// UDP client's traffic in the kernel (an eBPF program rewriting
// ChannelData to UDP and back). The engine decides which channels may go
// there and when they must leave — it writes the fast path's table, the
// program only counts — and folds the program's counts back into its own.
//
// A channel is offloaded when Config.Offload is set, the client reaches
// ferry over UDP, the relay is UDP, client and peer are of one address
// family, and no bandwidth cap is configured (caps are enforced in user
// space only: a capped server does not offload). The entry carries the
// earlier of the channel's and the permission's expiry, after which the
// program hands the traffic back to user space, and is removed when the
// channel or the permission expires, the allocation ends (any reason) or
// the peer policy stops admitting the peer.

// OffloadChannel is a channel binding the data plane may relay in the
// kernel.
type OffloadChannel struct {
	// Client sends ChannelData to Listener; the peer's datagrams go back
	// to it from Listener.
	Client, Listener netip.AddrPort
	// Relay is the allocation's relay address as bound; Peer the channel's
	// peer.
	Relay, Peer netip.AddrPort
	Number      uint16
	// Expires is when the kernel must stop relaying it on its own.
	Expires time.Time
	// RelayID names the relay socket and Alloc the allocation (its ID in
	// the admin API), for OffloadTraffic.
	RelayID RelayID
	Alloc   uint64
}

// OffloadCounters are the kernel's counts for one offloaded channel:
// application bytes, as the engine counts them.
type OffloadCounters struct {
	ToPeerPackets, ToPeerBytes     uint64
	FromPeerPackets, FromPeerBytes uint64
}

// offloadable reports whether a's channel to peer may be relayed in the
// kernel.
func (e *Engine) offloadable(a *allocation, peer netip.AddrPort) bool {
	if !e.cfg.Offload || a.tcp || a.client.Transport != UDP || e.cfg.AllocationBandwidth > 0 || e.cfg.UserBandwidth > 0 {
		return false
	}
	if a.client.Local.Addr().IsUnspecified() { // the datagram's destination is unknown
		return false
	}
	return a.client.Remote.Addr().Unmap().Is4() == peer.Addr().Unmap().Is4()
}

// offloadEntry builds the entry of channel ch of a.
func (e *Engine) offloadEntry(a *allocation, ch *channel) *OffloadChannel {
	end := a.end(familyOf(ch.peer.Addr()))
	if end == nil {
		return nil
	}
	exp := ch.expires
	for i := range a.perms {
		if a.perms[i].ip == ch.peer.Addr() {
			exp = min(exp, a.perms[i].expires)
		}
	}
	return &OffloadChannel{
		Client:   a.client.Remote,
		Listener: a.client.Local,
		Relay:    end.bound,
		Peer:     ch.peer,
		Number:   ch.number,
		Expires:  e.sh.epoch.Add(time.Duration(exp)),
		RelayID:  end.id,
		Alloc:    a.id,
	}
}

// offload installs or refreshes channel ch of a in the kernel fast path.
func (e *Engine) offload(out *Output, a *allocation, ch *channel) {
	if !e.offloadable(a, ch.peer) {
		return
	}
	if entry := e.offloadEntry(a, ch); entry != nil {
		ch.offloaded = true
		out.FastPath = append(out.FastPath, Command{Op: OpOffload, Offload: entry})
	}
}

// unoffload removes channel ch of a from the kernel fast path.
func (e *Engine) unoffload(out *Output, a *allocation, ch *channel) {
	if !ch.offloaded {
		return
	}
	ch.offloaded = false
	if entry := e.offloadEntry(a, ch); entry != nil {
		out.FastPath = append(out.FastPath, Command{Op: OpUnoffload, Offload: entry})
	}
}

// reoffload refreshes the entries of a's offloaded channels to ip (their
// permission was refreshed, so their expiry moved).
func (e *Engine) reoffload(out *Output, a *allocation, ip netip.Addr) {
	for i := range a.chans {
		if ch := &a.chans[i]; ch.offloaded && ch.active && ch.peer.Addr() == ip {
			e.offload(out, a, ch)
		}
	}
}

// OffloadTraffic adds what the kernel relayed on the offloaded channel c
// since the last report (d) to its allocation's traffic and to the
// engine's counters. The data plane reports every installed channel on
// every tick, and every channel it was told to remove (OpUnoffload) once
// more with final set, installed or not: an allocation that ended with
// channels in the kernel logs its end when their last counts are in.
func (e *Engine) OffloadTraffic(out *Output, c *OffloadChannel, d OffloadCounters, final bool) {
	e.stats.ToPeerPackets.add(d.ToPeerPackets)
	e.stats.ToPeerBytes.add(d.ToPeerBytes)
	e.stats.FromPeerPackets.add(d.FromPeerPackets)
	e.stats.FromPeerBytes.add(d.FromPeerBytes)
	e.stats.OffloadedToPeer.add(d.ToPeerPackets)
	e.stats.OffloadedFromPeer.add(d.FromPeerPackets)
	a := e.ending[c.Alloc]
	ended := a != nil
	if !ended {
		if a = e.allocationOf(c.RelayID); a == nil || a.id != c.Alloc {
			return // gone, or its relay slot reused
		}
	}
	t := &a.traffic
	t.ToPeerPackets.Store(t.ToPeerPackets.Load() + d.ToPeerPackets)
	t.ToPeerBytes.Store(t.ToPeerBytes.Load() + d.ToPeerBytes)
	t.FromPeerPackets.Store(t.FromPeerPackets.Load() + d.FromPeerPackets)
	t.FromPeerBytes.Store(t.FromPeerBytes.Load() + d.FromPeerBytes)
	if ended && final {
		if a.awaiting--; a.awaiting == 0 {
			delete(e.ending, a.id)
			e.logEnd(out, a, a.endWhy)
		}
	}
}
