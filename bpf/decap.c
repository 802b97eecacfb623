//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* decap.c: runs on a backend. Strips the IPIP or IP6IP6 header xlb added and
 * hands the inner packet to the stack, for hosts without a tunnel device. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "include/libbpf/bpf_helpers.h"
#include "include/libbpf/bpf_endian.h"
#include "include/consts.h"
#include "include/parse.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_DECAP_MAX);
	__type(key, enum xlb_decap_stat); /* also carries the enum to Go through BTF */
	__type(value, struct stat);
} decap_stats SEC(".maps");

/* decap_strip moves the L2 header `outer` bytes forward over the outer IP
 * header, then drops the bytes in front of it. */
static __always_inline int decap_strip(struct xdp_md *ctx, int vlan, __u32 outer)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (vlan) {
		if (data + outer + sizeof(struct ethhdr) + sizeof(struct vlan_hdr) > data_end)
			return -1;
		__builtin_memcpy(data + outer, data, sizeof(struct ethhdr) + sizeof(struct vlan_hdr));
	} else {
		if (data + outer + sizeof(struct ethhdr) > data_end)
			return -1;
		__builtin_memcpy(data + outer, data, sizeof(struct ethhdr));
	}
	return bpf_xdp_adjust_head(ctx, outer) ? -1 : 0;
}

static __always_inline enum xlb_decap_stat decap_process(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__be16 proto;
	int vlan = 0;

	if ((void *)(eth + 1) > data_end)
		return XLB_DECAP_PASS;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return XLB_DECAP_PASS;
		proto = vh->proto;
		l3 = vh + 1;
		vlan = 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *o = l3, *in;

		if ((void *)(o + 1) > data_end || o->protocol != XLB_IPPROTO_IPIP)
			return XLB_DECAP_PASS;
		/* xlb writes no options; an outer header with them is not xlb's. */
		if (o->version != 4 || o->ihl != 5)
			return XLB_DECAP_PASS;
		in = (void *)(o + 1);
		if ((void *)(in + 1) > data_end || in->version != 4)
			return XLB_DECAP_MALFORMED;
		return decap_strip(ctx, vlan, sizeof(*o)) ? XLB_DECAP_MALFORMED : XLB_DECAP_IPIP;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *o = l3, *in;

		if ((void *)(o + 1) > data_end || o->nexthdr != XLB_IPPROTO_IPV6)
			return XLB_DECAP_PASS;
		in = (void *)(o + 1);
		if ((void *)(in + 1) > data_end || in->version != 6)
			return XLB_DECAP_MALFORMED;
		return decap_strip(ctx, vlan, sizeof(*o)) ? XLB_DECAP_MALFORMED : XLB_DECAP_IP6IP6;
	}
	return XLB_DECAP_PASS;
}

SEC("xdp")
int xlb_decap(struct xdp_md *ctx)
{
	__u64 bytes = (void *)(long)ctx->data_end - (void *)(long)ctx->data;
	__u32 s = decap_process(ctx);
	struct stat *st = bpf_map_lookup_elem(&decap_stats, &s);

	if (st) {
		st->packets++;
		st->bytes += bytes;
	}
	return s == XLB_DECAP_MALFORMED ? XDP_DROP : XDP_PASS;
}

/* xlb_pass does nothing. Attached to the peer of a veth that runs xlb in
 * native mode, it makes the peer accept XDP_TX frames (a veth drops them
 * when its peer has no XDP program). */
SEC("xdp")
int xlb_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
