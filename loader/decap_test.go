//go:build linux

package loader

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/bpf"
)

// TestDecapStatNamesFollowEnum keeps DecapStatNames as long as enum xlb_decap_stat.
func TestDecapStatNamesFollowEnum(t *testing.T) {
	spec, err := bpf.LoadDecap()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("xlb_decap_stat", &e); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"XLB_DECAP_IPIP": "decap_ipip", "XLB_DECAP_IP6IP6": "decap_ip6ip6", "XLB_DECAP_PASS": "pass_not_encapsulated",
		"XLB_DECAP_MALFORMED": "drop_malformed", "XLB_DECAP_DENIED": "pass_source_not_allowed", "XLB_DECAP_FRAG": "pass_outer_fragment",
	}
	var got []string
	for _, v := range e.Values {
		if v.Name == "XLB_DECAP_MAX" {
			continue
		}
		l, ok := want[v.Name]
		if !ok {
			t.Fatalf("enum value %s has no label here: add it to DecapStatNames and this test", v.Name)
		}
		got = append(got, l)
	}
	if !slices.Equal(got, DecapStatNames) {
		t.Errorf("DecapStatNames\n got %v\nwant %v", DecapStatNames, got)
	}
}

// hosts is n single hosts counted up from first, comma-separated.
func hosts(first string, n int) string {
	a := netip.MustParseAddr(first)
	var s []string
	for range n {
		s = append(s, a.String())
		a = a.Next()
	}
	return strings.Join(s, ",")
}

// TestParseAllowLimit refuses more prefixes of a family than the program
// holds, before anything is attached.
func TestParseAllowLimit(t *testing.T) {
	for _, c := range []struct {
		in  string
		err bool
	}{
		{in: hosts("10.1.0.1", DecapAllowMax)},
		{in: hosts("10.1.0.1", DecapAllowMax+1), err: true},
		{in: hosts("10.1.0.1", DecapAllowMax) + "," + hosts("fd00::1", DecapAllowMax)},
		{in: hosts("10.1.0.1", 1) + "," + hosts("fd00::1", DecapAllowMax+1), err: true},
	} {
		got, _, err := ParseAllow(c.in)
		if (err != nil) != c.err {
			t.Errorf("ParseAllow(%d prefixes): err %v, want error %v", strings.Count(c.in, ",")+1, err, c.err)
		}
		if err == nil && len(got) != strings.Count(c.in, ",")+1 {
			t.Errorf("ParseAllow: %d prefixes of %d", len(got), strings.Count(c.in, ",")+1)
		}
	}
}

// TestDecapAllowMaxFollowsProgram keeps DecapAllowMax at the allow maps' size.
func TestDecapAllowMaxFollowsProgram(t *testing.T) {
	spec, err := bpf.LoadDecap()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"decap_allow4", "decap_allow6"} {
		if got := spec.Maps[name].MaxEntries; got != DecapAllowMax {
			t.Errorf("%s holds %d entries, DecapAllowMax is %d", name, got, DecapAllowMax)
		}
	}
}

func TestParseAllow(t *testing.T) {
	for _, c := range []struct {
		in, want string
		any      bool
		err      bool
	}{
		{in: "10.0.0.2/32", want: "10.0.0.2/32"},
		{in: "10.0.0.0/24, fd00::/64", want: "10.0.0.0/24,fd00::/64"},
		{in: "10.0.0.7", want: "10.0.0.7/32"},
		{in: "10.0.0.7/16", want: "10.0.0.0/16"},
		{in: "any", want: "0.0.0.0/0,::/0", any: true},
		{in: "", err: true},
		{in: ",", err: true},
		{in: "10.0.0.0/24,any", err: true},
		{in: "nonsense", err: true},
	} {
		got, any, err := ParseAllow(c.in)
		if (err != nil) != c.err {
			t.Errorf("ParseAllow(%q): err %v", c.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if !c.err && (strings.Join(s, ",") != c.want || any != c.any) {
			t.Errorf("ParseAllow(%q) = %v %v, want %s %v", c.in, s, any, c.want, c.any)
		}
	}
}

func TestAttachDecapNeedsAllowList(t *testing.T) {
	if err := AttachDecap("eth0", ModeGeneric, nil, nil); err == nil || !strings.Contains(err.Error(), "AllowAny") {
		t.Errorf("AttachDecap without an allow list: %v", err)
	}
}

// TestDecapStatsOfAttachedProgram reads the counters of the program on an
// interface after it saw a packet from a source outside its allow list.
func TestDecapStatsOfAttachedProgram(t *testing.T) {
	backend, _ := pair(t)
	if err := backend.Do(func() error { _, err := DecapStats("eth0"); return err }); err == nil {
		t.Error("DecapStats without a program: no error")
	}
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}
	if err := backend.Do(func() error { return AttachDecap("eth0", ModeGeneric, allow, nil) }); err != nil {
		t.Fatal(err)
	}
	id, _ := xdpOf(t, backend, "eth0")
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	pinfo, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	mapIDs, _ := pinfo.MapIDs()
	if len(mapIDs) == 0 {
		t.Fatal("decap program uses no maps")
	}
	for _, mid := range mapIDs {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			t.Fatal(err)
		}
		checkMapBTF(t, m, fmt.Sprintf("id %d", mid))
		m.Close()
	}
	// An IPIP packet from 10.9.9.9, outside the allow list.
	frame := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(frame[12:], 0x0800)
	copy(frame[14:], []byte{0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 4, 0, 0, 10, 9, 9, 9, 10, 0, 0, 3})
	copy(frame[34:], []byte{0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 10, 0, 0, 100})
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil || ret != 2 {
		t.Fatalf("run attached decap: %d %v", ret, err)
	}
	var st []DecapStat
	if err := backend.Do(func() error { var err error; st, err = DecapStats("eth0"); return err }); err != nil {
		t.Fatal(err)
	}
	if len(st) != len(DecapStatNames) {
		t.Fatalf("stats %v", st)
	}
	// The interface is live: the kernel's own packets (neighbour discovery)
	// may be counted as not encapsulated.
	for _, s := range st {
		switch s.Name {
		case "pass_source_not_allowed":
			if s.Packets != 1 {
				t.Errorf("%s = %d packets, want 1", s.Name, s.Packets)
			}
		case "decap_ipip", "decap_ip6ip6":
			if s.Packets != 0 {
				t.Errorf("%s = %d packets, want 0", s.Name, s.Packets)
			}
		}
	}
	_ = backend.Do(func() error { return DetachDecap("eth0") })
}

// TestAttachHealthProbes puts xlb_hc at an interface's egress, once, and
// Close takes it away.
func TestAttachHealthProbes(t *testing.T) {
	lb, _ := pair(t)
	d := load(t, Options{NoPin: true})
	query := func() int {
		t.Helper()
		var n int
		if err := lb.Do(func() error {
			iface, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			res, err := link.QueryPrograms(link.QueryOptions{Target: iface.Attrs().Index, Attach: ebpf.AttachTCXEgress})
			if err != nil {
				return err
			}
			n = len(res.Programs)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 2 {
		if err := lb.Do(func() error { return d.AttachHealthProbes("eth0") }); err != nil {
			t.Fatal(err)
		}
	}
	if n := query(); n != 1 || !d.HealthProbesAttached() {
		t.Fatalf("%d programs at eth0 egress, attached %v", n, d.HealthProbesAttached())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if n := query(); n != 0 {
		t.Errorf("%d programs at eth0 egress after Close", n)
	}
}
