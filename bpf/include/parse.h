/* parse.h: turns a frame into one struct packet: the flow it belongs to and where
 * its headers are. Every read is bounds-checked; anything inconsistent is
 * PARSE_MALFORMED and never forwarded. */
#ifndef XLB_PARSE_H
#define XLB_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "libbpf/bpf_endian.h"
#include "consts.h"
#include "structs.h"

enum parse_result {
	PARSE_OK = 0,
	PARSE_PASS,      /* not ours to handle: let the kernel have it */
	PARSE_MALFORMED, /* garbage: drop */
};

enum frag_kind {
	FRAG_NONE = 0,
	FRAG_FIRST, /* offset 0, more fragments: has ports, remember the choice */
	FRAG_LATER, /* offset > 0: no ports, follow the first fragment */
};

/* ICMP and ICMPv6 share this shape; the uapi headers for them drag in libc. */
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__sum16 check;
	__be32 rest; /* for too-big errors: the next-hop MTU */
};

#define XLB_ICMP_DEST_UNREACH 3
#define XLB_ICMP_FRAG_NEEDED 4
#define XLB_ICMPV6_PKT_TOOBIG 2

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct packet {
	struct flow_key key; /* for ICMP errors: the quoted flow, client to VIP */
	__u32 ip_len;        /* bytes of the IP packet that encapsulation wraps */
	__u32 frag_id;       /* IPv4 identification (also names a fragmented datagram) */
	__u8 vlan;           /* one 802.1Q/802.1ad tag present */
	__u8 tcp_flags;
	__u8 frag;           /* enum frag_kind */
	__u8 icmp;           /* an ICMP too-big about a VIP flow */
	__u8 tos;            /* IPv4 TOS / IPv6 traffic class */
	__u8 df;             /* IPv4 don't-fragment */
	__u16 pad;
};

/* parse_l4 reads ports (and TCP flags) of a fixed L4 header that must lie
 * inside both the frame and the IP packet's own length (room). */
static __always_inline int parse_l4(void *l4, void *data_end, __u32 room, __u8 proto,
				    struct packet *p)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || room < sizeof(*th))
			return PARSE_MALFORMED;
		if (th->doff < 5)
			return PARSE_MALFORMED;
		p->key.sport = th->source;
		p->key.dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		return PARSE_OK;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || room < sizeof(*uh))
			return PARSE_MALFORMED;
		p->key.sport = uh->source;
		p->key.dport = uh->dest;
		return PARSE_OK;
	}
	return PARSE_PASS;
}

/* parse_quoted_ports reads the ports of a flow quoted inside an ICMP error and
 * stores them swapped: the quoted packet went VIP -> client, the flow key is
 * client -> VIP. */
static __always_inline int parse_quoted_ports(void *l4, void *data_end, __u8 proto, struct packet *p)
{
	__be16 *ports = l4;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return PARSE_PASS;
	if ((void *)(ports + 2) > data_end)
		return PARSE_MALFORMED;
	p->key.sport = ports[1];
	p->key.dport = ports[0];
	p->key.proto = proto;
	return PARSE_OK;
}

static __always_inline int parse_icmp4(void *l4, void *data_end, struct packet *p)
{
	struct icmp_hdr *ic = l4;
	struct iphdr *in;

	if ((void *)(ic + 1) > data_end)
		return PARSE_MALFORMED;
	if (ic->type != XLB_ICMP_DEST_UNREACH || ic->code != XLB_ICMP_FRAG_NEEDED)
		return PARSE_PASS;
	in = (void *)(ic + 1);
	if ((void *)(in + 1) > data_end)
		return PARSE_MALFORMED;
	if (in->version != 4 || in->ihl < 5)
		return PARSE_MALFORMED;
	p->icmp = 1;
	p->key.src[0] = in->daddr;
	p->key.dst[0] = in->saddr;
	return parse_quoted_ports((void *)in + in->ihl * 4, data_end, in->protocol, p);
}

static __always_inline int parse_ipv4(void *data, void *data_end, struct iphdr *iph, struct packet *p)
{
	__u32 hlen, tot;
	__u16 frag_off;
	void *l4;

	if ((void *)(iph + 1) > data_end)
		return PARSE_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return PARSE_MALFORMED;
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen || (void *)iph + tot > data_end)
		return PARSE_MALFORMED;
	l4 = (void *)iph + hlen;

	p->key.family = XLB_AF_INET;
	p->key.proto = iph->protocol;
	p->key.src[0] = iph->saddr;
	p->key.dst[0] = iph->daddr;
	p->ip_len = tot;
	p->tos = iph->tos;
	frag_off = bpf_ntohs(iph->frag_off);
	p->df = !!(frag_off & XLB_IP_DF);
	p->frag_id = iph->id;

	if (frag_off & XLB_IP_OFFMASK) {
		/* No L4 header here: what follows the IP header is the middle of a
		 * datagram, so it must not be read as ports. */
		if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
			return PARSE_PASS;
		p->frag = FRAG_LATER;
		return PARSE_OK;
	}
	if (frag_off & XLB_IP_MF)
		p->frag = FRAG_FIRST;
	if (iph->protocol == IPPROTO_ICMP)
		return p->frag ? PARSE_PASS : parse_icmp4(l4, data_end, p);
	return parse_l4(l4, data_end, tot - hlen, iph->protocol, p);
}

static __always_inline void copy_addr6(__be32 *dst, const struct in6_addr *src)
{
	dst[0] = src->in6_u.u6_addr32[0];
	dst[1] = src->in6_u.u6_addr32[1];
	dst[2] = src->in6_u.u6_addr32[2];
	dst[3] = src->in6_u.u6_addr32[3];
}

static __always_inline int parse_icmp6(void *l4, void *data_end, struct packet *p)
{
	struct icmp_hdr *ic = l4;
	struct ipv6hdr *in;

	if ((void *)(ic + 1) > data_end)
		return PARSE_MALFORMED;
	if (ic->type != XLB_ICMPV6_PKT_TOOBIG)
		return PARSE_PASS;
	in = (void *)(ic + 1);
	if ((void *)(in + 1) > data_end)
		return PARSE_MALFORMED;
	if (in->version != 6)
		return PARSE_MALFORMED;
	p->icmp = 1;
	copy_addr6(p->key.src, &in->daddr);
	copy_addr6(p->key.dst, &in->saddr);
	/* A quoted packet with extension headers is not ours to guess at. */
	return parse_quoted_ports(in + 1, data_end, in->nexthdr, p);
}

static __always_inline int parse_ipv6(void *data_end, struct ipv6hdr *ip6, struct packet *p)
{
	__u32 tot;

	if ((void *)(ip6 + 1) > data_end)
		return PARSE_MALFORMED;
	if (ip6->version != 6)
		return PARSE_MALFORMED;
	tot = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	if ((void *)ip6 + tot > data_end)
		return PARSE_MALFORMED;

	p->key.family = XLB_AF_INET6;
	p->key.proto = ip6->nexthdr;
	copy_addr6(p->key.src, &ip6->saddr);
	copy_addr6(p->key.dst, &ip6->daddr);
	p->ip_len = tot;
	p->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);

	/* Extension headers (fragments included) go to the kernel: the balancer
	 * never guesses where the ports are. */
	if (ip6->nexthdr == IPPROTO_ICMPV6)
		return parse_icmp6(ip6 + 1, data_end, p);
	return parse_l4(ip6 + 1, data_end, tot - sizeof(*ip6), ip6->nexthdr, p);
}

static __always_inline int parse_packet(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return PARSE_MALFORMED;
		proto = vh->proto;
		l3 = vh + 1;
		p->vlan = 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(data, data_end, l3, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(data_end, l3, p);
	return PARSE_PASS;
}

#endif
