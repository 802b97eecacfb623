package h1

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

var requestSeeds = []string{
	wrkHead,
	browserHead,
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"\r\n\nGET /x?y HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\n",
	"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nUpgrade: h2c\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : a\r\nX: b\r\n c\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: ,\r\n\r\n",
}

var responseSeeds = []string{
	okResponse,
	"HTTP/1.1 200\r\n\r\n",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 204 No Content\nConnection: close\n\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"HTTP/1.1 099 OK\r\n\r\n",
	"HTTP/1.1 2x0 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	"HTTP/1.1 200 O\x01K\r\n\r\n",
	"HTTP/2.0 200 OK\r\n\r\n",
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	var stale Head
	_ = ParseRequest([]byte(browserHead), &stale)
	f.Fuzz(func(t *testing.T, in []byte) {
		var h Head
		err := ParseRequest(in, &h)
		checkVerdict(t, in, err, ParseRequest)
		// A Head reused from an earlier request must come out the same
		// as a fresh one.
		reused := stale
		reused.Fields = slices.Clone(stale.Fields)
		if err2 := ParseRequest(in, &reused); !sameVerdict(err, err2) || (err == nil && !sameHead(&h, &reused)) {
			t.Fatalf("reused Head: %v, %+v; fresh Head: %v, %+v", err2, reused, err, h)
		}
		if err != nil {
			return
		}
		checkHead(t, in, &h)
		if h.Method == nil || h.Target == nil || h.Status != 0 {
			t.Fatalf("request line not recorded: %+v", h)
		}
		if h.Chunked && h.ContentLength >= 0 {
			t.Fatalf("request accepted with both Chunked and ContentLength %d", h.ContentLength)
		}
		if h.OtherCoding {
			t.Fatal("request accepted with a coding other than chunked")
		}
		if h.Minor == 1 && h.Host == nil {
			t.Fatal("HTTP/1.1 request accepted without Host")
		}
		compareNetHTTP(t, in, &h)
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var h Head
		err := ParseResponse(in, &h)
		checkVerdict(t, in, err, ParseResponse)
		if err != nil {
			return
		}
		checkHead(t, in, &h)
		if h.Status < 100 || h.Status > 999 || h.Method != nil || h.Target != nil {
			t.Fatalf("status line not recorded: %+v", h)
		}
		if (h.Chunked || h.OtherCoding) && h.ContentLength != -1 {
			t.Fatalf("Transfer-Encoding did not override ContentLength %d", h.ContentLength)
		}
		if h.Chunked && h.OtherCoding {
			t.Fatal("both Chunked and OtherCoding")
		}
		if !strings.HasPrefix(string(in), "HTTP/1."+strconv.Itoa(h.Minor)+" "+strconv.Itoa(h.Status)) {
			t.Fatalf("status line %q does not read 1.%d %d", in, h.Minor, h.Status)
		}
	})
}

// checkVerdict holds for any input: the parser decides on complete lines
// only, so an error must survive more bytes arriving, and every strict
// prefix of an accepted head must be incomplete.
func checkVerdict(t *testing.T, in []byte, err error, parse func([]byte, *Head) error) {
	t.Helper()
	var h Head
	var e *Error
	switch {
	case err == nil:
		_ = parse(in, &h)
		// Quadratic: bounded so that long inputs do not slow the fuzzer.
		for n := range min(h.Len, 1024) {
			if err := parse(in[:n], &h); err != ErrIncomplete {
				t.Fatalf("prefix of %d bytes: %v, want ErrIncomplete", n, err)
			}
		}
	case err == ErrIncomplete:
	case errors.As(err, &e):
		if e.Status != 400 && e.Status != 501 && e.Status != 505 {
			t.Fatalf("status %d", e.Status)
		}
		ext := append(slices.Clip(in), "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"...)
		var e2 *Error
		if err := parse(ext, &h); !errors.As(err, &e2) || e2.Status != e.Status {
			t.Fatalf("error %v became %v when more bytes arrived", e, err)
		}
	default:
		t.Fatalf("error of type %T: %v", err, err)
	}
}

func sameVerdict(a, b error) bool {
	var ea, eb *Error
	if errors.As(a, &ea) && errors.As(b, &eb) {
		return ea.Status == eb.Status
	}
	return a == b
}

func sameHead(a, b *Head) bool {
	if len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		fa, fb := a.Fields[i], b.Fields[i]
		if !bytes.Equal(fa.Name, fb.Name) || !bytes.Equal(fa.Value, fb.Value) || fa.Kind != fb.Kind {
			return false
		}
	}
	x, y := *a, *b
	x.Fields, y.Fields = nil, nil
	return string(x.Method) == string(y.Method) && string(x.Target) == string(y.Target) &&
		string(x.Reason) == string(y.Reason) && (x.Host == nil) == (y.Host == nil) &&
		string(x.Host) == string(y.Host) && string(x.RequestID) == string(y.RequestID) &&
		x.Status == y.Status && x.Minor == y.Minor && x.Len == y.Len && x.ContentLength == y.ContentLength &&
		x.Chunked == y.Chunked && x.OtherCoding == y.OtherCoding && x.Close == y.Close &&
		x.KeepAlive == y.KeepAlive && x.Upgrade == y.Upgrade && x.Expect == y.Expect && x.ConnNames == y.ConnNames
}

// checkHead holds for any accepted head, request or response.
func checkHead(t *testing.T, in []byte, h *Head) {
	t.Helper()
	if h.Len <= 0 || h.Len > len(in) || in[h.Len-1] != '\n' {
		t.Fatalf("Len %d of %d bytes does not end a line", h.Len, len(in))
	}
	head := in[:h.Len]
	// The head is self-delimiting: what follows it cannot matter.
	var again Head
	if err := parseLike(h, head, &again); err != nil || !sameHead(h, &again) {
		t.Fatalf("the head alone parses differently: %v", err)
	}
	if h.ContentLength < -1 {
		t.Fatalf("ContentLength %d", h.ContentLength)
	}
	for _, s := range [][]byte{h.Method, h.Target, h.Reason, h.Host, h.RequestID} {
		if !within(head, s) {
			t.Fatalf("%q is not a slice of the head", s)
		}
	}
	sawHost := false
	for _, f := range h.Fields {
		if !within(head, f.Name) || !within(head, f.Value) {
			t.Fatalf("field %q: %q is not a slice of the head", f.Name, f.Value)
		}
		if !isToken(f.Name) {
			t.Fatalf("field name %q is not a token", f.Name)
		}
		if f.Kind != kindOf(f.Name) {
			t.Fatalf("field %q has kind %d", f.Name, f.Kind)
		}
		if len(f.Value) > 0 && (isWS(f.Value[0]) || isWS(f.Value[len(f.Value)-1])) {
			t.Fatalf("field %q: value %q not trimmed", f.Name, f.Value)
		}
		for _, c := range f.Value {
			if c < ' ' && c != '\t' || c == 0x7f {
				t.Fatalf("field %q: control character in value %q", f.Name, f.Value)
			}
		}
		if f.Kind == Host {
			if sawHost || unsafe.SliceData(f.Value) != unsafe.SliceData(h.Host) || len(f.Value) != len(h.Host) {
				t.Fatalf("Host %q does not match the Host field %q", h.Host, f.Value)
			}
			sawHost = true
		}
	}
	if !sawHost && h.Host != nil {
		t.Fatalf("Host %q without a Host field", h.Host)
	}
}

func parseLike(h *Head, b []byte, into *Head) error {
	if h.Method != nil {
		return ParseRequest(b, into)
	}
	return ParseResponse(b, into)
}

func isWS(c byte) bool { return c == ' ' || c == '\t' }

// within reports whether s points into b. Empty slices may point just
// past the end of what they were cut from.
func within(b, s []byte) bool {
	if s == nil {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(b))
}

// compareNetHTTP requires net/http to accept what ParseRequest accepted
// and to read it the same way. net/http may reject more, and the cases in
// which it deliberately does are excluded below; anything else where it
// rejects a head the proxy would forward means a peer behind the proxy
// might frame or route the request differently.
func compareNetHTTP(t *testing.T, in []byte, h *Head) {
	t.Helper()
	head := in[:h.Len]
	// RFC 9112 2.2 lets a server skip empty lines before a request, as
	// ParseRequest does; http.ReadRequest reads the first line as the
	// request line.
	for len(head) > 0 && (head[0] == '\r' || head[0] == '\n') {
		head = head[1:]
	}
	// net/http parses the target as a URI (url.ParseRequestURI rejects
	// bad %-escapes, a missing leading slash and malformed hosts, among
	// others); the proxy passes the target through unparsed.
	rawurl := string(h.Target)
	if string(h.Method) == "CONNECT" && !strings.HasPrefix(rawurl, "/") {
		rawurl = "http://" + rawurl
	}
	if _, err := url.ParseRequestURI(rawurl); err != nil {
		return
	}
	var cls, tes [][]byte
	trailer := false
	for _, f := range h.Fields {
		switch f.Kind {
		case ContentLength:
			cls = append(cls, f.Value)
		case TransferEncoding:
			tes = append(tes, f.Value)
		case Trailer:
			trailer = true
		}
	}
	// RFC 9110 8.6 allows "5, 5" and equal values spelled differently
	// ("5" and "05"); net/http takes only identically spelled separate
	// fields.
	for _, v := range cls {
		if bytes.IndexByte(v, ',') >= 0 || !bytes.Equal(v, cls[0]) {
			return
		}
	}
	// net/http takes exactly one Transfer-Encoding field of exactly
	// "chunked"; ParseRequest also reads empty list elements around it
	// (RFC 9110 5.6.1) and the list split over fields.
	if h.Minor == 1 && len(tes) > 0 && (len(tes) != 1 || !EqualFold(tes[0], "chunked")) {
		if h.Chunked {
			return
		}
	}
	// net/http rejects a chunked request whose Trailer field announces
	// framing fields; ParseRequest does not read Trailer, the proxy
	// drops it as hop-by-hop.
	if h.Chunked && trailer {
		return
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		t.Fatalf("ParseRequest accepted %q, net/http rejects it: %v", head, err)
	}
	if req.Method != string(h.Method) || req.RequestURI != string(h.Target) {
		t.Fatalf("request line %q %q, net/http reads %q %q", h.Method, h.Target, req.Method, req.RequestURI)
	}
	if req.ProtoMinor != h.Minor {
		t.Fatalf("HTTP/1.%d, net/http reads %s", h.Minor, req.Proto)
	}
	switch {
	case h.Chunked:
		if req.ContentLength != -1 || !slices.Equal(req.TransferEncoding, []string{"chunked"}) {
			t.Fatalf("chunked, net/http reads length %d and codings %q", req.ContentLength, req.TransferEncoding)
		}
	case h.ContentLength >= 0:
		if req.ContentLength != h.ContentLength {
			t.Fatalf("Content-Length %d, net/http reads %d", h.ContentLength, req.ContentLength)
		}
	default:
		if req.ContentLength != 0 || req.TransferEncoding != nil {
			t.Fatalf("no body, net/http reads length %d and codings %q", req.ContentLength, req.TransferEncoding)
		}
	}
	if req.Close != h.Close {
		t.Fatalf("Close %v, net/http reads %v", h.Close, req.Close)
	}
	// net/http moves Host out of the header, and lets an absolute-form
	// target override it (RFC 9112 3.2.2).
	if h.Host != nil && req.URL.Host == "" && req.Host != string(h.Host) {
		t.Fatalf("Host %q, net/http reads %q", h.Host, req.Host)
	}
	// Field values as net/http stores them, except those it rewrites
	// while working out the framing.
	for _, f := range h.Fields {
		if f.Kind == Host || f.Kind == ContentLength || f.Kind == TransferEncoding || f.Kind == Trailer {
			continue
		}
		key := http.CanonicalHeaderKey(string(f.Name))
		var ours []string
		for _, g := range h.Fields {
			if http.CanonicalHeaderKey(string(g.Name)) == key {
				ours = append(ours, string(g.Value))
			}
		}
		if !slices.Equal(req.Header[key], ours) {
			t.Fatalf("field %s: %q, net/http reads %q", key, ours, req.Header[key])
		}
	}
}

func FuzzChunkSize(f *testing.F) {
	for _, s := range []string{"0", "a", "FF", "1f;ext=1", "5 ;x", "", "g", ";x", "1 2", "fffffffffffffff",
		"ffffffffffffffff", "5;\x00", "5\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		n, err := ChunkSize([]byte(line))
		// A plain restatement of the grammar: 1 to 15 hex digits, then
		// optional whitespace and extensions free of control characters.
		digits := strings.TrimLeft(line, "0123456789abcdefABCDEF")
		hex := line[:len(line)-len(digits)]
		rest := strings.TrimLeft(digits, " \t")
		ok := len(hex) > 0 && len(hex) < 16 && (rest == "" || rest[0] == ';') &&
			!strings.ContainsFunc(rest, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f })
		if ok != (err == nil) {
			t.Fatalf("ChunkSize(%q) = %d, %v; the grammar says ok = %v", line, n, err, ok)
		}
		if !ok {
			var e *Error
			if !errors.As(err, &e) || e.Status != 400 {
				t.Fatalf("ChunkSize(%q) error %v, want a 400 *Error", line, err)
			}
			return
		}
		if want, _ := strconv.ParseInt(hex, 16, 64); n != want {
			t.Fatalf("ChunkSize(%q) = %d, want %d", line, n, want)
		}
	})
}
