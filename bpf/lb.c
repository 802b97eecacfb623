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
#include "include/l2.h"
#include "include/icmp.h"
#include "include/stats.h"
#include "include/hc.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Never called, so never loaded: it keeps enum xlb_stat in the object's BTF,
 * for bpf2go's Go constants and the test that keeps maps.StatNames in step
 * with it (the stats map's key cannot carry it: the kernel refuses an
 * array's BTF unless its key is a plain integer, and the map then has none,
 * so bpftool dumps it as raw bytes). */
__attribute__((noinline)) int xlb_stat_btf(enum xlb_stat s)
{
	return s;
}

/* lb_overhead is what forwarding for a service of flags svc_flags adds to a
 * packet of family family. */
static __always_inline __u32 lb_overhead(__u32 svc_flags, __u8 family)
{
	if (svc_flags & XLB_SVC_F_DSR)
		return 0;
	return family == XLB_AF_INET ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
}

/* lb_emit forwards the packet (which fits the MTU) to the backend whose
 * next hop is nh (which carries its address), for a service of flags
 * svc_flags: IPIP/IP6IP6, or a MAC rewrite alone (DSR). */
static __always_inline enum xlb_stat lb_emit(struct xdp_md *ctx, const struct packet *p, __u32 hash,
					     __u32 svc_flags, const struct nexthop *nh, const struct globals *cfg)
{
	if (!(svc_flags & XLB_SVC_F_DSR)) {
		int err;

		if (p->key.family == XLB_AF_INET)
			err = encap_v4(ctx, p, encap_src4(cfg, &p->key), nh->addr[0]);
		else
			err = encap_v6(ctx, p, cfg->src6, nh->addr, hash);
		if (err)
			return XLB_STAT_DROP_ENCAP;
	}
	if (l2_set_macs(ctx, nh->dmac))
		return XLB_STAT_DROP_ENCAP;
	if (nh->ifindex == ctx->ingress_ifindex)
		return XLB_STAT_TX;
	bpf_redirect(nh->ifindex, 0);
	return XLB_STAT_REDIRECT;
}

/* lb_send forwards the packet as lb_emit does or, when it does not fit the
 * MTU, answers the client with an ICMP too-big (as a router would) or drops
 * it. */
static __always_inline enum xlb_stat lb_send(struct xdp_md *ctx, const struct packet *p, __u32 hash,
					     __u32 svc_flags, const struct nexthop *nh, const struct globals *cfg)
{
	__u32 overhead = lb_overhead(svc_flags, p->key.family);

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
	return lb_emit(ctx, p, hash, svc_flags, nh, cfg);
}

/* lb_no_route is the verdict on a packet whose backend has no next hop. */
static __always_inline enum xlb_stat lb_no_route(long rc)
{
	return rc == BPF_FIB_LKUP_RET_NO_NEIGH ? XLB_STAT_PASS_NO_NEIGH : XLB_STAT_PASS_FIB;
}

static __always_inline void lb_frag_key(const struct packet *p, struct frag_key *fk)
{
	__builtin_memcpy(fk->src, p->key.src, sizeof(fk->src));
	__builtin_memcpy(fk->dst, p->key.dst, sizeof(fk->dst));
	fk->id = p->frag_id;
	fk->proto = p->key.proto;
	fk->family = p->key.family;
}

/* lb_remember_frag records where a first fragment went, for the later ones. */
static __always_inline void lb_remember_frag(const struct packet *p, __u32 backend_id, __u32 svc_id, __u32 svc_flags,
					     __u32 gen)
{
	struct frag_key fk = {};
	struct frag fr = { .backend_id = backend_id, .svc_id = svc_id, .svc_flags = svc_flags, .gen = gen };

	lb_frag_key(p, &fk);
	bpf_map_update_elem(&frags, &fk, &fr, BPF_ANY);
}

/* lb_later_fragment forwards a non-first fragment where its first fragment went. */
static __always_inline enum xlb_stat lb_later_fragment(struct xdp_md *ctx, const struct packet *p,
						       const struct globals *cfg, __u64 bytes)
{
	struct frag_key fk = {};
	struct nexthop *nh;
	struct backend *be;
	struct frag *fr;
	long rc;

	lb_frag_key(p, &fk);
	fr = bpf_map_lookup_elem(&frags, &fk);
	if (!fr)
		return XLB_STAT_PASS_FRAG;
	be = bpf_map_lookup_elem(&backends, &fr->backend_id);
	/* Its first fragment's backend, or none: a slot given to another since
	 * (another service's, or another address) would get a piece of a
	 * datagram it never saw the start of. */
	if (!be || be->family != p->key.family || be->gen != fr->gen || be->svc_id != fr->svc_id)
		return XLB_STAT_DROP_NO_BACKEND;
	stats_flow(&svc_stats, fr->svc_id, bytes, 0);
	stats_flow(&backend_stats, fr->backend_id, bytes, 0);
	nh = nexthop_get(ctx, be, fr->backend_id, cfg, &rc);
	if (!nh)
		return lb_no_route(rc);
	return lb_send(ctx, p, hash_flow(&p->key), fr->svc_flags, nh, cfg);
}

/* What lb_process hands its slow path. */
struct lb_state {
	__u64 bytes;
	__u64 now; /* coarse ns, for UDP only */
	__u64 jif;
	__u32 hash;
	__u32 epoch;
};

/* lb_slow handles every packet the fast path leaves: later fragments, SYNs
 * and other new flows, misses (which look in the other CPUs' tables too),
 * established flows not checked under the current epoch, and those whose
 * next hop must be looked up again.
 *
 * A global function, so the verifier checks it once, on its own, instead of
 * once for every state lb_process reaches it in: inlined, the program took
 * 533k instructions processed (half the verifier's limit) and 0.75 s to
 * load, which every start and upgrade waited; now 30k and 0.09 s. The call
 * costs the slow path a few ns (make bench). The verifier takes a global
 * function's pointers as possibly NULL, hence the check. */
__noinline enum xlb_stat lb_slow(struct xdp_md *ctx, struct packet *p, struct globals *cfg, struct lb_state *st)
{
	__u32 hash, age, backend_id, svc_id, svc_flags;
	struct svc_key sk = {};
	__u64 now, bytes;
	int new_flow = 0, syn, live = 0;
	long rc = BPF_FIB_LKUP_RET_NOT_FWDED;
	struct flow *f = NULL, nf = {};
	struct nexthop *nh;
	struct backend *be;
	struct svc *svc;

	if (!ctx || !p || !cfg || !st)
		return XLB_STAT_PASS_NOT_VIP;
	hash = st->hash;
	age = (__u32)st->jif;
	now = st->now;
	bytes = st->bytes;
	if (p->frag == FRAG_LATER)
		return lb_later_fragment(ctx, p, cfg, bytes);
	syn = select_is_syn(p);
	if (!syn) {
		f = flow_lookup(cfg, &p->key, hash, now, age);
		live = f && select_flow_alive(p, cfg, f, now);
		if (live) {
			be = select_flow(f, &svc);
			if (be) {
				if (be->family != p->key.family)
					return XLB_STAT_DROP_NO_BACKEND;
				f->svc_flags = svc->flags;
				/* Kept across a table change, the backend may no longer
				 * be its slot's: then another CPU's newer entry of the
				 * 5-tuple (a reused port) may name another, and the fast
				 * path must look for one (flow_here). */
				f->off_ring = select_maglev(svc, &p->key, hash) != f->backend_id;
				f->epoch = st->epoch;
				backend_id = f->backend_id;
				svc_id = f->svc_id;
				svc_flags = svc->flags;
				goto send;
			}
		}
	}

	__builtin_memcpy(sk.addr, p->key.dst, sizeof(sk.addr));
	sk.port = p->key.dport;
	sk.proto = p->key.proto;
	sk.family = p->key.family;
	svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		return XLB_STAT_PASS_NOT_VIP;
	if (!f && !syn && p->key.proto == IPPROTO_TCP && !p->icmp)
		stats_count(XLB_STAT_EV_FLOW_MISS, 0);
	/* The rate limit is on new connections: a TCP SYN, or a UDP packet
	 * with no live entry (none, or one idle past the UDP timeout: the
	 * client starts over). A TCP packet that is not a SYN belongs to a
	 * connection already open (one the flood guard did not remember, one
	 * whose backend went, one a peer balancer had), which must not be cut
	 * for its client's new ones, and so does a UDP packet of a live entry
	 * whose backend went; nor does an ICMP error open anything. */
	if ((syn || (p->key.proto == IPPROTO_UDP && !live)) && !p->icmp && !ratelimit_allow(svc, &p->key))
		return XLB_STAT_DROP_RATE_LIMIT;
	backend_id = select_maglev(svc, &p->key, hash);
	if (!backend_id)
		return XLB_STAT_DROP_NO_BACKEND;
	be = bpf_map_lookup_elem(&backends, &backend_id);
	if (!be || be->family != p->key.family)
		return XLB_STAT_DROP_NO_BACKEND;
	svc_id = svc->id;
	svc_flags = svc->flags;
	if (!p->icmp) {
		nf.backend_id = backend_id;
		nf.svc_id = svc_id;
		nf.svc_flags = svc_flags;
		nf.gen = be->gen;
		nf.epoch = st->epoch;
		select_remember(p, hash, now, age, &nf, cfg);
		new_flow = 1;
	}
send:
	if (p->frag == FRAG_FIRST)
		lb_remember_frag(p, backend_id, svc_id, svc_flags, be->gen);
	if (p->icmp)
		stats_count(XLB_STAT_EV_ICMP_TOO_BIG_FWD, 0);
	stats_flow(&svc_stats, svc_id, bytes, new_flow);
	stats_flow(&backend_stats, backend_id, bytes, new_flow);
	nh = nexthop_get(ctx, be, backend_id, cfg, &rc);
	if (!nh)
		return lb_no_route(rc);
	return lb_send(ctx, p, hash, svc_flags, nh, cfg);
}

/* lb_process forwards a packet of an established flow checked under the
 * current epoch from its flow-table entry and its backend's cached next hop
 * (the fast path: no service lookup, no backend checks), and hands every
 * other packet to lb_slow. */
static __always_inline enum xlb_stat lb_process(struct xdp_md *ctx, struct packet *p, __u64 bytes)
{
	struct lb_state st = { .bytes = bytes };
	struct globals *cfg;
	struct nexthop *nh;
	__u32 zero = 0;
	struct flow *f;
	int r;

	r = parse_packet(ctx, p);
	if (r == PARSE_PASS)
		return XLB_STAT_PASS_NOT_VIP;
	if (r != PARSE_OK)
		return XLB_STAT_DROP_MALFORMED;
	cfg = bpf_map_lookup_elem(&settings, &zero);
	if (!cfg)
		return XLB_STAT_PASS_NOT_VIP;
	/* Read before any service or backend: a flow checked against what they
	 * say afterwards is marked with the epoch that preceded it, so a change
	 * that lands meanwhile (and moves the epoch after it) still has it
	 * checked again. */
	st.epoch = *(volatile __u32 *)&cfg->epoch;
	asm volatile("" ::: "memory");
	if (p->frag == FRAG_LATER)
		return lb_slow(ctx, p, cfg, &st);

	/* One hash of the 5-tuple names the flow's bucket, its Maglev slot
	 * and its IPv6 flow label. */
	st.hash = hash_flow(&p->key);
	/* UDP flows need the time for their timeout (the coarse clock is
	 * enough for seconds); TCP ones only jiffies, for a bucket's eviction
	 * order and the next hop's expiry (a load, which the verifier inlines). */
	st.now = p->key.proto == IPPROTO_UDP ? bpf_ktime_get_coarse_ns() : 0;
	st.jif = bpf_jiffies64();
	/* A SYN is a new connection even if its 5-tuple has an entry. First
	 * fragments, ICMP errors and packets too big for the next hop take the
	 * slow path too: the fast one is for what most packets are. */
	if (select_is_syn(p) || p->frag || p->icmp)
		return lb_slow(ctx, p, cfg, &st);
	f = flow_here(cfg, &p->key, st.hash, st.now, (__u32)st.jif);
	if (!f || f->epoch != st.epoch)
		return lb_slow(ctx, p, cfg, &st);
	/* The next hop of the flow's backend, learnt for the flow's generation
	 * of the slot: the generation guards the moment between a slot's
	 * rewrite and the epoch's move, and the entry carries the address. */
	nh = bpf_map_lookup_elem(&nexthops, &f->backend_id);
	if (!nh || !nexthop_fresh(ctx, nh, p->key.family, f->gen, st.jif) ||
	    p->ip_len + lb_overhead(f->svc_flags, p->key.family) > nh->mtu)
		return lb_slow(ctx, p, cfg, &st);
	if (p->key.proto == IPPROTO_UDP)
		f->atime_ns = st.now;
	stats_flow(&svc_stats, f->svc_id, bytes, 0);
	stats_flow(&backend_stats, f->backend_id, bytes, 0);
	return lb_emit(ctx, p, st.hash, f->svc_flags, nh, cfg);
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
