package pkt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// IP protocol / next header numbers used by the raw parsers below.
const (
	protoHopByHop = 0
	protoICMPv4   = 1
	protoIPIP     = 4
	protoTCP      = 6
	protoUDP      = 17
	protoIPv6     = 41
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoICMPv6   = 58
	protoDestOpts = 60

	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeDot1Q = 0x8100
	etherTypeQinQ  = 0x88a8
	ethHeaderLen   = 14
	vlanTagLen     = 4
)

// IPBytes returns the IP packet of a frame: the bytes after the Ethernet
// header and any 802.1Q/802.1ad tags, up to the length the IP header
// declares (so Ethernet padding is dropped). It fails if the frame is not
// IPv4/IPv6 or is shorter than the IP header says. The result aliases frame.
func IPBytes(frame []byte) ([]byte, error) {
	if len(frame) < ethHeaderLen {
		return nil, fmt.Errorf("pkt: %d-byte frame is shorter than an Ethernet header", len(frame))
	}
	et := binary.BigEndian.Uint16(frame[12:14])
	off := ethHeaderLen
	for et == etherTypeDot1Q || et == etherTypeQinQ {
		if len(frame) < off+vlanTagLen {
			return nil, errors.New("pkt: frame truncated in VLAN tag")
		}
		et = binary.BigEndian.Uint16(frame[off+2 : off+4])
		off += vlanTagLen
	}
	switch et {
	case etherTypeIPv4:
		return ipPacket(frame[off:], 4)
	case etherTypeIPv6:
		return ipPacket(frame[off:], 6)
	}
	return nil, fmt.Errorf("pkt: not an IP frame (EtherType 0x%04x)", et)
}

// InnerIP returns the bytes of the innermost IP packet of a frame: if the
// outer IP packet directly encapsulates another one (IPv4 protocol 4 or 41,
// IPv6 next header 41 or 4, possibly after IPv6 extension headers), the
// encapsulated packet, recursively; otherwise the same as IPBytes. This
// allows comparing an encapsulated packet byte-for-byte with the original:
//
//	bytes.Equal(pkt.InnerIP(out), pkt.IPBytes(in))
//
// The result aliases frame.
func InnerIP(frame []byte) ([]byte, error) {
	ip, err := IPBytes(frame)
	if err != nil {
		return nil, err
	}
	for {
		h, err := l4Of(ip)
		if err != nil {
			return nil, err
		}
		var version int
		switch {
		case h.frag:
			return ip, nil
		case h.proto == protoIPIP:
			version = 4
		case h.proto == protoIPv6:
			version = 6
		default:
			return ip, nil
		}
		ip, err = ipPacket(h.payload, version)
		if err != nil {
			return nil, fmt.Errorf("inner packet: %w", err)
		}
	}
}

// CheckIPv4Header verifies the header checksum of the raw IPv4 header h
// (including options). If h is longer than the header length its IHL field
// declares (e.g. a whole packet), only the header is checked. It returns nil
// or an error describing the mismatch.
func CheckIPv4Header(h []byte) error {
	if len(h) < ipv4HeaderLen {
		return fmt.Errorf("pkt: %d bytes is too short for an IPv4 header", len(h))
	}
	if v := h[0] >> 4; v != 4 {
		return fmt.Errorf("pkt: IP version %d, want 4", v)
	}
	ihl := int(h[0]&0x0f) * 4
	if ihl < ipv4HeaderLen || ihl > len(h) {
		return fmt.Errorf("pkt: IPv4 IHL says %d header bytes, have %d", ihl, len(h))
	}
	h = h[:ihl]
	if s := fold(sum16(h, 0)); s != 0xffff {
		got := binary.BigEndian.Uint16(h[10:12])
		return fmt.Errorf("pkt: IPv4 header checksum 0x%04x, want 0x%04x", got, zeroedChecksum(h, 10, 0))
	}
	return nil
}

// CheckL4Checksum verifies the TCP, UDP, ICMPv4 or ICMPv6 checksum of the
// innermost IP packet of frame (see InnerIP), including the pseudo-header for
// TCP, UDP and ICMPv6. A zero UDP checksum over IPv4 means "no checksum" and
// passes; over IPv6 it is an error. It returns nil or an error describing the
// mismatch. A non-first fragment has no L4 header and is an error; for a
// first fragment the checksum is taken over the bytes in the fragment, which
// is how Build computes it.
func CheckL4Checksum(frame []byte) error {
	ip, err := InnerIP(frame)
	if err != nil {
		return err
	}
	h, err := l4Of(ip)
	if err != nil {
		return err
	}
	if h.frag && !h.firstFrag {
		return errors.New("pkt: non-first fragment has no L4 header to check")
	}
	l4 := h.payload
	var name string
	var csumOff, minLen int
	pseudo := true
	switch {
	case h.proto == protoTCP:
		name, csumOff, minLen = "TCP", 16, 20
	case h.proto == protoUDP:
		name, csumOff, minLen = "UDP", 6, 8
	case h.proto == protoICMPv4 && h.version == 4:
		name, csumOff, minLen, pseudo = "ICMPv4", 2, 4, false
	case h.proto == protoICMPv6 && h.version == 6:
		name, csumOff, minLen = "ICMPv6", 2, 4
	default:
		return fmt.Errorf("pkt: no checksum check for IP protocol %d over IPv%d", h.proto, h.version)
	}
	if len(l4) < minLen {
		return fmt.Errorf("pkt: %d-byte %s segment is shorter than its %d-byte header", len(l4), name, minLen)
	}
	got := binary.BigEndian.Uint16(l4[csumOff:])
	if h.proto == protoUDP && got == 0 {
		if h.version == 4 {
			return nil
		}
		return errors.New("pkt: zero UDP checksum is not allowed over IPv6")
	}
	var init uint64
	if pseudo {
		init = sum16(h.src, 0)
		init = sum16(h.dst, init)
		init += uint64(h.proto) + uint64(len(l4)) // 32-bit length for IPv6; fits either way
	}
	if fold(sum16(l4, init)) != 0xffff {
		want := zeroedChecksum(l4, csumOff, init)
		if h.proto == protoUDP && want == 0 {
			want = 0xffff
		}
		return fmt.Errorf("pkt: %s checksum 0x%04x, want 0x%04x", name, got, want)
	}
	return nil
}

// ipHeaderInfo is what l4Of learns from an IP packet's headers.
type ipHeaderInfo struct {
	version   int
	src, dst  []byte
	proto     int    // upper-layer protocol / final next header
	payload   []byte // bytes after the IP header and extension headers
	frag      bool   // the packet is a fragment (more-fragments or offset > 0)
	firstFrag bool   // ... with offset 0
}

// l4Of parses the IP header(s) of ip, a whole IP packet as returned by
// ipPacket, down to the upper-layer protocol.
func l4Of(ip []byte) (ipHeaderInfo, error) {
	var h ipHeaderInfo
	h.version = int(ip[0] >> 4)
	if h.version == 4 {
		ihl := int(ip[0]&0x0f) * 4
		ff := binary.BigEndian.Uint16(ip[6:8])
		off, mf := ff&0x1fff, ff&0x2000 != 0
		h.src, h.dst = ip[12:16], ip[16:20]
		h.proto = int(ip[9])
		h.payload = ip[ihl:]
		h.frag, h.firstFrag = mf || off != 0, off == 0
		return h, nil
	}
	h.src, h.dst = ip[8:24], ip[24:40]
	nh, off := int(ip[6]), ipv6HeaderLen
	for {
		var n int
		switch nh {
		case protoHopByHop, protoRouting, protoDestOpts:
			if len(ip) < off+2 {
				return h, fmt.Errorf("pkt: IPv6 extension header %d truncated", nh)
			}
			n = (int(ip[off+1]) + 1) * 8
		case protoAH:
			if len(ip) < off+2 {
				return h, errors.New("pkt: IPv6 AH header truncated")
			}
			n = (int(ip[off+1]) + 2) * 4
		case protoFragment:
			n = 8
			if len(ip) < off+n {
				return h, errors.New("pkt: IPv6 fragment header truncated")
			}
			fo := binary.BigEndian.Uint16(ip[off+2 : off+4])
			offset, mf := fo>>3, fo&1 != 0
			if offset != 0 || mf {
				h.frag = true
				h.firstFrag = offset == 0
			}
		default:
			h.proto = nh
			h.payload = ip[off:]
			return h, nil
		}
		if len(ip) < off+n {
			return h, fmt.Errorf("pkt: IPv6 extension header %d truncated", nh)
		}
		nh = int(ip[off])
		off += n
	}
}

// ipPacket validates the IP header at the start of b (of the given version)
// and returns the packet trimmed to its declared length.
func ipPacket(b []byte, version int) ([]byte, error) {
	if version == 4 {
		if len(b) < ipv4HeaderLen {
			return nil, fmt.Errorf("pkt: %d bytes is too short for an IPv4 header", len(b))
		}
		if v := b[0] >> 4; v != 4 {
			return nil, fmt.Errorf("pkt: IP version %d, want 4", v)
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < ipv4HeaderLen || total < ihl {
			return nil, fmt.Errorf("pkt: bad IPv4 lengths: IHL %d bytes, total %d", ihl, total)
		}
		if total > len(b) {
			return nil, fmt.Errorf("pkt: IPv4 total length %d exceeds the %d bytes present", total, len(b))
		}
		return b[:total], nil
	}
	if len(b) < ipv6HeaderLen {
		return nil, fmt.Errorf("pkt: %d bytes is too short for an IPv6 header", len(b))
	}
	if v := b[0] >> 4; v != 6 {
		return nil, fmt.Errorf("pkt: IP version %d, want 6", v)
	}
	total := ipv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
	if total > len(b) {
		return nil, fmt.Errorf("pkt: IPv6 payload length %d exceeds the %d bytes present", total-ipv6HeaderLen, len(b)-ipv6HeaderLen)
	}
	return b[:total], nil
}

// sum16 adds b as big-endian 16-bit words (a trailing odd byte is padded
// with zero) to acc, without folding.
func sum16(b []byte, acc uint64) uint64 {
	for len(b) >= 2 {
		acc += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// fold reduces a one's-complement sum to 16 bits.
func fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// zeroedChecksum returns the checksum b should carry at off, given the
// partial sum init of anything outside b (the pseudo-header).
func zeroedChecksum(b []byte, off int, init uint64) uint16 {
	acc := sum16(b, init)
	acc -= uint64(binary.BigEndian.Uint16(b[off:])) // acc >= the field's value, which it includes
	return ^fold(acc)
}
