package maps

import (
	"net/netip"
	"testing"
)

// TestHashFlowSpreads: the flow hash names a flow's bucket (its low bits),
// Maglev slot (modulo the table's prime) and tag; flows that differ in one
// field only (a client's ports, or the clients of one subnet) must spread
// over all of them as random values would.
func TestHashFlowSpreads(t *testing.T) {
	vip := netip.MustParseAddrPort("10.0.0.100:443")
	cases := map[string]func(i int) netip.AddrPort{
		"one client's source ports": func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), uint16(i))
		},
		"a /16 of clients, one port": func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 40000)
		},
		"IPv6 clients of one /64": func(i int) netip.AddrPort {
			a := netip.MustParseAddr("2001:db8::").As16()
			a[14], a[15] = byte(i>>8), byte(i)
			return netip.AddrPortFrom(netip.AddrFrom16(a), 40000)
		},
	}
	const n, buckets, slots = 1 << 16, 4096, 65537
	for name, client := range cases {
		t.Run(name, func(t *testing.T) {
			dst := vip
			if client(0).Addr().Is6() {
				dst = netip.MustParseAddrPort("[fd00::100]:443")
			}
			perBucket := make([]int, buckets)
			perBackend := make([]int, 9)
			var ones [32]int
			seen := map[uint32]bool{}
			for i := range n {
				h := HashFlow(client(i), dst, ProtoTCP)
				perBucket[h&(buckets-1)]++
				perBackend[h%slots%9]++
				for b := range ones {
					ones[b] += int(h >> b & 1)
				}
				seen[h] = true
			}
			// 16 a bucket on average; random values put at most about 35 in
			// the fullest of 4096 buckets.
			lo, hi := n, 0
			for _, c := range perBucket {
				lo, hi = min(lo, c), max(hi, c)
			}
			if hi > 40 || lo < 1 {
				t.Errorf("buckets hold %d..%d flows, want about 16 each", lo, hi)
			}
			for i, c := range perBackend {
				if c < n/9*9/10 || c > n/9*11/10 {
					t.Errorf("backend %d of 9: %d flows, want %d±10%%", i, c, n/9)
				}
			}
			for b, c := range ones {
				if c < n*48/100 || c > n*52/100 {
					t.Errorf("bit %d set in %d of %d hashes", b, c, n)
				}
			}
			if len(seen) < n-4 {
				t.Errorf("%d distinct hashes of %d flows", len(seen), n)
			}
		})
	}
}
