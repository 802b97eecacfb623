/* ratelimit.h: new connections per source address and service, enforced
 * before a flow is created (GCRA: one timestamp per source). */
#ifndef XLB_RATELIMIT_H
#define XLB_RATELIMIT_H

#include "maps.h"

/* ratelimit_allow says whether one more new connection from src fits in the
 * service's rate. Concurrent CPUs may race on one entry; the error is at most
 * one extra connection per racing CPU, which is fine for DDoS protection. */
static __always_inline int ratelimit_allow(const struct svc *svc, const struct flow_key *k, __u64 now)
{
	struct rl_key rk = {};
	__u64 *tat, t;

	if (!svc->rl_interval_ns)
		return 1;
	rk.addr[0] = k->src[0];
	rk.addr[1] = k->src[1];
	rk.addr[2] = k->src[2];
	rk.addr[3] = k->src[3];
	rk.svc_id = svc->id;
	rk.family = k->family;

	tat = bpf_map_lookup_elem(&rate_limits, &rk);
	if (!tat) {
		t = now + svc->rl_interval_ns;
		bpf_map_update_elem(&rate_limits, &rk, &t, BPF_ANY);
		return 1;
	}
	t = *tat > now ? *tat : now;
	if (t - now > svc->rl_tau_ns)
		return 0;
	*tat = t + svc->rl_interval_ns;
	return 1;
}

#endif
