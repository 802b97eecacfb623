//go:build linux

package bpf_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
	"github.com/xlbproject/xlb/test/privileged"
)

// TestSYNFloodKeepsEstablishedFlows: with the flow-insert cap (what
// xdp.flow_insert_limit sets), a SYN flood from many sources into a small
// flow table is still forwarded but leaves the established flows' entries
// in place; without the cap the same flood evicts them (the control case,
// which shows the flood is big enough to matter).
func TestSYNFloodKeepsEstablishedFlows(t *testing.T) {
	privileged.Require(t)
	for _, c := range []struct {
		name     string
		limit    uint64
		wantKept bool
	}{
		{"insert-cap-100-established-kept", 100, true},
		{"no-cap-established-evicted", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := lbtest.NewWithFlowTable(t, 2048)
			var bes []netip.Addr
			for i := 1; i <= 3; i++ {
				bes = append(bes, lbtest.Backend4(i))
			}
			env.AddService(t, lbtest.ServiceSpec{Service: maps.Service{ServiceKey: maps.ServiceKey{VIP: vip4, Port: 80, Proto: maps.ProtoTCP}, ID: 1}, Backends: bes, FirstID: 1})
			if err := env.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, MaxNewFlowsPerCPU: c.limit}); err != nil {
				t.Fatal(err)
			}
			const established = 40
			var frames [][]byte
			for i := range established {
				frames = append(frames, pkt.MustBuild(t, tcp4(client4, uint16(20000+i), vip4, 80, "S")))
			}
			for i := range 6000 {
				src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
				frames = append(frames, pkt.MustBuild(t, tcp4(src, uint16(1024+i), vip4, 80, "S")))
			}
			// All on one CPU: the table's LRU lists (and the cap) are per CPU,
			// so a flood spread over CPUs might not reach the established
			// entries' list, and the control case would prove nothing.
			err := env.Host.Do(func() error {
				var set unix.CPUSet
				set.Set(0)
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					return err
				}
				for i, f := range frames {
					act, err := env.Objs.XlbLb.Run(&ebpf.RunOptions{Data: f, DataOut: make([]byte, len(f)+64),
						Context: xdpMD{DataEnd: uint32(len(f)), IngressIfindex: uint32(env.Link.Index)}})
					if err != nil {
						return err
					}
					if act != xdpTX {
						return fmt.Errorf("SYN %d: action %s (flood SYNs are still forwarded)", i, actionNames[act])
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			kept := 0
			for i := range established {
				k := maps.FlowKey{Src: netip.AddrPortFrom(client4, uint16(20000+i)), Dst: netip.AddrPortFrom(vip4, 80), Proto: maps.ProtoTCP}
				if _, err := env.Maps.LookupFlow(k); err == nil {
					kept++
				}
			}
			skipped := env.Stat(t, "flow_insert_skipped")
			t.Logf("established entries kept %d of %d, inserts skipped %d", kept, established, skipped)
			if c.wantKept && (kept != established || skipped == 0) {
				t.Errorf("with the cap: %d of %d established entries kept, %d inserts skipped", kept, established, skipped)
			}
			if !c.wantKept && kept == established {
				t.Errorf("without the cap the flood evicted nothing: the test no longer floods the table")
			}
		})
	}
}
