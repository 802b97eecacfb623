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
	var k [40]byte
	a, b := src.Addr().As16(), dst.Addr().As16()
	family := byte(6)
	if src.Addr().Is4() {
		a, b = [16]byte{}, [16]byte{}
		s4, d4 := src.Addr().As4(), dst.Addr().As4()
		copy(a[:], s4[:])
		copy(b[:], d4[:])
		family = 4
	}
	copy(k[0:], a[:])
	copy(k[16:], b[:])
	binary.BigEndian.PutUint16(k[32:], src.Port())
	binary.BigEndian.PutUint16(k[34:], dst.Port())
	k[36], k[37] = proto, family
	return hashKey(&k)
}

// hashKey is hash_flow of a flow key as the kernel lays it out.
func hashKey(k *[40]byte) uint32 {
	w := func(i int) uint64 { return binary.NativeEndian.Uint64(k[i*8:]) }
	x := uint64(hashSeed)
	x += w(0)*0x9e3779b97f4a7c15 + w(1)*0xbf58476d1ce4e5b9 + w(2)*0x94d049bb133111eb +
		w(3)*0xd6e8feb86659fd93 + w(4)*0xa0761d6478bd642f
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return uint32(x)
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
