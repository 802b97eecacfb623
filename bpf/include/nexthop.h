/* nexthop.h: where a backend's packets go next, from bpf_fib_lookup, cached
 * per CPU for XLB_NEXTHOP_TTL_JIFFIES: the FIB lookup costs more than the
 * rest of the established-flow path, and next hops change far less often
 * than that. Writing a backend clears its entry at once (maps/), and an
 * entry serves only the generation of the slot it was learnt for. */
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

/* The FIB lookup's parameters live here, not on the stack, which the rest
 * of the program needs. As bytes: bpf2go cannot write the unions of struct
 * bpf_fib_lookup in Go. */
struct fib_scratch {
	__u8 params[sizeof(struct bpf_fib_lookup)];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fib_scratch);
} fib_scratch SEC(".maps");

/* nexthop_refresh asks the FIB for backend be's next hop into nh and returns
 * its verdict (BPF_FIB_LKUP_RET_*). */
static __always_inline long nexthop_refresh(struct xdp_md *ctx, struct nexthop *nh, const struct backend *be,
					    const struct globals *cfg)
{
	__u64 now = bpf_jiffies64();
	struct bpf_fib_lookup *fib;
	__u32 zero = 0;
	__u16 mtu;
	long rc;

	fib = (struct bpf_fib_lookup *)bpf_map_lookup_elem(&fib_scratch, &zero);
	if (!fib)
		return BPF_FIB_LKUP_RET_NOT_FWDED;

	/* First the path MTU: a lookup for an impossibly large packet answers
	 * FRAG_NEEDED with the MTU and stops before the neighbour table. */
	nexthop_fib_params(fib, ctx, be, cfg);
	fib->tot_len = 0xffff;
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		mtu = fib->mtu_result;
	else if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		mtu = 0xffff;
	else
		return rc;

	nexthop_fib_params(fib, ctx, be, cfg);
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	__builtin_memcpy(nh->smac, fib->smac, sizeof(nh->smac));
	__builtin_memcpy(nh->dmac, fib->dmac, sizeof(nh->dmac));
	nh->ifindex = fib->ifindex;
	nh->in_ifindex = ctx->ingress_ifindex;
	nh->mtu = mtu;
	nh->family = be->family;
	__builtin_memcpy(nh->addr, be->addr, sizeof(nh->addr));
	nh->gen = be->gen;
	nh->expires = now + XLB_NEXTHOP_TTL_JIFFIES;
	return BPF_FIB_LKUP_RET_SUCCESS;
}

/* nexthop_fresh says whether nh, a backend's cached next hop, may be used
 * for a packet of family family that came in on ctx's interface, to the
 * backend of generation gen in its slot. */
static __always_inline int nexthop_fresh(const struct xdp_md *ctx, const struct nexthop *nh, __u8 family,
					 __u32 gen, __u64 jiffies)
{
	return nh->expires > jiffies && nh->in_ifindex == ctx->ingress_ifindex && nh->family == family &&
	       nh->gen == gen;
}

/* nexthop_get returns the cached next hop of a backend, refreshing it from
 * the FIB when it is older than XLB_NEXTHOP_TTL_JIFFIES or was learnt on another
 * interface. *rc is the bpf_fib_lookup verdict (BPF_FIB_LKUP_RET_*). */
static __always_inline struct nexthop *nexthop_get(struct xdp_md *ctx, const struct backend *be, __u32 backend_id,
						   const struct globals *cfg, long *rc)
{
	struct nexthop *nh = bpf_map_lookup_elem(&nexthops, &backend_id);

	if (!nh) {
		*rc = BPF_FIB_LKUP_RET_NOT_FWDED;
		return NULL;
	}
	if (nexthop_fresh(ctx, nh, be->family, be->gen, bpf_jiffies64())) {
		*rc = BPF_FIB_LKUP_RET_SUCCESS;
		return nh;
	}
	*rc = nexthop_refresh(ctx, nh, be, cfg);
	return *rc == BPF_FIB_LKUP_RET_SUCCESS ? nh : NULL;
}

#endif
