/* hash.h: the flow hash (murmur3 over 32-bit words, fixed seed). maps/ has a Go
 * twin so userspace can answer "which backend gets this flow"; a test keeps
 * them equal. */
#ifndef XLB_HASH_H
#define XLB_HASH_H

#include <linux/types.h>
#include "consts.h"
#include "structs.h"

static __always_inline __u32 hash_rotl(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 hash_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51u;
	k = hash_rotl(k, 15);
	k *= 0x1b873593u;
	h ^= k;
	h = hash_rotl(h, 13);
	return h * 5 + 0xe6546b64u;
}

static __always_inline __u32 hash_final(__u32 h, __u32 len)
{
	h ^= len;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* hash_src hashes the source address only: ip_hash services. */
static __always_inline __u32 hash_src(const struct flow_key *k)
{
	__u32 h = XLB_HASH_SEED;

	h = hash_mix(h, k->src[0]);
	h = hash_mix(h, k->src[1]);
	h = hash_mix(h, k->src[2]);
	h = hash_mix(h, k->src[3]);
	return hash_final(h, 16);
}

/* hash_flow hashes the 5-tuple: the key's five double words, each times an
 * odd constant (so no word's value can cancel out on its own), summed, then
 * murmur3's 64-bit finalizer. The five products are independent, so the CPU
 * computes them at once; a per-word murmur chain cost 20 ns per packet here.
 * Words are taken as they lie in memory, so the Go twin reads them in native
 * byte order too. */
static __always_inline __u32 hash_flow(const struct flow_key *k)
{
	const __u64 *w = (const void *)k;
	__u64 x = XLB_HASH_SEED;

	x += w[0] * 0x9e3779b97f4a7c15ull + w[1] * 0xbf58476d1ce4e5b9ull + w[2] * 0x94d049bb133111ebull +
	     w[3] * 0xd6e8feb86659fd93ull + w[4] * 0xa0761d6478bd642full;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (__u32)x;
}

#endif
