// Package offload is ferry's kernel fast path for channel-bound UDP TURN
// traffic: an eBPF program, attached with TC (tcx) or XDP to the
// interfaces that carry ferry's listener and relay addresses, that relays
// ChannelData between a client and its peer without user space.
//
// For each channel the caller (the engine, the maps' one writer) installs
// with Put:
//
//   - client → peer: ChannelData {N, length, data} in a UDP datagram from
//     Client to Listener becomes a UDP datagram carrying data from Relay to
//     Peer;
//   - peer → client: a UDP datagram from Peer to Relay becomes ChannelData
//     {N, length, data} from Listener to Client;
//   - channel to channel: when Peer is the Relay of another installed
//     channel, ChannelData from the first client goes straight to the
//     other channel's client as ChannelData with that channel's number,
//     from that channel's Listener (counted on both channels).
//
// Everything else reaches user space unchanged, where ferry handles it as
// without the program: STUN and anything that is not ChannelData, a
// datagram without an entry or whose entry has expired, IPv4 with options
// or fragments, IPv6 with extension headers, ChannelData whose length
// field runs past the datagram (or that carries more than 3 bytes after
// its data), a result larger than the egress MTU, a destination without a
// route (and in XDP one whose next hop has no neighbour entry yet: TC
// resolves it with bpf_redirect_neigh), GRO/GSO
// packets, VLAN-tagged frames, and in XDP packets with a CHECKSUM_PARTIAL
// checksum. Stats counts each reason.
//
// Both families are relayed, but only between a client and a peer of the
// same family (Put refuses a mix). The rewritten packet is a fresh
// origination: TTL / hop limit 64, IPv4 header checksum recomputed, UDP
// checksum updated incrementally (an IPv4 checksum of 0 stays 0). In TC,
// packets with CHECKSUM_PARTIAL (loopback, a veth whose peer offloads
// checksums, a virtio NIC) are rewritten with the UDP header left where
// the kernel will compute the checksum; see bpf/relay.c.
//
// # Maps
//
// c2p (hash, MaxEntries): key {client, listener: 16-byte addresses (IPv4
// as IPv4-mapped), client port, listener port, channel, pad} → value
// {relay, peer, relay port, peer port, slot, expires_ns}. p2c (hash,
// MaxEntries): key {peer, relay, peer port, relay port} → value {listener,
// client, listener port, client port, channel, pad, slot, pad,
// expires_ns}. Ports and channel numbers are in network byte order;
// expires_ns is CLOCK_MONOTONIC (bpf_ktime_get_ns). counters (array,
// MaxEntries): per slot {to-peer packets, to-peer bytes, from-peer
// packets, from-peer bytes}, bytes being application data without the
// ChannelData header; a channel keeps its slot while it is installed, so
// refreshing it with Put does not reset or lose counts. stats (per-CPU
// array): one counter per reason (Stats). The layouts are in
// bpf/relay.h.
//
// # Requirements
//
// Loading needs root or CAP_BPF and CAP_NET_ADMIN; tc mode needs tcx
// (Linux 6.6). The next hop comes from bpf_fib_lookup (egress interface,
// MACs, MTU), which answers only for interfaces with IP forwarding enabled
// (net.ipv4.conf.IF.forwarding, net.ipv6.conf.IF.forwarding). Where it is
// off, TC sends the rewritten packet out of the interface it came in by
// with bpf_redirect_neigh (the kernel routes it and fills in the Ethernet
// header; Stats.RedirectNeigh counts these), while XDP leaves the packet to
// user space (Stats.PassFIB). On loopback a local destination is delivered
// by the stack (Stats.Local). TC moves at most 8192 payload bytes of a
// CHECKSUM_PARTIAL packet; larger ones go to user space.
//
// Open resolves interface names and attaches in the network namespace of
// the calling thread: to attach inside another namespace, call it from a
// goroutine locked to a thread that has entered it (runtime.LockOSThread,
// unix.Setns). The other methods work on file descriptors and may be
// called from anywhere.
package offload
