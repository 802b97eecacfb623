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

/* encap_move_l2 copies the L2 header (with its VLAN tag, if any) from `grow`
 * bytes in to the new start of the frame, and returns where the outer IP
 * header goes, or NULL when the frame is too short. */
static __always_inline void *encap_move_l2(struct xdp_md *ctx, int vlan, __u32 grow, __u32 outer_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (vlan) {
		if (data + grow + sizeof(struct ethhdr) + sizeof(struct vlan_hdr) > data_end)
			return NULL;
		__builtin_memcpy(data, data + grow, sizeof(struct ethhdr) + sizeof(struct vlan_hdr));
		data += sizeof(struct ethhdr) + sizeof(struct vlan_hdr);
	} else {
		if (data + grow + sizeof(struct ethhdr) > data_end)
			return NULL;
		__builtin_memcpy(data, data + grow, sizeof(struct ethhdr));
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

static __always_inline int encap_v4(struct xdp_md *ctx, const struct packet *p, __be32 src, __be32 dst)
{
	struct iphdr *o;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return -1;
	o = encap_move_l2(ctx, p->vlan, sizeof(struct iphdr), sizeof(struct iphdr));
	if (!o)
		return -1;
	o->version = 4;
	o->ihl = 5;
	o->tos = p->tos;
	o->tot_len = bpf_htons(p->ip_len + sizeof(struct iphdr));
	/* The outer header inherits DF and the IP identification, so a router
	 * that must fragment the outer packet behaves as it would have for the
	 * inner one. */
	o->id = p->frag_id;
	o->frag_off = p->df ? bpf_htons(XLB_IP_DF) : 0;
	o->ttl = XLB_OUTER_TTL;
	o->protocol = XLB_IPPROTO_IPIP;
	o->check = 0;
	o->saddr = src;
	o->daddr = dst;
	o->check = csum_ipv4_hdr(o);
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
