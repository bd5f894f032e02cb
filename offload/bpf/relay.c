// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * ferry's kernel fast path for channel-bound UDP TURN traffic.
 *
 * client -> peer: ChannelData {channel, length, data} in a UDP datagram
 * from client C to ferry's listener L becomes a UDP datagram carrying
 * data from the allocation's relay address R to the peer P (4 bytes
 * shorter). peer -> client: a UDP datagram from P to R becomes ChannelData
 * {channel, length, data} from L to C (4 bytes longer). When P is itself
 * ferry's relay address of another channel (two TURN clients talking),
 * the ChannelData goes straight to that channel's client (same size).
 *
 * Everything else is passed on unchanged (TC: TC_ACT_UNSPEC, which under
 * tcx runs the next program attached, another ferry's or anybody's, and
 * then the stack; XDP: XDP_PASS) and handled by ferry in user space as
 * without the program.
 *
 * One core (parse, look up, plan the new headers, FIB lookup) is shared by
 * a TC program and an XDP program, which differ only in how they resize
 * the packet and send it.
 *
 * Checksums. The IPv4 header checksum is recomputed over the 20 new
 * bytes. The UDP checksum is updated incrementally (RFC 1624): a
 * pseudo-header part (addresses, length) and a header/data part (ports,
 * length, the 4 ChannelData header bytes, which sit at UDP payload offset
 * 0 and so are 16-bit aligned, and up to 3 padding bytes that a client
 * put after ChannelData and the relayed datagram leaves out). An IPv4
 * UDP checksum of 0 ("none") stays 0; a result of 0 is sent as 0xffff.
 *
 * CHECKSUM_PARTIAL. A packet sent by a local socket to a device with TX
 * checksum offload (loopback, a veth whose peer offloads, a virtio NIC
 * receiving from its host) carries in its UDP checksum field only the
 * folded pseudo-header sum, and the skb says where the device must put
 * the real checksum (csum_start, csum_offset). The program cannot read
 * skb->ip_summed, so it recognises such packets by that signature: the
 * field equals the folded pseudo-header sum. (A packet with a complete
 * checksum matches by chance once in 65535; it is treated the same way,
 * which is correct for it too.) bpf_skb_adjust_room moves the UDP header
 * away from csum_start, so for these packets TC keeps the UDP header in
 * place and moves the payload instead (through a per-CPU scratch buffer,
 * bpf_skb_change_tail for the size), and updates the checksum field with
 * bpf_l4_csum_replace, which knows the skb's real ip_summed: pseudo-header
 * changes with BPF_F_PSEUDO_HDR apply in both cases, header/data changes
 * only to a complete checksum. XDP cannot know where the checksum will be
 * computed, so it passes such packets to user space
 * (STAT_PASS_CSUM_PARTIAL); native XDP on a NIC never sees them.
 *
 * Forwarding. Before changing anything the program asks bpf_fib_lookup for
 * the new destination (source = the new source address, tot_len = the new
 * length, so it also checks the route MTU): egress interface and MACs.
 * TC then redirects to that interface's egress, XDP uses XDP_TX (same
 * interface) or bpf_redirect. bpf_fib_lookup refuses on interfaces that do
 * not forward; TC then sends out of the arrival interface with
 * bpf_redirect_neigh (the kernel routes and resolves the next hop; MTU
 * checked with bpf_check_mtu), XDP passes. A next hop without a neighbour
 * entry yet: TC sends with bpf_redirect_neigh, which resolves it; XDP
 * passes (the stack's send resolves it for the next packets). On loopback a local destination
 * (BPF_FIB_LKUP_RET_NOT_FWDED) is rewritten and handed on to the stack.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* What TC returns for a packet it leaves alone: under tcx (TCX_NEXT) the
 * next program attached runs, then the stack; TC_ACT_OK would end the
 * chain and hide the packet from programs attached after this one (a
 * second ferry on the interface, a CNI). */
#define TC_PASS TC_ACT_UNSPEC

#include "relay.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_UDP_ 17
#define NEW_TTL 64
#define LOOPBACK_IFINDEX 1
/* Largest payload the TC program moves for a CHECKSUM_PARTIAL packet. */
#define SCRATCH_SIZE 8192
/* Bytes the TC program wants in the linear area: Ethernet, IPv6, UDP and
 * the ChannelData header. */
#define PULL_LEN (ETH_HLEN + 40 + 8 + 4)

char __license[] SEC("license") = "Dual MIT/GPL";

/* Resized by the Go side before loading (Options.MaxEntries). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct c2p_key);
	__type(value, struct c2p_val);
} c2p SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct p2c_key);
	__type(value, struct p2c_val);
} p2c SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct chan_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, enum stat);
	__type(value, __u64);
} stats SEC(".maps");

struct scratch {
	__u8 b[SCRATCH_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

enum dir {
	DIR_C2P = 1,
	DIR_P2C,
	DIR_C2C,
};

/* What the core decided: the new headers and how to get there. */
struct plan {
	struct bpf_fib_lookup fib; /* 64 bytes */
	/* hdr starts 2 bytes past an 8-byte boundary, so that the IP header
	 * after the 14-byte Ethernet header is aligned: BPF stack stores must
	 * be. */
	__u8 align[2];
	__u8 hdr[72];    /* new Ethernet + IP + UDP (+ ChannelData) headers */
	__u32 pdiff;     /* UDP checksum diff: pseudo-header */
	__u32 hdiff;     /* UDP checksum diff: UDP header and data */
	__u32 new_frame; /* Ethernet + new IP total length */
	__u32 move_len;  /* payload bytes after the (old) headers */
	__u32 slot_a;    /* counters: the channel the packet belongs to */
	__u32 slot_b;    /* channel to channel: the receiving channel */
	__u32 bytes;     /* application bytes */
	__u16 hl;        /* bytes of hdr */
	__u16 new_check; /* the UDP checksum (complete checksums) */
	__u8 v6;
	__u8 dir;
	__u8 partial; /* the checksum field looks like CHECKSUM_PARTIAL's */
	__u8 local;   /* deliver locally (loopback), no redirect */
	__u8 neigh;   /* TC: bpf_redirect_neigh, the kernel resolves the next hop */
} __attribute__((aligned(8)));

_Static_assert(__builtin_offsetof(struct plan, hdr) % 8 == 2, "plan.hdr misaligned");

static __always_inline void count(enum stat reason)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &reason);

	if (v)
		*v += 1;
}

static __always_inline void count_channel(__u32 slot, int to_peer, __u64 bytes)
{
	struct chan_counters *c = bpf_map_lookup_elem(&counters, &slot);

	if (!c)
		return;
	if (to_peer) {
		__sync_fetch_and_add(&c->to_peer_packets, 1);
		__sync_fetch_and_add(&c->to_peer_bytes, bytes);
	} else {
		__sync_fetch_and_add(&c->from_peer_packets, 1);
		__sync_fetch_and_add(&c->from_peer_bytes, bytes);
	}
}

/* One's complement arithmetic over 16-bit words as they lie in memory
 * (loaded little-endian by the BPF target); the folded result is stored
 * back the same way, so byte order never needs converting. */
static __always_inline __u32 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

static __always_inline __u32 sum16(const __u8 *p, int words)
{
	__u32 s = 0;

#pragma unroll
	for (int i = 0; i < words; i++)
		s += ((const __u16 *)p)[i];
	return s;
}

/* The sum of an address: the last 4 bytes for IPv4 (mapped), all 16 for
 * IPv6. */
static __always_inline __u32 addr_sum(const __u8 *a16, int v6)
{
	if (v6)
		return sum16(a16, 8);
	return sum16(a16 + 12, 2);
}

/* diff = new - old in one's complement, folded. */
static __always_inline __u32 csum_diff16(__u32 old_sum, __u32 new_sum)
{
	return fold(fold(new_sum) + (0xffff & ~fold(old_sum)));
}

static __always_inline void set_mapped4(__u8 *a16, __be32 a)
{
	__builtin_memset(a16, 0, 10);
	a16[10] = 0xff;
	a16[11] = 0xff;
	__builtin_memcpy(a16 + 12, &a, 4);
}

static __always_inline int expired(__u64 expires_ns)
{
	return bpf_ktime_get_ns() >= expires_ns;
}

/* Loads len (1-4) bytes at off from the packet. */
static __always_inline int load(void *ctx, int is_xdp, __u32 off, void *buf, __u32 len)
{
	if (is_xdp)
		return bpf_xdp_load_bytes(ctx, off, buf, len);
	return bpf_skb_load_bytes(ctx, off, buf, len);
}

/*
 * The core. Returns 0 with p filled in when the packet is to be rewritten,
 * else the stat reason to pass it with (> 0). frame_len is the packet's
 * length from the Ethernet header; ifindex the device it arrived on.
 */
static __always_inline int plan_packet(void *ctx, int is_xdp, void *data, void *data_end,
				       __u32 frame_len, __u32 ifindex, struct plan *p)
{
	struct ethhdr *eth = data;
	__u8 src[16], dst[16];
	__be16 sport, dport, ulen_be, old_check;
	__u32 udp_len, uoff, tos = 0;
	__u8 *udp;
	int v6;

	if ((void *)(eth + 1) > data_end)
		return STAT_PASS_MALFORMED;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 ip_len;

		if ((void *)(ip + 1) + sizeof(struct udphdr) > data_end)
			return STAT_PASS_MALFORMED;
		if (ip->version != 4)
			return STAT_PASS_MALFORMED;
		if (ip->protocol != IPPROTO_UDP_)
			return STAT_PASS_NOT_UDP;
		if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
			return STAT_PASS_FRAGMENT;
		ip_len = bpf_ntohs(ip->tot_len);
		if (ip_len < 20 + 8 || ETH_HLEN + ip_len > frame_len)
			return STAT_PASS_MALFORMED;
		udp = (void *)(ip + 1);
		udp_len = bpf_ntohs(((struct udphdr *)udp)->len);
		if (udp_len != ip_len - 20)
			return STAT_PASS_MALFORMED;
		set_mapped4(src, ip->saddr);
		set_mapped4(dst, ip->daddr);
		tos = ip->tos;
		v6 = 0;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u32 pl;

		if ((void *)(ip6 + 1) + sizeof(struct udphdr) > data_end)
			return STAT_PASS_MALFORMED;
		if (ip6->version != 6)
			return STAT_PASS_MALFORMED;
		if (ip6->nexthdr != IPPROTO_UDP_) {
			switch (ip6->nexthdr) {
			case 0:   /* hop-by-hop options */
			case 43:  /* routing */
			case 44:  /* fragment */
			case 51:  /* authentication */
			case 60:  /* destination options */
			case 135: /* mobility */
			case 139: /* HIP */
			case 140: /* shim6 */
				return STAT_PASS_IPV6_EXT;
			}
			return STAT_PASS_NOT_UDP;
		}
		pl = bpf_ntohs(ip6->payload_len);
		if (pl < 8 || ETH_HLEN + 40 + pl > frame_len)
			return STAT_PASS_MALFORMED;
		udp = (void *)(ip6 + 1);
		udp_len = bpf_ntohs(((struct udphdr *)udp)->len);
		if (udp_len != pl)
			return STAT_PASS_MALFORMED;
		__builtin_memcpy(src, &ip6->saddr, 16);
		__builtin_memcpy(dst, &ip6->daddr, 16);
		v6 = 1;
	} else {
		return STAT_PASS_NOT_UDP;
	}

	{
		struct udphdr *uh = (void *)udp;

		sport = uh->source;
		dport = uh->dest;
		ulen_be = uh->len;
		old_check = uh->check;
	}
	uoff = ETH_HLEN + (v6 ? 40 : 20);

	/* The first 4 bytes of the UDP payload: a ChannelData header? */
	__be16 ch = 0, cdlen_be = 0;
	int is_cd = 0;
	if (udp_len >= 8 + 4) {
		__u8 *pl = udp + 8;

		if ((void *)(pl + 4) > data_end)
			return STAT_PASS_MALFORMED;
		if ((pl[0] & 0xc0) == 0x40) {
			is_cd = 1;
			__builtin_memcpy(&ch, pl, 2);
			__builtin_memcpy(&cdlen_be, pl + 2, 2);
		}
	}

	struct c2p_val *cv = 0;
	struct p2c_val *pv = 0, *bv = 0;
	__u32 cdlen = bpf_ntohs(cdlen_be);
	__u32 pad = 0;

	if (is_cd) {
		struct c2p_key k = {};

		__builtin_memcpy(k.client, src, 16);
		__builtin_memcpy(k.listener, dst, 16);
		k.client_port = sport;
		k.listener_port = dport;
		k.channel = ch;
		cv = bpf_map_lookup_elem(&c2p, &k);
		if (cv) {
			if (4 + cdlen > udp_len - 8)
				return STAT_PASS_BAD_LENGTH;
			pad = udp_len - 8 - 4 - cdlen;
			if (pad > 3)
				return STAT_PASS_BAD_LENGTH;
			if (expired(cv->expires_ns))
				return STAT_PASS_EXPIRED;
			/* Channel to channel: is the peer ferry's own relay
			 * address of another channel? */
			struct p2c_key bk = {};

			__builtin_memcpy(bk.peer, cv->relay, 16);
			__builtin_memcpy(bk.relay, cv->peer, 16);
			bk.peer_port = cv->relay_port;
			bk.relay_port = cv->peer_port;
			bv = bpf_map_lookup_elem(&p2c, &bk);
			if (bv && expired(bv->expires_ns))
				bv = 0;
		}
	}
	if (!cv) {
		struct p2c_key k = {};

		__builtin_memcpy(k.peer, src, 16);
		__builtin_memcpy(k.relay, dst, 16);
		k.peer_port = sport;
		k.relay_port = dport;
		pv = bpf_map_lookup_elem(&p2c, &k);
		if (!pv)
			return is_cd ? STAT_PASS_NO_ENTRY : STAT_PASS_NOT_CHANNEL;
		if (expired(pv->expires_ns))
			return STAT_PASS_EXPIRED;
	}

	/* The new addresses, ports, lengths and checksum diffs. */
	const __u8 *nsrc, *ndst;
	__be16 nsport, ndport, nch = 0;
	__u32 new_udp_len;
	__u32 old_h = sport + dport + ulen_be, new_h;
	int with_cd;

	if (cv && bv) {
		p->dir = DIR_C2C;
		nsrc = bv->listener;
		ndst = bv->client;
		nsport = bv->listener_port;
		ndport = bv->client_port;
		nch = bv->channel;
		new_udp_len = udp_len;
		p->slot_a = cv->slot;
		p->slot_b = bv->slot;
		p->bytes = cdlen;
		p->move_len = 0;
		with_cd = 1;
		old_h += ch + cdlen_be;
	} else if (cv) {
		p->dir = DIR_C2P;
		nsrc = cv->relay;
		ndst = cv->peer;
		nsport = cv->relay_port;
		ndport = cv->peer_port;
		new_udp_len = 8 + cdlen;
		p->slot_a = cv->slot;
		p->bytes = cdlen;
		p->move_len = cdlen;
		with_cd = 0;
		old_h += ch + cdlen_be;
		if (pad) {
			/* Padding the relayed datagram leaves out: its bytes
			 * leave the checksum too. */
			__u8 b[4] = {};
			__u32 off = uoff + 8 + 4 + cdlen;

			if (pad == 1) {
				if (load(ctx, is_xdp, off, b, 1))
					return STAT_PASS_MALFORMED;
			} else if (pad == 2) {
				if (load(ctx, is_xdp, off, b, 2))
					return STAT_PASS_MALFORMED;
			} else {
				if (load(ctx, is_xdp, off, b, 3))
					return STAT_PASS_MALFORMED;
			}
			/* A byte at an even UDP offset is the low byte of its
			 * word as loaded, at an odd one the high byte. cdlen's
			 * parity decides where the padding starts. */
			if (cdlen & 1)
				old_h += ((__u32)b[0] << 8) + b[1] + ((__u32)b[2] << 8);
			else
				old_h += b[0] + ((__u32)b[1] << 8) + b[2];
		}
	} else {
		p->dir = DIR_P2C;
		nsrc = pv->listener;
		ndst = pv->client;
		nsport = pv->listener_port;
		ndport = pv->client_port;
		nch = pv->channel;
		new_udp_len = udp_len + 4;
		if (new_udp_len > 0xffff)
			return STAT_PASS_MTU;
		p->slot_a = pv->slot;
		p->bytes = udp_len - 8;
		p->move_len = udp_len - 8;
		with_cd = 1;
	}
	__be16 nulen_be = bpf_htons(new_udp_len);
	__be16 ncdlen_be = p->dir == DIR_C2C ? cdlen_be : bpf_htons(udp_len - 8);

	new_h = nsport + ndport + nulen_be;
	if (with_cd)
		new_h += nch + ncdlen_be;

	__u32 old_p = addr_sum(src, v6) + addr_sum(dst, v6) + bpf_htons(IPPROTO_UDP_) + ulen_be;
	__u32 new_p = addr_sum(nsrc, v6) + addr_sum(ndst, v6) + bpf_htons(IPPROTO_UDP_) + nulen_be;

	p->pdiff = csum_diff16(old_p, new_p);
	p->hdiff = csum_diff16(old_h, new_h);
	p->partial = old_check != 0 && old_check == fold(old_p);
	if (old_check == 0 && !v6) {
		p->new_check = 0;
	} else {
		__u32 c = fold((0xffff & ~(__u32)old_check) + p->pdiff + p->hdiff);

		c = 0xffff & ~c;
		p->new_check = c ? c : 0xffff;
	}
	p->v6 = v6;
	p->hl = uoff + 8 + (with_cd ? 4 : 0);
	p->new_frame = uoff + new_udp_len;

	if (p->partial) {
		if (is_xdp)
			return STAT_PASS_CSUM_PARTIAL;
		if (p->move_len > SCRATCH_SIZE)
			return STAT_PASS_CSUM_PARTIAL;
	}

	/* Where does the new packet go? */
	struct bpf_fib_lookup *f = &p->fib;

	__builtin_memset(f, 0, sizeof(*f));
	f->family = v6 ? AF_INET6 : AF_INET;
	f->l4_protocol = IPPROTO_UDP_;
	f->sport = nsport;
	f->dport = ndport;
	f->tot_len = p->new_frame - ETH_HLEN;
	f->ifindex = ifindex;
	if (v6) {
		__builtin_memcpy(f->ipv6_src, nsrc, 16);
		__builtin_memcpy(f->ipv6_dst, ndst, 16);
	} else {
		__builtin_memcpy(&f->ipv4_src, nsrc + 12, 4);
		__builtin_memcpy(&f->ipv4_dst, ndst + 12, 4);
	}
	int rc = bpf_fib_lookup(ctx, f, sizeof(*f), 0);
	p->local = 0;
	p->neigh = 0;
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED && !is_xdp) {
		/* bpf_fib_lookup answers only for interfaces that forward.
		 * TC can instead send out of the interface the packet came
		 * in by with bpf_redirect_neigh, which routes (an output
		 * route through that interface) and fills in the Ethernet
		 * header itself; loopback delivers a local destination. */
		__u32 mtu = p->new_frame - ETH_HLEN;

		if (bpf_check_mtu(ctx, 0, &mtu, 0, 0))
			return STAT_PASS_MTU;
		p->neigh = 1;
		f->ifindex = ifindex;
		__builtin_memcpy(f->dmac, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(f->smac, eth->h_source, ETH_ALEN);
	} else if (rc == BPF_FIB_LKUP_RET_NOT_FWDED && ifindex == LOOPBACK_IFINDEX) {
		/* A local destination on loopback: rewrite and let the
		 * stack deliver it. */
		p->local = 1;
		__builtin_memcpy(f->dmac, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(f->smac, eth->h_source, ETH_ALEN);
	} else if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && !is_xdp) {
		/* Routed (the route MTU checked), but the next hop's address
		 * is not resolved yet: bpf_redirect_neigh out of the egress
		 * interface the lookup found resolves it, queueing the
		 * packet meanwhile, as the stack would. */
		p->neigh = 1;
		__builtin_memcpy(f->dmac, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(f->smac, eth->h_source, ETH_ALEN);
	} else if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		return STAT_PASS_MTU;
	} else if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		return STAT_PASS_FIB;
	}

	/* The new headers. */
	__u8 *h = p->hdr;

	__builtin_memset(h, 0, sizeof(p->hdr));
	__builtin_memcpy(h, f->dmac, ETH_ALEN);
	__builtin_memcpy(h + 6, f->smac, ETH_ALEN);
	__builtin_memcpy(h + 12, &eth->h_proto, 2);
	if (v6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct ipv6hdr *n = (void *)(h + ETH_HLEN);

		/* version, traffic class and flow label as received */
		__builtin_memcpy(n, ip6, 4);
		n->payload_len = nulen_be;
		n->nexthdr = IPPROTO_UDP_;
		n->hop_limit = NEW_TTL;
		__builtin_memcpy(&n->saddr, nsrc, 16);
		__builtin_memcpy(&n->daddr, ndst, 16);
	} else {
		struct iphdr *ip = (void *)(eth + 1);
		struct iphdr *n = (void *)(h + ETH_HLEN);

		n->version = 4;
		n->ihl = 5;
		n->tos = tos;
		n->tot_len = bpf_htons(20 + new_udp_len);
		n->id = ip->id;
		n->frag_off = ip->frag_off;
		n->ttl = NEW_TTL;
		n->protocol = IPPROTO_UDP_;
		__builtin_memcpy(&n->saddr, nsrc + 12, 4);
		__builtin_memcpy(&n->daddr, ndst + 12, 4);
		n->check = 0xffff & ~fold(sum16((__u8 *)n, 10));
	}
	{
		struct udphdr *u = (void *)(h + uoff);

		u->source = nsport;
		u->dest = ndport;
		u->len = nulen_be;
		/* TC's payload-moving path fixes the old checksum with
		 * bpf_l4_csum_replace; every other path writes the new one. */
		u->check = (p->partial && !is_xdp) ? old_check : p->new_check;
		if (with_cd) {
			__builtin_memcpy(h + uoff + 8, &nch, 2);
			__builtin_memcpy(h + uoff + 10, &ncdlen_be, 2);
		}
	}
	return 0;
}

static __always_inline void count_done(struct plan *p)
{
	if (p->local)
		count(STAT_LOCAL);
	if (p->partial)
		count(STAT_CSUM_PARTIAL);
	if (p->neigh)
		count(STAT_REDIRECT_NEIGH);
	switch (p->dir) {
	case DIR_C2P:
		count(STAT_TO_PEER);
		count_channel(p->slot_a, 1, p->bytes);
		break;
	case DIR_P2C:
		count(STAT_FROM_PEER);
		count_channel(p->slot_a, 0, p->bytes);
		break;
	case DIR_C2C:
		count(STAT_CHANNEL_TO_CHANNEL);
		count_channel(p->slot_a, 1, p->bytes);
		count_channel(p->slot_b, 0, p->bytes);
		break;
	}
}

/* ---------------------------------------------------------------- TC */

/* Writes the planned headers at the start of the packet. */
static __always_inline int tc_store_headers(struct __sk_buff *skb, struct plan *p)
{
	if (p->v6) {
		if (p->hl == ETH_HLEN + 40 + 8 + 4)
			return bpf_skb_store_bytes(skb, 0, p->hdr, ETH_HLEN + 40 + 8 + 4, 0);
		return bpf_skb_store_bytes(skb, 0, p->hdr, ETH_HLEN + 40 + 8, 0);
	}
	if (p->hl == ETH_HLEN + 20 + 8 + 4)
		return bpf_skb_store_bytes(skb, 0, p->hdr, ETH_HLEN + 20 + 8 + 4, 0);
	return bpf_skb_store_bytes(skb, 0, p->hdr, ETH_HLEN + 20 + 8, 0);
}

/* Moves n payload bytes from off to to through the per-CPU scratch buffer. */
static __always_inline int tc_move(struct __sk_buff *skb, __u32 from, __u32 to, __u32 n)
{
	__u32 zero = 0;
	struct scratch *s;

	if (n == 0)
		return 0;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return -1;
	/* Bounds the verifier can see: 1 <= n <= SCRATCH_SIZE. */
	n &= 2 * SCRATCH_SIZE - 1;
	if (n == 0 || n > SCRATCH_SIZE)
		return -1;
	if (bpf_skb_load_bytes(skb, from, s->b, n))
		return -1;
	return bpf_skb_store_bytes(skb, to, s->b, n, 0);
}

SEC("tc")
int relay_tc(struct __sk_buff *skb)
{
	struct plan p;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	int reason;

	if (skb->gso_segs > 1 || skb->gso_size) {
		/* GRO-merged or GSO: several datagrams in one skb. */
		count(STAT_PASS_MALFORMED);
		return TC_PASS;
	}
	if (data + PULL_LEN > data_end && skb->len > data_end - data) {
		/* Headers partly outside the linear area (only then: pulling
		 * also unclones). */
		bpf_skb_pull_data(skb, skb->len < PULL_LEN ? skb->len : PULL_LEN);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	reason = plan_packet(skb, 0, data, data_end, skb->len, skb->ifindex, &p);
	if (reason) {
		count(reason);
		return TC_PASS;
	}

	__u32 uoff = ETH_HLEN + (p.v6 ? 40 : 20);

	if (!p.partial) {
		/* The UDP header may move: bpf_skb_adjust_room opens or
		 * closes 4 bytes right after the IP header, and the new
		 * Ethernet, IP and UDP (and ChannelData) headers are written
		 * over the start of the packet. The payload stays put. */
		if (p.dir == DIR_C2P || p.dir == DIR_P2C) {
			if (bpf_skb_adjust_room(skb, p.dir == DIR_C2P ? -4 : 4, BPF_ADJ_ROOM_NET, 0)) {
				count(STAT_PASS_ADJUST);
				return TC_PASS;
			}
		}
		if (tc_store_headers(skb, &p)) {
			count(STAT_DROP_ERROR);
			return TC_ACT_SHOT;
		}
	} else {
		/* CHECKSUM_PARTIAL (or looks like it): the UDP header stays
		 * where csum_start points; the payload moves. */
		if (p.dir == DIR_P2C) {
			if (bpf_skb_change_tail(skb, p.new_frame, 0)) {
				count(STAT_PASS_ADJUST);
				return TC_PASS;
			}
			if (tc_move(skb, uoff + 8, uoff + 12, p.move_len)) {
				count(STAT_DROP_ERROR);
				return TC_ACT_SHOT;
			}
		} else if (p.dir == DIR_C2P) {
			if (tc_move(skb, uoff + 12, uoff + 8, p.move_len) ||
			    bpf_skb_change_tail(skb, p.new_frame, 0)) {
				count(STAT_DROP_ERROR);
				return TC_ACT_SHOT;
			}
		}
		if (tc_store_headers(skb, &p) ||
		    bpf_l4_csum_replace(skb, uoff + 6, 0, p.pdiff, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
		    bpf_l4_csum_replace(skb, uoff + 6, 0, p.hdiff, BPF_F_MARK_MANGLED_0)) {
			count(STAT_DROP_ERROR);
			return TC_ACT_SHOT;
		}
	}
	count_done(&p);
	if (p.local)
		return TC_ACT_OK;
	if (p.neigh)
		return bpf_redirect_neigh(p.fib.ifindex, 0, 0, 0);
	return bpf_redirect(p.fib.ifindex, 0);
}

/* ---------------------------------------------------------------- XDP */

/* Writes the planned headers at the start of the frame. */
static __always_inline int xdp_store_headers(struct xdp_md *ctx, struct plan *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

#define XDP_STORE(n)                                \
	do {                                        \
		if (data + (n) > data_end)          \
			return -1;                  \
		__builtin_memcpy(data, p->hdr, (n)); \
		return 0;                           \
	} while (0)

	if (p->v6) {
		if (p->hl == ETH_HLEN + 40 + 8 + 4)
			XDP_STORE(ETH_HLEN + 40 + 8 + 4);
		XDP_STORE(ETH_HLEN + 40 + 8);
	}
	if (p->hl == ETH_HLEN + 20 + 8 + 4)
		XDP_STORE(ETH_HLEN + 20 + 8 + 4);
	XDP_STORE(ETH_HLEN + 20 + 8);
#undef XDP_STORE
}

SEC("xdp")
int relay_xdp(struct xdp_md *ctx)
{
	struct plan p;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int reason;

	reason = plan_packet(ctx, 1, data, data_end, data_end - data, ctx->ingress_ifindex, &p);
	if (reason) {
		count(reason);
		return XDP_PASS;
	}
	/* bpf_xdp_adjust_head moves the start of the frame by 4 bytes (in
	 * for client -> peer, out for peer -> client); the new headers are
	 * written at the new start and end exactly where the payload
	 * begins, which stays put. */
	if (p.dir == DIR_C2P || p.dir == DIR_P2C) {
		if (bpf_xdp_adjust_head(ctx, p.dir == DIR_C2P ? 4 : -4)) {
			count(STAT_PASS_ADJUST);
			return XDP_PASS;
		}
	}
	if (xdp_store_headers(ctx, &p)) {
		count(STAT_DROP_ERROR);
		return XDP_DROP;
	}
	count_done(&p);
	if (p.local)
		return XDP_PASS;
	if (p.fib.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(p.fib.ifindex, 0);
}
