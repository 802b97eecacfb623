/* maps.h: every map the load balancer uses. Userspace pins them by these names. */
#ifndef XLB_MAPS_H
#define XLB_MAPS_H

#include "libbpf/bpf_helpers.h"
#include "consts.h"
#include "structs.h"

#ifndef BPF_F_INNER_MAP
#define BPF_F_INNER_MAP (1U << 12)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc);
} services SEC(".maps");

/* The service records again, by id: an established flow finds its service
 * here (an array: no hashing) and re-selects when the slot no longer holds
 * it (id 0: deleted). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct svc);
} svc_by_id SEC(".maps");

/* Indexed by backend id; id 0 is never used so that an empty slot means "none". */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

/* One Maglev table per service id. Userspace fills a fresh inner array and
 * swaps it in with one update, so the kernel never reads a half-written table.
 * BPF_F_INNER_MAP lets each service's table have its own prime size. Entry 0
 * holds that size M, entries 1..M the table: the modulus travels with the
 * table, so no packet indexes a table with another table's size. */
#define XLB_RING_SIZE_SLOT 0

struct ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP);
	__uint(max_entries, XLB_DEFAULT_RING + 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct ring);
} maglev_rings SEC(".maps");

/* The connection table (see struct flow_bucket): one slice of buckets per
 * CPU, CPU c's bucket i at c * buckets + i, i the flow hash masked with
 * globals.flow_mask (buckets - 1). A plain array, not a per-CPU one: a
 * per-CPU array's elements are separate allocations reached through an
 * array of pointers, one more dependent cache miss on every lookup of a
 * table that does not fit the caches. Mmapable, so userspace lists it
 * without a system call per bucket. The loader sizes it from
 * xdp.flow_table_size (buckets per CPU: entries / ways / CPUs, rounded up
 * to a power of two, times the CPUs). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, XLB_FLOW_BUCKETS_DEFAULT);
	__type(key, __u32);
	__type(value, struct flow_bucket);
} flows SEC(".maps");

/* Which CPU made the latest entry of a 5-tuple (by flow hash): shared, so that
 * a CPU holding an older connection's entry of the same 5-tuple learns that
 * its copy may be stale (read by the slow path, and by the fast one for an
 * entry off its Maglev slot only: see flow_here). One u64: (flow tag << 32) |
 * CPU, stored whole. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_FLOW_SYN_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} flow_syns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_FRAG_ENTRIES);
	__type(key, struct frag_key);
	__type(value, struct frag);
} frags SEC(".maps");

/* Rate limiter state: the GCRA theoretical arrival time per (service, source). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_RL_ENTRIES);
	__type(key, struct rl_key);
	__type(value, __u64);
} rate_limits SEC(".maps");

/* ICMP too-big answers per client (GCRA, as rate_limits): xlb must not be
 * turned into a reflector by a flood of oversized packets with forged sources. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_ICMP_RL_ENTRIES);
	__type(key, struct icmp_rl_key);
	__type(value, __u64);
} icmp_limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_STAT_MAX);
	__type(key, __u32); /* an enum xlb_stat: the kernel takes an array's BTF key only as an integer */
	__type(value, struct stat);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct counters);
} svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct counters);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct globals);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flood_window);
} flood_guard SEC(".maps");

#endif
