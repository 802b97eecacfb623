package pkt

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const (
	// maxICMPv4Error is the largest ICMPv4 error datagram (RFC 1812 4.3.2.3).
	maxICMPv4Error = 576
	// minIPv6MTU bounds the size of an ICMPv6 error packet (RFC 4443 2.4(c)).
	minIPv6MTU    = 1280
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	icmpHeaderLen = 8
)

// ICMPTooBig builds an ICMPv4 "destination unreachable / fragmentation
// needed" (type 3 code 4, with next-hop MTU) or ICMPv6 "packet too big"
// (type 2, with MTU) frame sent from router to inner.Src, quoting the packet
// Build(inner) produces minus its Ethernet header.
//
// The quote is the start of that IP packet, exactly as built (so the quoted
// header's lengths and checksum describe the original packet): for ICMPv4 as
// much as keeps the ICMP datagram within 576 bytes (always the IP header and
// at least 8 bytes of L4 when the original has them), for ICMPv6 as much as
// fits in a 1280-byte IPv6 packet.
//
// The outer frame uses srcMAC/dstMAC (nil means DefaultSrcMAC/DefaultDstMAC)
// and, if inner.VLAN is non-zero, carries that 802.1Q tag (the quoted packet
// itself has no link layer). The outer TTL/hop limit is 64. router must be of
// the same address family as inner.Src.
func ICMPTooBig(router netip.Addr, mtu uint16, inner Spec, srcMAC, dstMAC net.HardwareAddr) ([]byte, error) {
	frame, err := Build(inner)
	if err != nil {
		return nil, err
	}
	orig, err := IPBytes(frame)
	if err != nil {
		return nil, err
	}
	if !router.IsValid() || router.Is4() != inner.Src.Is4() {
		return nil, fmt.Errorf("pkt: ICMPTooBig: router %v and inner source %v differ in address family", router, inner.Src)
	}
	if router.Is4() {
		quote := orig[:min(len(orig), maxICMPv4Error-ipv4HeaderLen-icmpHeaderLen)]
		ip := &layers.IPv4{
			Version:  4,
			TTL:      defaultTTL,
			Protocol: layers.IPProtocolICMPv4,
			SrcIP:    addrIP(router),
			DstIP:    addrIP(inner.Src),
		}
		icmp := &layers.ICMPv4{
			TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable,
				layers.ICMPv4CodeFragmentationNeeded),
			Id:  0,   // unused
			Seq: mtu, // next-hop MTU
		}
		return serialize(srcMAC, dstMAC, inner.VLAN, layers.EthernetTypeIPv4, ip, icmp, gopacket.Payload(quote))
	}

	quote := orig[:min(len(orig), minIPv6MTU-ipv6HeaderLen-icmpHeaderLen)]
	ip := &layers.IPv6{
		Version:    6,
		HopLimit:   defaultTTL,
		NextHeader: layers.IPProtocolICMPv6,
		SrcIP:      addrIP(router),
		DstIP:      addrIP(inner.Src),
	}
	icmp := &layers.ICMPv6{
		TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0),
	}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	// gopacket's ICMPv6 layer covers only type, code and checksum; the
	// 32-bit MTU field is the start of the message body.
	body := make([]byte, 4+len(quote))
	binary.BigEndian.PutUint32(body, uint32(mtu))
	copy(body[4:], quote)
	return serialize(srcMAC, dstMAC, inner.VLAN, layers.EthernetTypeIPv6, ip, icmp, gopacket.Payload(body))
}
