//go:build linux

package bpf_test

import (
	"bytes"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/test/pkt"
)

func loadDecap(t *testing.T) *bpf.DecapObjects {
	t.Helper()
	var o bpf.DecapObjects
	if err := bpf.LoadDecapObjects(&o, nil); err != nil {
		t.Fatalf("load decap: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	return &o
}

func runDecap(t *testing.T, o *bpf.DecapObjects, frame []byte) (uint32, []byte) {
	t.Helper()
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	ret, err := o.XlbDecap.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	return ret, opts.DataOut
}

// TestDecapRoundTrip feeds the load balancer's own output to the decap
// program: the backend must get the client's packet back, byte for byte.
func TestDecapRoundTrip(t *testing.T) {
	w := newWorld(t)
	d := loadDecap(t)
	vlan := tcp4(client4, 40001, vip4, 80, "S")
	vlan.VLAN = 7
	for _, c := range []struct {
		name string
		spec pkt.Spec
	}{
		{"ipv4-tcp-ipip-decap-PASS", tcp4(client4, 40000, vip4, 80, "S")},
		{"ipv4-udp-ipip-decap-PASS", udp(client4, 5353, vip4, 53)},
		{"ipv6-tcp-ip6ip6-decap-PASS", tcp4(client6, 40000, vip6, 80, "S")},
		{"ipv4-vlan-ipip-decap-PASS", vlan},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := pkt.MustBuild(t, c.spec)
			act, enc := w.run(t, in)
			wantAction(t, act, xdpTX)
			act, out := runDecap(t, d, enc)
			wantAction(t, act, xdpPass)
			if len(out) != len(in) {
				t.Fatalf("decapsulated %d bytes, original %d", len(out), len(in))
			}
			if !bytes.Equal(out[:12], enc[:12]) {
				t.Errorf("MACs changed by decap")
			}
			if !bytes.Equal(out[12:], in[12:]) {
				t.Errorf("decapsulated packet differs from the client's:\n got %x\nwant %x", out[12:], in[12:])
			}
			if err := pkt.CheckL4Checksum(out); err != nil {
				t.Errorf("checksum: %v", err)
			}
		})
	}
}

func TestDecapLeavesOthersAlone(t *testing.T) {
	d := loadDecap(t)
	plain := pkt.MustBuild(t, tcp4(client4, 40000, vip4, 80, "S"))
	// An IPIP packet whose inner header is cut short.
	ipip := append([]byte{}, plain[:14]...)
	ipip = append(ipip, 0x45, 0, 0, 30, 0, 0, 0, 0, 64, 4, 0, 0, 10, 0, 0, 1, 10, 0, 0, 11)
	ipip = append(ipip, 0x45, 0, 0, 0, 0, 0)
	withOptions := pkt.Mutate(ipip, func(b []byte) { b[14] = 0x46 })
	for _, c := range []struct {
		name  string
		frame []byte
		act   uint32
	}{
		{"ipv4-tcp-plain-PASS", plain, xdpPass},
		{"ipv6-tcp-plain-PASS", pkt.MustBuild(t, tcp4(client6, 40000, vip6, 80, "S")), xdpPass},
		{"ipip-truncated-inner-DROP", ipip, xdpDrop},
		{"ipip-outer-options-PASS", withOptions, xdpPass},
	} {
		t.Run(c.name, func(t *testing.T) {
			act, out := runDecap(t, d, c.frame)
			wantAction(t, act, c.act)
			if act == xdpPass && !bytes.Equal(out, c.frame) {
				t.Errorf("passed packet was modified")
			}
		})
	}
}
