/* encap.h: IPIP and IP6IP6 encapsulation in place: grow the head, move the L2
 * header forward, write the outer IP header between it and the inner packet. */
#ifndef XLB_ENCAP_H
#define XLB_ENCAP_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "libbpf/bpf_helpers.h"
#include "libbpf/bpf_endian.h"
#include "csum.h"
#include "parse.h"

/* encap_ipv4_hdr lays out header words for a little-endian target. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "xlb builds for bpfel only"
#endif

/* encap_move_l2 moves what follows the MACs of the L2 header (the
 * ethertype, with a VLAN tag before it if there is one) from `grow` bytes in
 * to its place at the new start of the frame, and returns where the outer IP
 * header goes, or NULL when the frame is too short. The MACs are left to the
 * caller, which always writes the next hop's (l2_set_macs): copying them
 * too would be stores for nothing. */
static __always_inline void *encap_move_l2(struct xdp_md *ctx, int vlan, __u32 grow, __u32 outer_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (vlan) {
		if (data + grow + sizeof(struct ethhdr) + sizeof(struct vlan_hdr) > data_end)
			return NULL;
		*(__u32 *)(data + 2 * ETH_ALEN) = *(__u32 *)(data + grow + 2 * ETH_ALEN);
		*(__u16 *)(data + 2 * ETH_ALEN + 4) = *(__u16 *)(data + grow + 2 * ETH_ALEN + 4);
		data += sizeof(struct ethhdr) + sizeof(struct vlan_hdr);
	} else {
		if (data + grow + sizeof(struct ethhdr) > data_end)
			return NULL;
		*(__u16 *)(data + 2 * ETH_ALEN) = *(__u16 *)(data + grow + 2 * ETH_ALEN);
		data += sizeof(struct ethhdr);
	}
	if (data + outer_len > data_end)
		return NULL;
	return data;
}

/* encap_src4 is the outer source of a flow: the balancer's address, or with
 * xdp.ipip_source_prefix an address of that prefix derived from the client's
 * address and ports (as Katran does), so that a backend's NIC spreads the
 * flows over its receive queues by the outer header. */
static __always_inline __be32 encap_src4(const struct globals *cfg, const struct flow_key *k)
{
	__u32 x;

	if (!cfg->src4_mask)
		return cfg->src4;
	x = k->src[0] ^ (((__u32)k->sport << 16) | k->dport);
	x *= 0x9e3779b1u;
	x ^= x >> 15;
	x *= 0x85ebca6bu;
	x ^= x >> 13;
	return (cfg->src4_prefix & ~cfg->src4_mask) | (x & cfg->src4_mask);
}

/* encap_ipv4_hdr writes at o a 20-byte IPv4 header from src to dst carrying
 * an IPIP payload of inner_len bytes. It is built in registers as the five
 * 32-bit words it is in memory (little-endian: the first byte is the low
 * one) and summed from them: writing it field by field and then reading it
 * back as half-words for the checksum made each read wait on the byte and
 * half-word stores under it. A ones' complement sum of the 32-bit words
 * folds to that of the 16-bit ones. The outer header inherits the inner
 * one's TOS, DF and identification (id, as it lies in the packet), so a
 * router that must fragment the outer packet behaves as it would have for
 * the inner one. */
static __always_inline void encap_ipv4_hdr(void *o, __u32 inner_len, __u8 tos, __u32 id, int df, __be32 src,
					   __be32 dst)
{
	__u32 w0, w1, w2;

	w0 = 0x45 | ((__u32)tos << 8) | ((__u32)bpf_htons(inner_len + sizeof(struct iphdr)) << 16);
	w1 = (id & 0xffff) | (df ? (__u32)bpf_htons(XLB_IP_DF) << 16 : 0);
	w2 = XLB_OUTER_TTL | (XLB_IPPROTO_IPIP << 8);
	w2 |= (__u32)csum_fold((__u64)w0 + w1 + w2 + src + dst) << 16;
	*(__u64 *)o = w0 | ((__u64)w1 << 32);
	*(__u64 *)(o + 8) = w2 | ((__u64)src << 32);
	*(__u32 *)(o + 16) = dst;
}

static __always_inline int encap_v4(struct xdp_md *ctx, const struct packet *p, __be32 src, __be32 dst)
{
	void *o;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return -1;
	o = encap_move_l2(ctx, p->vlan, sizeof(struct iphdr), sizeof(struct iphdr));
	if (!o)
		return -1;
	encap_ipv4_hdr(o, p->ip_len, p->tos, p->frag_id, p->df, src, dst);
	return 0;
}

static __always_inline int encap_v6(struct xdp_md *ctx, const struct packet *p, const __be32 *src,
				    const __be32 *dst, __u32 flow_hash)
{
	struct ipv6hdr *o;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ipv6hdr)))
		return -1;
	o = encap_move_l2(ctx, p->vlan, sizeof(struct ipv6hdr), sizeof(struct ipv6hdr));
	if (!o)
		return -1;
	o->version = 6;
	o->priority = p->tos >> 4;
	/* The flow label carries the flow hash so that ECMP between the balancer
	 * and the backend keeps one flow on one path. */
	o->flow_lbl[0] = ((p->tos & 0xf) << 4) | ((flow_hash >> 16) & 0xf);
	o->flow_lbl[1] = (flow_hash >> 8) & 0xff;
	o->flow_lbl[2] = flow_hash & 0xff;
	o->payload_len = bpf_htons(p->ip_len);
	o->nexthdr = XLB_IPPROTO_IPV6;
	o->hop_limit = XLB_OUTER_TTL;
	__builtin_memcpy(&o->saddr, src, 16);
	__builtin_memcpy(&o->daddr, dst, 16);
	return 0;
}

#endif
