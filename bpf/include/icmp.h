/* icmp.h: answer a client whose packet cannot be encapsulated within the MTU
 * with ICMP "fragmentation needed" / ICMPv6 "packet too big", as a router
 * would, instead of dropping it silently (a path-MTU black hole). The reply
 * is built in place from the packet itself and sent back where it came from. */
#ifndef XLB_ICMP_H
#define XLB_ICMP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include "libbpf/bpf_helpers.h"
#include "libbpf/bpf_endian.h"
#include "csum.h"
#include "parse.h"

#define ICMP4_QUOTE (sizeof(struct iphdr) + 8)    /* RFC 792: IP header + 64 bits */
#define ICMP6_QUOTE (sizeof(struct ipv6hdr) + 8)
#define ICMP6_MIN_MTU 1280
#define ICMP_TOS 0xc0 /* internetwork control */

/* icmp_turn_l2 moves the L2 header to the new frame start and swaps its MACs. */
static __always_inline void *icmp_turn_l2(struct xdp_md *ctx, int vlan, __u32 grow, __u32 need)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l2 = vlan ? sizeof(struct ethhdr) + sizeof(struct vlan_hdr) : sizeof(struct ethhdr);
	struct ethhdr *eth = data;
	__u8 mac[ETH_ALEN];

	if (vlan) {
		if (data + grow + sizeof(struct ethhdr) + sizeof(struct vlan_hdr) > data_end)
			return NULL;
		__builtin_memcpy(data, data + grow, sizeof(struct ethhdr) + sizeof(struct vlan_hdr));
	} else {
		if (data + grow + sizeof(struct ethhdr) > data_end)
			return NULL;
		__builtin_memcpy(data, data + grow, sizeof(struct ethhdr));
	}
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	if (data + l2 + need > data_end)
		return NULL;
	return data + l2;
}

/* icmp_trim cuts the frame to the reply's length. */
static __always_inline int icmp_trim(struct xdp_md *ctx, int vlan, __u32 reply_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l2 = vlan ? sizeof(struct ethhdr) + sizeof(struct vlan_hdr) : sizeof(struct ethhdr);
	long have = data_end - data;

	return bpf_xdp_adjust_tail(ctx, (int)((long)(l2 + reply_len) - have));
}

static __always_inline int icmp_too_big_v4(struct xdp_md *ctx, const struct packet *p, __u16 mtu)
{
	__u32 grow = sizeof(struct iphdr) + sizeof(struct icmp_hdr);
	__u32 reply = grow + ICMP4_QUOTE;
	struct icmp_hdr *ic;
	struct iphdr *ip, *quoted;
	__u64 sum;

	if (bpf_xdp_adjust_head(ctx, -(int)grow))
		return -1;
	ip = icmp_turn_l2(ctx, p->vlan, grow, reply);
	if (!ip)
		return -1;
	ic = (void *)(ip + 1);
	quoted = (void *)(ic + 1);
	if (quoted->ihl != 5)
		return -1; /* the quote would cut its options; not worth a variable-length checksum */
	if (icmp_trim(ctx, p->vlan, reply))
		return -1;
	/* Trimming moved data_end: prove the bounds again. */
	{
		void *data_end = (void *)(long)ctx->data_end;
		void *data = (void *)(long)ctx->data;

		ip = data + (p->vlan ? sizeof(struct ethhdr) + sizeof(struct vlan_hdr) : sizeof(struct ethhdr));
		if ((void *)ip + reply > data_end)
			return -1;
		ic = (void *)(ip + 1);
	}
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = ICMP_TOS;
	ip->tot_len = bpf_htons(reply);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = XLB_OUTER_TTL;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = p->key.dst[0]; /* the VIP: the address the client was talking to */
	ip->daddr = p->key.src[0];
	ip->check = csum_ipv4_hdr(ip);

	ic->type = XLB_ICMP_DEST_UNREACH;
	ic->code = XLB_ICMP_FRAG_NEEDED;
	ic->check = 0;
	ic->rest = bpf_htonl(mtu);
	sum = bpf_csum_diff(0, 0, (__be32 *)ic, sizeof(*ic) + ICMP4_QUOTE, 0);
	ic->check = csum_fold(sum);
	return 0;
}

struct icmp6_pseudo {
	__be32 src[4];
	__be32 dst[4];
	__be32 len;
	__be32 nexthdr;
};

static __always_inline int icmp_too_big_v6(struct xdp_md *ctx, const struct packet *p, __u32 mtu)
{
	__u32 grow = sizeof(struct ipv6hdr) + sizeof(struct icmp_hdr);
	__u32 reply = grow + ICMP6_QUOTE;
	struct icmp6_pseudo ph = {};
	struct icmp_hdr *ic;
	struct ipv6hdr *ip;
	__u64 sum;

	if (bpf_xdp_adjust_head(ctx, -(int)grow))
		return -1;
	if (!icmp_turn_l2(ctx, p->vlan, grow, reply))
		return -1;
	if (icmp_trim(ctx, p->vlan, reply))
		return -1;
	{
		void *data_end = (void *)(long)ctx->data_end;
		void *data = (void *)(long)ctx->data;

		ip = data + (p->vlan ? sizeof(struct ethhdr) + sizeof(struct vlan_hdr) : sizeof(struct ethhdr));
		if ((void *)ip + reply > data_end)
			return -1;
		ic = (void *)(ip + 1);
	}
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 6;
	ip->payload_len = bpf_htons(sizeof(*ic) + ICMP6_QUOTE);
	ip->nexthdr = IPPROTO_ICMPV6;
	ip->hop_limit = 255;
	__builtin_memcpy(&ip->saddr, p->key.dst, 16);
	__builtin_memcpy(&ip->daddr, p->key.src, 16);

	ic->type = XLB_ICMPV6_PKT_TOOBIG;
	ic->code = 0;
	ic->check = 0;
	ic->rest = bpf_htonl(mtu);

	__builtin_memcpy(ph.src, p->key.dst, 16);
	__builtin_memcpy(ph.dst, p->key.src, 16);
	ph.len = bpf_htonl(sizeof(*ic) + ICMP6_QUOTE);
	ph.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
	sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	sum = bpf_csum_diff(0, 0, (__be32 *)ic, sizeof(*ic) + ICMP6_QUOTE, sum);
	ic->check = csum_fold(sum);
	return 0;
}

/* icmp_too_big turns the packet into the reply. path_mtu is the route MTU
 * towards the backend; the client learns what fits after encapsulation. */
static __always_inline int icmp_too_big(struct xdp_md *ctx, const struct packet *p, __u32 path_mtu, __u32 overhead)
{
	__u32 mtu = path_mtu > overhead ? path_mtu - overhead : 0;

	if (p->key.family == XLB_AF_INET) {
		if (mtu < 68)
			return -1;
		return icmp_too_big_v4(ctx, p, mtu);
	}
	if (mtu < ICMP6_MIN_MTU)
		mtu = ICMP6_MIN_MTU;
	return icmp_too_big_v6(ctx, p, mtu);
}

#endif
