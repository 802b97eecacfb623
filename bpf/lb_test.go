//go:build linux

package bpf_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
	"github.com/xlbproject/xlb/test/privileged"
)

const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

var actionNames = map[uint32]string{0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}

var (
	client4  = netip.MustParseAddr("192.0.2.10")
	client6  = netip.MustParseAddr("2001:db8::10")
	vip4     = netip.MustParseAddr("10.0.0.100")
	vip6     = netip.MustParseAddr("fd00::100")
	dsrVIP4  = netip.MustParseAddr("10.0.0.101")
	dsrVIP6  = netip.MustParseAddr("fd00::101")
	hashVIP4 = netip.MustParseAddr("10.0.0.102")
	farVIP4  = netip.MustParseAddr("10.0.0.104")
	rlVIP4   = netip.MustParseAddr("10.0.0.105")
	nnVIP4   = netip.MustParseAddr("10.0.0.106")
	emptyVIP = netip.MustParseAddr("10.0.0.107")
	farBE    = netip.MustParseAddr("10.1.0.5")
	noNeigh  = netip.MustParseAddr("10.0.0.77")
)

// world is the program-test environment with a fixed set of services.
type world struct {
	*lbtest.Env
	tables map[uint32][]uint32 // service id -> Maglev table
	addrOf map[uint32]netip.Addr
	macOf  map[uint32]net.HardwareAddr
}

func newWorld(t *testing.T) *world {
	t.Helper()
	privileged.Require(t)
	w := &world{Env: lbtest.New(t), tables: map[uint32][]uint32{}, addrOf: map[uint32]netip.Addr{}, macOf: map[uint32]net.HardwareAddr{}}
	tcp, udp := maps.ProtoTCP, maps.ProtoUDP
	add := func(id uint32, vip netip.Addr, port uint16, proto uint8, mod func(*maps.Service), first uint32, idx []int, v6 bool) {
		s := maps.Service{ServiceKey: maps.ServiceKey{VIP: vip, Port: port, Proto: proto}, ID: id}
		if mod != nil {
			mod(&s)
		}
		var addrs []netip.Addr
		for j, i := range idx {
			a := lbtest.Backend4(i)
			if v6 {
				a = lbtest.Backend6(i)
			}
			addrs = append(addrs, a)
			w.addrOf[first+uint32(j)] = a
			w.macOf[first+uint32(j)] = lbtest.BackendMAC(i)
		}
		w.tables[id] = w.AddService(t, lbtest.ServiceSpec{Service: s, Backends: addrs, FirstID: first})
	}
	dsr := func(s *maps.Service) { s.DSR = true }
	add(1, vip4, 80, tcp, nil, 1, []int{1, 2, 3}, false)
	add(2, vip4, 53, udp, nil, 4, []int{1, 2, 3}, false)
	add(3, vip6, 80, tcp, nil, 7, []int{1, 2, 3}, true)
	add(4, dsrVIP4, 80, tcp, dsr, 10, []int{4, 5, 6}, false)
	add(5, dsrVIP6, 443, tcp, dsr, 13, []int{4, 5, 6}, true)
	add(6, hashVIP4, 80, tcp, func(s *maps.Service) { s.IPHash = true }, 16, []int{1, 2, 3}, false)
	add(8, vip6, 53, udp, nil, 20, []int{1, 2, 3}, true)
	add(9, rlVIP4, 80, tcp, func(s *maps.Service) { s.Rate, s.Per, s.Burst = 1, time.Minute, 3 }, 23, []int{1}, false)

	// A backend behind a gateway, one with no neighbour entry, and a
	// service with no table at all.
	w.tables[7] = w.AddService(t, lbtest.ServiceSpec{Service: maps.Service{ServiceKey: maps.ServiceKey{VIP: farVIP4, Port: 80, Proto: tcp}, ID: 7}, Backends: []netip.Addr{farBE}, FirstID: 30})
	w.addrOf[30], w.macOf[30] = farBE, lbtest.GWMAC
	w.tables[10] = w.AddService(t, lbtest.ServiceSpec{Service: maps.Service{ServiceKey: maps.ServiceKey{VIP: nnVIP4, Port: 80, Proto: tcp}, ID: 10}, Backends: []netip.Addr{noNeigh}, FirstID: 31})
	if err := w.Maps.PutService(maps.Service{ServiceKey: maps.ServiceKey{VIP: emptyVIP, Port: 80, Proto: tcp}, ID: 11, RingSize: maps.DefaultRingSize}); err != nil {
		t.Fatal(err)
	}
	return w
}

// want returns the backend id the data plane must choose for a new flow.
func (w *world) want(svcID uint32, s pkt.Spec, ipHash bool) uint32 {
	proto := maps.ProtoTCP
	if s.Proto == "udp" {
		proto = maps.ProtoUDP
	}
	return maps.Pick(w.tables[svcID], ipHash, netip.AddrPortFrom(s.Src, s.SrcPort), netip.AddrPortFrom(s.Dst, s.DstPort), proto)
}

func (w *world) run(t *testing.T, frame []byte) (uint32, []byte) {
	t.Helper()
	return w.Run(t, w.Objs.XlbLb, frame)
}

func wantAction(t *testing.T, got, want uint32) {
	t.Helper()
	if got != want {
		t.Fatalf("action %s, want %s", actionNames[got], actionNames[want])
	}
}

// checkEncap asserts an IPIP/IP6IP6 output: MACs of the next hop, an outer
// header from the balancer to the backend with a valid checksum, and the
// original IP packet intact inside.
func (w *world) checkEncap(t *testing.T, in, out []byte, backendID uint32) {
	t.Helper()
	be, mac := w.addrOf[backendID], w.macOf[backendID]
	d, err := pkt.Decode(out)
	if err != nil {
		t.Fatalf("decode output: %v", err)
	}
	if !bytes.Equal(d.Eth.DstMAC, mac) || !bytes.Equal(d.Eth.SrcMAC, w.LBMAC) {
		t.Errorf("MACs %s -> %s, want %s -> %s", d.Eth.SrcMAC, d.Eth.DstMAC, w.LBMAC, mac)
	}
	inIP, err := pkt.IPBytes(in)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := pkt.InnerIP(out)
	if err != nil {
		t.Fatalf("inner packet: %v", err)
	}
	if !bytes.Equal(inner, inIP) {
		t.Errorf("inner packet changed:\n got %x\nwant %x", inner, inIP)
	}
	outerIP, _ := pkt.IPBytes(out)
	if be.Is4() {
		if d.Outer4 == nil {
			t.Fatalf("no outer IPv4 header")
		}
		o := d.Outer4
		if o.SrcIP.String() != lbtest.LBAddr4.String() || o.DstIP.String() != be.String() || o.Protocol != layers.IPProtocolIPv4 || o.TTL != 64 || o.IHL != 5 {
			t.Errorf("outer header %s -> %s proto %d ttl %d ihl %d, want %s -> %s proto 4 ttl 64 ihl 5", o.SrcIP, o.DstIP, o.Protocol, o.TTL, o.IHL, lbtest.LBAddr4, be)
		}
		if int(o.Length) != len(inIP)+20 {
			t.Errorf("outer length %d, want %d", o.Length, len(inIP)+20)
		}
		if err := pkt.CheckIPv4Header(outerIP); err != nil {
			t.Errorf("outer checksum: %v", err)
		}
	} else {
		if d.Outer6 == nil {
			t.Fatalf("no outer IPv6 header")
		}
		o := d.Outer6
		if o.SrcIP.String() != lbtest.LBAddr6.String() || o.DstIP.String() != be.String() || o.NextHeader != layers.IPProtocolIPv6 || o.HopLimit != 64 {
			t.Errorf("outer header %s -> %s next %d hops %d, want %s -> %s next 41 hops 64", o.SrcIP, o.DstIP, o.NextHeader, o.HopLimit, lbtest.LBAddr6, be)
		}
		if int(o.Length) != len(inIP) {
			t.Errorf("outer payload length %d, want %d", o.Length, len(inIP))
		}
	}
	if err := pkt.CheckL4Checksum(out); err != nil {
		t.Errorf("inner L4 checksum: %v", err)
	}
	if len(out) != len(in)+len(outerIP)-len(inIP) {
		t.Errorf("output %d bytes, want %d", len(out), len(in)+len(outerIP)-len(inIP))
	}
}

// checkDSR asserts an L2 DSR output: only the MACs changed.
func (w *world) checkDSR(t *testing.T, in, out []byte, backendID uint32) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("output %d bytes, want %d", len(out), len(in))
	}
	if !bytes.Equal(out[0:6], w.macOf[backendID]) || !bytes.Equal(out[6:12], w.LBMAC) {
		t.Errorf("MACs %x -> %x, want %s -> %s", out[6:12], out[0:6], w.LBMAC, w.macOf[backendID])
	}
	if !bytes.Equal(out[12:], in[12:]) {
		t.Errorf("bytes after the MACs changed")
	}
}

// backendOf returns which backend an encapsulated output went to.
func (w *world) backendOf(t *testing.T, out []byte) netip.Addr {
	t.Helper()
	d, err := pkt.Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outer4 != nil {
		a, _ := netip.AddrFromSlice(d.Outer4.DstIP.To4())
		return a
	}
	a, _ := netip.AddrFromSlice(d.Outer6.DstIP)
	return a
}

func tcp4(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags string) pkt.Spec {
	return pkt.Spec{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: "tcp", TCPFlags: flags, DF: src.Is4()}
}

func udp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) pkt.Spec {
	return pkt.Spec{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: "udp"}
}

// TestForward is one fixture per forwarding case: input packet, verdict, and
// the bytes of the output that matter.
func TestForward(t *testing.T) {
	w := newWorld(t)
	vlan := tcp4(client4, 40001, vip4, 80, "S")
	vlan.VLAN = 42
	vlan6 := tcp4(client6, 40001, vip6, 80, "S")
	vlan6.VLAN = 43
	opts := tcp4(client4, 40002, vip4, 80, "S")
	opts.IPv4Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}} // router alert

	cases := []struct {
		name   string
		spec   pkt.Spec
		svc    uint32
		ipHash bool
		dsr    bool
		stat   string
	}{
		{"ipv4-tcp-syn-new-flow-ipip-TX", tcp4(client4, 40000, vip4, 80, "S"), 1, false, false, "tx"},
		{"ipv4-tcp-ack-no-flow-ipip-TX", tcp4(client4, 40010, vip4, 80, "A"), 1, false, false, "flow_miss_non_syn"},
		{"ipv4-udp-new-flow-ipip-TX", udp(client4, 5353, vip4, 53), 2, false, false, "tx"},
		{"ipv6-tcp-syn-new-flow-ip6ip6-TX", tcp4(client6, 40000, vip6, 80, "S"), 3, false, false, "tx"},
		{"ipv6-udp-new-flow-ip6ip6-TX", udp(client6, 5353, vip6, 53), 8, false, false, "tx"},
		{"ipv4-tcp-syn-dsr-TX", tcp4(client4, 40000, dsrVIP4, 80, "S"), 4, false, true, "tx"},
		{"ipv6-tcp-syn-dsr-TX", tcp4(client6, 40000, dsrVIP6, 443, "S"), 5, false, true, "tx"},
		{"ipv4-vlan-tcp-syn-ipip-TX", vlan, 1, false, false, "tx"},
		{"ipv6-vlan-tcp-syn-ip6ip6-TX", vlan6, 3, false, false, "tx"},
		{"ipv4-options-tcp-syn-ipip-TX", opts, 1, false, false, "tx"},
		{"ipv4-tcp-syn-ip-hash-TX", tcp4(client4, 40000, hashVIP4, 80, "S"), 6, true, false, "tx"},
		{"ipv4-tcp-syn-backend-via-gateway-TX", tcp4(client4, 40000, farVIP4, 80, "S"), 7, false, false, "tx"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := w.Maps.ClearStats(); err != nil {
				t.Fatal(err)
			}
			in := pkt.MustBuild(t, c.spec)
			act, out := w.run(t, in)
			wantAction(t, act, xdpTX)
			id := w.want(c.svc, c.spec, c.ipHash)
			if id == 0 {
				t.Fatal("empty table")
			}
			if c.dsr {
				w.checkDSR(t, in, out, id)
			} else {
				w.checkEncap(t, in, out, id)
			}
			if c.spec.VLAN != 0 {
				d, _ := pkt.Decode(out)
				if d.VLAN == nil || d.VLAN.VLANIdentifier != c.spec.VLAN {
					t.Errorf("VLAN tag lost: %+v", d.VLAN)
				}
			}
			if got := w.Stat(t, c.stat); got != 1 {
				t.Errorf("stat %s = %d, want 1", c.stat, got)
			}
			sc, _ := w.Maps.ServiceCounters(c.svc)
			bc, _ := w.Maps.BackendCounters(id)
			if sc.Packets != 1 || sc.Bytes != uint64(len(in)) || bc.Packets != 1 || bc.NewFlows != 1 {
				t.Errorf("counters: service %+v backend %+v, want 1 packet of %d bytes, 1 new flow", sc, bc, len(in))
			}
		})
	}
}

// TestNotForwarded covers packets that must reach the kernel untouched or be
// dropped: never forwarded on garbage.
func TestNotForwarded(t *testing.T) {
	w := newWorld(t)
	good := pkt.MustBuild(t, tcp4(client4, 40000, vip4, 80, "A"))
	good6 := pkt.MustBuild(t, tcp4(client6, 40000, vip6, 80, "A"))
	goodUDP := pkt.MustBuild(t, udp(client4, 5353, vip4, 53))
	icmpEcho := pkt.MustBuild(t, pkt.Spec{Src: client4, Dst: vip4, Proto: "icmp"})
	arp := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06}, make([]byte, 28)...)
	bigPayload := make([]byte, 1460)
	big := tcp4(client4, 40000, vip4, 80, "A")
	big.Payload = bigPayload
	big.DF = false

	cases := []struct {
		name  string
		frame []byte
		act   uint32
		stat  string
	}{
		{"ipv4-tcp-not-vip-PASS", pkt.MustBuild(t, tcp4(client4, 40000, netip.MustParseAddr("10.0.0.99"), 80, "S")), xdpPass, "pass_not_vip"},
		{"ipv4-tcp-wrong-port-PASS", pkt.MustBuild(t, tcp4(client4, 40000, vip4, 8080, "S")), xdpPass, "pass_not_vip"},
		{"ipv4-udp-to-tcp-port-PASS", pkt.MustBuild(t, udp(client4, 40000, vip4, 80)), xdpPass, "pass_not_vip"},
		{"ipv6-tcp-not-vip-PASS", pkt.MustBuild(t, tcp4(client6, 40000, netip.MustParseAddr("fd00::99"), 80, "S")), xdpPass, "pass_not_vip"},
		{"ipv4-icmp-echo-to-vip-PASS", icmpEcho, xdpPass, "pass_not_vip"},
		{"arp-PASS", arp, xdpPass, "pass_not_vip"},
		{"ipv6-extension-header-PASS", pkt.Mutate(good6, func(b []byte) { b[14+6] = 60 }), xdpPass, "pass_not_vip"},
		{"ipv4-no-neighbour-PASS", pkt.MustBuild(t, tcp4(client4, 40000, nnVIP4, 80, "S")), xdpPass, "pass_no_neigh"},
		{"ipv4-no-backend-DROP", pkt.MustBuild(t, tcp4(client4, 40000, emptyVIP, 80, "S")), xdpDrop, "drop_no_backend"},
		{"ipv4-no-df-encap-exceeds-mtu-DROP", pkt.MustBuild(t, big), xdpDrop, "drop_too_big"},
		{"ethernet-only-ipv4-type-DROP", pkt.Truncate(good, 14), xdpDrop, "drop_malformed"},
		{"ipv4-truncated-header-DROP", pkt.Truncate(good, 14+12), xdpDrop, "drop_malformed"},
		{"ipv4-ihl-below-5-DROP", pkt.Mutate(good, func(b []byte) { b[14] = 0x44 }), xdpDrop, "drop_malformed"},
		{"ipv4-version-6-in-ipv4-frame-DROP", pkt.Mutate(good, func(b []byte) { b[14] = 0x65 }), xdpDrop, "drop_malformed"},
		{"ipv4-total-length-beyond-frame-DROP", pkt.Mutate(good, func(b []byte) { b[16], b[17] = 0x05, 0xdc }), xdpDrop, "drop_malformed"},
		{"ipv4-total-length-below-header-DROP", pkt.Mutate(good, func(b []byte) { b[16], b[17] = 0, 16 }), xdpDrop, "drop_malformed"},
		{"ipv4-tcp-truncated-header-DROP", pkt.Truncate(good, 14+20+12), xdpDrop, "drop_malformed"},
		{"ipv4-tcp-header-beyond-ip-length-DROP", pkt.Mutate(good, func(b []byte) { b[16], b[17] = 0, 30 }), xdpDrop, "drop_malformed"},
		{"ipv4-tcp-doff-below-5-DROP", pkt.Mutate(good, func(b []byte) { b[14+20+12] = 0x40 }), xdpDrop, "drop_malformed"},
		{"ipv4-udp-truncated-header-DROP", pkt.Truncate(goodUDP, 14+20+6), xdpDrop, "drop_malformed"},
		{"ipv6-truncated-header-DROP", pkt.Truncate(good6, 14+30), xdpDrop, "drop_malformed"},
		{"ipv6-payload-length-beyond-frame-DROP", pkt.Mutate(good6, func(b []byte) { b[18], b[19] = 0x05, 0xdc }), xdpDrop, "drop_malformed"},
		{"ipv6-tcp-truncated-header-DROP", pkt.Truncate(good6, 14+40+10), xdpDrop, "drop_malformed"},
		{"vlan-truncated-tag-DROP", append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00}, 0, 42), xdpDrop, "drop_malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := w.Maps.ClearStats(); err != nil {
				t.Fatal(err)
			}
			act, out := w.run(t, c.frame)
			wantAction(t, act, c.act)
			if act == xdpPass && !bytes.Equal(out, c.frame) {
				t.Errorf("passed packet was modified")
			}
			if got := w.Stat(t, c.stat); got != 1 {
				t.Errorf("stat %s = %d, want 1", c.stat, got)
			}
			if tx := w.Stat(t, "tx"); tx != 0 {
				t.Errorf("forwarded %d packets", tx)
			}
		})
	}
}

// flowAcrossChange finds a client port whose flow the new table sends to a
// different backend than the old one.
func flowAcrossChange(t *testing.T, oldT, newT []uint32) pkt.Spec {
	t.Helper()
	for port := uint16(30000); port < 40000; port++ {
		s := tcp4(client4, port, vip4, 80, "S")
		src, dst := netip.AddrPortFrom(s.Src, port), netip.AddrPortFrom(s.Dst, 80)
		if maps.Pick(oldT, false, src, dst, maps.ProtoTCP) != maps.Pick(newT, false, src, dst, maps.ProtoTCP) {
			return s
		}
	}
	t.Fatal("no flow moves between the tables")
	return pkt.Spec{}
}

// tableWithBackend40 adds backend 40 to service 1 and returns the service's
// Maglev table before and after it (the new one not installed).
func (w *world) tableWithBackend40(t *testing.T) (oldT, newT []uint32) {
	t.Helper()
	oldT = w.tables[1]
	if err := w.Maps.PutBackend(maps.Backend{ID: 40, ServiceID: 1, Addr: lbtest.Backend4(7), Up: true}); err != nil {
		t.Fatal(err)
	}
	w.addrOf[40], w.macOf[40] = lbtest.Backend4(7), lbtest.BackendMAC(7)
	var mb []maps.MaglevBackend
	for _, id := range []uint32{1, 2, 3, 40} {
		mb = append(mb, maps.MaglevBackend{Key: w.addrOf[id].String(), ID: id, Weight: 1})
	}
	newT, err := maps.BuildMaglev(mb, maps.DefaultRingSize)
	if err != nil {
		t.Fatal(err)
	}
	return oldT, newT
}

func TestFlowKeptAfterTableChange(t *testing.T) {
	w := newWorld(t)
	oldT, newT := w.tableWithBackend40(t)
	syn := flowAcrossChange(t, oldT, newT)
	in := pkt.MustBuild(t, syn)
	act, out := w.run(t, in)
	wantAction(t, act, xdpTX)
	first := w.want(1, syn, false)
	w.checkEncap(t, in, out, first)

	if err := w.Maps.PutRing(1, newT); err != nil {
		t.Fatal(err)
	}
	w.tables[1] = newT
	ack := syn
	ack.TCPFlags = "A"
	in = pkt.MustBuild(t, ack)
	act, out = w.run(t, in)
	wantAction(t, act, xdpTX)
	w.checkEncap(t, in, out, first) // the flow table wins over the new table

	// A new connection on the same 5-tuple (SYN) follows the new table.
	in = pkt.MustBuild(t, syn)
	act, out = w.run(t, in)
	wantAction(t, act, xdpTX)
	if second := w.want(1, syn, false); second == first {
		t.Fatal("test flow does not move")
	} else {
		w.checkEncap(t, in, out, second)
	}
}

func TestDownBackendReselects(t *testing.T) {
	w := newWorld(t)
	syn := tcp4(client4, 41000, vip4, 80, "S")
	act, out := w.run(t, pkt.MustBuild(t, syn))
	wantAction(t, act, xdpTX)
	first := w.want(1, syn, false)
	if got := w.backendOf(t, out); got != w.addrOf[first] {
		t.Fatalf("SYN went to %s, want %s", got, w.addrOf[first])
	}

	// The health checker marks it down and rebuilds the table without it.
	if err := w.Maps.PutBackend(maps.Backend{ID: first, ServiceID: 1, Addr: w.addrOf[first], Up: false}); err != nil {
		t.Fatal(err)
	}
	var mb []maps.MaglevBackend
	for _, id := range []uint32{1, 2, 3} {
		if id != first {
			mb = append(mb, maps.MaglevBackend{Key: w.addrOf[id].String(), ID: id, Weight: 1})
		}
	}
	w.tables[1] = w.SetRing(t, 1, maps.DefaultRingSize, mb)
	if err := w.Maps.ClearStats(); err != nil {
		t.Fatal(err)
	}
	ack := syn
	ack.TCPFlags = "A"
	in := pkt.MustBuild(t, ack)
	act, out = w.run(t, in)
	wantAction(t, act, xdpTX)
	next := w.want(1, ack, false)
	if next == first {
		t.Fatal("table still names the down backend")
	}
	w.checkEncap(t, in, out, next)
	if got := w.Stat(t, "flow_reselect"); got != 1 {
		t.Errorf("flow_reselect = %d, want 1", got)
	}
	f, err := w.Maps.LookupFlow(maps.FlowKey{Src: netip.AddrPortFrom(client4, 41000), Dst: netip.AddrPortFrom(vip4, 80), Proto: maps.ProtoTCP})
	if err != nil || f.BackendID != next {
		t.Errorf("flow entry %+v (%v), want backend %d", f, err, next)
	}
}

func TestDrainedBackendKeepsFlows(t *testing.T) {
	w := newWorld(t)
	syn := tcp4(client4, 42000, vip4, 80, "S")
	act, _ := w.run(t, pkt.MustBuild(t, syn))
	wantAction(t, act, xdpTX)
	drained := w.want(1, syn, false)

	// Weight 0: out of the table, still up.
	var mb []maps.MaglevBackend
	for _, id := range []uint32{1, 2, 3} {
		wt := uint32(1)
		if id == drained {
			wt = 0
		}
		mb = append(mb, maps.MaglevBackend{Key: w.addrOf[id].String(), ID: id, Weight: wt})
	}
	w.tables[1] = w.SetRing(t, 1, maps.DefaultRingSize, mb)

	ack := syn
	ack.TCPFlags = "PA"
	in := pkt.MustBuild(t, ack)
	act, out := w.run(t, in)
	wantAction(t, act, xdpTX)
	w.checkEncap(t, in, out, drained)

	for port := uint16(43000); port < 43100; port++ {
		act, out := w.run(t, pkt.MustBuild(t, tcp4(client4, port, vip4, 80, "S")))
		wantAction(t, act, xdpTX)
		if got := w.backendOf(t, out); got == w.addrOf[drained] {
			t.Fatalf("new flow from port %d went to the drained backend", port)
		}
	}
}

func TestIPHashStableAcrossPorts(t *testing.T) {
	w := newWorld(t)
	seen := map[netip.Addr]bool{}
	for c := 1; c <= 30; c++ {
		client := netip.AddrFrom4([4]byte{198, 51, 100, byte(c)})
		var first netip.Addr
		for port := uint16(50000); port < 50020; port++ {
			act, out := w.run(t, pkt.MustBuild(t, tcp4(client, port, hashVIP4, 80, "S")))
			wantAction(t, act, xdpTX)
			got := w.backendOf(t, out)
			if port == 50000 {
				first = got
			} else if got != first {
				t.Fatalf("client %s: port %d went to %s, port 50000 to %s", client, port, got, first)
			}
		}
		seen[first] = true
	}
	if len(seen) < 2 {
		t.Errorf("30 clients all hashed to %v", seen)
	}
}

// fragments are the first and a later fragment of one UDP datagram from
// client4:sport to vip4:53 with IP id ipid.
func fragments(sport, ipid uint16) (first, later pkt.Spec) {
	first = udp(client4, sport, vip4, 53)
	first.MoreFragments, first.IPID = true, ipid
	first.Payload = make([]byte, 64)
	later = pkt.Spec{Src: client4, Dst: vip4, Proto: "udp", FragOffset: 9, IPID: ipid, Payload: make([]byte, 40)}
	return first, later
}

func TestIPv4Fragments(t *testing.T) {
	w := newWorld(t)
	first, later := fragments(6000, 0x1234)
	orphan := later
	orphan.IPID = 0x9999

	in := pkt.MustBuild(t, first)
	act, out := w.run(t, in)
	wantAction(t, act, xdpTX)
	id := w.want(2, first, false)
	w.checkEncap(t, in, out, id)

	in = pkt.MustBuild(t, later)
	act, out = w.run(t, in)
	wantAction(t, act, xdpTX)
	if got := w.backendOf(t, out); got != w.addrOf[id] {
		t.Errorf("later fragment went to %s, first to %s", got, w.addrOf[id])
	}
	inIP, _ := pkt.IPBytes(in)
	if inner, _ := pkt.InnerIP(out); !bytes.Equal(inner, inIP) {
		t.Errorf("later fragment changed inside the tunnel")
	}

	in = pkt.MustBuild(t, orphan)
	act, out = w.run(t, in)
	wantAction(t, act, xdpPass)
	if !bytes.Equal(out, in) || w.Stat(t, "pass_frag") != 1 {
		t.Errorf("orphan fragment: modified or not counted (pass_frag=%d)", w.Stat(t, "pass_frag"))
	}
}

func TestICMPTooBigFollowsFlow(t *testing.T) {
	w := newWorld(t)
	router4 := netip.MustParseAddr("10.0.0.2")
	router6 := netip.MustParseAddr("fd00::2")
	for _, tc := range []struct {
		name   string
		syn    pkt.Spec
		svc    uint32
		router netip.Addr
	}{
		{"ipv4-icmp-frag-needed-ipip-TX", tcp4(client4, 44000, vip4, 80, "S"), 1, router4},
		{"ipv6-icmp6-packet-too-big-ip6ip6-TX", tcp4(client6, 44000, vip6, 80, "S"), 3, router6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			act, _ := w.run(t, pkt.MustBuild(t, tc.syn))
			wantAction(t, act, xdpTX)
			owner := w.want(tc.svc, tc.syn, false)
			// Point the table elsewhere: the ICMP error must follow the flow, not the table.
			var mb []maps.MaglevBackend
			for id, a := range w.addrOf {
				if w.tables[tc.svc][0] != 0 && id != owner && a.Is4() == tc.syn.Src.Is4() && a.String() != w.addrOf[owner].String() {
					mb = append(mb, maps.MaglevBackend{Key: a.String(), ID: id, Weight: 1})
					break
				}
			}
			old := w.tables[tc.svc]
			w.SetRing(t, tc.svc, maps.DefaultRingSize, mb)
			t.Cleanup(func() { w.Maps.PutRing(tc.svc, old) })

			// The backend's reply VIP -> client met a small MTU on the way.
			reply := pkt.Spec{Src: tc.syn.Dst, Dst: tc.syn.Src, SrcPort: tc.syn.DstPort, DstPort: tc.syn.SrcPort, Proto: "tcp", TCPFlags: "PA", Payload: make([]byte, 1400)}
			in, err := pkt.ICMPTooBig(tc.router, 1280, reply, pkt.DefaultSrcMAC, pkt.DefaultDstMAC)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Maps.ClearStats(); err != nil {
				t.Fatal(err)
			}
			act, out := w.run(t, in)
			wantAction(t, act, xdpTX)
			w.checkEncapICMP(t, in, out, owner)
			if got := w.Stat(t, "icmp_too_big_forwarded"); got != 1 {
				t.Errorf("icmp_too_big_forwarded = %d", got)
			}
		})
	}
}

// checkEncapICMP is checkEncap without the L4 checksum check of the quoted packet.
func (w *world) checkEncapICMP(t *testing.T, in, out []byte, backendID uint32) {
	t.Helper()
	if got := w.backendOf(t, out); got != w.addrOf[backendID] {
		t.Fatalf("ICMP error went to %s, flow is on %s", got, w.addrOf[backendID])
	}
	inIP, _ := pkt.IPBytes(in)
	inner, err := pkt.InnerIP(out)
	if err != nil || !bytes.Equal(inner, inIP) {
		t.Errorf("ICMP packet changed inside the tunnel (%v)", err)
	}
	if !bytes.Equal(out[0:6], w.macOf[backendID]) {
		t.Errorf("dst MAC %x, want %s", out[0:6], w.macOf[backendID])
	}
}

func TestRateLimitNewConnections(t *testing.T) {
	w := newWorld(t)
	for i := 0; i < 3; i++ {
		act, _ := w.run(t, pkt.MustBuild(t, tcp4(client4, uint16(45000+i), rlVIP4, 80, "S")))
		wantAction(t, act, xdpTX)
	}
	act, _ := w.run(t, pkt.MustBuild(t, tcp4(client4, 45003, rlVIP4, 80, "S")))
	wantAction(t, act, xdpDrop)
	if got := w.Stat(t, "drop_rate_limit"); got != 1 {
		t.Errorf("drop_rate_limit = %d, want 1", got)
	}
	// An established flow is not a new connection: it keeps flowing.
	act, _ = w.run(t, pkt.MustBuild(t, tcp4(client4, 45000, rlVIP4, 80, "A")))
	wantAction(t, act, xdpTX)
	// Another source has its own bucket.
	act, _ = w.run(t, pkt.MustBuild(t, tcp4(netip.MustParseAddr("192.0.2.11"), 45000, rlVIP4, 80, "S")))
	wantAction(t, act, xdpTX)
}

// TestRateLimitLeavesOpenConnectionsAlone: the rate limit is on new
// connections only. Packets of TCP connections the table does not hold
// (the flood guard did not remember them, a peer balancer had them) are
// forwarded by Maglev however many there are; only SYNs are limited.
func TestRateLimitLeavesOpenConnectionsAlone(t *testing.T) {
	w := newWorld(t)
	for i := range 20 {
		act, _ := w.run(t, pkt.MustBuild(t, tcp4(client4, uint16(47000+i), rlVIP4, 80, "A")))
		wantAction(t, act, xdpTX)
	}
	if got := w.Stat(t, "drop_rate_limit"); got != 0 {
		t.Errorf("drop_rate_limit = %d after 20 packets of open connections, want 0", got)
	}
	for i := range 4 {
		act, _ := w.run(t, pkt.MustBuild(t, tcp4(client4, uint16(47100+i), rlVIP4, 80, "S")))
		if want := uint32(xdpTX); i == 3 {
			wantAction(t, act, xdpDrop)
		} else {
			wantAction(t, act, want)
		}
	}
}

func TestRSTDoesNotCreateFlow(t *testing.T) {
	w := newWorld(t)
	act, _ := w.run(t, pkt.MustBuild(t, tcp4(client4, 46000, vip4, 80, "R")))
	wantAction(t, act, xdpTX)
	_, err := w.Maps.LookupFlow(maps.FlowKey{Src: netip.AddrPortFrom(client4, 46000), Dst: netip.AddrPortFrom(vip4, 80), Proto: maps.ProtoTCP})
	if err == nil {
		t.Fatal("RST created a flow entry")
	}
}

func TestUDPFlowExpires(t *testing.T) {
	w := newWorld(t)
	if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, UDPTimeout: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	s := udp(client4, 7000, vip4, 53)
	act, _ := w.run(t, pkt.MustBuild(t, s))
	wantAction(t, act, xdpTX)
	time.Sleep(5 * time.Millisecond)
	act, _ = w.run(t, pkt.MustBuild(t, s))
	wantAction(t, act, xdpTX)
	if got := w.Stat(t, "flow_udp_expired"); got != 1 {
		t.Errorf("flow_udp_expired = %d, want 1", got)
	}
}

func TestFlowInsertCapPerCPU(t *testing.T) {
	w := newWorld(t)
	if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, MaxNewFlowsPerCPU: 5}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		act, _ := w.run(t, pkt.MustBuild(t, tcp4(client4, uint16(47000+i), vip4, 80, "S")))
		wantAction(t, act, xdpTX) // unremembered flows are still forwarded
	}
	n, err := w.Maps.CountFlows()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range n {
		total += c
	}
	skipped := w.Stat(t, "flow_insert_skipped")
	// Each CPU the test thread ran on may insert 5 within the second.
	if total+int(skipped) != 20 || total > 5*maxCPUs(t) || skipped == 0 {
		t.Errorf("flows %d, skipped %d: want 20 in all, at most 5 per CPU", total, skipped)
	}
}

// TestTooBigAnswersICMP: a packet that would not fit the path MTU once
// encapsulated is answered as a router would, so the client's path-MTU
// discovery works through the balancer.
func TestTooBigAnswersICMP(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		name    string
		spec    pkt.Spec
		mtu     uint32
		quoteIP int
	}{
		{"ipv4-tcp-df-too-big-icmp-frag-needed-TX", tcp4(client4, 40000, vip4, 80, "A"), 1500 - 20, 20},
		{"ipv6-tcp-too-big-icmp6-packet-too-big-TX", tcp4(client6, 40000, vip6, 80, "A"), 1500 - 40, 40},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.spec.Payload = make([]byte, 1461-c.quoteIP)
			in := pkt.MustBuild(t, c.spec)
			if err := w.Maps.ClearStats(); err != nil {
				t.Fatal(err)
			}
			act, out := w.run(t, in)
			wantAction(t, act, xdpTX)
			if got := w.Stat(t, "icmp_too_big_sent"); got != 1 {
				t.Errorf("icmp_too_big_sent = %d", got)
			}
			if !bytes.Equal(out[0:6], in[6:12]) || !bytes.Equal(out[6:12], in[0:6]) {
				t.Errorf("MACs not swapped: %x -> %x", out[6:12], out[0:6])
			}
			d, err := pkt.Decode(out)
			if err != nil {
				t.Fatal(err)
			}
			inIP, _ := pkt.IPBytes(in)
			quote := inIP[:c.quoteIP+8]
			if c.spec.Src.Is4() {
				if d.Outer4 == nil || d.ICMP4 == nil {
					t.Fatalf("not ICMPv4: %+v", d)
				}
				if d.Outer4.SrcIP.String() != vip4.String() || d.Outer4.DstIP.String() != client4.String() {
					t.Errorf("ICMP %s -> %s, want %s -> %s", d.Outer4.SrcIP, d.Outer4.DstIP, vip4, client4)
				}
				if d.ICMP4.TypeCode.Type() != 3 || d.ICMP4.TypeCode.Code() != 4 || uint32(d.ICMP4.Seq) != c.mtu {
					t.Errorf("ICMP type %d code %d mtu %d, want 3/4/%d", d.ICMP4.TypeCode.Type(), d.ICMP4.TypeCode.Code(), d.ICMP4.Seq, c.mtu)
				}
				ip, _ := pkt.IPBytes(out)
				if err := pkt.CheckIPv4Header(ip); err != nil {
					t.Error(err)
				}
			} else {
				if d.Outer6 == nil || d.ICMP6 == nil {
					t.Fatalf("not ICMPv6: %+v", d)
				}
				if d.Outer6.SrcIP.String() != vip6.String() || d.Outer6.DstIP.String() != client6.String() {
					t.Errorf("ICMPv6 %s -> %s", d.Outer6.SrcIP, d.Outer6.DstIP)
				}
				b := d.ICMP6.LayerPayload()
				mtu := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
				if d.ICMP6.TypeCode.Type() != 2 || mtu != c.mtu {
					t.Errorf("ICMPv6 type %d mtu %d, want 2/%d", d.ICMP6.TypeCode.Type(), mtu, c.mtu)
				}
			}
			if err := pkt.CheckL4Checksum(out); err != nil {
				t.Errorf("ICMP checksum: %v", err)
			}
			if !bytes.Equal(d.Payload, quote) {
				t.Errorf("quote\n got %x\nwant %x", d.Payload, quote)
			}
		})
	}
}

// TestTooBigAnswersRateLimited: a flood of oversized packets from one source
// gets at most the burst of ICMP answers; the rest are dropped and counted,
// and another client still gets its answer.
func TestTooBigAnswersRateLimited(t *testing.T) {
	w := newWorld(t)
	if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, ICMPRate: 1, ICMPBurst: 3}); err != nil {
		t.Fatal(err)
	}
	big := func(src netip.Addr) []byte {
		s := tcp4(src, 40000, vip4, 80, "A")
		s.Payload = make([]byte, 1461-20)
		return pkt.MustBuild(t, s)
	}
	flood := big(client4)
	var tx int
	for range 10 {
		act, _ := w.run(t, flood)
		switch act {
		case xdpTX:
			tx++
		case xdpDrop:
		default:
			t.Fatalf("action %s", actionNames[act])
		}
	}
	if tx != 3 || w.Stat(t, "icmp_too_big_sent") != 3 || w.Stat(t, "drop_icmp_rate_limit") != 7 {
		t.Errorf("answers %d (sent %d, suppressed %d), want 3 answered and 7 suppressed",
			tx, w.Stat(t, "icmp_too_big_sent"), w.Stat(t, "drop_icmp_rate_limit"))
	}
	if act, _ := w.run(t, big(netip.MustParseAddr("192.0.2.99"))); act != xdpTX {
		t.Errorf("another client's answer: action %s", actionNames[act])
	}
}

// TestRateLimitUDPIdleEntryIsNew: for UDP a new connection is a packet
// with no live entry. One of a live entry is not limited; one whose entry
// idled past the UDP timeout starts over and is.
func TestRateLimitUDPIdleEntryIsNew(t *testing.T) {
	w := newWorld(t)
	w.AddService(t, lbtest.ServiceSpec{Service: maps.Service{ServiceKey: maps.ServiceKey{VIP: rlVIP4, Port: 53, Proto: maps.ProtoUDP}, ID: 12,
		Rate: 1, Per: time.Minute, Burst: 2}, Backends: []netip.Addr{lbtest.Backend4(1)}, FirstID: 32})
	p1, p2, p3 := udp(client4, 7100, rlVIP4, 53), udp(client4, 7101, rlVIP4, 53), udp(client4, 7102, rlVIP4, 53)
	for i, c := range []struct {
		s    pkt.Spec
		want uint32
	}{{p1, xdpTX}, {p1, xdpTX}, {p2, xdpTX}, {p1, xdpTX}, {p3, xdpDrop}} {
		if act, _ := w.run(t, pkt.MustBuild(t, c.s)); act != c.want {
			t.Fatalf("packet %d (port %d): action %d, want %d", i, c.s.SrcPort, act, c.want)
		}
	}
	if err := w.Maps.PutSettings(maps.Settings{Src4: lbtest.LBAddr4, Src6: lbtest.LBAddr6, UDPTimeout: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	act, _ := w.run(t, pkt.MustBuild(t, p1))
	wantAction(t, act, xdpDrop)
	if got := w.Stat(t, "drop_rate_limit"); got != 2 {
		t.Errorf("drop_rate_limit = %d, want 2", got)
	}
}
