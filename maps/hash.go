package maps

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// hashSeed is XLB_HASH_SEED of bpf/include/consts.h.
const hashSeed uint32 = 0x786c6221

func hashMix(h, k uint32) uint32 {
	k *= 0xcc9e2d51
	k = bits.RotateLeft32(k, 15)
	k *= 0x1b873593
	h ^= k
	h = bits.RotateLeft32(h, 13)
	return h*5 + 0xe6546b64
}

func hashFinal(h, n uint32) uint32 {
	h ^= n
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// words returns an address as the kernel's four words, loaded in native
// order from network-order bytes (IPv4 in the first word).
func words(a netip.Addr) [4]uint32 {
	var w [4]uint32
	if a.Is4() {
		b := a.As4()
		w[0] = binary.NativeEndian.Uint32(b[:])
		return w
	}
	b := a.As16()
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[i*4:])
	}
	return w
}

func port16(p uint16) uint32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return uint32(binary.NativeEndian.Uint16(b[:]))
}

// HashFlow is the data plane's 5-tuple hash (hash_flow in bpf/include/hash.h).
func HashFlow(src, dst netip.AddrPort, proto uint8) uint32 {
	h := hashSeed
	for _, w := range words(src.Addr()) {
		h = hashMix(h, w)
	}
	for _, w := range words(dst.Addr()) {
		h = hashMix(h, w)
	}
	h = hashMix(h, port16(src.Port())<<16|port16(dst.Port()))
	h = hashMix(h, uint32(proto))
	return hashFinal(h, 40)
}

// HashSource is the data plane's source-address hash (hash_src), for ip_hash.
func HashSource(src netip.Addr) uint32 {
	h := hashSeed
	for _, w := range words(src) {
		h = hashMix(h, w)
	}
	return hashFinal(h, 16)
}

// Pick answers "which backend would this new flow get": the slot of a
// service's Maglev table the data plane indexes for it.
func Pick(table []uint32, ipHash bool, src, dst netip.AddrPort, proto uint8) uint32 {
	if len(table) == 0 {
		return 0
	}
	h := HashFlow(src, dst, proto)
	if ipHash {
		h = HashSource(src.Addr())
	}
	return table[h%uint32(len(table))]
}
