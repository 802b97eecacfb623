// Package h1 reads HTTP/1.1 message heads in place. A parsed head keeps
// slices of the connection's read buffer instead of strings, so the proxy's
// hot path allocates nothing per request; the slices are valid until the
// buffer is read into again.
//
// The parser is strict where leniency lets two parties disagree about where
// a message ends (request smuggling): one Content-Length or identical
// repeats, Transfer-Encoding only as a lone "chunked" in requests, never
// both, no whitespace before a colon, no obsolete line folding, no control
// characters in values, no bare CR.
package h1

import (
	"bytes"
	"errors"
	"strconv"
	"unsafe"
)

// Kind names the fields the proxy treats specially; all others are Other.
type Kind uint8

const (
	Other Kind = iota
	Host
	ContentLength
	TransferEncoding
	Connection
	KeepAlive
	ProxyConnection
	TE
	Trailer
	Upgrade
	ProxyAuthenticate
	ProxyAuthorization
	Expect
	Cookie
	XRequestID
	XForwardedFor
	XForwardedProto
	XForwardedHost
	Forwarded
)

// Hop reports whether a field of this kind is meaningful for one connection
// only (RFC 9110 7.6.1), so a proxy must not forward it as is. The body
// framing fields count: the proxy writes its own.
func (k Kind) Hop() bool {
	switch k {
	case ContentLength, TransferEncoding, Connection, KeepAlive, ProxyConnection, TE, Trailer, Upgrade,
		ProxyAuthenticate, ProxyAuthorization:
		return true
	}
	return false
}

// known maps lower-case names to kinds; looked up by length first.
var known = []struct {
	name string
	kind Kind
}{
	{"host", Host}, {"content-length", ContentLength}, {"transfer-encoding", TransferEncoding},
	{"connection", Connection}, {"keep-alive", KeepAlive}, {"proxy-connection", ProxyConnection},
	{"te", TE}, {"trailer", Trailer}, {"upgrade", Upgrade}, {"proxy-authenticate", ProxyAuthenticate},
	{"proxy-authorization", ProxyAuthorization}, {"expect", Expect}, {"cookie", Cookie},
	{"x-request-id", XRequestID}, {"x-forwarded-for", XForwardedFor}, {"x-forwarded-proto", XForwardedProto},
	{"x-forwarded-host", XForwardedHost}, {"forwarded", Forwarded},
}

var byLen [32][]int

func init() {
	for i, k := range known {
		byLen[len(k.name)] = append(byLen[len(k.name)], i)
	}
}

func kindOf(name []byte) Kind {
	if len(name) >= len(byLen) {
		return Other
	}
	for _, i := range byLen[len(name)] {
		if EqualFold(name, known[i].name) {
			return known[i].kind
		}
	}
	return Other
}

// EqualFold compares b with lower, which must be lower-case ASCII.
func EqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Field is one header field; Value has no surrounding whitespace.
type Field struct {
	Name, Value []byte
	Kind        Kind
}

// Head is a parsed request or response head.
type Head struct {
	Method, Target []byte // request line
	Status         int    // status line
	Reason         []byte
	Minor          int // HTTP/1.Minor
	Fields         []Field
	Len            int // bytes of the head, the empty line included

	ContentLength int64 // -1 when absent
	Chunked       bool  // Transfer-Encoding ends in chunked
	OtherCoding   bool  // a response's Transfer-Encoding does not end in chunked: read until close
	Close         bool  // Connection: close, or HTTP/1.0 without keep-alive
	KeepAlive     bool  // Connection: keep-alive
	Upgrade       bool  // Connection names upgrade, or an Upgrade field is present
	Expect        bool  // an Expect field is present
	ConnNames     bool  // Connection names other fields, which are hop-by-hop too
	Host          []byte
	RequestID     []byte // X-Request-Id, when present

	// Transfer-Encoding as seen so far: present, a coding other than
	// chunked, how many chunked, whether the last coding is chunked.
	te, teOther  bool
	teChunked    int
	teLastChunks bool
}

// Errors. A request error is answered with its status and the connection
// is closed; a response error makes the backend's answer unusable (502).
var (
	ErrIncomplete = errors.New("incomplete head")
)

// Error is a malformed message.
type Error struct {
	Status int // the status to answer a request with: 400, 501 or 505
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func bad(msg string) error { return &Error{Status: 400, Msg: msg} }

// tchar is RFC 9110's token character set.
var tchar = alnumAnd("!#$%&'*+-.^_`|~")

// hostByte is what a Host value may hold: a reg-name, IP literal and
// port (RFC 3986), as net/http's server accepts.
var hostByte = alnumAnd("!$%&'()*+,-.:;=[]_~")

// alnumAnd is the set of ASCII letters and digits plus extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

// line returns the next line of b from i (without its terminator) and the
// index after the terminator. Lines end in CRLF or a lone LF (RFC 9112 2.2);
// a CR anywhere else is an error.
func line(b []byte, i int) (ln []byte, next int, err error) {
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '\n':
			end := j
			if end > i && b[end-1] == '\r' {
				end--
			}
			return b[i:end], j + 1, nil
		case '\r':
			if j+1 < len(b) && b[j+1] != '\n' {
				return nil, 0, bad("bare CR in head")
			}
		}
	}
	return nil, 0, ErrIncomplete
}

// ParseRequest parses the request head at the start of b into h, reusing
// h.Fields. It returns ErrIncomplete when b ends before the head does.
func ParseRequest(b []byte, h *Head) error {
	h.reset()
	i := 0
	// A client may send an empty line before a request (RFC 9112 2.2).
	for n := 0; n < 4; n++ {
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			i += 2
		} else if i < len(b) && b[i] == '\n' {
			i++
		}
	}
	ln, i, err := line(b, i)
	if err != nil {
		return err
	}
	sp1 := indexByte(ln, ' ')
	if sp1 <= 0 || !isToken(ln[:sp1]) {
		return bad("malformed request line")
	}
	h.Method = ln[:sp1]
	rest := ln[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 <= 0 {
		return bad("malformed request line")
	}
	h.Target = rest[:sp2]
	for _, c := range h.Target {
		if c <= ' ' || c == 0x7f {
			return bad("malformed request target")
		}
	}
	if h.Minor, err = version(rest[sp2+1:]); err != nil {
		return err
	}
	if i, err = h.fields(b, i); err != nil {
		return err
	}
	if h.Minor == 1 && h.Host == nil {
		return bad("missing Host")
	}
	for _, c := range h.Host {
		// The proxy repeats Host in X-Forwarded-Host and Forwarded: a
		// quote or a separator there could forge fields for the backend.
		if !hostByte[c] {
			return bad("malformed Host")
		}
	}
	if h.te && h.ContentLength >= 0 {
		return bad("both Content-Length and Transfer-Encoding")
	}
	if h.te && h.Minor == 0 {
		return bad("Transfer-Encoding in an HTTP/1.0 request")
	}
	if h.teChunked > 1 {
		return bad("chunked applied more than once")
	}
	if h.OtherCoding || h.teOther {
		return &Error{Status: 501, Msg: "unsupported Transfer-Encoding"}
	}
	h.Len = i
	return nil
}

// ParseResponse parses a response head at the start of b, like ParseRequest.
func ParseResponse(b []byte, h *Head) error {
	h.reset()
	ln, i, err := line(b, 0)
	if err != nil {
		return err
	}
	if len(ln) < 12 || ln[8] != ' ' {
		return bad("malformed status line")
	}
	if h.Minor, err = version(ln[:8]); err != nil {
		return err
	}
	code := ln[9:12]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return bad("malformed status code")
	}
	h.Status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if len(ln) > 12 {
		if ln[12] != ' ' {
			return bad("malformed status line")
		}
		h.Reason = ln[13:]
		for _, c := range h.Reason {
			if c < ' ' && c != '\t' || c == 0x7f {
				return bad("control character in reason phrase")
			}
		}
	}
	if i, err = h.fields(b, i); err != nil {
		return err
	}
	if h.te {
		// Transfer-Encoding wins (RFC 9112 6.3); the connection is not
		// reused when Content-Length disagreed about the message's end,
		// nor when the body runs until the close.
		if h.ContentLength >= 0 || h.OtherCoding {
			h.Close = true
		}
		h.ContentLength = -1
	}
	h.Len = i
	return nil
}

func (h *Head) reset() {
	fields := h.Fields[:0]
	*h = Head{Fields: fields, ContentLength: -1}
}

func version(v []byte) (minor int, err error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return 0, bad("malformed HTTP version")
	}
	if v[5] != '1' || v[7] > '1' {
		return 0, &Error{Status: 505, Msg: "HTTP version not supported"}
	}
	return int(v[7] - '0'), nil
}

// fields parses header lines from i up to and including the empty line.
func (h *Head) fields(b []byte, i int) (int, error) {
	for {
		ln, next, err := line(b, i)
		if err != nil {
			return 0, err
		}
		i = next
		if len(ln) == 0 {
			break
		}
		f, err := parseField(ln)
		if err != nil {
			return 0, err
		}
		if err := h.note(&f); err != nil {
			return 0, err
		}
		h.Fields = append(h.Fields, f)
	}
	if h.te {
		h.Chunked = h.teLastChunks && h.teChunked == 1
		h.OtherCoding = !h.Chunked
		if h.Minor == 0 {
			// An HTTP/1.0 message with Transfer-Encoding has faulty
			// framing: the connection closes after it (RFC 9112 6.1).
			h.Close = true
		}
	}
	if h.Minor == 0 && !h.KeepAlive {
		h.Close = true
	}
	return i, nil
}

// ParseField parses one header field line without its line end (a
// trailer, say), as a head's fields are parsed.
func ParseField(ln []byte) (Field, bool) {
	f, err := parseField(ln)
	return f, err == nil
}

func parseField(ln []byte) (Field, error) {
	if ln[0] == ' ' || ln[0] == '\t' {
		return Field{}, bad("obsolete line folding")
	}
	colon := indexByte(ln, ':')
	if colon <= 0 || !isToken(ln[:colon]) {
		return Field{}, bad("malformed header field")
	}
	v := trim(ln[colon+1:])
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return Field{}, bad("control character in header value")
		}
	}
	return Field{Name: ln[:colon], Value: v, Kind: kindOf(ln[:colon])}, nil
}

// ValidValue reports whether a field value can be carried in HTTP/1.1 as
// it is: no control characters but tab.
func ValidValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// ValidName reports whether a field name is a token.
func ValidName(name string) bool {
	return len(name) > 0 && isToken(unsafe.Slice(unsafe.StringData(name), len(name)))
}

// trimList is a list value without commas and whitespace: empty when the
// list has no element.
func trimList(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t' || v[0] == ',') {
		v = v[1:]
	}
	return v
}

// note records what a special field means for framing and routing.
func (h *Head) note(f *Field) error {
	switch f.Kind {
	case Host:
		if h.Host != nil {
			return bad("more than one Host")
		}
		h.Host = f.Value
	case ContentLength:
		if len(trimList(f.Value)) == 0 {
			return bad("empty Content-Length")
		}
		for elem := range commaList(f.Value) {
			n, ok := parseLength(elem)
			if !ok {
				return bad("malformed Content-Length")
			}
			if h.ContentLength >= 0 && h.ContentLength != n {
				return bad("conflicting Content-Length")
			}
			h.ContentLength = n
		}
	case TransferEncoding:
		// The final coding decides the framing (RFC 9112 6.3); settled in
		// framing once every field is seen. A field listing no coding
		// leaves no final coding: not chunked.
		h.te = true
		if len(trimList(f.Value)) == 0 {
			h.teLastChunks = false
		}
		for elem := range commaList(f.Value) {
			h.teLastChunks = EqualFold(elem, "chunked")
			if h.teLastChunks {
				h.teChunked++
			} else {
				h.teOther = true
			}
		}
	case Connection:
		for elem := range commaList(f.Value) {
			switch {
			case EqualFold(elem, "close"):
				h.Close = true
			case EqualFold(elem, "keep-alive"):
				h.KeepAlive = true
			case EqualFold(elem, "upgrade"):
				h.Upgrade = true
			default:
				h.ConnNames = true
			}
		}
	case Upgrade:
		h.Upgrade = true
	case Expect:
		h.Expect = true
	case XRequestID:
		h.RequestID = f.Value
	}
	return nil
}

// Named reports whether the Connection fields name field (other hop-by-hop
// fields, RFC 9110 7.6.1).
func (h *Head) Named(name []byte) bool {
	for i := range h.Fields {
		if h.Fields[i].Kind != Connection {
			continue
		}
		for elem := range commaList(h.Fields[i].Value) {
			if equalFoldBytes(elem, name) {
				return true
			}
		}
	}
	return false
}

// Get returns the value of the first field named name (lower-case), or nil.
func (h *Head) Get(lower string) []byte {
	for i := range h.Fields {
		if EqualFold(h.Fields[i].Name, lower) {
			return h.Fields[i].Value
		}
	}
	return nil
}

// commaList yields the non-empty, trimmed elements of a list value.
func commaList(v []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(v) > 0 {
			j := indexByte(v, ',')
			var elem []byte
			if j < 0 {
				elem, v = v, nil
			} else {
				elem, v = v[:j], v[j+1:]
			}
			if elem = trim(elem); len(elem) > 0 && !yield(elem) {
				return
			}
		}
	}
}

func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// ChunkSize parses a chunk-size line (without its line end): hex digits,
// then optional extensions, which are ignored.
func ChunkSize(ln []byte) (int64, error) {
	var n int64
	i := 0
	for ; i < len(ln); i++ {
		c := ln[i]
		var d byte
		switch {
		case isDigit(c):
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto done
		}
		if i >= 15 {
			return 0, bad("chunk too large")
		}
		n = n<<4 | int64(d)
	}
done:
	if i == 0 {
		return 0, bad("malformed chunk size")
	}
	rest := ln[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0] != ';' {
		return 0, bad("malformed chunk size")
	}
	for _, c := range rest {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, bad("control character in chunk extension")
		}
	}
	return n, nil
}

// Line returns the first line of b (without its end) and the bytes it
// took, or ErrIncomplete.
func Line(b []byte) (ln []byte, n int, err error) { return line(b, 0) }

func isToken(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return len(b) > 0
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func trim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func indexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }

func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// AppendStatus appends "HTTP/1.1 code reason\r\n".
func AppendStatus(dst []byte, code int, reason []byte) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	return append(dst, "\r\n"...)
}
