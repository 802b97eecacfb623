//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* lb.c: the xlb L4 load balancer. One entry point; every packet ends in one
 * enum xlb_stat verdict, counted in one place and mapped to an XDP action. */
#include <linux/bpf.h>
#include "include/libbpf/bpf_helpers.h"
#include "include/consts.h"
#include "include/structs.h"
#include "include/maps.h"
#include "include/parse.h"
#include "include/hash.h"
#include "include/select.h"
#include "include/ratelimit.h"
#include "include/encap.h"
#include "include/nexthop.h"
#include "include/icmp.h"
#include "include/stats.h"
#include "include/hc.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* lb_forward sends the packet to one backend: IPIP/IP6IP6 or a MAC rewrite
 * (DSR), to the next hop the kernel's FIB names. */
static __always_inline enum xlb_stat lb_forward(struct xdp_md *ctx, const struct packet *p, __u32 hash, __u32 svc_flags,
						__u32 backend_id, const struct backend *be, const struct globals *cfg)
{
	int dsr = svc_flags & XLB_SVC_F_DSR;
	struct nexthop *nh;
	__u32 overhead;
	long rc;

	if (be->family != p->key.family)
		return XLB_STAT_DROP_NO_BACKEND;
	nh = nexthop_get(ctx, be, backend_id, cfg, &rc);
	if (!nh)
		return rc == BPF_FIB_LKUP_RET_NO_NEIGH ? XLB_STAT_PASS_NO_NEIGH : XLB_STAT_PASS_FIB;

	overhead = 0;
	if (!dsr)
		overhead = p->key.family == XLB_AF_INET ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	if (p->ip_len + overhead > nh->mtu) {
		/* Routers may fragment an IPv4 packet without DF; XDP cannot. An
		 * ICMP error about an ICMP error is never sent. */
		if (p->icmp || p->frag || (p->key.family == XLB_AF_INET && !p->df))
			return XLB_STAT_DROP_TOO_BIG;
		if (!ratelimit_icmp(cfg, &p->key))
			return XLB_STAT_DROP_ICMP_LIMITED;
		if (icmp_too_big(ctx, p, nh->mtu, overhead))
			return XLB_STAT_DROP_TOO_BIG;
		return XLB_STAT_ICMP_TOO_BIG_SENT;
	}

	if (!dsr) {
		int err;

		if (p->key.family == XLB_AF_INET)
			err = encap_v4(ctx, p, encap_src4(cfg, &p->key), be->addr[0]);
		else
			err = encap_v6(ctx, p, cfg->src6, be->addr, hash);
		if (err)
			return XLB_STAT_DROP_ENCAP;
	}
	if (encap_set_macs(ctx, nh->smac, nh->dmac))
		return XLB_STAT_DROP_ENCAP;
	if (nh->ifindex == ctx->ingress_ifindex)
		return XLB_STAT_TX;
	bpf_redirect(nh->ifindex, 0);
	return XLB_STAT_REDIRECT;
}

static __always_inline void lb_frag_key(const struct packet *p, struct frag_key *fk)
{
	__builtin_memcpy(fk->src, p->key.src, sizeof(fk->src));
	__builtin_memcpy(fk->dst, p->key.dst, sizeof(fk->dst));
	fk->id = p->frag_id;
	fk->proto = p->key.proto;
	fk->family = p->key.family;
}

/* lb_later_fragment forwards a non-first fragment where its first fragment went. */
static __always_inline enum xlb_stat lb_later_fragment(struct xdp_md *ctx, const struct packet *p,
						       const struct globals *cfg, __u64 bytes)
{
	struct frag_key fk = {};
	struct backend *be;
	struct frag *fr;

	lb_frag_key(p, &fk);
	fr = bpf_map_lookup_elem(&frags, &fk);
	if (!fr)
		return XLB_STAT_PASS_FRAG;
	be = bpf_map_lookup_elem(&backends, &fr->backend_id);
	if (!be)
		return XLB_STAT_DROP_NO_BACKEND;
	stats_flow(&svc_stats, fr->svc_id, bytes, 0);
	stats_flow(&backend_stats, fr->backend_id, bytes, 0);
	return lb_forward(ctx, p, hash_flow(&p->key), fr->svc_flags, fr->backend_id, be, cfg);
}

static __always_inline enum xlb_stat lb_process(struct xdp_md *ctx, struct packet *p, __u64 bytes)
{
	struct svc_key sk = {};
	struct globals *cfg;
	__u32 zero = 0, backend_id, hash, age;
	__u64 now;
	int r, new_flow = 0, syn;
	struct backend *be = NULL;
	struct flow *f = NULL;
	struct svc *svc = NULL;

	r = parse_packet(ctx, p);
	if (r == PARSE_PASS)
		return XLB_STAT_PASS_NOT_VIP;
	if (r != PARSE_OK)
		return XLB_STAT_DROP_MALFORMED;
	cfg = bpf_map_lookup_elem(&settings, &zero);
	if (!cfg)
		return XLB_STAT_PASS_NOT_VIP;
	if (p->frag == FRAG_LATER)
		return lb_later_fragment(ctx, p, cfg, bytes);

	/* One hash of the 5-tuple names the flow's bucket, its Maglev slot
	 * and its IPv6 flow label. */
	hash = hash_flow(&p->key);
	/* UDP flows need the time for their timeout (the coarse clock is
	 * enough for seconds); TCP ones only a bucket's eviction order. */
	now = p->key.proto == IPPROTO_UDP ? bpf_ktime_get_coarse_ns() : 0;
	age = flow_age();
	/* Established flows first: their entry names the service and the
	 * backend, so they need no service lookup. A packet that is no SYN
	 * looks in the other CPUs' tables too before it counts as a miss. */
	syn = select_is_syn(p);
	if (!syn) {
		f = flow_lookup(cfg, &p->key, hash, now, age);
		if (f)
			be = select_flow(p, cfg, f, now, &svc);
	}
	if (be) {
		backend_id = f->backend_id;
	} else {
		__builtin_memcpy(sk.addr, p->key.dst, sizeof(sk.addr));
		sk.port = p->key.dport;
		sk.proto = p->key.proto;
		sk.family = p->key.family;
		svc = bpf_map_lookup_elem(&services, &sk);
		if (!svc)
			return XLB_STAT_PASS_NOT_VIP;
		if (!f && !syn && p->key.proto == IPPROTO_TCP && !p->icmp)
			stats_count(XLB_STAT_EV_FLOW_MISS, 0);
		/* An ICMP error is no new connection: it follows the table
		 * without being rate limited or remembered. */
		if (!p->icmp && !ratelimit_allow(svc, &p->key))
			return XLB_STAT_DROP_RATE_LIMIT;
		backend_id = select_maglev(svc, &p->key, hash);
		if (!backend_id)
			return XLB_STAT_DROP_NO_BACKEND;
		be = bpf_map_lookup_elem(&backends, &backend_id);
		if (!be)
			return XLB_STAT_DROP_NO_BACKEND;
		if (!p->icmp) {
			select_remember(p, hash, now, age, svc->id, backend_id, be, cfg);
			new_flow = 1;
		}
	}
	if (p->frag == FRAG_FIRST) {
		struct frag_key fk = {};
		struct frag fr = { .backend_id = backend_id, .svc_id = svc->id, .svc_flags = svc->flags };

		lb_frag_key(p, &fk);
		bpf_map_update_elem(&frags, &fk, &fr, BPF_ANY);
	}
	if (p->icmp)
		stats_count(XLB_STAT_EV_ICMP_TOO_BIG_FWD, 0);
	stats_flow(&svc_stats, svc->id, bytes, new_flow);
	stats_flow(&backend_stats, backend_id, bytes, new_flow);
	return lb_forward(ctx, p, hash, svc->flags, backend_id, be, cfg);
}

static __always_inline int lb_action(enum xlb_stat s)
{
	switch (s) {
	case XLB_STAT_TX:
	case XLB_STAT_ICMP_TOO_BIG_SENT:
		return XDP_TX;
	case XLB_STAT_REDIRECT:
		return XDP_REDIRECT;
	case XLB_STAT_DROP_MALFORMED:
	case XLB_STAT_DROP_RATE_LIMIT:
	case XLB_STAT_DROP_NO_BACKEND:
	case XLB_STAT_DROP_TOO_BIG:
	case XLB_STAT_DROP_ENCAP:
	case XLB_STAT_DROP_ICMP_LIMITED:
		return XDP_DROP;
	default:
		return XDP_PASS;
	}
}

/* xlb_hc runs at the balancer's interfaces' egress (TCX): health probes. */
SEC("tc")
int xlb_hc(struct __sk_buff *skb)
{
	return hc_process(skb);
}

SEC("xdp")
int xlb_lb(struct xdp_md *ctx)
{
	__u64 bytes = (void *)(long)ctx->data_end - (void *)(long)ctx->data;
	struct packet p = {};
	enum xlb_stat s;

	s = lb_process(ctx, &p, bytes);
	stats_count(s, bytes);
	return lb_action(s);
}
