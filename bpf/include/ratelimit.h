/* ratelimit.h: new connections per source address and service, enforced
 * before a flow is created (GCRA: one timestamp per source). */
#ifndef XLB_RATELIMIT_H
#define XLB_RATELIMIT_H

#include "maps.h"

/* ratelimit_gcra is one GCRA step on the theoretical arrival time stored
 * under key in map: a token bucket of (tau / interval + 1) tokens refilled
 * one per interval. */
static __always_inline int ratelimit_gcra(void *map, const void *key, __u64 interval, __u64 tau, __u64 now)
{
	__u64 *tat, t;

	tat = bpf_map_lookup_elem(map, key);
	if (!tat) {
		t = now + interval;
		bpf_map_update_elem(map, key, &t, BPF_ANY);
		return 1;
	}
	t = *tat > now ? *tat : now;
	if (t - now > tau)
		return 0;
	*tat = t + interval;
	return 1;
}

/* ratelimit_allow says whether one more new connection from src fits in the
 * service's rate. Concurrent CPUs may race on one entry; the error is at most
 * one extra connection per racing CPU, which is fine for DDoS protection. The
 * clock is read only for a service with a limit: a helper call saved on
 * every other new flow. */
static __always_inline int ratelimit_allow(const struct svc *svc, const struct flow_key *k)
{
	struct rl_key rk = {};

	if (!svc->rl_interval_ns)
		return 1;
	rk.addr[0] = k->src[0];
	rk.addr[1] = k->src[1];
	rk.addr[2] = k->src[2];
	rk.addr[3] = k->src[3];
	rk.svc_id = svc->id;
	rk.family = k->family;
	return ratelimit_gcra(&rate_limits, &rk, svc->rl_interval_ns, svc->rl_tau_ns, bpf_ktime_get_ns());
}

/* ratelimit_icmp says whether the client may get one more ICMP too-big answer. */
static __always_inline int ratelimit_icmp(const struct globals *cfg, const struct flow_key *k)
{
	struct icmp_rl_key ik = {};

	if (!cfg->icmp_interval_ns)
		return 1;
	ik.addr[0] = k->src[0];
	ik.addr[1] = k->src[1];
	ik.addr[2] = k->src[2];
	ik.addr[3] = k->src[3];
	ik.family = k->family;
	return ratelimit_gcra(&icmp_limits, &ik, cfg->icmp_interval_ns, cfg->icmp_tau_ns, bpf_ktime_get_ns());
}

#endif
