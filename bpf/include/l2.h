/* l2.h: the Ethernet addresses of a frame, written with word-wide loads and
 * stores (a byte-wise copy of the 12 bytes took 24 instructions). x86 and
 * arm64 let XDP programs access packet data unaligned; map values and the
 * stack they are read from here are 8-aligned. */
#ifndef XLB_L2_H
#define XLB_L2_H

#include <linux/bpf.h>
#include <linux/if_ether.h>

/* l2_set_macs writes macs (the destination MAC, then the source MAC: the
 * Ethernet header's order; 8-aligned) into the frame's first 12 bytes. */
static __always_inline int l2_set_macs(struct xdp_md *ctx, const __u8 *macs)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + ETH_ALEN * 2 > data_end)
		return -1;
	*(__u64 *)data = *(const __u64 *)macs;
	*(__u32 *)(data + 8) = *(const __u32 *)(macs + 8);
	return 0;
}

/* l2_swap_macs exchanges the frame's destination and source MACs. */
static __always_inline int l2_swap_macs(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 lo, dst, src;
	__u32 hi;

	if (data + ETH_ALEN * 2 > data_end)
		return -1;
	/* Little-endian: lo holds dst[0..5] src[0..1], hi src[2..5]. */
	lo = *(__u64 *)data;
	hi = *(__u32 *)(data + 8);
	dst = lo & 0xffffffffffffull;
	src = (lo >> 48) | ((__u64)hi << 16);
	*(__u64 *)data = src | (dst << 48);
	*(__u32 *)(data + 8) = (__u32)(dst >> 16);
	return 0;
}

#endif
