//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* bench.c: programs for timing only. BPF_PROG_TEST_RUN with repeat > 1 reruns
 * a program on the buffer the previous run modified, so the driver restores
 * the pristine packet (and, for new flows, varies the flow) before each
 * tail call into the program under test. The floors are what a minimal
 * program of each forwarding mode costs, timed through the same driver. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include "include/libbpf/bpf_helpers.h"
#include "include/libbpf/bpf_endian.h"
#include "include/consts.h"
#include "include/structs.h"
#include "include/csum.h"
#include "include/parse.h"
#include "include/l2.h"
#include "include/encap.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define BENCH_MAX_PKT 256

struct bench_pkt {
	__u32 len;
	__u32 seq;       /* bumped per run when vary is set */
	__u32 vary;      /* 1: write seq into the flow so every run is a new flow */
	__u32 mask;      /* with vary, nonzero: base + (seq & mask): runs cycle over mask + 1 flows */
	__u32 base;
	__u32 scramble;  /* with mask: visit the cycle's flows in bench_scramble's order */
	__u16 sport_off; /* where the source port lies */
	__u16 saddr_off; /* where the last two bytes of the source address lie */
	__u8 data[BENCH_MAX_PKT];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_pkt);
} bench_input SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_target SEC(".maps");

/* bench_flows has the shape and flags of lb.c's flow table (the bench gives
 * it the same size): the floors below time one lookup or one insert of the
 * kernel's LRU hash, the least a flow-table path costs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, XLB_FLOWS_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow);
} bench_flows SEC(".maps");

/* bench_scramble permutes the values of mask's bits (mask + 1 a power of
 * two) with no constant stride between neighbours: a cycle's flows are
 * primed in order and then visited in this one, so a table that lays its
 * entries out in the order flows came (an LRU's free list) is not read as
 * a stream the CPU's prefetcher follows. Multiplying by an odd number and
 * xor-shifting right are both one to one on mask's bits. */
static __always_inline __u32 bench_scramble(__u32 x, __u32 mask)
{
	x = (x * 0x9e3779b1u) & mask;
	x ^= x >> 5;
	x = (x * 0x85ebca6bu) & mask;
	x ^= x >> 7;
	return x;
}

SEC("xdp")
int xlb_bench_driver(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	long cur = data_end - data;
	struct bench_pkt *bp;
	__u32 zero = 0, len;

	bp = bpf_map_lookup_elem(&bench_input, &zero);
	if (!bp)
		return XDP_ABORTED;
	len = bp->len;
	if (len < 14 || len > BENCH_MAX_PKT)
		return XDP_ABORTED;
	if (cur != len && bpf_xdp_adjust_head(ctx, (int)(cur - (long)len)))
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, bp->data, len))
		return XDP_ABORTED;
	if (bp->vary) {
		__u32 seq = bp->seq++;

		if (bp->mask) {
			seq &= bp->mask;
			if (bp->scramble)
				seq = bench_scramble(seq, bp->mask);
			seq += bp->base;
		}
		__be16 port = bpf_htons(1024 + (seq & 0x7fff));
		__be16 host = bpf_htons(seq >> 15);

		bpf_xdp_store_bytes(ctx, bp->sport_off, &port, sizeof(port));
		bpf_xdp_store_bytes(ctx, bp->saddr_off, &host, sizeof(host));
	}
	bpf_tail_call(ctx, &bench_target, 0);
	return XDP_ABORTED;
}

/* xlb_floor_driver does nothing but answer XDP_TX: timed through the
 * driver, it is the driver's own cost, which the bench subtracts. */
SEC("xdp")
int xlb_floor_driver(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* floor_parse does the parsing every mode needs before it can forward. */
static __always_inline int floor_parse(struct xdp_md *ctx, struct packet *p)
{
	return parse_packet(ctx, p);
}

static __always_inline int floor_mac_swap(struct xdp_md *ctx)
{
	return l2_swap_macs(ctx) ? XDP_DROP : XDP_TX;
}

SEC("xdp")
int xlb_floor_dsr(struct xdp_md *ctx)
{
	struct packet p = {};

	if (floor_parse(ctx, &p) != PARSE_OK)
		return XDP_PASS;
	return floor_mac_swap(ctx);
}

SEC("xdp")
int xlb_floor_ipip(struct xdp_md *ctx)
{
	struct packet p = {};
	void *data, *data_end;

	if (floor_parse(ctx, &p) != PARSE_OK || p.key.family != XLB_AF_INET)
		return XDP_PASS;
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(struct iphdr) + sizeof(struct ethhdr) + sizeof(struct iphdr) > data_end)
		return XDP_DROP;
	__builtin_memcpy(data, data + sizeof(struct iphdr), sizeof(struct ethhdr));
	/* The outer header as the balancer writes it (encap.h): the floor
	 * gets every saving found for the balancer's encapsulation. */
	encap_ipv4_hdr(data + sizeof(struct ethhdr), p.ip_len, p.tos, 0, 0, p.key.dst[0], p.key.src[0]);
	return XDP_TX;
}

/* xlb_floor_lookup is the dsr floor plus one flow-table lookup that hits:
 * the least an established flow costs. */
SEC("xdp")
int xlb_floor_lookup(struct xdp_md *ctx)
{
	struct packet p = {};

	if (floor_parse(ctx, &p) != PARSE_OK)
		return XDP_PASS;
	if (!bpf_map_lookup_elem(&bench_flows, &p.key))
		return XDP_PASS;
	return floor_mac_swap(ctx);
}

/* xlb_floor_insert is the dsr floor plus one flow-table insert: the least a
 * remembered new flow costs (with a new flow per run, a full table evicts). */
SEC("xdp")
int xlb_floor_insert(struct xdp_md *ctx)
{
	struct flow f = { .backend_id = 1 };
	struct packet p = {};

	if (floor_parse(ctx, &p) != PARSE_OK)
		return XDP_PASS;
	if (bpf_map_update_elem(&bench_flows, &p.key, &f, BPF_ANY))
		return XDP_DROP;
	return floor_mac_swap(ctx);
}
