/* stats.h: per-CPU counters; userspace sums them over CPUs. */
#ifndef XLB_STATS_H
#define XLB_STATS_H

#include "maps.h"

static __always_inline void stats_count(__u32 stat, __u64 bytes)
{
	struct stat *s = bpf_map_lookup_elem(&stats, &stat);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

static __always_inline void stats_flow(void *map, __u32 id, __u64 bytes, int new_flow)
{
	struct counters *c = bpf_map_lookup_elem(map, &id);

	if (c) {
		c->packets++;
		c->bytes += bytes;
		c->new_flows += new_flow;
	}
}

#endif
