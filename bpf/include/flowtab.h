/* flowtab.h: the connection table, a per-CPU set-associative array (see struct
 * flow_bucket). A lookup is one inlined array lookup and up to XLB_FLOW_WAYS
 * key compares; an insert takes the flow's own way, else an empty one, else
 * the least recently seen one of its bucket. Plain loads and stores: the
 * bucket is this CPU's. maps/ has the Go twin (index, insert, lookup). */
#ifndef XLB_FLOWTAB_H
#define XLB_FLOWTAB_H

#include "libbpf/bpf_helpers.h"
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "stats.h"

static __always_inline int flow_key_eq(const struct flow_key *a, const struct flow_key *b)
{
	const __u64 *x = (const void *)a, *y = (const void *)b;

	/* Word 4 holds the ports, protocol and family: it tells flows of one
	 * client apart, so it goes first. */
	return x[4] == y[4] && x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline __u32 flow_tag(__u32 hash)
{
	return hash | 1;
}

/* flow_find returns the way of b that holds k (whose tag is tag), or -1. */
static __always_inline int flow_find(const struct flow_bucket *b, const struct flow_key *k, __u32 tag)
{
#pragma unroll
	for (int i = 0; i < XLB_FLOW_WAYS; i++)
		if (b->tag[i] == tag && flow_key_eq(&b->ways[i].key, k))
			return i;
	return -1;
}

/* flow_bucket_on is bucket idx of CPU cpu's slice, NULL past the last CPU. */
static __always_inline struct flow_bucket *flow_bucket_on(const struct globals *cfg, __u32 idx, __u32 cpu)
{
	__u32 key = cpu * (cfg->flow_mask + 1) + idx;

	return bpf_map_lookup_elem(&flows, &key);
}

static __always_inline struct flow_bucket *flow_bucket_of(const struct globals *cfg, __u32 hash)
{
	return flow_bucket_on(cfg, hash & cfg->flow_mask, bpf_get_smp_processor_id());
}

/* flow_store writes k's entry into b: into k's own way if it has one, else
 * an empty way, else the way seen longest ago. */
static __always_inline struct flow *flow_store(struct flow_bucket *b, const struct flow_key *k, __u32 hash,
					       const struct flow *f, __u32 age)
{
	__u32 tag = flow_tag(hash), oldest = b->age[0];
	int victim = 0, empty = -1;

#pragma unroll
	for (int i = 0; i < XLB_FLOW_WAYS; i++) {
		if (b->tag[i] == tag && flow_key_eq(&b->ways[i].key, k)) {
			victim = i;
			goto store;
		}
		if (!b->tag[i]) {
			if (empty < 0)
				empty = i;
		} else if ((__s32)(b->age[i] - oldest) < 0) {
			oldest = b->age[i];
			victim = i;
		}
	}
	if (empty >= 0)
		victim = empty;
store:
	victim &= XLB_FLOW_WAYS - 1;
	b->tag[victim] = tag;
	b->age[victim] = age;
	b->ways[victim].key = *k;
	b->ways[victim].flow = *f;
	return &b->ways[victim].flow;
}

/* A flow's packets normally reach one CPU (RSS hashes the same tuple the same
 * way), but a sender that migrates between CPUs (veth, generic XDP) takes its
 * flow to another CPU's table. flow_probe_cpu looks for the key in one other
 * CPU's copy of the bucket, for bpf_loop. */
struct flow_probe {
	struct flow_key key;
	const struct globals *cfg;
	__u32 idx;
	__u32 tag;
	__u32 self;
	__u32 found; /* 1 + the CPU whose copy holds the key */
};

static long flow_probe_cpu(__u64 cpu, void *data)
{
	struct flow_probe *pr = data;
	struct flow_bucket *b;
	int w;

	if (cpu == pr->self)
		return 0;
	b = flow_bucket_on(pr->cfg, pr->idx, (__u32)cpu);
	if (!b)
		return 1; /* past the last CPU */
	w = flow_find(b, &pr->key, pr->tag);
	if (w < 0)
		return 0;
	pr->found = 1 + (__u32)cpu;
	return 1;
}

/* flow_syn_of is k's slot in flow_syns. */
static __always_inline __u64 *flow_syn_of(__u32 hash)
{
	__u32 idx = hash & (XLB_FLOW_SYN_ENTRIES - 1);

	return bpf_map_lookup_elem(&flow_syns, &idx);
}

/* flow_mark_latest records that this CPU holds the latest entry of the flow
 * (a SYN made it, or it was copied from the CPU that had it). */
static __always_inline void flow_mark_latest(__u32 hash, __u32 self)
{
	__u64 *rec = flow_syn_of(hash);

	if (rec)
		*rec = ((__u64)flow_tag(hash) << 32) | self;
}

/* flow_take_latest copies the flow fields of k's entry on CPU cpu, which
 * made its latest entry, into way w of this CPU's bucket b, unless cpu is
 * this one; this CPU then holds the latest entry. */
static __always_inline void flow_take_latest(const struct globals *cfg, struct flow_bucket *b, int w,
					     const struct flow_key *k, __u32 hash, __u32 cpu)
{
	__u32 self = bpf_get_smp_processor_id(), idx = hash & cfg->flow_mask;
	struct flow_bucket *o;
	int ow;

	if (cpu == self)
		return;
	o = flow_bucket_on(cfg, idx, cpu);
	if (o) {
		ow = flow_find(o, k, flow_tag(hash));
		if (ow >= 0) {
			b->ways[w & (XLB_FLOW_WAYS - 1)].flow = o->ways[ow & (XLB_FLOW_WAYS - 1)].flow;
			stats_count(XLB_STAT_EV_FLOW_OTHER_CPU, 0);
		}
	}
	flow_mark_latest(hash, self);
}

/* flow_here returns k's entry in this CPU's table when it is there, alive (a
 * UDP entry within its timeout) and the latest of its 5-tuple (no other CPU
 * made a newer one), and counts it as seen; else NULL, and the caller takes
 * the full path (flow_lookup).
 *
 * Only an entry off its Maglev slot reads flow_syns for the latter. A
 * newer entry of the 5-tuple elsewhere, made under the same epoch (the
 * caller checks it), was chosen from the same Maglev table, so it names
 * the backend an entry on its slot already names: following this one is
 * the same. That spares nearly every established packet a read of a
 * shared line that is seldom in the cache. */
static __always_inline struct flow *flow_here(const struct globals *cfg, const struct flow_key *k, __u32 hash,
					      __u64 now, __u32 age)
{
	struct flow_bucket *b = flow_bucket_of(cfg, hash);
	struct flow *f;
	__u64 *rec;
	int w;

	if (!b)
		return NULL;
	w = flow_find(b, k, flow_tag(hash));
	if (w < 0)
		return NULL;
	w &= XLB_FLOW_WAYS - 1;
	f = &b->ways[w].flow;
	if (k->proto == IPPROTO_UDP && now - f->atime_ns > cfg->udp_timeout_ns)
		return NULL;
	if (f->off_ring) {
		rec = flow_syn_of(hash);
		if (rec && (__u32)(*rec >> 32) == flow_tag(hash) && (__u32)*rec != bpf_get_smp_processor_id())
			return NULL;
	}
	b->age[w] = age;
	return f;
}

/* flow_lookup finds k's entry in this CPU's table or, when it is not there
 * (or is a UDP entry that expired here), in another CPU's table, from which
 * it is copied into this one: the sender moved, and the copy is what the
 * caller gets, so its updates stay local. */
static __always_inline struct flow *flow_lookup(const struct globals *cfg, const struct flow_key *k, __u32 hash,
						__u64 now, __u32 age)
{
	struct flow_bucket *b = flow_bucket_of(cfg, hash);
	struct flow *f = NULL, *of;
	struct flow_bucket *o;
	struct flow_probe pr;
	int w, ow;

	if (!b)
		return NULL;
	w = flow_find(b, k, flow_tag(hash));
	if (w >= 0) {
		w &= XLB_FLOW_WAYS - 1;
		f = &b->ways[w].flow;
		if (k->proto != IPPROTO_UDP || now - f->atime_ns <= cfg->udp_timeout_ns) {
			__u64 *rec = flow_syn_of(hash);

			b->age[w] = age;
			/* The latest entry of this 5-tuple is another CPU's (a new
			 * connection on a reused port began there): this copy may
			 * be an older connection's. Take that CPU's. */
			if (rec && (__u32)(*rec >> 32) == flow_tag(hash))
				flow_take_latest(cfg, b, w, k, hash, (__u32)*rec);
			return f;
		}
	}
	__builtin_memset(&pr, 0, sizeof(pr));
	pr.key = *k;
	pr.cfg = cfg;
	pr.idx = hash & cfg->flow_mask;
	pr.tag = flow_tag(hash);
	pr.self = bpf_get_smp_processor_id();
	bpf_loop(XLB_MAX_CPUS, flow_probe_cpu, &pr, 0);
	if (!pr.found)
		return f;
	/* Found again rather than copied out by the loop: the stack is short. */
	o = flow_bucket_on(cfg, pr.idx, pr.found - 1);
	if (!o)
		return f;
	ow = flow_find(o, k, pr.tag);
	if (ow < 0)
		return f;
	of = &o->ways[ow & (XLB_FLOW_WAYS - 1)].flow;
	if (f) {
		/* Expired here: the other CPU's copy, if it is fresher. */
		if (of->atime_ns <= f->atime_ns)
			return f;
		*f = *of;
		b->age[w & (XLB_FLOW_WAYS - 1)] = age;
	} else {
		f = flow_store(b, k, hash, of, age);
	}
	flow_mark_latest(hash, pr.self);
	stats_count(XLB_STAT_EV_FLOW_OTHER_CPU, 0);
	return f;
}

#endif
