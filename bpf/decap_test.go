//go:build linux

package bpf_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/loader"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
	"github.com/xlbproject/xlb/test/privileged"
)

// loadDecap loads the decap program allowing the balancer's addresses of
// the program-test world (the outer source of its encapsulated packets).
func loadDecap(t *testing.T) *bpf.DecapObjects {
	t.Helper()
	return loadDecapAllow(t, []netip.Prefix{netip.PrefixFrom(lbtest.LBAddr4, 32), netip.MustParsePrefix("fd00::/64")})
}

func loadDecapAllow(t *testing.T, allow []netip.Prefix) *bpf.DecapObjects {
	t.Helper()
	privileged.Require(t)
	var o bpf.DecapObjects
	if err := bpf.LoadDecapObjects(&o, nil); err != nil {
		t.Fatalf("load decap: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	if err := loader.FillDecapAllow(o.DecapAllow4, o.DecapAllow6, allow); err != nil {
		t.Fatal(err)
	}
	return &o
}

func decapStat(t *testing.T, o *bpf.DecapObjects, s int) uint64 {
	t.Helper()
	var per []bpf.DecapStat
	if err := o.DecapStats.Lookup(uint32(s), &per); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range per {
		n += c.Packets
	}
	return n
}

// Indexes of enum xlb_decap_stat.
const (
	decapStatIPIP      = 0
	decapStatIP6IP6    = 1
	decapStatMalformed = 3
	decapStatDenied    = 4
	decapStatFrag      = 5
)

// TestDecapOnlyAllowedSources: an IPIP/IP6IP6 packet from an outer source
// outside -allow reaches the kernel untouched (and is counted), and so does
// an outer fragment, even from an allowed source.
func TestDecapOnlyAllowedSources(t *testing.T) {
	w := newWorld(t)
	enc4 := func(t *testing.T) []byte {
		act, out := w.run(t, pkt.MustBuild(t, tcp4(client4, 40100, vip4, 80, "S")))
		wantAction(t, act, xdpTX)
		return out[:len(pkt.MustBuild(t, tcp4(client4, 40100, vip4, 80, "S")))+20]
	}
	enc6 := func(t *testing.T) []byte {
		in := pkt.MustBuild(t, tcp4(client6, 40100, vip6, 80, "S"))
		act, out := w.run(t, in)
		wantAction(t, act, xdpTX)
		return out[:len(in)+40]
	}
	others := []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("fd09::/64")}
	for _, c := range []struct {
		name  string
		allow []netip.Prefix
		frame func(t *testing.T) []byte
		stat  int
	}{
		{"ipip-source-not-allowed-PASS", others, enc4, decapStatDenied},
		{"ip6ip6-source-not-allowed-PASS", others, enc6, decapStatDenied},
		{"ipip-empty-allow-list-PASS", nil, enc4, decapStatDenied},
		{"ipip-outer-fragment-MF-PASS", nil, func(t *testing.T) []byte {
			return pkt.Mutate(enc4(t), func(b []byte) { b[14+6] |= 0x20 })
		}, decapStatFrag},
		{"ipip-outer-fragment-offset-PASS", nil, func(t *testing.T) []byte {
			return pkt.Mutate(enc4(t), func(b []byte) { b[14+7] = 1 })
		}, decapStatFrag},
	} {
		t.Run(c.name, func(t *testing.T) {
			allow := c.allow
			if c.stat == decapStatFrag {
				allow = loader.AllowAny
			}
			d := loadDecapAllow(t, allow)
			frame := c.frame(t)
			act, out := runDecap(t, d, frame)
			wantAction(t, act, xdpPass)
			if !bytes.Equal(out[:len(frame)], frame) {
				t.Errorf("passed packet was modified")
			}
			if n := decapStat(t, d, c.stat); n != 1 {
				t.Errorf("counter %s = %d, want 1", loader.DecapStatNames[c.stat], n)
			}
		})
	}
}

func runDecap(t *testing.T, o *bpf.DecapObjects, frame []byte) (uint32, []byte) {
	t.Helper()
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	ret, err := o.XlbDecap.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	return ret, opts.DataOut[:len(opts.DataOut)]
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
		// Options are stripped with the header, but this one's length
		// cannot hold them and an inner header.
		{"ipip-outer-options-truncated-DROP", withOptions, xdpDrop},
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

// TestDecapOuterHeaders: the outer header is read for what it is. IPv4
// options (another encapsulator's) are stripped with the header; a header
// length under 20 bytes, or an outer length that runs past the frame, is
// malformed and dropped, not decapsulated on a guess; an IPv6 fragment of
// an encapsulated packet is an outer fragment, passed and counted so.
func TestDecapOuterHeaders(t *testing.T) {
	w := newWorld(t)
	in4 := pkt.MustBuild(t, tcp4(client4, 40200, vip4, 80, "S"))
	act, enc4 := w.run(t, in4)
	wantAction(t, act, xdpTX)
	enc4 = enc4[:len(in4)+20]
	in6 := pkt.MustBuild(t, tcp4(client6, 40200, vip6, 80, "S"))
	act, enc6 := w.run(t, in6)
	wantAction(t, act, xdpTX)
	enc6 = enc6[:len(in6)+40]

	// The outer IPv4 header with 4 bytes of options (NOP NOP NOP EOL).
	opts := append([]byte{}, enc4[:34]...)
	opts[14] = 0x46
	tot := int(enc4[16])<<8 | int(enc4[17]) + 4
	opts[16], opts[17] = byte(tot>>8), byte(tot)
	opts = append(opts, 1, 1, 1, 0)
	opts = append(opts, enc4[34:]...)
	// An IPv6 fragment header between the outer header and the inner one.
	frag6 := append([]byte{}, enc6[:54]...)
	frag6[14+6] = 44
	plen := int(enc6[18])<<8 | int(enc6[19]) + 8
	frag6[18], frag6[19] = byte(plen>>8), byte(plen)
	frag6 = append(frag6, 41, 0, 0, 1, 0, 0, 0, 7)
	frag6 = append(frag6, enc6[54:]...)

	for _, c := range []struct {
		name  string
		frame []byte
		act   uint32
		stat  int
		inner []byte // the decapsulated packet, after the MACs
	}{
		{"ipip-outer-options-decap-PASS", opts, xdpPass, decapStatIPIP, in4[12:]},
		{"ipip-outer-ihl-4-DROP", pkt.Mutate(enc4, func(b []byte) { b[14] = 0x44 }), xdpDrop, decapStatMalformed, nil},
		{"ipip-outer-length-past-the-frame-DROP", pkt.Mutate(enc4, func(b []byte) { b[16], b[17] = 0, 200 }), xdpDrop, decapStatMalformed, nil},
		{"ipip-outer-length-under-the-inner-header-DROP", pkt.Mutate(enc4, func(b []byte) { b[16], b[17] = 0, 30 }), xdpDrop, decapStatMalformed, nil},
		{"ip6ip6-outer-fragment-PASS", frag6, xdpPass, decapStatFrag, nil},
		{"ip6ip6-outer-length-past-the-frame-DROP", pkt.Mutate(enc6, func(b []byte) { b[18], b[19] = 1, 0 }), xdpDrop, decapStatMalformed, nil},
		{"ip6ip6-decap-PASS", enc6, xdpPass, decapStatIP6IP6, in6[12:]},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := loadDecap(t)
			act, out := runDecap(t, d, c.frame)
			wantAction(t, act, c.act)
			if n := decapStat(t, d, c.stat); n != 1 {
				t.Errorf("counter %s = %d, want 1", loader.DecapStatNames[c.stat], n)
			}
			switch {
			case c.inner != nil:
				if got := out[12 : 12+len(c.inner)]; !bytes.Equal(got, c.inner) {
					t.Errorf("decapsulated:\n got %x\nwant %x", got, c.inner)
				}
			case act == xdpPass && !bytes.Equal(out[:len(c.frame)], c.frame):
				t.Errorf("passed packet was modified")
			}
		})
	}
}
