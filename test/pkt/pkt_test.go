package pkt

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	client4 = netip.MustParseAddr("192.0.2.10")
	vip4    = netip.MustParseAddr("198.51.100.1")
	router4 = netip.MustParseAddr("203.0.113.254")
	client6 = netip.MustParseAddr("2001:db8::10")
	vip6    = netip.MustParseAddr("2001:db8:1::1")
	router6 = netip.MustParseAddr("2001:db8:ffff::fe")
)

// ipHeader returns the IP header bytes of a frame built by Build.
func ipHeader(t *testing.T, frame []byte) []byte {
	t.Helper()
	ip, err := IPBytes(frame)
	if err != nil {
		t.Fatalf("IPBytes: %v", err)
	}
	if ip[0]>>4 == 4 {
		return ip[:int(ip[0]&0xf)*4]
	}
	return ip[:40]
}

func TestBuildDecode(t *testing.T) {
	srcMAC := net.HardwareAddr{0x0a, 1, 2, 3, 4, 5}
	cases := []struct {
		name string
		spec Spec
	}{
		{"v4 tcp", Spec{Src: client4, Dst: vip4, SrcPort: 40000, DstPort: 80, TCPFlags: "S"}},
		{"v4 tcp default flags", Spec{Src: client4, Dst: vip4, SrcPort: 40000, DstPort: 80}},
		{"v4 udp", Spec{Src: client4, Dst: vip4, Proto: "udp", SrcPort: 5000, DstPort: 53, Payload: []byte("not really dns")}},
		{"v4 udp empty payload", Spec{Src: client4, Dst: vip4, Proto: "udp", SrcPort: 5000, DstPort: 4789, Payload: []byte{}}},
		{"v4 icmp", Spec{Src: client4, Dst: vip4, Proto: "icmp", SrcPort: 7, DstPort: 9}},
		{"v6 tcp", Spec{Src: client6, Dst: vip6, SrcPort: 40000, DstPort: 443, TCPFlags: "SA", TTL: 3}},
		{"v6 udp", Spec{Src: client6, Dst: vip6, Proto: "udp", SrcPort: 5000, DstPort: 443, Payload: bytes.Repeat([]byte{0xee}, 101)}},
		{"v6 icmp", Spec{Src: client6, Dst: vip6, Proto: "icmp", SrcPort: 7, DstPort: 9}},
		{"v4 vlan", Spec{VLAN: 100, SrcMAC: srcMAC, Src: client4, Dst: vip4, SrcPort: 1, DstPort: 2, TCPFlags: "PA", DF: true, IPID: 0x1234}},
		{"v6 vlan", Spec{VLAN: 4095, Src: client6, Dst: vip6, Proto: "udp", SrcPort: 1, DstPort: 2}},
		{"v4 options", Spec{Src: client4, Dst: vip4, SrcPort: 1, DstPort: 80, IPv4Options: []layers.IPv4Option{
			{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}, // router alert
			{OptionType: 1}, // NOP
			{OptionType: 7, OptionData: []byte{4, 0, 0, 0, 0}}, // record route, length filled in
		}}},
		// gopacket would decode these ports' payloads (VXLAN, Geneve, DNS)
		// and fail; Decode must treat them as opaque.
		{"v4 udp vxlan port", Spec{Src: client4, Dst: vip4, Proto: "udp", SrcPort: 5000, DstPort: 4789, Payload: []byte{1, 2, 3}}},
		{"v6 udp geneve port", Spec{Src: client6, Dst: vip6, Proto: "udp", SrcPort: 5000, DstPort: 6081, Payload: []byte{0xff}}},
		{"v4 tcp dns port", Spec{Src: client4, Dst: vip4, SrcPort: 5000, DstPort: 53, TCPFlags: "FA"}},
		{"v4 odd payload", Spec{Src: client4, Dst: vip4, Proto: "udp", SrcPort: 1, DstPort: 2, Payload: []byte{1, 2, 3}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			frame := MustBuild(t, s)
			d, err := Decode(frame)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			wantSrcMAC := s.SrcMAC
			if wantSrcMAC == nil {
				wantSrcMAC = DefaultSrcMAC
			}
			if !bytes.Equal(d.Eth.SrcMAC, wantSrcMAC) || !bytes.Equal(d.Eth.DstMAC, DefaultDstMAC) {
				t.Errorf("MACs %v -> %v", d.Eth.SrcMAC, d.Eth.DstMAC)
			}
			if s.VLAN == 0 && d.VLAN != nil {
				t.Errorf("unexpected VLAN tag %d", d.VLAN.VLANIdentifier)
			}
			if s.VLAN != 0 && (d.VLAN == nil || d.VLAN.VLANIdentifier != s.VLAN) {
				t.Errorf("VLAN = %+v, want %d", d.VLAN, s.VLAN)
			}
			if d.Inner4 != nil || d.Inner6 != nil {
				t.Errorf("unexpected inner IP header")
			}
			wantTTL := s.TTL
			if wantTTL == 0 {
				wantTTL = 64
			}
			if s.Src.Is4() {
				if d.Outer4 == nil || d.Outer6 != nil {
					t.Fatalf("want only Outer4, got %v / %v", d.Outer4, d.Outer6)
				}
				ip := d.Outer4
				if ip.SrcIP.String() != s.Src.String() || ip.DstIP.String() != s.Dst.String() {
					t.Errorf("addresses %v -> %v", ip.SrcIP, ip.DstIP)
				}
				if ip.TTL != wantTTL || ip.Id != s.IPID || (ip.Flags&layers.IPv4DontFragment != 0) != s.DF {
					t.Errorf("TTL %d ID %#x flags %v", ip.TTL, ip.Id, ip.Flags)
				}
				if int(ip.Length) != len(frame)-14-4*btoi(s.VLAN != 0) {
					t.Errorf("IP length %d, frame %d", ip.Length, len(frame))
				}
				if err := CheckIPv4Header(ipHeader(t, frame)); err != nil {
					t.Errorf("CheckIPv4Header: %v", err)
				}
			} else {
				if d.Outer6 == nil || d.Outer4 != nil {
					t.Fatalf("want only Outer6, got %v / %v", d.Outer4, d.Outer6)
				}
				ip := d.Outer6
				if ip.SrcIP.String() != s.Src.String() || ip.DstIP.String() != s.Dst.String() {
					t.Errorf("addresses %v -> %v", ip.SrcIP, ip.DstIP)
				}
				if ip.HopLimit != wantTTL {
					t.Errorf("hop limit %d", ip.HopLimit)
				}
			}
			wantPayload := s.Payload
			if wantPayload == nil {
				wantPayload = DefaultPayload()
			}
			if !bytes.Equal(d.Payload, wantPayload) {
				t.Errorf("payload %x, want %x", d.Payload, wantPayload)
			}
			switch s.Proto {
			case "", "tcp":
				if d.TCP == nil {
					t.Fatal("no TCP layer")
				}
				if uint16(d.TCP.SrcPort) != s.SrcPort || uint16(d.TCP.DstPort) != s.DstPort {
					t.Errorf("ports %d -> %d", d.TCP.SrcPort, d.TCP.DstPort)
				}
				flags := s.TCPFlags
				if flags == "" {
					flags = "A"
				}
				if got := tcpFlags(d.TCP); got != sortFlags(flags) {
					t.Errorf("TCP flags %q, want %q", got, flags)
				}
			case "udp":
				if d.UDP == nil {
					t.Fatal("no UDP layer")
				}
				if uint16(d.UDP.SrcPort) != s.SrcPort || uint16(d.UDP.DstPort) != s.DstPort {
					t.Errorf("ports %d -> %d", d.UDP.SrcPort, d.UDP.DstPort)
				}
				if int(d.UDP.Length) != 8+len(wantPayload) {
					t.Errorf("UDP length %d", d.UDP.Length)
				}
			case "icmp":
				if s.Src.Is4() {
					if d.ICMP4 == nil || d.ICMP4.TypeCode.Type() != layers.ICMPv4TypeEchoRequest ||
						d.ICMP4.Id != s.SrcPort || d.ICMP4.Seq != s.DstPort {
						t.Errorf("ICMPv4 = %+v", d.ICMP4)
					}
				} else if d.ICMP6 == nil || d.ICMP6.TypeCode.Type() != layers.ICMPv6TypeEchoRequest {
					t.Errorf("ICMPv6 = %+v", d.ICMP6)
				}
			}
			if err := CheckL4Checksum(frame); err != nil {
				t.Errorf("CheckL4Checksum: %v", err)
			}

			// A flipped bit in the L4 payload/header must be caught.
			bad := Mutate(frame, func(b []byte) { b[len(b)-1] ^= 0x40 })
			if len(wantPayload) == 0 {
				bad = Mutate(frame, func(b []byte) { b[len(b)-8+1] ^= 0x40 }) // UDP source port
			}
			if err := CheckL4Checksum(bad); err == nil {
				t.Errorf("CheckL4Checksum accepted a corrupted packet")
			} else {
				t.Logf("corrupted L4: %v", err)
			}
			if s.Src.Is4() {
				// Corrupt the TTL: the IP header checksum must fail.
				off := 14 + 4*btoi(s.VLAN != 0) + 8
				bad := Mutate(frame, func(b []byte) { b[off]-- })
				if err := CheckIPv4Header(ipHeader(t, bad)); err == nil {
					t.Errorf("CheckIPv4Header accepted a corrupted header")
				} else {
					t.Logf("corrupted IPv4 header: %v", err)
				}
			}
			// Without encapsulation the innermost packet is the packet.
			in, err := InnerIP(frame)
			if err != nil {
				t.Fatal(err)
			}
			ip, _ := IPBytes(frame)
			if !bytes.Equal(in, ip) {
				t.Errorf("InnerIP differs from IPBytes")
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func tcpFlags(t *layers.TCP) string {
	var s strings.Builder
	for _, f := range []struct {
		set bool
		c   byte
	}{{t.SYN, 'S'}, {t.ACK, 'A'}, {t.FIN, 'F'}, {t.RST, 'R'}, {t.PSH, 'P'}, {t.URG, 'U'}} {
		if f.set {
			s.WriteByte(f.c)
		}
	}
	return s.String()
}

func sortFlags(f string) string {
	var s strings.Builder
	for _, c := range "SAFRPU" {
		if strings.ContainsRune(f, c) {
			s.WriteRune(c)
		}
	}
	return s.String()
}

func TestIPv4Options(t *testing.T) {
	opts := []layers.IPv4Option{
		{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}},
		{OptionType: 7, OptionData: []byte{4, 0, 0, 0, 0}}, // 7 bytes -> padded to 12 in total
	}
	frame := MustBuild(t, Spec{Src: client4, Dst: vip4, IPv4Options: opts})
	h := ipHeader(t, frame)
	if len(h) != 32 {
		t.Fatalf("header length %d, want 32 (IHL 8)", len(h))
	}
	want := []byte{148, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 0}
	if !bytes.Equal(h[20:], want) {
		t.Errorf("options %x, want %x", h[20:], want)
	}
	if err := CheckIPv4Header(h); err != nil {
		t.Error(err)
	}
	// A whole packet may be passed; only the header is checked.
	ip, _ := IPBytes(frame)
	if err := CheckIPv4Header(ip); err != nil {
		t.Error(err)
	}
	d, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outer4.IHL != 8 || d.TCP == nil {
		t.Errorf("IHL %d, TCP %v", d.Outer4.IHL, d.TCP)
	}
	if len(opts[1].OptionData) != 5 || opts[1].OptionLength != 0 {
		t.Errorf("Build modified the caller's options")
	}

	tooMany := make([]layers.IPv4Option, 11)
	for i := range tooMany {
		tooMany[i] = layers.IPv4Option{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}
	}
	if _, err := Build(Spec{Src: client4, Dst: vip4, IPv4Options: tooMany}); err == nil {
		t.Error("44 bytes of options accepted")
	}
}

func TestFragments(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4)

	t.Run("first", func(t *testing.T) {
		s := Spec{Src: client4, Dst: vip4, Proto: "udp", SrcPort: 1000, DstPort: 2000,
			MoreFragments: true, IPID: 0xbeef, Payload: payload}
		frame := MustBuild(t, s)
		d, err := Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		ip := d.Outer4
		if ip.Flags&layers.IPv4MoreFragments == 0 || ip.FragOffset != 0 || ip.Id != 0xbeef {
			t.Errorf("flags %v offset %d id %#x", ip.Flags, ip.FragOffset, ip.Id)
		}
		if d.UDP == nil || d.UDP.SrcPort != 1000 || d.UDP.DstPort != 2000 {
			t.Fatalf("UDP header not decoded from first fragment: %+v", d.UDP)
		}
		if !bytes.Equal(d.Payload, payload) {
			t.Errorf("payload %q", d.Payload)
		}
		if err := CheckIPv4Header(ipHeader(t, frame)); err != nil {
			t.Error(err)
		}
		if err := CheckL4Checksum(frame); err != nil {
			t.Error(err)
		}
	})

	t.Run("non-first", func(t *testing.T) {
		s := Spec{Src: client4, Dst: vip4, Proto: "tcp", SrcPort: 1000, DstPort: 2000,
			FragOffset: 185, IPID: 0xbeef, Payload: payload}
		frame := MustBuild(t, s)
		ip, err := IPBytes(frame)
		if err != nil {
			t.Fatal(err)
		}
		if len(ip) != 20+len(payload) || !bytes.Equal(ip[20:], payload) {
			t.Fatalf("payload not raw after the IP header: %x", ip)
		}
		if ip[9] != 6 {
			t.Errorf("protocol %d, want 6", ip[9])
		}
		d, err := Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		if d.Outer4.FragOffset != 185 || d.Outer4.Flags&layers.IPv4MoreFragments != 0 {
			t.Errorf("offset %d flags %v", d.Outer4.FragOffset, d.Outer4.Flags)
		}
		if d.TCP != nil || d.UDP != nil {
			t.Errorf("L4 header decoded in a non-first fragment")
		}
		if !bytes.Equal(d.Payload, payload) {
			t.Errorf("payload %q", d.Payload)
		}
		if err := CheckIPv4Header(ipHeader(t, frame)); err != nil {
			t.Error(err)
		}
		if err := CheckL4Checksum(frame); err == nil {
			t.Error("CheckL4Checksum succeeded on a non-first fragment")
		}
	})

	t.Run("first tcp", func(t *testing.T) {
		frame := MustBuild(t, Spec{Src: client4, Dst: vip4, SrcPort: 1, DstPort: 2, TCPFlags: "R", MoreFragments: true, Payload: payload[:24]})
		d, err := Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		if d.TCP == nil || !d.TCP.RST || d.TCP.DstPort != 2 || !bytes.Equal(d.Payload, payload[:24]) {
			t.Errorf("TCP %+v payload %q", d.TCP, d.Payload)
		}
		if err := CheckL4Checksum(frame); err != nil {
			t.Error(err)
		}
	})

	t.Run("middle with MF", func(t *testing.T) {
		frame := MustBuild(t, Spec{Src: client4, Dst: vip4, FragOffset: 1, MoreFragments: true, Payload: payload[:8]})
		d, err := Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		if d.TCP != nil || !bytes.Equal(d.Payload, payload[:8]) {
			t.Errorf("TCP %v payload %x", d.TCP, d.Payload)
		}
	})
}

func TestICMPTooBig(t *testing.T) {
	t.Run("v4", func(t *testing.T) {
		inner := Spec{Src: client4, Dst: vip4, SrcPort: 40000, DstPort: 80, DF: true, VLAN: 7,
			Payload: bytes.Repeat([]byte{0xab}, 1400)}
		frame, err := ICMPTooBig(router4, 1400, inner, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		if d.VLAN == nil || d.VLAN.VLANIdentifier != 7 {
			t.Errorf("VLAN %+v", d.VLAN)
		}
		ip := d.Outer4
		if ip == nil || ip.SrcIP.String() != router4.String() || ip.DstIP.String() != client4.String() ||
			ip.Protocol != layers.IPProtocolICMPv4 {
			t.Fatalf("outer IP %+v", ip)
		}
		if d.Inner4 != nil || d.TCP != nil {
			t.Errorf("quoted packet decoded as encapsulation")
		}
		if d.ICMP4 == nil || d.ICMP4.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || d.ICMP4.Seq != 1400 || d.ICMP4.Id != 0 {
			t.Fatalf("ICMP %+v", d.ICMP4)
		}
		if len(frame)-18 > 576 {
			t.Errorf("ICMP datagram is %d bytes", len(frame)-18)
		}
		orig, _ := IPBytes(MustBuild(t, inner))
		if len(d.Payload) < 28 || !bytes.Equal(d.Payload, orig[:len(d.Payload)]) {
			t.Errorf("quote (%d bytes) is not a prefix of the original packet", len(d.Payload))
		}
		if err := CheckIPv4Header(ipHeader(t, frame)); err != nil {
			t.Error(err)
		}
		if err := CheckIPv4Header(d.Payload); err != nil {
			t.Errorf("quoted header: %v", err)
		}
		if err := CheckL4Checksum(frame); err != nil {
			t.Error(err)
		}
		bad := Mutate(frame, func(b []byte) { b[len(b)-1] ^= 1 })
		if err := CheckL4Checksum(bad); err == nil {
			t.Error("corrupted ICMP accepted")
		}
	})

	t.Run("v4 small inner", func(t *testing.T) {
		inner := Spec{Src: client4, Dst: vip4, Proto: "udp", SrcPort: 1, DstPort: 2}
		frame, err := ICMPTooBig(router4, 576, inner, net.HardwareAddr{2, 0, 0, 0, 0, 9}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		orig, _ := IPBytes(MustBuild(t, inner))
		if !bytes.Equal(d.Payload, orig) {
			t.Errorf("quote %x, want the whole packet %x", d.Payload, orig)
		}
		if d.Eth.SrcMAC.String() != "02:00:00:00:00:09" {
			t.Errorf("src MAC %v", d.Eth.SrcMAC)
		}
	})

	t.Run("v6", func(t *testing.T) {
		inner := Spec{Src: client6, Dst: vip6, Proto: "udp", SrcPort: 5000, DstPort: 443,
			Payload: bytes.Repeat([]byte{0xcd}, 1400)}
		frame, err := ICMPTooBig(router6, 1280, inner, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(frame)-14 != 1280 {
			t.Errorf("ICMPv6 packet is %d bytes, want 1280", len(frame)-14)
		}
		d, err := Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		ip := d.Outer6
		if ip == nil || ip.SrcIP.String() != router6.String() || ip.DstIP.String() != client6.String() {
			t.Fatalf("outer IP %+v", ip)
		}
		if d.ICMP6 == nil || d.ICMP6.TypeCode != layers.CreateICMPv6TypeCode(2, 0) {
			t.Fatalf("ICMPv6 %+v", d.ICMP6)
		}
		if mtu := binary.BigEndian.Uint32(d.ICMP6.LayerPayload()); mtu != 1280 {
			t.Errorf("MTU %d", mtu)
		}
		orig, _ := IPBytes(MustBuild(t, inner))
		if len(d.Payload) != 1280-48 || !bytes.Equal(d.Payload, orig[:len(d.Payload)]) {
			t.Errorf("quote (%d bytes) is not the 1232-byte prefix of the original packet", len(d.Payload))
		}
		if err := CheckL4Checksum(frame); err != nil {
			t.Error(err)
		}
		bad := Mutate(frame, func(b []byte) { b[100] ^= 1 })
		if err := CheckL4Checksum(bad); err == nil {
			t.Error("corrupted ICMPv6 accepted")
		}
	})

	t.Run("family mismatch", func(t *testing.T) {
		if _, err := ICMPTooBig(router6, 1280, Spec{Src: client4, Dst: vip4}, nil, nil); err == nil {
			t.Error("v6 router with v4 inner packet accepted")
		}
	})
}

// encap wraps the IP packet of inner in an outer IP header (protocol 4 or 41
// chosen by the inner version) and a fresh Ethernet header.
func encap(t *testing.T, outerSrc, outerDst netip.Addr, inner []byte) []byte {
	t.Helper()
	ip, err := IPBytes(inner)
	if err != nil {
		t.Fatal(err)
	}
	proto := layers.IPProtocolIPv4
	if ip[0]>>4 == 6 {
		proto = layers.IPProtocolIPv6
	}
	var outer gopacket.SerializableLayer
	et := layers.EthernetTypeIPv4
	if outerSrc.Is4() {
		outer = &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: outerSrc.AsSlice(), DstIP: outerDst.AsSlice()}
	} else {
		outer = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: outerSrc.AsSlice(), DstIP: outerDst.AsSlice()}
		et = layers.EthernetTypeIPv6
	}
	buf := gopacket.NewSerializeBuffer()
	err = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: DefaultSrcMAC, DstMAC: DefaultDstMAC, EthernetType: et},
		outer, gopacket.Payload(ip))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestEncapsulation(t *testing.T) {
	real4 := netip.MustParseAddr("10.0.0.5")
	real6 := netip.MustParseAddr("fd00::5")
	lb4 := netip.MustParseAddr("10.0.0.1")
	lb6 := netip.MustParseAddr("fd00::1")
	cases := []struct {
		name             string
		in               Spec
		outerSrc, outerD netip.Addr
	}{
		{"ipip", Spec{Src: client4, Dst: vip4, SrcPort: 40000, DstPort: 80, TCPFlags: "S"}, lb4, real4},
		{"ip6ip6", Spec{Src: client6, Dst: vip6, Proto: "udp", SrcPort: 40000, DstPort: 443}, lb6, real6},
		{"4in6", Spec{Src: client4, Dst: vip4, Proto: "udp", SrcPort: 40000, DstPort: 53}, lb6, real6},
		{"6in4", Spec{Src: client6, Dst: vip6, SrcPort: 40000, DstPort: 80}, lb4, real4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := MustBuild(t, tc.in)
			out := encap(t, tc.outerSrc, tc.outerD, in)
			want, err := IPBytes(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := InnerIP(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("InnerIP = %x, want %x", got, want)
			}
			outerIP, _ := IPBytes(out)
			if bytes.Equal(outerIP, want) {
				t.Errorf("IPBytes returned the inner packet")
			}

			d, err := Decode(out)
			if err != nil {
				t.Fatal(err)
			}
			if (d.Outer4 != nil) != tc.outerSrc.Is4() || (d.Outer6 != nil) == tc.outerSrc.Is4() {
				t.Errorf("outer: v4 %v v6 %v", d.Outer4, d.Outer6)
			}
			if tc.in.Src.Is4() {
				if d.Inner4 == nil || d.Inner6 != nil || d.Inner4.SrcIP.String() != tc.in.Src.String() {
					t.Fatalf("inner: v4 %+v v6 %+v", d.Inner4, d.Inner6)
				}
			} else if d.Inner6 == nil || d.Inner4 != nil || d.Inner6.DstIP.String() != tc.in.Dst.String() {
				t.Fatalf("inner: v4 %+v v6 %+v", d.Inner4, d.Inner6)
			}
			if (d.TCP == nil) == (tc.in.Proto == "") || (d.UDP == nil) == (tc.in.Proto == "udp") {
				t.Errorf("L4: TCP %v UDP %v", d.TCP, d.UDP)
			}
			if !bytes.Equal(d.Payload, DefaultPayload()) {
				t.Errorf("payload %q", d.Payload)
			}
			if err := CheckL4Checksum(out); err != nil {
				t.Errorf("inner L4 checksum: %v", err)
			}
			if tc.outerSrc.Is4() {
				if err := CheckIPv4Header(ipHeader(t, out)); err != nil {
					t.Error(err)
				}
			}
			bad := Mutate(out, func(b []byte) { b[len(b)-1]++ })
			if err := CheckL4Checksum(bad); err == nil {
				t.Error("corrupted inner packet accepted")
			}
		})
	}
}

func TestIPBytesPaddingAndVLAN(t *testing.T) {
	frame := MustBuild(t, Spec{Src: client4, Dst: vip4, VLAN: 42, Payload: []byte{}})
	ip, err := IPBytes(frame)
	if err != nil {
		t.Fatal(err)
	}
	if len(ip) != 40 {
		t.Fatalf("IP packet is %d bytes, want 40", len(ip))
	}
	padded := append(append([]byte(nil), frame...), make([]byte, 64-len(frame))...)
	ip2, err := IPBytes(padded)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ip, ip2) {
		t.Errorf("Ethernet padding not dropped")
	}
	d, err := Decode(padded)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Payload) != 0 {
		t.Errorf("payload %x from padding", d.Payload)
	}
	if err := CheckL4Checksum(padded); err != nil {
		t.Error(err)
	}
	if _, err := IPBytes(Truncate(frame, len(frame)-1)); err == nil {
		t.Error("IPBytes accepted a truncated packet")
	}
	arp := Mutate(frame, func(b []byte) { b[12], b[13] = 0x08, 0x06 })
	if _, err := IPBytes(arp); err == nil {
		t.Error("IPBytes accepted an ARP frame")
	}
}

func TestDecodeErrors(t *testing.T) {
	frame := MustBuild(t, Spec{Src: client4, Dst: vip4, SrcPort: 1, DstPort: 2})
	for _, n := range []int{10, 14 + 10, 14 + 20 + 10} {
		if _, err := Decode(Truncate(frame, n)); err == nil {
			t.Errorf("Decode accepted a frame truncated to %d bytes", n)
		} else {
			t.Logf("truncated to %d: %v", n, err)
		}
	}
	// IHL below 5.
	bad := Mutate(frame, func(b []byte) { b[14] = 0x43 })
	if _, err := Decode(bad); err == nil {
		t.Error("Decode accepted IHL 3")
	}
}

func TestTruncateMutateCopy(t *testing.T) {
	frame := MustBuild(t, Spec{Src: client4, Dst: vip4})
	orig := append([]byte(nil), frame...)
	tr := Truncate(frame, 20)
	tr[0] ^= 0xff
	m := Mutate(frame, func(b []byte) { b[1] ^= 0xff })
	if !bytes.Equal(frame, orig) {
		t.Error("Truncate/Mutate modified the input")
	}
	if len(tr) != 20 || m[1] == frame[1] {
		t.Error("Truncate/Mutate results wrong")
	}
	defer func() {
		if recover() == nil {
			t.Error("Truncate beyond the end did not panic")
		}
	}()
	Truncate(frame, len(frame)+1)
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		name string
		s    Spec
	}{
		{"no addresses", Spec{}},
		{"mixed families", Spec{Src: client4, Dst: vip6}},
		{"bad proto", Spec{Src: client4, Dst: vip4, Proto: "sctp"}},
		{"bad flag", Spec{Src: client4, Dst: vip4, TCPFlags: "SX"}},
		{"vlan too big", Spec{Src: client4, Dst: vip4, VLAN: 4096}},
		{"v6 DF", Spec{Src: client6, Dst: vip6, DF: true}},
		{"v6 fragment", Spec{Src: client6, Dst: vip6, FragOffset: 1}},
		{"v6 options", Spec{Src: client6, Dst: vip6, IPv4Options: []layers.IPv4Option{{OptionType: 1}}}},
		{"frag offset too big", Spec{Src: client4, Dst: vip4, FragOffset: 0x2000}},
		{"short option length", Spec{Src: client4, Dst: vip4, IPv4Options: []layers.IPv4Option{{OptionType: 7, OptionLength: 3, OptionData: []byte{1, 2}}}}},
		{"payload too big", Spec{Src: client6, Dst: vip6, Payload: make([]byte, 70000)}},
		{"bad MAC", Spec{Src: client4, Dst: vip4, SrcMAC: net.HardwareAddr{1, 2, 3}}},
	}
	for _, tc := range cases {
		if _, err := Build(tc.s); err == nil {
			t.Errorf("%s: Build succeeded", tc.name)
		}
	}
}
