//go:build linux

package bpf_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
)

const (
	tcActOK       = 0
	tcActRedirect = 7
)

// runHC runs the egress health-probe program on frame with an skb mark.
func (w *world) runHC(t *testing.T, frame []byte, mark uint32) (uint32, []byte) {
	t.Helper()
	ctx := make([]byte, 192) // struct __sk_buff
	binary.NativeEndian.PutUint32(ctx[8:], mark)
	binary.NativeEndian.PutUint32(ctx[40:], uint32(w.Link.Index))
	var (
		ret uint32
		out []byte
	)
	err := w.Host.Do(func() error {
		opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256), Context: ctx}
		var err error
		ret, err = w.Objs.XlbHc.Run(opts)
		out = opts.DataOut
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ret, out
}

// TestHealthProbeFollowsForwarding: a probe marked for a backend leaves
// encapsulated from the balancer's address (ipip) or unchanged (dsr, for
// the kernel to send to the backend's MAC); unmarked packets are untouched.
func TestHealthProbeFollowsForwarding(t *testing.T) {
	w := newWorld(t)
	probe4 := pkt.MustBuild(t, tcp4(lbtest.LBAddr4, 50000, vip4, 80, "S"))
	probe6 := pkt.MustBuild(t, tcp4(lbtest.LBAddr6, 50000, vip6, 80, "S"))
	dsr4 := pkt.MustBuild(t, tcp4(lbtest.LBAddr4, 50000, dsrVIP4, 80, "S"))

	t.Run("unmarked-OK", func(t *testing.T) {
		act, out := w.runHC(t, probe4, 0)
		if act != tcActOK || !bytes.Equal(out, probe4) {
			t.Fatalf("verdict %d, changed %v", act, !bytes.Equal(out, probe4))
		}
	})
	for _, c := range []struct {
		name string
		in   []byte
		id   uint32
	}{
		{"ipv4-ipip-probe-encapsulated-REDIRECT", probe4, 1},
		{"ipv6-ip6ip6-probe-encapsulated-REDIRECT", probe6, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			act, out := w.runHC(t, c.in, maps.HealthProbeMark(c.id))
			if act != tcActRedirect {
				t.Fatalf("verdict %d, want redirect", act)
			}
			d, err := pkt.Decode(out)
			if err != nil {
				t.Fatal(err)
			}
			inner, err := pkt.InnerIP(out)
			if err != nil {
				t.Fatal(err)
			}
			inIP, _ := pkt.IPBytes(c.in)
			if !bytes.Equal(inner, inIP) {
				t.Errorf("inner packet changed")
			}
			switch {
			case d.Outer4 != nil:
				ip, _ := pkt.IPBytes(out)
				if d.Outer4.SrcIP.String() != lbtest.LBAddr4.String() || d.Outer4.DstIP.String() != w.addrOf[c.id].String() {
					t.Errorf("outer %s -> %s, want %s -> %s", d.Outer4.SrcIP, d.Outer4.DstIP, lbtest.LBAddr4, w.addrOf[c.id])
				}
				if err := pkt.CheckIPv4Header(ip); err != nil {
					t.Error(err)
				}
			case d.Outer6 != nil:
				if d.Outer6.SrcIP.String() != lbtest.LBAddr6.String() || d.Outer6.DstIP.String() != w.addrOf[c.id].String() {
					t.Errorf("outer %s -> %s", d.Outer6.SrcIP, d.Outer6.DstIP)
				}
			default:
				t.Fatal("no outer header")
			}
		})
	}
	t.Run("ipv4-dsr-probe-unchanged-REDIRECT", func(t *testing.T) {
		act, out := w.runHC(t, dsr4, maps.HealthProbeMark(10))
		if act != tcActRedirect || !bytes.Equal(out[:len(dsr4)], dsr4) {
			t.Fatalf("verdict %d, changed %v", act, !bytes.Equal(out[:len(dsr4)], dsr4))
		}
	})
	t.Run("marked-unknown-backend-SHOT", func(t *testing.T) {
		if act, _ := w.runHC(t, probe4, maps.HealthProbeMark(999)); act != 2 {
			t.Fatalf("verdict %d, want TC_ACT_SHOT", act)
		}
	})
}
