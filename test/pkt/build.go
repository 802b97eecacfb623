// Package pkt builds and decodes test packets for xlb's XDP program tests.
package pkt

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Default values used by Build for zero-valued Spec fields.
var (
	// DefaultSrcMAC is the Ethernet source address used when Spec.SrcMAC is nil.
	DefaultSrcMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	// DefaultDstMAC is the Ethernet destination address used when Spec.DstMAC is nil.
	DefaultDstMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

const (
	defaultTTL = 64
	// maxVLANID is the largest valid 802.1Q VLAN identifier.
	maxVLANID = 4095
	// maxIPv4OptionBytes is the room for options in a 60-byte IPv4 header.
	maxIPv4OptionBytes = 40
	// maxFragOffset is the largest value of the 13-bit fragment offset field.
	maxFragOffset = 0x1fff
	// maxPayload keeps the IP length fields (16 bits) from overflowing.
	maxPayload = 65535 - 60 - 60
)

// DefaultPayload returns a fresh copy of the payload Build uses when
// Spec.Payload is nil: the 16 bytes "ABCDEFGHIJKLMNOP".
func DefaultPayload() []byte {
	p := make([]byte, 16)
	for i := range p {
		p[i] = byte('A' + i)
	}
	return p
}

// Spec describes one test packet. Zero values get sensible defaults noted
// below.
//
// The IPv4-only fields (IPv4Options, DF, FragOffset, MoreFragments, IPID)
// must be zero for an IPv6 packet; Build reports an error otherwise rather
// than silently ignoring them.
type Spec struct {
	// SrcMAC and DstMAC are the Ethernet addresses; nil means
	// DefaultSrcMAC (02:00:00:00:00:01) / DefaultDstMAC (02:00:00:00:00:02).
	SrcMAC, DstMAC net.HardwareAddr
	// VLAN is 0 for an untagged frame; otherwise the frame carries one
	// 802.1Q tag with this VLAN ID (1..4095).
	VLAN uint16
	// Src and Dst are the IP addresses, both IPv4 or both IPv6 (required).
	// An IPv4-mapped IPv6 address counts as IPv6.
	Src, Dst netip.Addr
	// Proto is "tcp", "udp" or "icmp" (ICMPv4 or ICMPv6 by address family);
	// "" means "tcp". For "icmp" an echo request is built whose identifier is
	// SrcPort and whose sequence number is DstPort.
	Proto string
	// SrcPort and DstPort are the TCP/UDP ports.
	SrcPort, DstPort uint16
	// TCPFlags is any combination of "S", "A", "F", "R", "P" and "U", e.g.
	// "S", "SA", "A", "R", "PA"; "" means "A". Ignored unless Proto is tcp.
	// The sequence number is 1; the acknowledgment number is 1 if A is set.
	TCPFlags string
	// Payload is the L4 payload; nil means DefaultPayload() (16 bytes of
	// pattern). Use a non-nil empty slice for no payload.
	Payload []byte
	// TTL is the IPv4 TTL or IPv6 hop limit; 0 means 64. (Use Mutate to
	// produce a packet with a TTL of 0.)
	TTL uint8
	// IPv4Options are copied into the IPv4 header, which grows accordingly
	// (IHL is set by Build). The options are padded with End-of-Options
	// bytes to a multiple of 4 bytes; at most 40 bytes fit. An option of
	// type > 1 with OptionLength 0 gets OptionLength 2+len(OptionData).
	IPv4Options []layers.IPv4Option
	// DF sets the IPv4 don't-fragment flag.
	DF bool
	// FragOffset is the IPv4 fragment offset in 8-byte units. When it is
	// non-zero (a non-first fragment) no L4 header is emitted: Payload is
	// written as raw bytes right after the IP header, and the IP protocol
	// field still names Proto.
	FragOffset uint16
	// MoreFragments sets the IPv4 more-fragments flag. A first fragment
	// (MoreFragments with FragOffset 0) carries the L4 header; its L4 length
	// and checksum cover only the bytes in this fragment.
	MoreFragments bool
	// IPID is the IPv4 identification field.
	IPID uint16
}

// Build serializes the frame described by s with correct lengths and
// checksums (IPv4 header checksum; TCP/UDP/ICMPv6 checksums include the
// pseudo-header, the ICMPv4 checksum covers the ICMP message). The frame is
// exactly the headers and payload: it is not padded to the 60-byte Ethernet
// minimum (append zeros to test padding handling).
//
// For a non-first fragment (FragOffset>0) the L4 header is NOT emitted: the
// payload is raw bytes after the IP header.
func Build(s Spec) ([]byte, error) {
	if !s.Src.IsValid() || !s.Dst.IsValid() {
		return nil, errors.New("pkt: Spec.Src and Spec.Dst are required")
	}
	if s.Src.Is4() != s.Dst.Is4() {
		return nil, fmt.Errorf("pkt: address family mismatch: Src %v, Dst %v", s.Src, s.Dst)
	}
	payload := s.Payload
	if payload == nil {
		payload = DefaultPayload()
	}
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("pkt: %d-byte payload exceeds %d bytes", len(payload), maxPayload)
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = defaultTTL
	}
	v4 := s.Src.Is4()

	proto, err := ipProtocol(s.Proto, v4)
	if err != nil {
		return nil, err
	}

	var ipLayer gopacket.NetworkLayer
	var etherType layers.EthernetType
	if v4 {
		if s.FragOffset > maxFragOffset {
			return nil, fmt.Errorf("pkt: FragOffset %d exceeds %d", s.FragOffset, maxFragOffset)
		}
		opts, err := ipv4Options(s.IPv4Options)
		if err != nil {
			return nil, err
		}
		ip := &layers.IPv4{
			Version:    4,
			TTL:        ttl,
			Id:         s.IPID,
			Protocol:   proto,
			SrcIP:      addrIP(s.Src),
			DstIP:      addrIP(s.Dst),
			Options:    opts,
			FragOffset: s.FragOffset,
		}
		if s.DF {
			ip.Flags |= layers.IPv4DontFragment
		}
		if s.MoreFragments {
			ip.Flags |= layers.IPv4MoreFragments
		}
		ipLayer, etherType = ip, layers.EthernetTypeIPv4
	} else {
		switch {
		case len(s.IPv4Options) > 0:
			return nil, errors.New("pkt: IPv4Options set on an IPv6 packet")
		case s.DF:
			return nil, errors.New("pkt: DF set on an IPv6 packet")
		case s.FragOffset != 0 || s.MoreFragments || s.IPID != 0:
			return nil, errors.New("pkt: IPv4 fragment fields set on an IPv6 packet")
		}
		ipLayer = &layers.IPv6{
			Version:    6,
			HopLimit:   ttl,
			NextHeader: proto,
			SrcIP:      addrIP(s.Src),
			DstIP:      addrIP(s.Dst),
		}
		etherType = layers.EthernetTypeIPv6
	}

	var l4 []gopacket.SerializableLayer
	if s.FragOffset != 0 {
		l4 = []gopacket.SerializableLayer{gopacket.Payload(payload)}
	} else {
		l4, err = l4Layers(s, proto, ipLayer, payload)
		if err != nil {
			return nil, err
		}
	}
	return serialize(s.SrcMAC, s.DstMAC, s.VLAN, etherType, ipLayer.(gopacket.SerializableLayer), l4...)
}

// MustBuild is Build for tests: it calls t.Fatal if Build fails.
func MustBuild(t testing.TB, s Spec) []byte {
	t.Helper()
	b, err := Build(s)
	if err != nil {
		t.Fatalf("pkt.Build(%+v): %v", s, err)
	}
	return b
}

// Truncate returns a copy of frame[:n]. It panics if n is out of range,
// like the slice expression would.
func Truncate(frame []byte, n int) []byte {
	if n < 0 || n > len(frame) {
		panic(fmt.Sprintf("pkt.Truncate: n=%d out of range [0,%d]", n, len(frame)))
	}
	return append([]byte(nil), frame[:n]...)
}

// Mutate returns a copy of frame with f applied to it, for building
// malformed-packet cases; frame itself is not modified. Checksums are not
// recomputed.
func Mutate(frame []byte, f func(b []byte)) []byte {
	b := append([]byte(nil), frame...)
	f(b)
	return b
}

// ipProtocol maps Spec.Proto to an IP protocol number.
func ipProtocol(p string, v4 bool) (layers.IPProtocol, error) {
	switch p {
	case "", "tcp":
		return layers.IPProtocolTCP, nil
	case "udp":
		return layers.IPProtocolUDP, nil
	case "icmp":
		if v4 {
			return layers.IPProtocolICMPv4, nil
		}
		return layers.IPProtocolICMPv6, nil
	}
	return 0, fmt.Errorf("pkt: unknown Proto %q (want tcp, udp or icmp)", p)
}

// l4Layers returns the L4 header layer(s) followed by the payload.
func l4Layers(s Spec, proto layers.IPProtocol, ip gopacket.NetworkLayer, payload []byte) ([]gopacket.SerializableLayer, error) {
	pl := gopacket.Payload(payload)
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{
			SrcPort: layers.TCPPort(s.SrcPort),
			DstPort: layers.TCPPort(s.DstPort),
			Seq:     1,
			Window:  65535,
		}
		flags := s.TCPFlags
		if flags == "" {
			flags = "A"
		}
		for _, c := range flags {
			switch c {
			case 'S':
				tcp.SYN = true
			case 'A':
				tcp.ACK = true
				tcp.Ack = 1
			case 'F':
				tcp.FIN = true
			case 'R':
				tcp.RST = true
			case 'P':
				tcp.PSH = true
			case 'U':
				tcp.URG = true
			default:
				return nil, fmt.Errorf("pkt: unknown TCP flag %q in %q", c, s.TCPFlags)
			}
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		return []gopacket.SerializableLayer{tcp, pl}, nil
	case layers.IPProtocolUDP:
		udp := &layers.UDP{
			SrcPort: layers.UDPPort(s.SrcPort),
			DstPort: layers.UDPPort(s.DstPort),
		}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		return []gopacket.SerializableLayer{udp, pl}, nil
	case layers.IPProtocolICMPv4:
		icmp := &layers.ICMPv4{
			TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0),
			Id:       s.SrcPort,
			Seq:      s.DstPort,
		}
		return []gopacket.SerializableLayer{icmp, pl}, nil
	case layers.IPProtocolICMPv6:
		icmp := &layers.ICMPv6{
			TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0),
		}
		if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		echo := &layers.ICMPv6Echo{Identifier: s.SrcPort, SeqNumber: s.DstPort}
		return []gopacket.SerializableLayer{icmp, echo, pl}, nil
	}
	return nil, fmt.Errorf("pkt: unsupported IP protocol %d", proto)
}

// ipv4Options validates and copies opts, filling in lengths and padding the
// result to a multiple of 4 bytes with End-of-Options entries. (gopacket
// rounds the header size up but does not write the padding bytes itself.)
func ipv4Options(opts []layers.IPv4Option) ([]layers.IPv4Option, error) {
	if len(opts) == 0 {
		return nil, nil
	}
	out := make([]layers.IPv4Option, 0, len(opts)+3)
	size := 0
	for i, o := range opts {
		switch o.OptionType {
		case 0, 1: // End of options, no-op: a single byte.
			if len(o.OptionData) != 0 {
				return nil, fmt.Errorf("pkt: IPv4 option %d (type %d) is one byte and takes no data", i, o.OptionType)
			}
			o.OptionLength = 1
		default:
			if o.OptionLength == 0 {
				if len(o.OptionData) > 253 {
					return nil, fmt.Errorf("pkt: IPv4 option %d: %d bytes of data is too long", i, len(o.OptionData))
				}
				o.OptionLength = uint8(2 + len(o.OptionData))
			}
			if o.OptionLength < 2 || int(o.OptionLength) < 2+len(o.OptionData) {
				return nil, fmt.Errorf("pkt: IPv4 option %d (type %d): length %d too small for %d data bytes",
					i, o.OptionType, o.OptionLength, len(o.OptionData))
			}
		}
		size += int(o.OptionLength)
		out = append(out, o)
	}
	for size%4 != 0 {
		out = append(out, layers.IPv4Option{OptionType: 0, OptionLength: 1})
		size++
	}
	if size > maxIPv4OptionBytes {
		return nil, fmt.Errorf("pkt: IPv4 options take %d bytes (after padding), at most %d fit", size, maxIPv4OptionBytes)
	}
	return out, nil
}

// serialize prepends Ethernet (and optionally 802.1Q) to the given IP layer
// and following layers and serializes them with lengths and checksums fixed.
func serialize(srcMAC, dstMAC net.HardwareAddr, vlan uint16, etherType layers.EthernetType,
	ip gopacket.SerializableLayer, rest ...gopacket.SerializableLayer) ([]byte, error) {
	if srcMAC == nil {
		srcMAC = DefaultSrcMAC
	}
	if dstMAC == nil {
		dstMAC = DefaultDstMAC
	}
	if len(srcMAC) != 6 || len(dstMAC) != 6 {
		return nil, fmt.Errorf("pkt: MAC addresses must be 6 bytes (src %v, dst %v)", srcMAC, dstMAC)
	}
	if vlan > maxVLANID {
		return nil, fmt.Errorf("pkt: VLAN ID %d exceeds %d", vlan, maxVLANID)
	}
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: etherType}
	ls := []gopacket.SerializableLayer{eth}
	if vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: vlan, Type: etherType})
	}
	ls = append(ls, ip)
	ls = append(ls, rest...)

	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		return nil, fmt.Errorf("pkt: serialize: %w", err)
	}
	// gopacket pads Ethernet frames to 60 bytes; drop that so the frame is
	// exactly the headers and payload.
	frame := buf.Bytes()
	ipPkt, err := IPBytes(frame)
	if err != nil {
		return nil, fmt.Errorf("pkt: serialize: %w", err)
	}
	hdr := ethHeaderLen
	if vlan != 0 {
		hdr += vlanTagLen
	}
	return frame[:hdr+len(ipPkt)], nil
}

// addrIP converts a to a net.IP of its natural length (4 or 16 bytes).
func addrIP(a netip.Addr) net.IP {
	return net.IP(a.AsSlice())
}
