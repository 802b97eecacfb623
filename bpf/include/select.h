/* select.h: backend choice: the flow table first, then the service's Maglev table. */
#ifndef XLB_SELECT_H
#define XLB_SELECT_H

#include "maps.h"
#include "hash.h"
#include "stats.h"

static __always_inline __u32 select_maglev(const struct svc *svc, const struct flow_key *k)
{
	__u32 h = (svc->flags & XLB_SVC_F_IP_HASH) ? hash_src(k) : hash_flow(k);
	__u32 idx, *id;
	void *ring;

	if (!svc->ring_size)
		return 0;
	ring = bpf_map_lookup_elem(&maglev_rings, &svc->id);
	if (!ring)
		return 0;
	idx = h % svc->ring_size;
	id = bpf_map_lookup_elem(ring, &idx);
	return id ? *id : 0;
}

/* select_flow returns the backend a flow is pinned to, or 0 when it must be
 * chosen afresh. A SYN always chooses afresh, so a stale entry from an old
 * connection on the same 5-tuple cannot pin a new one. */
static __always_inline __u32 select_flow(const struct packet *p, const struct globals *cfg)
{
	struct backend *be;
	struct flow *f;

	if (p->key.proto == IPPROTO_TCP && (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN)
		return 0;
	f = bpf_map_lookup_elem(&flows, &p->key);
	if (!f) {
		if (p->key.proto == IPPROTO_TCP && !p->icmp)
			stats_count(XLB_STAT_EV_FLOW_MISS, 0);
		return 0;
	}
	if (p->key.proto == IPPROTO_UDP) {
		/* The coarse clock is enough for a timeout of seconds, and cheap. */
		__u64 now = bpf_ktime_get_coarse_ns();

		if (now - f->atime_ns > cfg->udp_timeout_ns) {
			stats_count(XLB_STAT_EV_FLOW_UDP_EXPIRED, 0);
			return 0;
		}
		if (!p->icmp)
			f->atime_ns = now;
	}
	be = bpf_map_lookup_elem(&backends, &f->backend_id);
	if (!be || !(be->flags & XLB_BE_F_UP)) {
		stats_count(XLB_STAT_EV_FLOW_RESELECT, 0);
		return 0;
	}
	return f->backend_id;
}

/* select_remember stores a new flow, unless this CPU has already stored its
 * quota this second: under a new-flow flood the table keeps its established
 * flows, and the unremembered ones still hash to the same backend. */
static __always_inline void select_remember(const struct packet *p, __u32 backend_id, __u64 now,
					    __u64 coarse_now, const struct globals *cfg)
{
	struct flow f = { .backend_id = backend_id, .atime_ns = coarse_now };
	__u32 zero = 0;

	if (p->key.proto == IPPROTO_TCP && (p->tcp_flags & XLB_TCP_RST))
		return;
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
	bpf_map_update_elem(&flows, &p->key, &f, BPF_ANY);
}

#endif
