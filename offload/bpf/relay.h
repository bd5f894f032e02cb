/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * Map layouts shared by relay.c and the Go side (bpf2go generates the Go
 * types from these definitions' BTF: relayC2pKey, relayC2pVal, ...).
 *
 * Addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d).
 * Ports and channel numbers are in network byte order, as on the wire.
 * Every padding field is zero.
 */
#ifndef FERRY_RELAY_H
#define FERRY_RELAY_H

#include <linux/types.h>

/* c2p: ChannelData from a client to ferry's listener -> UDP to the peer. */
struct c2p_key {
	__u8 client[16];   /* source of the ChannelData */
	__u8 listener[16]; /* ferry's address the client sends to */
	__be16 client_port;
	__be16 listener_port;
	__be16 channel;
	__u16 pad;
};

struct c2p_val {
	__u8 relay[16]; /* the allocation's relay address: new source */
	__u8 peer[16];  /* new destination */
	__be16 relay_port;
	__be16 peer_port;
	__u32 slot;       /* index into the counters array */
	__u64 expires_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) deadline */
};

/* p2c: UDP from a peer to a relay address -> ChannelData to the client. */
struct p2c_key {
	__u8 peer[16];
	__u8 relay[16];
	__be16 peer_port;
	__be16 relay_port;
};

struct p2c_val {
	__u8 listener[16]; /* new source */
	__u8 client[16];   /* new destination */
	__be16 listener_port;
	__be16 client_port;
	__be16 channel;
	__u16 pad;
	__u32 slot;
	__u32 pad2;
	__u64 expires_ns;
};

/* counters: one slot per channel (both directions), application bytes
 * (without the 4-byte ChannelData header). */
struct chan_counters {
	__u64 to_peer_packets;
	__u64 to_peer_bytes;
	__u64 from_peer_packets;
	__u64 from_peer_bytes;
};

/* stats: a per-CPU array indexed by these reasons. Keep in sync with
 * offload/stats.go. */
enum stat {
	STAT_TO_PEER = 0,       /* ChannelData rewritten to UDP to the peer */
	STAT_FROM_PEER,         /* UDP from the peer rewritten to ChannelData */
	STAT_CHANNEL_TO_CHANNEL, /* ChannelData rewritten to another client's ChannelData */
	STAT_LOCAL,             /* rewritten and delivered locally (loopback) */
	STAT_CSUM_PARTIAL,      /* rewritten by TC moving the payload (CHECKSUM_PARTIAL) */
	STAT_REDIRECT_NEIGH,    /* sent by TC with bpf_redirect_neigh (forwarding disabled) */
	STAT_PASS_NOT_UDP,      /* not IPv4/IPv6 UDP (ARP, TCP, ICMP, VLAN, ...) */
	STAT_PASS_FRAGMENT,     /* IPv4 options or fragment */
	STAT_PASS_IPV6_EXT,     /* IPv6 with extension headers */
	STAT_PASS_MALFORMED,    /* truncated, inconsistent lengths, GSO */
	STAT_PASS_NOT_CHANNEL,  /* not ChannelData (STUN, ...) and no peer entry */
	STAT_PASS_NO_ENTRY,     /* ChannelData without an entry, and no peer entry */
	STAT_PASS_EXPIRED,      /* entry found but past its expiry */
	STAT_PASS_BAD_LENGTH,   /* ChannelData length field past the datagram */
	STAT_PASS_MTU,          /* result larger than the egress MTU */
	STAT_PASS_FIB,          /* FIB lookup failed (no route, no neighbour, forwarding off) */
	STAT_PASS_CSUM_PARTIAL, /* CHECKSUM_PARTIAL packet the program cannot rewrite (XDP; too large) */
	STAT_PASS_ADJUST,       /* resizing the packet failed before it was changed */
	STAT_DROP_ERROR,        /* failed after the packet was changed: dropped */
	STAT_MAX,
};

#endif
