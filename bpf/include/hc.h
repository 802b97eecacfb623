/* hc.h: health probes through the forwarding path (health_check.via: vip).
 * xlbd's probe sockets carry SO_MARK XLB_HC_MARK | backend id and connect
 * to the VIP; at the interface's egress this program sends them the way the
 * balancer forwards a client's packets to that backend: IPIP/IP6IP6 from the
 * balancer's own address for ipip services, unchanged to the backend's MAC
 * for dsr. A backend without the VIP on lo, with the wrong ARP settings or
 * without decap then fails its check, as it fails clients. */
#ifndef XLB_HC_H
#define XLB_HC_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include "libbpf/bpf_helpers.h"
#include "libbpf/bpf_endian.h"
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "csum.h"

static __always_inline int hc_encap_v4(struct __sk_buff *skb, __be32 src, __be32 dst)
{
	struct iphdr in, o = {};

	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &in, sizeof(in)))
		return -1;
	o.version = 4;
	o.ihl = 5;
	o.tos = in.tos;
	o.tot_len = bpf_htons(bpf_ntohs(in.tot_len) + sizeof(o));
	o.id = in.id;
	o.frag_off = in.frag_off & bpf_htons(XLB_IP_DF);
	o.ttl = XLB_OUTER_TTL;
	o.protocol = XLB_IPPROTO_IPIP;
	o.saddr = src;
	o.daddr = dst;
	o.check = csum_ipv4_hdr(&o);
	if (bpf_skb_adjust_room(skb, sizeof(o), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
		return -1;
	return bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &o, sizeof(o), 0) ? -1 : 0;
}

static __always_inline int hc_encap_v6(struct __sk_buff *skb, const __be32 *src, const __be32 *dst)
{
	struct ipv6hdr in, o = {};

	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &in, sizeof(in)))
		return -1;
	o.version = 6;
	o.priority = in.priority;
	__builtin_memcpy(o.flow_lbl, in.flow_lbl, sizeof(o.flow_lbl));
	o.payload_len = bpf_htons(bpf_ntohs(in.payload_len) + sizeof(in));
	o.nexthdr = XLB_IPPROTO_IPV6;
	o.hop_limit = XLB_OUTER_TTL;
	__builtin_memcpy(&o.saddr, src, 16);
	__builtin_memcpy(&o.daddr, dst, 16);
	if (bpf_skb_adjust_room(skb, sizeof(o), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6))
		return -1;
	return bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &o, sizeof(o), 0) ? -1 : 0;
}

static __always_inline int hc_process(struct __sk_buff *skb)
{
	__u32 id = skb->mark & ~XLB_HC_MARK_MASK, zero = 0;
	struct bpf_redir_neigh nh = {};
	struct globals *cfg;
	struct backend *be;
	struct svc *svc;

	if ((skb->mark & XLB_HC_MARK_MASK) != XLB_HC_MARK)
		return TC_ACT_OK;
	be = bpf_map_lookup_elem(&backends, &id);
	cfg = bpf_map_lookup_elem(&settings, &zero);
	if (!be || !be->family || !cfg)
		return TC_ACT_SHOT;
	svc = bpf_map_lookup_elem(&svc_by_id, &be->svc_id);
	if (!svc || svc->id != be->svc_id)
		return TC_ACT_SHOT;
	if (skb->protocol != bpf_htons(be->family == XLB_AF_INET ? ETH_P_IP : ETH_P_IPV6))
		return TC_ACT_SHOT;
	skb->mark = 0;
	if (svc->flags & XLB_SVC_F_DSR) {
		/* The VIP packet as it is, to the backend's MAC. */
		if (be->family == XLB_AF_INET) {
			nh.nh_family = XLB_SYS_AF_INET;
			nh.ipv4_nh = be->addr[0];
		} else {
			nh.nh_family = XLB_SYS_AF_INET6;
			__builtin_memcpy(nh.ipv6_nh, be->addr, 16);
		}
		return bpf_redirect_neigh(skb->ifindex, &nh, sizeof(nh), 0);
	}
	if (be->family == XLB_AF_INET ? hc_encap_v4(skb, cfg->src4, be->addr[0]) : hc_encap_v6(skb, cfg->src6, be->addr))
		return TC_ACT_SHOT;
	/* The FIB names the outer destination's next hop. */
	return bpf_redirect_neigh(skb->ifindex, NULL, 0, 0);
}

#endif
