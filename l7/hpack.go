package l7

// HPACK encoding of header blocks (RFC 7541), for both HTTP/2 engines.
// Neither keeps a dynamic table (the names and values written are views
// of buffers that are reused), so a field is either a whole match in the
// static table or a literal "without indexing", its name by static index
// when it has one, and strings are sent as they are, not Huffman-coded:
// on the links a balancer sits on, the few bytes saved cost more CPU than
// they are worth (x/net's encoder spent 9% of a gRPC call searching its
// tables and Huffman-coding).

// hpackStatic is RFC 7541 Appendix A's names, by the index of their first
// entry.
var hpackStatic = map[string]uint8{}

// hpackWhole is the static table's entries with a value, as name+"\x00"+value.
var hpackWhole = map[string]uint8{
	":method\x00GET": 2, ":method\x00POST": 3, ":path\x00/": 4, ":path\x00/index.html": 5,
	":scheme\x00http": 6, ":scheme\x00https": 7, ":status\x00200": 8, ":status\x00204": 9,
	":status\x00206": 10, ":status\x00304": 11, ":status\x00400": 12, ":status\x00404": 13,
	":status\x00500": 14, "accept-encoding\x00gzip, deflate": 16,
}

func init() {
	names := []string{":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme",
		":status", ":status", ":status", ":status", ":status", ":status", ":status",
		"accept-charset", "accept-encoding", "accept-language", "accept-ranges", "accept",
		"access-control-allow-origin", "age", "allow", "authorization", "cache-control",
		"content-disposition", "content-encoding", "content-language", "content-length",
		"content-location", "content-range", "content-type", "cookie", "date", "etag", "expect",
		"expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
		"if-unmodified-since", "last-modified", "link", "location", "max-forwards",
		"proxy-authenticate", "proxy-authorization", "range", "referer", "refresh", "retry-after",
		"server", "set-cookie", "strict-transport-security", "transfer-encoding", "user-agent",
		"vary", "via", "www-authenticate"}
	for i, n := range names {
		if _, ok := hpackStatic[n]; !ok {
			hpackStatic[n] = uint8(i + 1)
		}
	}
}

// appendHpack appends one field, whose name is lower-case.
func appendHpack(b []byte, name, value string) []byte {
	if len(name) > 0 && name[0] == ':' && len(value) <= 11 {
		// Pseudo-headers are where whole matches are; the key is built on
		// the stack.
		var k [32]byte
		n := copy(k[:], name)
		k[n] = 0
		n++
		n += copy(k[n:], value)
		if i, ok := hpackWhole[string(k[:n])]; ok {
			return append(b, 0x80|i)
		}
	}
	// Literal without indexing (0000), or never indexed (0001) for the
	// fields that carry credentials, so that no proxy after xlb indexes
	// them either.
	flags := byte(0)
	switch name {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		flags = 0x10
	}
	if i, ok := hpackStatic[name]; ok {
		b = hpackInt(b, flags, 4, uint64(i))
	} else {
		b = append(b, flags)
		b = hpackInt(b, 0, 7, uint64(len(name)))
		b = append(b, name...)
	}
	b = hpackInt(b, 0, 7, uint64(len(value)))
	return append(b, value...)
}

// hpackInt appends an integer with an n-bit prefix (RFC 7541 5.1), the
// prefix's other bits set to first.
func hpackInt(b []byte, first byte, n uint, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(max))
	v -= max
	for v >= 128 {
		b = append(b, byte(v&0x7f|0x80))
		v >>= 7
	}
	return append(b, byte(v))
}
