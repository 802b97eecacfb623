//go:build linux

package bpf_test

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
)

// TestIPIPOuterFollowsInner: the outer header's IP identification and DF
// are the inner packet's.
func TestIPIPOuterFollowsInner(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		name string
		id   uint16
		df   bool
	}{
		{"ipv4-tcp-df-id-copied-TX", 0x1234, true},
		{"ipv4-tcp-no-df-id-copied-TX", 0xbeef, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := tcp4(client4, 40300, vip4, 80, "S")
			s.IPID, s.DF = c.id, c.df
			act, out := w.run(t, pkt.MustBuild(t, s))
			wantAction(t, act, xdpTX)
			d, err := pkt.Decode(out)
			if err != nil || d.Outer4 == nil {
				t.Fatalf("decode: %v", err)
			}
			if d.Outer4.Id != c.id {
				t.Errorf("outer id %#x, want %#x", d.Outer4.Id, c.id)
			}
			if got := d.Outer4.Flags&layers.IPv4DontFragment != 0; got != c.df {
				t.Errorf("outer DF %v, want %v", got, c.df)
			}
			ip, _ := pkt.IPBytes(out)
			if err := pkt.CheckIPv4Header(ip); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestIPIPSourcePrefix: with xdp.ipip_source_prefix each flow gets its own
// outer source inside the prefix (the same one for every packet of the
// flow), so a backend's RSS spreads flows; without it, the balancer's own.
func TestIPIPSourcePrefix(t *testing.T) {
	w := newWorld(t)
	prefix := netip.MustParsePrefix("172.16.0.0/16")
	if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, Src4Prefix: prefix}); err != nil {
		t.Fatal(err)
	}
	src := func(sport uint16, flags string) netip.Addr {
		act, out := w.run(t, pkt.MustBuild(t, tcp4(client4, sport, vip4, 80, flags)))
		wantAction(t, act, xdpTX)
		d, err := pkt.Decode(out)
		if err != nil || d.Outer4 == nil {
			t.Fatalf("decode: %v", err)
		}
		ip, _ := pkt.IPBytes(out)
		if err := pkt.CheckIPv4Header(ip); err != nil {
			t.Error(err)
		}
		a, _ := netip.AddrFromSlice(d.Outer4.SrcIP.To4())
		return a
	}
	seen := map[netip.Addr]bool{}
	for i := range 32 {
		sport := uint16(45000 + i)
		a := src(sport, "S")
		if !prefix.Contains(a) {
			t.Fatalf("outer source %s outside %s", a, prefix)
		}
		if b := src(sport, "A"); b != a {
			t.Errorf("flow %d: outer source %s, then %s", sport, a, b)
		}
		seen[a] = true
	}
	if len(seen) < 28 {
		t.Errorf("32 flows got %d outer sources, want (nearly) one each", len(seen))
	}
	if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6}); err != nil {
		t.Fatal(err)
	}
	if a := src(45000, "A"); a != lbtest.LBAddr4 {
		t.Errorf("without a prefix: outer source %s, want %s", a, lbtest.LBAddr4)
	}
	for _, bad := range []string{"172.16.0.1/32", "fd00::/64"} {
		if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src4Prefix: netip.MustParsePrefix(bad)}); err == nil {
			t.Errorf("prefix %s accepted", bad)
		}
	}
}
