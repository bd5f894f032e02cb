package offload

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Mode names for Options.Mode.
const (
	// ModeAuto attaches XDP in native (driver) mode where the interface
	// supports it and forwards IP, else TC. veth and loopback get TC:
	// native XDP on a veth drops what it sends back unless the veth's
	// peer has NAPI (GRO or an XDP program), and loopback has no native
	// XDP; an interface without IP forwarding gets TC too, since XDP's
	// route lookup (bpf_fib_lookup) refuses there and XDP has no other
	// way to send.
	ModeAuto = "auto"
	// ModeXDP attaches XDP in native mode, else in generic mode (always
	// on veth and loopback).
	ModeXDP = "xdp"
	// ModeXDPGeneric attaches XDP in generic (skb) mode only.
	ModeXDPGeneric = "xdp-generic"
	// ModeTC attaches to TC ingress with tcx.
	ModeTC = "tc"
	// ModeOff is no fast path: Open returns ErrOff.
	ModeOff = "off"
)

// DefaultMaxEntries is the size of each map when Options.MaxEntries is 0.
const DefaultMaxEntries = 1 << 16

// Sentinel errors.
var (
	// ErrOff is returned by Open for ModeOff.
	ErrOff = errors.New("offload: mode off")
	// ErrClosed is returned by the methods of a closed Offload.
	ErrClosed = errors.New("offload: closed")
	// ErrNotInstalled is returned by Counters for a channel that is
	// not installed.
	ErrNotInstalled = errors.New("offload: channel not installed")
	// ErrMixedFamilies is returned by Put for a channel whose client and
	// peer (or listener and relay) are of different address families.
	ErrMixedFamilies = errors.New("offload: client and peer of different address families")
)

// Options configure Open.
type Options struct {
	// Mode is ModeAuto (also for ""), ModeXDP, ModeXDPGeneric, ModeTC
	// or ModeOff.
	Mode string
	// Interfaces are the names of the interfaces to attach to: those
	// carrying ferry's listener and relay addresses.
	Interfaces []string
	// MaxEntries is the size of each map (channels installed at once);
	// 0 means DefaultMaxEntries.
	MaxEntries int
	// Log gets a line per attachment and fallback; nil discards.
	Log *slog.Logger
}

// Attachment is an interface the program is attached to and how.
type Attachment struct {
	Interface string
	// Mode is "tc", "xdp" (native) or "xdp-generic".
	Mode string
}

// Channel is one channel binding to offload.
type Channel struct {
	// Client is the client's address: the source of its ChannelData.
	Client netip.AddrPort
	// Listener is ferry's address the client sends to; a specific
	// address, never a wildcard.
	Listener netip.AddrPort
	// Relay is the allocation's relay address as bound.
	Relay netip.AddrPort
	// Peer is the peer bound to the channel.
	Peer netip.AddrPort
	// Number is the channel number, 0x4000-0x7FFE.
	Number uint16
	// Expires is when the program stops relaying the channel (and passes
	// its packets to user space); zero means never. It is converted to
	// CLOCK_MONOTONIC when Put runs, so a later wall-clock step does not
	// move it.
	Expires time.Time
}

// Counters are a channel's relayed traffic; bytes are application data,
// without the ChannelData header.
type Counters struct {
	ToPeerPackets, ToPeerBytes     uint64
	FromPeerPackets, FromPeerBytes uint64
}

// Stats are the program's counters, summed over CPUs.
type Stats struct {
	// ToPeer counts ChannelData rewritten to UDP to the peer.
	ToPeer uint64
	// FromPeer counts UDP from a peer rewritten to ChannelData.
	FromPeer uint64
	// ChannelToChannel counts ChannelData rewritten to another
	// channel's ChannelData.
	ChannelToChannel uint64
	// Local counts rewritten packets delivered to a local address on
	// loopback (also counted in one of the three above).
	Local uint64
	// ChecksumPartial counts packets TC rewrote by moving the payload
	// because their UDP checksum field holds a CHECKSUM_PARTIAL
	// pseudo-header sum (also counted in one of the three above).
	ChecksumPartial uint64
	// RedirectNeigh counts packets TC sent with bpf_redirect_neigh out
	// of the interface they came in by, because the interface does not
	// forward (bpf_fib_lookup refuses then); also counted above.
	RedirectNeigh uint64

	// The Pass counters count packets left to user space, by reason.
	PassNotUDP          uint64 // not IPv4 or IPv6 UDP
	PassFragment        uint64 // IPv4 options or fragment
	PassIPv6Ext         uint64 // IPv6 extension headers
	PassMalformed       uint64 // truncated, inconsistent lengths, GRO/GSO
	PassNotChannel      uint64 // not ChannelData (STUN, ...) and no peer entry
	PassNoEntry         uint64 // ChannelData without an entry, and no peer entry
	PassExpired         uint64 // entry past its expiry
	PassBadLength       uint64 // ChannelData length past the datagram, or > 3 bytes after the data
	PassMTU             uint64 // result larger than the egress MTU
	PassFIB             uint64 // no route; in XDP also no neighbour yet, or forwarding disabled
	PassChecksumPartial uint64 // CHECKSUM_PARTIAL in XDP, or too large to move in TC
	PassAdjust          uint64 // resizing the packet failed before it was changed

	// DropError counts packets dropped because a step failed after the
	// packet was changed (should stay 0).
	DropError uint64
}

// Passed is the sum of the Pass counters.
func (s Stats) Passed() uint64 {
	return s.PassNotUDP + s.PassFragment + s.PassIPv6Ext + s.PassMalformed +
		s.PassNotChannel + s.PassNoEntry + s.PassExpired + s.PassBadLength +
		s.PassMTU + s.PassFIB + s.PassChecksumPartial + s.PassAdjust
}

// statFields lists the Stats fields in the order of enum stat in
// bpf/relay.h.
func statFields(s *Stats) []*uint64 {
	return []*uint64{
		&s.ToPeer, &s.FromPeer, &s.ChannelToChannel, &s.Local, &s.ChecksumPartial, &s.RedirectNeigh,
		&s.PassNotUDP, &s.PassFragment, &s.PassIPv6Ext, &s.PassMalformed,
		&s.PassNotChannel, &s.PassNoEntry, &s.PassExpired, &s.PassBadLength,
		&s.PassMTU, &s.PassFIB, &s.PassChecksumPartial, &s.PassAdjust,
		&s.DropError,
	}
}

// checkChannel validates ch for Put.
func checkChannel(ch Channel) error {
	for _, a := range []struct {
		name string
		ap   netip.AddrPort
	}{{"client", ch.Client}, {"listener", ch.Listener}, {"relay", ch.Relay}, {"peer", ch.Peer}} {
		if !a.ap.IsValid() || a.ap.Port() == 0 {
			return fmt.Errorf("offload: %s address %v is not an address and port", a.name, a.ap)
		}
		if a.ap.Addr().IsUnspecified() {
			return fmt.Errorf("offload: %s address %v is a wildcard", a.name, a.ap)
		}
	}
	if ch.Number < 0x4000 || ch.Number > 0x7FFE {
		return fmt.Errorf("offload: channel number %#x outside 0x4000-0x7FFE", ch.Number)
	}
	is4 := func(ap netip.AddrPort) bool { return ap.Addr().Unmap().Is4() }
	if is4(ch.Client) != is4(ch.Listener) || is4(ch.Relay) != is4(ch.Peer) || is4(ch.Client) != is4(ch.Peer) {
		return fmt.Errorf("%w: client %v, listener %v, relay %v, peer %v",
			ErrMixedFamilies, ch.Client, ch.Listener, ch.Relay, ch.Peer)
	}
	return nil
}
