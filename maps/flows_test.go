//go:build linux

package maps

import (
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/bpf"
)

// The bucket index is the Maglev flow hash of the kernel's key.
func TestFlowHashIsHashFlow(t *testing.T) {
	for _, k := range []FlowKey{
		{Src: netip.MustParseAddrPort("192.0.2.10:40000"), Dst: netip.MustParseAddrPort("10.0.0.100:80"), Proto: ProtoTCP},
		{Src: netip.MustParseAddrPort("[2001:db8::10]:53000"), Dst: netip.MustParseAddrPort("[fd00::100]:53"), Proto: ProtoUDP},
	} {
		if got, want := flowHash(k.kernel()), HashFlow(k.Src, k.Dst, k.Proto); got != want {
			t.Errorf("%v: flowHash %#x, HashFlow %#x", k, got, want)
		}
		if got := FlowBucket(k, 1<<10); got != HashFlow(k.Src, k.Dst, k.Proto)&(1<<10-1) {
			t.Errorf("%v: bucket %d", k, got)
		}
	}
}

func TestFlowStoreTakesOwnThenEmptyThenOldest(t *testing.T) {
	key := func(port uint16) bpf.LbFlowKey {
		return FlowKey{Src: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port), Dst: netip.MustParseAddrPort("10.0.0.1:80"), Proto: ProtoTCP}.kernel()
	}
	var b bpf.LbFlowBucket
	for i := range bpf.FlowWays {
		flowStore(&b, key(uint16(i)), bpf.LbFlow{BackendId: uint32(i)}, uint32(10+i))
	}
	for i := range bpf.FlowWays {
		if w := flowFind(&b, key(uint16(i))); w != i {
			t.Fatalf("flow %d in way %d", i, w)
		}
	}
	// Its own way: no eviction.
	flowStore(&b, key(2), bpf.LbFlow{BackendId: 22}, 5)
	if w := flowFind(&b, key(2)); w != 2 || b.Ways[2].Flow.BackendId != 22 {
		t.Fatalf("rewritten flow in way %d: %+v", w, b.Ways[w])
	}
	// Full: the oldest way (now way 2, time 5) goes.
	flowStore(&b, key(100), bpf.LbFlow{}, 50)
	if w := flowFind(&b, key(100)); w != 2 {
		t.Errorf("new flow in way %d, want the oldest, 2", w)
	}
	if flowFind(&b, key(0)) != 0 || flowFind(&b, key(1)) != 1 || flowFind(&b, key(3)) != 3 {
		t.Errorf("other ways moved: %+v", b)
	}
}

func TestFlowBuckets(t *testing.T) {
	for _, c := range []struct {
		entries uint32
		cpus    int
		want    uint32
	}{
		{1 << 20, 2, 1 << 17}, {1 << 20, 3, 1 << 17}, {1 << 20, 1, 1 << 18}, {1000, 2, 128}, {4, 8, 1}, {0, 2, 1}, {1 << 26, 64, 1 << 18},
	} {
		if got := bpf.FlowBuckets(c.entries, c.cpus); got != c.want {
			t.Errorf("FlowBuckets(%d, %d) = %d, want %d", c.entries, c.cpus, got, c.want)
		}
	}
}
