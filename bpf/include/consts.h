/* consts.h: sizes, flags and enums shared by the XDP programs and (through BTF) Go. */
#ifndef XLB_CONSTS_H
#define XLB_CONSTS_H

#define XLB_MAX_SERVICES 1024
#define XLB_MAX_BACKENDS 16384
#define XLB_DEFAULT_RING 65537
#define XLB_FLOWS_DEFAULT 1048576
/* Ways per flow-table bucket (a power of two). The map's own max_entries
 * counts buckets per CPU; the loader sizes it from xdp.flow_table_size. */
#ifndef XLB_FLOW_WAYS
#define XLB_FLOW_WAYS 4 /* -DXLB_FLOW_WAYS=8 builds another shape, for the bench */
#endif
#define XLB_FLOW_BUCKETS_DEFAULT (XLB_FLOWS_DEFAULT / XLB_FLOW_WAYS)
/* Records of the last SYN per flow-hash slot (struct flow_syn), shared by
 * the CPUs: a power of two. */
#define XLB_FLOW_SYN_ENTRIES 65536
/* Most CPUs a flow missed on this one is looked for on (CPU migration). */
#define XLB_MAX_CPUS 1024
#define XLB_FRAG_ENTRIES 16384
#define XLB_RL_ENTRIES 262144
#define XLB_ICMP_RL_ENTRIES 65536

#define XLB_AF_INET 4
#define XLB_AF_INET6 6

/* Linux address family numbers, for bpf_fib_lookup. */
#define XLB_SYS_AF_INET 2
#define XLB_SYS_AF_INET6 10

#define XLB_IPPROTO_IPIP 4
#define XLB_IPPROTO_IPV6 41
#define XLB_IPPROTO_FRAGMENT 44

#define XLB_IP_MF 0x2000
#define XLB_IP_DF 0x4000
#define XLB_IP_OFFMASK 0x1fff

#define XLB_TCP_FIN 0x01
#define XLB_TCP_SYN 0x02
#define XLB_TCP_RST 0x04
#define XLB_TCP_ACK 0x10

#define XLB_NSEC 1000000000ULL

/* Fixed seed: every balancer given the same config must hash a flow to the
 * same slot, or ECMP in front of several balancers breaks flows. */
#define XLB_HASH_SEED 0x786c6221u

#define XLB_OUTER_TTL 64

/* SO_MARK of health probes sent through the forwarding path: the high bits
 * say "xlb probe", the low 14 bits name the backend id (< XLB_MAX_BACKENDS). */
#define XLB_HC_MARK 0x786c0000u
#define XLB_HC_MARK_MASK 0xffffc000u

enum xlb_svc_flags {
	XLB_SVC_F_IP_HASH = 1, /* hash the source address only (session persistence) */
	XLB_SVC_F_DSR = 2,     /* L2 DSR: rewrite the destination MAC; else IPIP */
};

enum xlb_backend_flags {
	XLB_BE_F_UP = 1, /* passes health checks; a flow to a backend without it re-selects */
	/* Up only because its service fails open (its checks say down): the
	 * programs read UP alone; the flag tells the next xlbd what was health. */
	XLB_BE_F_FAIL_OPEN = 2,
	/* Bits 2-3: where xlbd has the backend from (config, API, DNS), for the
	 * next xlbd; the programs do not read them. */
	XLB_BE_F_ORIGIN_SHIFT = 2,
};

/* Every verdict of the load balancer, and a few events that are not verdicts.
 * The Go label table in maps/ must follow this order (a test checks it). */
enum xlb_stat {
	XLB_STAT_PASS_NOT_VIP = 0,     /* not IP, or not addressed to a service */
	XLB_STAT_PASS_NO_NEIGH,        /* next hop unresolved: the kernel gets the packet */
	XLB_STAT_PASS_FIB,             /* no route to the backend, or forwarding disabled */
	XLB_STAT_PASS_FRAG,            /* a non-first fragment of no known flow */
	XLB_STAT_TX,                   /* forwarded out of the receiving interface */
	XLB_STAT_REDIRECT,             /* forwarded out of another interface */
	XLB_STAT_DROP_MALFORMED,       /* truncated or inconsistent headers */
	XLB_STAT_DROP_RATE_LIMIT,      /* new connection over the service's rate limit */
	XLB_STAT_DROP_NO_BACKEND,      /* service has no backend in its table */
	XLB_STAT_DROP_TOO_BIG,         /* too big to forward, and no ICMP error allowed (no DF, fragment, ICMP) */
	XLB_STAT_DROP_ENCAP,           /* the kernel refused to grow the packet */
	XLB_STAT_EV_ICMP_TOO_BIG_FWD,  /* event: ICMP too-big about a VIP flow sent to its backend */
	XLB_STAT_ICMP_TOO_BIG_SENT,    /* answered the client: its packet would not fit encapsulated */
	XLB_STAT_EV_FLOW_MISS,         /* event: non-SYN TCP packet with no flow entry */
	XLB_STAT_EV_FLOW_RESELECT,     /* event: flow's backend is down; picked another */
	XLB_STAT_EV_FLOW_SKIPPED,      /* event: flow not remembered (per-CPU insert cap) */
	XLB_STAT_EV_FLOW_UDP_EXPIRED,  /* event: UDP flow entry older than the timeout */
	XLB_STAT_DROP_ICMP_LIMITED,    /* too big; the client's ICMP answers are over their rate */
	XLB_STAT_EV_FLOW_OTHER_CPU,    /* event: a flow missing from this CPU's table was found in another's */
	XLB_STAT_MAX,
};

#define XLB_DECAP_ALLOW_ENTRIES 256

/* The Go label table in loader/ follows this order (a test checks it). */
enum xlb_decap_stat {
	XLB_DECAP_IPIP = 0,     /* IPv4-in-IPv4 stripped */
	XLB_DECAP_IP6IP6,       /* IPv6-in-IPv6 stripped */
	XLB_DECAP_PASS,         /* not encapsulated: passed untouched */
	XLB_DECAP_MALFORMED,    /* a bad or truncated outer or inner header: dropped */
	XLB_DECAP_DENIED,       /* outer source outside -allow: passed untouched */
	XLB_DECAP_FRAG,         /* outer header is a fragment: passed untouched */
	XLB_DECAP_MAX,
};

#endif
