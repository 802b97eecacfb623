/* nexthop.h: where a backend's packets go next, from bpf_fib_lookup, cached
 * per CPU for XLB_NEXTHOP_TTL_JIFFIES: the FIB lookup costs more than the
 * rest of the established-flow path, and next hops change far less often
 * than that. Writing a backend clears its entry at once (maps/). */
#ifndef XLB_NEXTHOP_H
#define XLB_NEXTHOP_H

#include <linux/bpf.h>
#include "libbpf/bpf_helpers.h"
#include "consts.h"
#include "structs.h"

/* In jiffies, read with bpf_jiffies64 (a load; the coarse nanosecond clock
 * cost 15 ns per packet here): 0.1 s at HZ=1000, 1 s at HZ=100. */
#define XLB_NEXTHOP_TTL_JIFFIES 100

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct nexthop);
} nexthops SEC(".maps");

static __always_inline void nexthop_fib_params(struct bpf_fib_lookup *fib, struct xdp_md *ctx,
					       const struct backend *be, const struct globals *cfg)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = ctx->ingress_ifindex;
	if (be->family == XLB_AF_INET) {
		fib->family = XLB_SYS_AF_INET;
		fib->ipv4_src = cfg->src4;
		fib->ipv4_dst = be->addr[0];
	} else {
		fib->family = XLB_SYS_AF_INET6;
		__builtin_memcpy(fib->ipv6_src, cfg->src6, 16);
		__builtin_memcpy(fib->ipv6_dst, be->addr, 16);
	}
}

/* nexthop_get returns the cached next hop of a backend, refreshing it from
 * the FIB when it is older than XLB_NEXTHOP_TTL_JIFFIES or was learnt on another
 * interface. *rc is the bpf_fib_lookup verdict (BPF_FIB_LKUP_RET_*). */
static __always_inline struct nexthop *nexthop_get(struct xdp_md *ctx, const struct backend *be, __u32 backend_id,
						   const struct globals *cfg, long *rc)
{
	struct bpf_fib_lookup fib;
	struct nexthop *nh;
	__u64 now = bpf_jiffies64();
	__u16 mtu;

	nh = bpf_map_lookup_elem(&nexthops, &backend_id);
	if (!nh) {
		*rc = BPF_FIB_LKUP_RET_NOT_FWDED;
		return NULL;
	}
	if (nh->expires > now && nh->in_ifindex == ctx->ingress_ifindex && nh->family == be->family) {
		*rc = BPF_FIB_LKUP_RET_SUCCESS;
		return nh;
	}

	/* First the path MTU: a lookup for an impossibly large packet answers
	 * FRAG_NEEDED with the MTU and stops before the neighbour table. */
	nexthop_fib_params(&fib, ctx, be, cfg);
	fib.tot_len = 0xffff;
	*rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (*rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		mtu = fib.mtu_result;
	else if (*rc == BPF_FIB_LKUP_RET_SUCCESS)
		mtu = 0xffff;
	else
		return NULL;

	nexthop_fib_params(&fib, ctx, be, cfg);
	*rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (*rc != BPF_FIB_LKUP_RET_SUCCESS)
		return NULL;
	__builtin_memcpy(nh->smac, fib.smac, sizeof(nh->smac));
	__builtin_memcpy(nh->dmac, fib.dmac, sizeof(nh->dmac));
	nh->ifindex = fib.ifindex;
	nh->in_ifindex = ctx->ingress_ifindex;
	nh->mtu = mtu;
	nh->family = be->family;
	nh->expires = now + XLB_NEXTHOP_TTL_JIFFIES;
	return nh;
}

#endif
