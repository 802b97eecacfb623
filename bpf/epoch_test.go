//go:build linux

package bpf_test

import (
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
)

// TestEpochMoveKeepsFlows: after a write that moves the epoch (the
// settings, unchanged) and a next hop that must be looked up again, an
// established flow of every kind of service is checked again on its next
// packet and keeps its backend: it is neither re-selected nor counted as a
// new flow. (Maglev would hand a re-selected flow the same backend, so only
// the counters tell.)
func TestEpochMoveKeepsFlows(t *testing.T) {
	for _, c := range []struct {
		name  string
		svc   uint32
		vip   netip.Addr
		dsr   bool
		proto string
	}{
		{"ipv4-tcp-ipip-TX", 1, vip4, false, "tcp"},
		{"ipv4-udp-ipip-TX", 2, vip4, false, "udp"},
		{"ipv4-tcp-dsr-TX", 4, dsrVIP4, true, "tcp"},
		{"ipv4-tcp-ip-hash-TX", 6, hashVIP4, false, "tcp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			port := uint16(80)
			if c.proto == "udp" {
				port = 53
			}
			first := tcp4(client4, 42600, c.vip, port, "S")
			if c.proto == "udp" {
				first = udp(client4, 42600, c.vip, port)
			}
			act, _ := w.run(t, pkt.MustBuild(t, first))
			wantAction(t, act, xdpTX)
			next := first
			if c.proto == "tcp" {
				next.TCPFlags = "A"
			}
			id := w.want(c.svc, first, c.svc == 6)
			in := pkt.MustBuild(t, next)
			for i := range 3 {
				if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6}); err != nil {
					t.Fatal(err)
				}
				if err := w.Maps.InvalidateNexthop(id); err != nil {
					t.Fatal(err)
				}
				act, out := w.run(t, in)
				wantAction(t, act, xdpTX)
				if c.dsr {
					w.checkDSR(t, in, out, id)
				} else {
					w.checkEncap(t, in, out, id)
				}
				if got := w.Stat(t, "flow_reselect"); got != 0 {
					t.Fatalf("after epoch move %d: flow_reselect = %d, want 0", i, got)
				}
			}
			k, err := w.Maps.ServiceCounters(c.svc)
			if err != nil {
				t.Fatal(err)
			}
			if k.NewFlows != 1 {
				t.Errorf("service new flows = %d, want 1", k.NewFlows)
			}
		})
	}
}
