/* route.h: a flow's route (struct route): taken on the full path from the
 * backend and its next hop, and kept in the flow, so that the flow's later
 * packets are forwarded from their flow-table entry alone. */
#ifndef XLB_ROUTE_H
#define XLB_ROUTE_H

#include "structs.h"
#include "encap.h"
#include "nexthop.h"

/* route_take fills rt for sending k's packets to backend be (id backend_id)
 * of a service with flags svc_flags. NULL, with the FIB's verdict in *rc,
 * when the backend has no next hop. */
static __always_inline struct route *route_take(struct xdp_md *ctx, struct route *rt, const struct backend *be,
						__u32 backend_id, __u32 svc_flags, const struct globals *cfg,
						const struct flow_key *k, long *rc)
{
	struct nexthop *nh = nexthop_get(ctx, be, backend_id, cfg, rc);

	if (!nh)
		return NULL;
	rt->expires = nh->expires;
	rt->ifindex = nh->ifindex;
	rt->in_ifindex = nh->in_ifindex;
	rt->saddr4 = be->family == XLB_AF_INET ? encap_src4(cfg, k) : 0;
	rt->daddr4 = be->addr[0];
	__builtin_memcpy(rt->dmac, nh->dmac, sizeof(rt->dmac));
	__builtin_memcpy(rt->smac, nh->smac, sizeof(rt->smac));
	rt->mtu = nh->mtu;
	rt->svc_flags = svc_flags;
	rt->family = be->family;
	return rt;
}

/* route_good says whether f's route may still be followed: taken under the
 * current epoch (no service, backend, next hop or setting changed since),
 * its next hop not expired, and the packet came in where it was looked up. */
static __always_inline int route_good(const struct flow *f, __u32 epoch, __u64 jiffies, const struct xdp_md *ctx)
{
	return f->epoch == epoch && f->rt.expires > jiffies && f->rt.in_ifindex == ctx->ingress_ifindex;
}

#endif
