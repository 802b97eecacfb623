//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* decap.c: runs on a backend. Strips the IPIP or IP6IP6 header xlb added and
 * hands the inner packet to the stack, for hosts without a tunnel device.
 * Only packets from the balancers (outer source inside the allow lists) are
 * stripped: anything else would let whoever reaches the backend hand it a
 * packet with any inner source, past its firewall. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "include/libbpf/bpf_helpers.h"
#include "include/libbpf/bpf_endian.h"
#include "include/consts.h"
#include "include/structs.h"
#include "include/parse.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Never called, so never loaded: it keeps enum xlb_decap_stat in the
 * object's BTF, for bpf2go's Go constants and the test that keeps
 * DecapStatNames in step with it. */
__attribute__((noinline)) int xlb_decap_stat_btf(enum xlb_decap_stat s)
{
	return s;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_DECAP_MAX);
	__type(key, __u32); /* an enum xlb_decap_stat: the kernel takes an array's BTF key only as an integer */
	__type(value, struct stat);
} decap_stats SEC(".maps");

/* Outer sources whose packets are decapsulated; `-allow any` is 0.0.0.0/0 and ::/0. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XLB_DECAP_ALLOW_ENTRIES);
	__type(key, struct lpm4_key);
	__type(value, __u8);
} decap_allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XLB_DECAP_ALLOW_ENTRIES);
	__type(key, struct lpm6_key);
	__type(value, __u8);
} decap_allow6 SEC(".maps");

/* decap_strip drops the `outer` bytes of the outer IP header and puts the
 * L2 header back in front of the inner packet. The L2 header is copied out
 * first and written back at a fixed offset: outer varies (IPv4 options),
 * and packet accesses at a variable offset are what the verifier refuses. */
static __always_inline int decap_strip(struct xdp_md *ctx, int vlan, __u32 outer)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 l2[sizeof(struct ethhdr) + sizeof(struct vlan_hdr)];

	/* The frame holds at least L2 and an outer and an inner IP header. */
	if (data + sizeof(l2) > data_end)
		return -1;
	__builtin_memcpy(l2, data, sizeof(l2));
	if (bpf_xdp_adjust_head(ctx, outer))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(l2) > data_end)
		return -1;
	if (vlan)
		__builtin_memcpy(data, l2, sizeof(struct ethhdr) + sizeof(struct vlan_hdr));
	else
		__builtin_memcpy(data, l2, sizeof(struct ethhdr));
	return 0;
}

static __always_inline enum xlb_decap_stat decap_v4(struct xdp_md *ctx, struct iphdr *o, void *data_end, int vlan,
						    __u32 avail)
{
	struct lpm4_key k = { .prefixlen = 32 };
	struct iphdr *in;
	__u32 hlen, tot;

	if ((void *)(o + 1) > data_end || o->protocol != XLB_IPPROTO_IPIP)
		return XLB_DECAP_PASS;
	/* A header the kernel would drop too. */
	if (o->version != 4 || o->ihl < 5)
		return XLB_DECAP_MALFORMED;
	/* A fragment holds part of an inner packet: stripping each piece would
	 * hand the stack garbage. The kernel reassembles (or drops) it. */
	if (o->frag_off & bpf_htons(XLB_IP_MF | XLB_IP_OFFMASK))
		return XLB_DECAP_FRAG;
	k.addr = o->saddr;
	if (!bpf_map_lookup_elem(&decap_allow4, &k))
		return XLB_DECAP_DENIED;
	/* xlb writes no options; another encapsulator may, and they go with
	 * the header. Parsing never guesses: an outer length that does not
	 * hold an inner header, or runs past the frame, is garbage. */
	hlen = o->ihl * 4;
	tot = bpf_ntohs(o->tot_len);
	if (tot < hlen + sizeof(*in) || tot > avail)
		return XLB_DECAP_MALFORMED;
	in = (void *)o + hlen;
	if ((void *)(in + 1) > data_end || in->version != 4)
		return XLB_DECAP_MALFORMED;
	return decap_strip(ctx, vlan, hlen) ? XLB_DECAP_MALFORMED : XLB_DECAP_IPIP;
}

/* The IPv6 fragment header (RFC 8200 4.5). */
struct decap_frag6 {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

static __always_inline enum xlb_decap_stat decap_v6(struct xdp_md *ctx, struct ipv6hdr *o, void *data_end, int vlan,
						    __u32 avail)
{
	struct lpm6_key k = { .prefixlen = 128 };
	struct ipv6hdr *in;
	__u32 plen;

	if ((void *)(o + 1) > data_end)
		return XLB_DECAP_PASS;
	if (o->nexthdr == XLB_IPPROTO_FRAGMENT) {
		struct decap_frag6 *fh = (void *)(o + 1);

		/* A piece of an encapsulated packet: the kernel reassembles it. */
		if ((void *)(fh + 1) > data_end)
			return XLB_DECAP_MALFORMED;
		if (fh->nexthdr == XLB_IPPROTO_IPV6 || fh->nexthdr == XLB_IPPROTO_IPIP)
			return XLB_DECAP_FRAG;
		return XLB_DECAP_PASS;
	}
	if (o->nexthdr != XLB_IPPROTO_IPV6)
		return XLB_DECAP_PASS;
	__builtin_memcpy(k.addr, &o->saddr, sizeof(k.addr));
	if (!bpf_map_lookup_elem(&decap_allow6, &k))
		return XLB_DECAP_DENIED;
	plen = bpf_ntohs(o->payload_len);
	if (plen < sizeof(*in) || plen + sizeof(*o) > avail)
		return XLB_DECAP_MALFORMED;
	in = (void *)(o + 1);
	if ((void *)(in + 1) > data_end || in->version != 6)
		return XLB_DECAP_MALFORMED;
	return decap_strip(ctx, vlan, sizeof(*o)) ? XLB_DECAP_MALFORMED : XLB_DECAP_IP6IP6;
}

/* decap_process judges a frame of len bytes. */
static __always_inline enum xlb_decap_stat decap_process(struct xdp_md *ctx, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__u32 l2 = sizeof(*eth);
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
		l2 += sizeof(*vh);
		vlan = 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return decap_v4(ctx, l3, data_end, vlan, len - l2);
	if (proto == bpf_htons(ETH_P_IPV6))
		return decap_v6(ctx, l3, data_end, vlan, len - l2);
	return XLB_DECAP_PASS;
}

SEC("xdp")
int xlb_decap(struct xdp_md *ctx)
{
	__u64 bytes = (void *)(long)ctx->data_end - (void *)(long)ctx->data;
	__u32 s = decap_process(ctx, bytes);
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
