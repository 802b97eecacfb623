/* structs.h: map keys and values, shared with Go through bpf2go -type. No unions,
 * no bitfields, explicit padding; sizes are asserted here and in Go. */
#ifndef XLB_STRUCTS_H
#define XLB_STRUCTS_H

#include <linux/types.h>
#include "consts.h"

/* Addresses are 16 bytes in network order; IPv4 uses the first word only, the
 * rest is zero. Words (not bytes) keep every access 4-byte aligned. */

struct svc_key {
	__be32 addr[4];
	__be16 port;
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family; /* XLB_AF_INET or XLB_AF_INET6 */
};

struct svc {
	__u32 id;        /* index into maglev_rings and svc_stats */
	__u32 ring_size; /* prime; for people: the kernel takes the size from the table itself */
	__u32 flags;     /* enum xlb_svc_flags */
	__u32 pad;
	__u64 rl_interval_ns; /* rate limit: one new connection per interval; 0 = off */
	__u64 rl_tau_ns;      /* rate limit burst tolerance: (burst - 1) * interval */
};

struct backend {
	__be32 addr[4];
	__u32 svc_id;
	__u32 gen;  /* bumped whenever the slot is given to another (service, address) or cleared */
	__u8 family;
	__u8 flags; /* enum xlb_backend_flags */
	__u16 pad;
};

/* 8-byte aligned (its size is unchanged): the flow table compares keys a
 * double word at a time, and the verifier wants stack accesses aligned. */
struct flow_key {
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family; /* 0 only in an empty way of the flow table */
	__u16 pad;
} __attribute__((aligned(8)));

/* A flow names its service and its backend slot's generation: an entry
 * that outlived its service, or whose backend id now belongs to another
 * backend, re-selects instead of following the id. An entry checked under
 * the current epoch (globals.epoch: userspace moves it on every change of
 * services, backends, next hops or settings) is followed without those
 * checks, straight to its backend's next hop. */
struct flow {
	__u32 backend_id;
	__u16 svc_id;
	__u8 svc_flags; /* the service's (enum xlb_svc_flags) when checked */
	__u8 off_ring;  /* 1: its backend is not the one its Maglev slot named when checked (see flow_here) */
	__u32 gen;      /* backend's gen when the flow was made */
	__u32 epoch;    /* globals.epoch when last checked; 0: not checked */
	__u64 atime_ns; /* coarse ns: UDP, of the last packet (expiry); TCP, of the entry's making */
};

/* The connection table is a per-CPU array of buckets, each a small set of
 * ways (set-associative, like a CPU cache): a flow lives in the bucket its
 * hash names, in any of its ways; a full bucket evicts its least recently
 * seen way. Every CPU has its own copy, so no locks. */
struct flow_way {
	struct flow_key key;
	struct flow flow;
};

/* The bucket's first bytes say which way holds which flow and how recently
 * it was seen, so that a lookup reads them and one way, and an insert into a
 * full bucket writes one way: a new flow touches two or three cache lines of
 * a bucket it most likely finds in memory, not every way's. */
struct flow_bucket {
	__u32 tag[XLB_FLOW_WAYS]; /* the flow hash | 1 of the way's flow; 0: the way is empty */
	__u32 age[XLB_FLOW_WAYS]; /* jiffies of its last packet: eviction order */
	struct flow_way ways[XLB_FLOW_WAYS];
};

/* Non-first IPv4 fragments carry no ports: they follow the first fragment's
 * choice, remembered under the datagram's identity. */
struct frag_key {
	__be32 src[4];
	__be32 dst[4];
	__u32 id;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct frag {
	__u32 backend_id;
	__u32 svc_id;
	__u32 svc_flags;
	/* The slot's generation when the first fragment went: a slot given to
	 * another backend since is not where the datagram is reassembled. Was
	 * padding, so that a previous build's pinned map is adopted. */
	__u32 gen;
};

/* The ICMP answer limiter's key: one client address. */
struct icmp_rl_key {
	__be32 addr[4];
	__u8 family;
	__u8 pad[3];
};

struct rl_key {
	__be32 addr[4];
	__u32 svc_id;
	__u8 family;
	__u8 pad[3];
};

struct counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

struct stat {
	__u64 packets;
	__u64 bytes;
};

struct globals {
	__be32 src6[4];    /* outer source of IP6IP6 packets */
	__be32 src4;        /* the balancer's IPv4 address: outer source of IPIP packets, FIB lookups */
	__be32 src4_mask;   /* nonzero: IPIP outer sources come from src4_prefix; the bits each flow chooses */
	__be32 src4_prefix; /* xdp.ipip_source_prefix */
	__u32 flow_mask;    /* flow table buckets - 1 (a power of two less one): the bucket of a flow is hash & mask */
	__u64 udp_timeout_ns;     /* a UDP flow idle longer re-selects */
	__u64 max_new_flows_cpu;  /* per CPU per second; 0 = no cap */
	__u64 icmp_interval_ns;   /* ICMP too-big answers per client: one per interval; 0 = unlimited */
	__u64 icmp_tau_ns;        /* their burst tolerance: (burst - 1) * interval */
	__u32 epoch;              /* moved by userspace on every change an established flow's checks depend on; never 0 */
	__u32 pad;
};

/* A backend's next hop as bpf_fib_lookup last named it (per CPU). The MACs
 * in the Ethernet header's order, 8-aligned: written with two stores. It
 * names the backend slot's generation and address it was learnt for: an
 * entry learnt from a slot's previous backend (a lookup that read the slot
 * just before userspace rewrote it and stored its answer just after
 * userspace cleared the entry) is never used for the new one, and an
 * established packet reads the address to encapsulate to here, not from
 * the backend array. */
struct nexthop {
	__u8 dmac[6];
	__u8 smac[6];
	__u32 ifindex;    /* egress */
	__u32 in_ifindex; /* the ingress interface the lookup was made from */
	__u16 mtu;        /* of the route: bigger packets are not forwarded */
	__u8 family;
	__u8 pad;
	__u64 expires; /* jiffies */
	__be32 addr[4]; /* the backend's address (the IPIP/IP6IP6 destination) */
	__u32 gen;      /* the backend slot's generation */
	__u32 pad2;
};

struct flood_window {
	__u64 window_ns;
	__u64 count;
};

/* Keys of the decap program's allow lists (LPM tries): prefix length in bits,
 * then the address in network order. */
struct lpm4_key {
	__u32 prefixlen;
	__be32 addr;
};

struct lpm6_key {
	__u32 prefixlen;
	__be32 addr[4];
};

_Static_assert(sizeof(struct lpm4_key) == 8, "lpm4_key size");
_Static_assert(sizeof(struct lpm6_key) == 20, "lpm6_key size");
_Static_assert(sizeof(struct svc_key) == 20, "svc_key size");
_Static_assert(sizeof(struct svc) == 32, "svc size");
_Static_assert(sizeof(struct backend) == 28, "backend size");
_Static_assert(sizeof(struct flow_key) == 40, "flow_key size");
_Static_assert(sizeof(struct flow) == 24, "flow size");
_Static_assert(sizeof(struct flow_way) == 64, "flow_way size");
_Static_assert(sizeof(struct flow_bucket) == 72 * XLB_FLOW_WAYS, "flow_bucket size");
_Static_assert(__builtin_offsetof(struct nexthop, smac) == __builtin_offsetof(struct nexthop, dmac) + 6, "nexthop macs: the Ethernet header's order");
_Static_assert(sizeof(struct nexthop) == 56, "nexthop size");
_Static_assert(sizeof(struct frag_key) == 40, "frag_key size");
_Static_assert(sizeof(struct frag) == 16, "frag size");
_Static_assert(sizeof(struct rl_key) == 24, "rl_key size");
_Static_assert(sizeof(struct counters) == 24, "counters size");
_Static_assert(sizeof(struct stat) == 16, "stat size");
_Static_assert(sizeof(struct globals) == 72, "settings size");
_Static_assert(sizeof(struct icmp_rl_key) == 20, "icmp_rl_key size");

#endif
