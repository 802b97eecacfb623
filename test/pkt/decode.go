package pkt

import (
	"fmt"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Decoded is the parsed result of a program's output frame. The layers are
// gopacket's; they refer to a private copy of the frame.
type Decoded struct {
	// Eth is the Ethernet header.
	Eth *layers.Ethernet
	// VLAN is the first 802.1Q tag, nil if the frame is untagged.
	VLAN *layers.Dot1Q
	// Outer4 or Outer6 is the outermost IP header (at most one is set).
	Outer4 *layers.IPv4
	Outer6 *layers.IPv6
	// Inner4 or Inner6 is the innermost IP header when the outer one
	// encapsulates IP directly (IPv4 protocol 4 or 41, IPv6 next header 41
	// or 4); both are nil otherwise. An IP packet quoted inside an ICMP error
	// is not decoded: it is in Payload.
	Inner4 *layers.IPv4
	Inner6 *layers.IPv6
	// TCP, UDP, ICMP4 or ICMP6 is the innermost L4 header, if present. For
	// the first fragment of a fragmented datagram (offset 0) the L4 header
	// is decoded from the fragment when it is complete; non-first fragments
	// have no L4 header.
	TCP   *layers.TCP
	UDP   *layers.UDP
	ICMP4 *layers.ICMPv4
	ICMP6 *layers.ICMPv6
	// Payload is the innermost application payload: the bytes after the
	// TCP/UDP header; for ICMPv4 and ICMPv6 the bytes after the 8-byte
	// header (for echo, after identifier and sequence; for an error, the
	// quoted packet); for a fragment whose L4 header is not decoded, the
	// fragment's bytes after the IP header. Bytes past the IP total length
	// (Ethernet padding) are not included. Payloads of TCP/UDP are never
	// decoded further, whatever the ports.
	Payload []byte
}

// Decode parses an Ethernet frame with gopacket. It returns an error if
// gopacket reports a decoding failure for any layer up to and including the
// L4 header; what follows a TCP/UDP/ICMP header is treated as opaque payload
// (gopacket would otherwise try to decode e.g. DNS on port 53, and fail on
// test payloads).
func Decode(frame []byte) (*Decoded, error) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	d := &Decoded{}
	end := d.walk(p.Layers())
	if el := p.ErrorLayer(); el != nil {
		// The failing decoder was handed el.LayerContents(). If that lies
		// within what follows a fully decoded L4 header, the failure is in
		// an application protocol we do not care about.
		if end == nil || len(end.LayerContents()) == 0 || len(el.LayerContents()) > len(end.LayerPayload()) {
			return nil, fmt.Errorf("pkt: decode: %w", el.Error())
		}
	}
	if d.Eth == nil {
		return nil, fmt.Errorf("pkt: decode: no Ethernet header in %d-byte frame", len(frame))
	}
	return d, nil
}

// walk records the layers in d, outermost first. It returns the layer after
// which nothing more is looked at (an L4 header or a fragment), or nil if it
// found none. An L4 layer that gopacket added but failed to decode (no
// contents) is not recorded.
func (d *Decoded) walk(ls []gopacket.Layer) gopacket.Layer {
	var last4 *layers.IPv4          // innermost IPv4 header so far
	var frag6 *layers.IPv6Fragment  // IPv6 fragment header of the innermost IPv6 header
	var lastProto layers.IPProtocol // protocol of the innermost IP payload
	prevIP := false                 // the previous layer is IP or an IPv6 extension header
	for _, l := range ls {
		switch l.(type) {
		case *layers.TCP, *layers.UDP, *layers.ICMPv4, *layers.ICMPv6:
			if len(l.LayerContents()) == 0 {
				return nil
			}
		}
		switch l := l.(type) {
		case *layers.Ethernet:
			if d.Eth == nil {
				d.Eth = l
			}
			prevIP = false
		case *layers.Dot1Q:
			if d.VLAN == nil {
				d.VLAN = l
			}
			prevIP = false
		case *layers.IPv4:
			switch {
			case d.Outer4 == nil && d.Outer6 == nil:
				d.Outer4 = l
			case prevIP:
				d.Inner4, d.Inner6 = l, nil
			default:
				// IP behind something other than IP (e.g. GRE): not ours.
				return l
			}
			last4, frag6, lastProto = l, nil, l.Protocol
			prevIP = true
		case *layers.IPv6:
			switch {
			case d.Outer4 == nil && d.Outer6 == nil:
				d.Outer6 = l
			case prevIP:
				d.Inner4, d.Inner6 = nil, l
			default:
				return l
			}
			last4, frag6, lastProto = nil, nil, l.NextHeader
			prevIP = true
		case *layers.IPv6HopByHop:
			lastProto = l.NextHeader
		case *layers.IPv6Routing:
			lastProto = l.NextHeader
		case *layers.IPv6Destination:
			lastProto = l.NextHeader
		case *layers.IPv6Fragment:
			frag6, lastProto = l, l.NextHeader
		case *layers.TCP:
			d.TCP = l
			d.Payload = l.LayerPayload()
			return l
		case *layers.UDP:
			d.UDP = l
			d.Payload = l.LayerPayload()
			return l
		case *layers.ICMPv4:
			d.ICMP4 = l
			d.Payload = l.LayerPayload()
			return l
		case *layers.ICMPv6:
			d.ICMP6 = l
			d.Payload = nil
			if lp := l.LayerPayload(); len(lp) >= 4 {
				d.Payload = lp[4:]
			}
			return l
		case *gopacket.Fragment:
			d.Payload = l.Payload()
			first := (last4 != nil && last4.FragOffset == 0) || (frag6 != nil && frag6.FragmentOffset == 0)
			if first {
				d.decodeFirstFragment(lastProto, l.Payload())
			}
			return l
		default:
			prevIP = false
		}
	}
	return nil
}

// decodeFirstFragment decodes the L4 header at the start of a first
// fragment; it leaves d alone if the header does not decode.
func (d *Decoded) decodeFirstFragment(proto layers.IPProtocol, b []byte) {
	switch proto {
	case layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4, layers.IPProtocolICMPv6:
	default:
		return
	}
	p := gopacket.NewPacket(b, proto.LayerType(), gopacket.Default)
	ls := p.Layers()
	if len(ls) == 0 || ls[0].LayerType() != proto.LayerType() {
		return
	}
	d.walk(ls[:1])
}
