/* select.h: backend choice: the flow table first, then the service's Maglev table. */
#ifndef XLB_SELECT_H
#define XLB_SELECT_H

#include "maps.h"
#include "hash.h"
#include "stats.h"
#include "flowtab.h"

/* select_maglev indexes the service's table with the flow hash (hash, the
 * caller's hash_flow of k) or, for ip_hash, the source hash. */
static __always_inline __u32 select_maglev(const struct svc *svc, const struct flow_key *k, __u32 hash)
{
	__u32 h = (svc->flags & XLB_SVC_F_IP_HASH) ? hash_src(k) : hash;
	__u32 idx = XLB_RING_SIZE_SLOT, *size, *id;
	void *ring;

	ring = bpf_map_lookup_elem(&maglev_rings, &svc->id);
	if (!ring)
		return 0;
	size = bpf_map_lookup_elem(ring, &idx);
	if (!size || !*size)
		return 0;
	idx = h % *size + 1;
	id = bpf_map_lookup_elem(ring, &idx);
	return id ? *id : 0;
}

static __always_inline int select_is_syn(const struct packet *p)
{
	return p->key.proto == IPPROTO_TCP && (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;
}

/* select_flow_alive says whether the flow f may be followed at all: a UDP
 * entry idle past the timeout is chosen afresh. It times a UDP packet. */
static __always_inline int select_flow_alive(const struct packet *p, const struct globals *cfg, struct flow *f,
					     __u64 now)
{
	if (p->key.proto != IPPROTO_UDP)
		return 1;
	if (now - f->atime_ns > cfg->udp_timeout_ns) {
		stats_count(XLB_STAT_EV_FLOW_UDP_EXPIRED, 0);
		return 0;
	}
	if (!p->icmp)
		f->atime_ns = now;
	return 1;
}

/* select_flow returns the backend an established flow is pinned to (and its
 * service in *svc_out), or NULL when the flow must be chosen afresh: its
 * service is gone, or its backend is down or its slot now holds another
 * backend. The caller skips it for a SYN, so a stale entry from an old
 * connection cannot pin a new one. */
static __always_inline struct backend *select_flow(const struct flow *f, struct svc **svc_out)
{
	__u32 svc_id = f->svc_id; /* a whole key: the field is 16 bits */
	struct backend *be;
	struct svc *svc;

	svc = bpf_map_lookup_elem(&svc_by_id, &svc_id);
	be = bpf_map_lookup_elem(&backends, &f->backend_id);
	if (!svc || svc->id != f->svc_id || !be || be->svc_id != f->svc_id || be->gen != f->gen ||
	    !(be->flags & XLB_BE_F_UP)) {
		stats_count(XLB_STAT_EV_FLOW_RESELECT, 0);
		return NULL;
	}
	*svc_out = svc;
	return be;
}

/* select_remember stores the new flow f (its epoch filled in),
 * unless this CPU has already stored its quota this second: under a
 * new-flow flood the table keeps its established flows, and the
 * unremembered ones still hash to the same backend. One read of the coarse
 * clock (the caller's for UDP, in now) serves both the entry's time and the
 * quota's one-second window. */
static __always_inline void select_remember(const struct packet *p, __u32 hash, __u64 now, __u32 age,
					    struct flow *f, const struct globals *cfg)
{
	struct flow_bucket *b;
	__u32 zero = 0;

	if (p->key.proto == IPPROTO_TCP && (p->tcp_flags & XLB_TCP_RST))
		return;
	if (!now)
		now = bpf_ktime_get_coarse_ns();
	f->atime_ns = now;
	if (cfg->max_new_flows_cpu) {
		struct flood_window *g = bpf_map_lookup_elem(&flood_guard, &zero);

		if (!g)
			return;
		if (now - g->window_ns >= XLB_NSEC) {
			g->window_ns = now;
			g->count = 0;
		}
		if (g->count >= cfg->max_new_flows_cpu) {
			stats_count(XLB_STAT_EV_FLOW_SKIPPED, 0);
			return;
		}
		g->count++;
	}
	b = flow_bucket_of(cfg, hash);
	if (!b)
		return;
	flow_store(b, &p->key, hash, f, age);
	if (select_is_syn(p))
		flow_mark_latest(hash, bpf_get_smp_processor_id());
}

#endif
