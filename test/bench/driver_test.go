//go:build linux

package bench

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/test/pkt"
	"github.com/xlbproject/xlb/test/privileged"
)

// TestCycleOrder: the driver's cycle visits each of its flows once per turn,
// in the order they were primed without scramble, and in one with no
// constant stride with it (what the "flows in turn" rows time).
func TestCycleOrder(t *testing.T) {
	privileged.Require(t)
	spec, err := bpf.LoadBench()
	if err != nil {
		t.Fatal(err)
	}
	spec.Maps[bpf.BenchMapBenchFlows].MaxEntries = 1024
	var bo bpf.BenchObjects
	if err := spec.LoadAndAssign(&bo, nil); err != nil {
		t.Fatal(err)
	}
	defer bo.Close()
	if err := bo.BenchTarget.Put(uint32(0), bo.XlbFloorDriver); err != nil {
		t.Fatal(err)
	}
	frame := pkt.MustBuild(t, pkt.Spec{Src: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("10.0.0.100"),
		SrcPort: 40000, DstPort: 80, Proto: "tcp", TCPFlags: "A"})
	const flows = 1 << 16 // the "flows in turn" rows' cycle
	order := func(scramble uint32) []int {
		in := bpf.BenchBenchPkt{Len: uint32(len(frame)), SportOff: 14 + 20, SaddrOff: 14 + 12 + 2, Vary: 1, Mask: flows - 1, Scramble: scramble}
		copy(in.Data[:], frame)
		if err := bo.BenchInput.Put(uint32(0), &in); err != nil {
			t.Fatal(err)
		}
		var got []int
		out := make([]byte, len(frame))
		for range flows {
			ret, err := bo.XlbBenchDriver.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
			if err != nil || ret != xdpTX {
				t.Fatalf("driver: verdict %d, %v", ret, err)
			}
			// The driver writes seq's low 15 bits into the port (from
			// 1024) and the rest into the source address's last two bytes.
			port, host := int(binary.BigEndian.Uint16(out[14+20:])), int(binary.BigEndian.Uint16(out[14+12+2:]))
			got = append(got, port-1024+host<<15)
		}
		return got
	}

	for i, f := range order(0) {
		if f != i {
			t.Fatalf("without scramble, run %d visited flow %d, want the primed order", i, f)
		}
	}
	got := order(1)
	seen := map[int]bool{}
	strides := map[int]int{}
	for i, f := range got {
		if f < 0 || f >= flows || seen[f] {
			t.Fatalf("scrambled turn visits flow %d at run %d: out of the cycle or twice", f, i)
		}
		seen[f] = true
		if i > 0 {
			strides[(f-got[i-1]+flows)%flows]++
		}
	}
	// A stride prefetcher follows a stride it sees repeat; no stride may be
	// common (in order, one stride is all of them).
	for d, n := range strides {
		if n > flows/100 {
			t.Errorf("scrambled turn: stride %d between neighbours %d times of %d", d, n, flows-1)
		}
	}
}
