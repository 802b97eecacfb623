package h1

import (
	"errors"
	"strings"
	"testing"
)

// wrkHead is what load generators send: the hot path's common case.
const wrkHead = "GET /index.html HTTP/1.1\r\n" +
	"Host: localhost:8080\r\n" +
	"User-Agent: wrk/4.2.0\r\n" +
	"Accept: */*\r\n" +
	"Connection: keep-alive\r\n" +
	"X-Request-Id: 7f3c9a1e\r\n" +
	"\r\n"

// browserHead has the dozen fields of a real browser navigation, so that
// per-field costs show up in the benchmarks.
const browserHead = "GET /app/dashboard?tab=overview&page=2 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/app/login\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=9f8e7d6c5b4a39281706; theme=dark; consent=yes\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"Sec-Fetch-Dest: document\r\n" +
	"Sec-Fetch-Mode: navigate\r\n" +
	"X-Forwarded-For: 203.0.113.7\r\n" +
	"\r\n"

const okResponse = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"Content-Length: 1234\r\n" +
	"Date: Tue, 25 Nov 2025 10:00:00 GMT\r\n" +
	"Server: backend\r\n" +
	"\r\n"

// reqWant lists every derived property, so each case pins all of them
// and a flag that flips by accident cannot hide behind an unchecked one.
type reqWant struct {
	method, target string
	minor          int
	fields         int
	host           *string // nil: no Host field
	cl             int64
	chunked        bool
	close          bool
	keepAlive      bool
	upgrade        bool
	expect         bool
	connNames      bool
	requestID      string
}

func str(s string) *string { return &s }

func TestParseRequestValid(t *testing.T) {
	tests := []struct {
		name string
		head string
		body string // bytes after the head, which Len must exclude
		want reqWant
	}{
		{
			name: "wrk",
			head: wrkHead,
			want: reqWant{method: "GET", target: "/index.html", minor: 1, fields: 5, host: str("localhost:8080"),
				cl: -1, keepAlive: true, requestID: "7f3c9a1e"},
		},
		{
			name: "browser",
			head: browserHead,
			want: reqWant{method: "GET", target: "/app/dashboard?tab=overview&page=2", minor: 1, fields: 12,
				host: str("www.example.com"), cl: -1, keepAlive: true},
		},
		{
			name: "minimal 1.1",
			head: "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 1, host: str("a"), cl: -1},
		},
		{
			name: "1.0 without keep-alive closes",
			head: "GET /a HTTP/1.0\r\n\r\n",
			want: reqWant{method: "GET", target: "/a", minor: 0, cl: -1, close: true},
		},
		{
			name: "1.0 with keep-alive stays open",
			head: "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			want: reqWant{method: "GET", target: "/a", minor: 0, fields: 1, cl: -1, keepAlive: true},
		},
		{
			name: "1.0 with Host and other connection option closes",
			head: "GET /a HTTP/1.0\r\nHost: h\r\nConnection: x-opt\r\n\r\n",
			want: reqWant{method: "GET", target: "/a", minor: 0, fields: 2, host: str("h"), cl: -1, close: true,
				connNames: true},
		},
		{
			name: "1.1 connection close",
			head: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 2, host: str("a"), cl: -1, close: true},
		},
		{
			name: "close wins over keep-alive",
			head: "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 2, host: str("a"), cl: -1, close: true,
				keepAlive: true},
		},
		{
			name: "connection options over two fields and empty list elements",
			head: "GET / HTTP/1.1\r\nHost: a\r\nConnection: , keep-alive ,\r\nConnection: close\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 3, host: str("a"), cl: -1, close: true,
				keepAlive: true},
		},
		{
			name: "content-length",
			head: "POST /submit HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\n",
			body: "hello",
			want: reqWant{method: "POST", target: "/submit", minor: 1, fields: 2, host: str("api"), cl: 5},
		},
		{
			name: "content-length zero",
			head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
			want: reqWant{method: "POST", target: "/", minor: 1, fields: 2, host: str("a"), cl: 0},
		},
		{
			name: "content-length leading zeros",
			head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
			want: reqWant{method: "POST", target: "/", minor: 1, fields: 2, host: str("a"), cl: 7},
		},
		{
			name: "content-length 18 digits",
			head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n",
			want: reqWant{method: "POST", target: "/", minor: 1, fields: 2, host: str("a"), cl: 999999999999999999},
		},
		{
			name: "content-length identical list",
			head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
			body: "hello",
			want: reqWant{method: "POST", target: "/", minor: 1, fields: 2, host: str("a"), cl: 5},
		},
		{
			name: "content-length identical fields",
			head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length:5\r\n\r\n",
			body: "hello",
			want: reqWant{method: "POST", target: "/", minor: 1, fields: 3, host: str("a"), cl: 5},
		},
		{
			name: "content-length same number spelled differently",
			head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n",
			want: reqWant{method: "POST", target: "/", minor: 1, fields: 3, host: str("a"), cl: 5},
		},
		{
			name: "chunked",
			head: "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
			body: "5\r\nhello\r\n0\r\n\r\n",
			want: reqWant{method: "POST", target: "/up", minor: 1, fields: 2, host: str("a"), cl: -1, chunked: true},
		},
		{
			name: "chunked any case",
			head: "POST /up HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  CHUNKED \r\n\r\n",
			want: reqWant{method: "POST", target: "/up", minor: 1, fields: 2, host: str("a"), cl: -1, chunked: true},
		},
		{
			name: "websocket upgrade",
			head: "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			want: reqWant{method: "GET", target: "/ws", minor: 1, fields: 3, host: str("a"), cl: -1, upgrade: true},
		},
		{
			name: "upgrade field alone",
			head: "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
			want: reqWant{method: "GET", target: "/ws", minor: 1, fields: 2, host: str("a"), cl: -1, upgrade: true},
		},
		{
			name: "connection upgrade alone",
			head: "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n",
			want: reqWant{method: "GET", target: "/ws", minor: 1, fields: 2, host: str("a"), cl: -1, upgrade: true},
		},
		{
			name: "expect",
			head: "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
			want: reqWant{method: "PUT", target: "/f", minor: 1, fields: 3, host: str("a"), cl: 3, expect: true},
		},
		{
			name: "connection names a field",
			head: "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 3, host: str("a"), cl: -1, keepAlive: true,
				connNames: true},
		},
		{
			name: "request id any case",
			head: "GET / HTTP/1.1\r\nx-request-ID: abc-123\r\nHost: a\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 2, host: str("a"), cl: -1, requestID: "abc-123"},
		},
		{
			name: "LF only",
			head: "GET / HTTP/1.1\nHost: a\nContent-Length: 2\n\n",
			body: "hi",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 2, host: str("a"), cl: 2},
		},
		{
			name: "mixed line ends",
			head: "GET / HTTP/1.1\nHost: a\r\nX: y\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 2, host: str("a"), cl: -1},
		},
		{
			name: "four leading empty lines",
			head: "\r\n\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 1, host: str("a"), cl: -1},
		},
		{
			name: "one leading empty line",
			head: "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 1, host: str("a"), cl: -1},
		},
		{
			name: "value trimming",
			head: "GET / HTTP/1.1\r\nHost: \t example.com \t \r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 1, host: str("example.com"), cl: -1},
		},
		{
			// RFC 9112 3.2: a client with no authority sends an empty Host.
			name: "empty host",
			head: "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 1, host: str(""), cl: -1},
		},
		{
			name: "absolute form",
			head: "GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: reqWant{method: "GET", target: "http://example.com/x?y=1", minor: 1, fields: 1,
				host: str("example.com"), cl: -1},
		},
		{
			name: "asterisk form",
			head: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqWant{method: "OPTIONS", target: "*", minor: 1, fields: 1, host: str("a"), cl: -1},
		},
		{
			name: "authority form",
			head: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
			want: reqWant{method: "CONNECT", target: "example.com:443", minor: 1, fields: 1,
				host: str("example.com:443"), cl: -1},
		},
		{
			name: "extension method",
			head: "M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\n\r\n",
			want: reqWant{method: "M-SEARCH", target: "*", minor: 1, fields: 1, host: str("239.255.255.250:1900"), cl: -1},
		},
		{
			name: "obs-text, inner whitespace and empty values",
			head: "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\nX-Sp: a \t b\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n",
			want: reqWant{method: "GET", target: "/", minor: 1, fields: 5, host: str("a"), cl: -1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			in := []byte(tt.head + tt.body)
			if err := ParseRequest(in, &h); err != nil {
				t.Fatalf("ParseRequest(%q) = %v", tt.head, err)
			}
			w := tt.want
			if h.Len != len(tt.head) {
				t.Errorf("Len = %d, want %d", h.Len, len(tt.head))
			}
			if string(h.Method) != w.method || string(h.Target) != w.target || h.Minor != w.minor {
				t.Errorf("request line = %q %q 1.%d, want %q %q 1.%d", h.Method, h.Target, h.Minor, w.method, w.target, w.minor)
			}
			if len(h.Fields) != w.fields {
				t.Errorf("%d fields, want %d", len(h.Fields), w.fields)
			}
			switch {
			case w.host == nil && h.Host != nil:
				t.Errorf("Host = %q, want none", h.Host)
			case w.host != nil && h.Host == nil:
				t.Errorf("Host missing, want %q", *w.host)
			case w.host != nil && string(h.Host) != *w.host:
				t.Errorf("Host = %q, want %q", h.Host, *w.host)
			}
			if h.ContentLength != w.cl {
				t.Errorf("ContentLength = %d, want %d", h.ContentLength, w.cl)
			}
			got := [...]bool{h.Chunked, h.OtherCoding, h.Close, h.KeepAlive, h.Upgrade, h.Expect, h.ConnNames}
			want := [...]bool{w.chunked, false, w.close, w.keepAlive, w.upgrade, w.expect, w.connNames}
			if got != want {
				t.Errorf("Chunked, OtherCoding, Close, KeepAlive, Upgrade, Expect, ConnNames = %v, want %v", got, want)
			}
			if string(h.RequestID) != w.requestID {
				t.Errorf("RequestID = %q, want %q", h.RequestID, w.requestID)
			}
			if h.Status != 0 || h.Reason != nil {
				t.Errorf("status line fields set on a request: %d %q", h.Status, h.Reason)
			}
		})
	}
}

func TestParseRequestFields(t *testing.T) {
	head := "POST /x HTTP/1.1\r\n" +
		"HOST: h\r\n" +
		"content-LENGTH:\t3\r\n" +
		"Connection:  keep-alive, Foo  \r\n" +
		"X-Forwarded-For:1.2.3.4, 5.6.7.8\r\n" +
		"x-forwarded-proto: https\r\n" +
		"X-FORWARDED-HOST: h\r\n" +
		"Forwarded: for=1.2.3.4\r\n" +
		"cookie: a=b\r\n" +
		"X-Custom: \tv  w\t \r\n" +
		"\r\n"
	want := []struct {
		name, value string
		kind        Kind
	}{
		{"HOST", "h", Host},
		{"content-LENGTH", "3", ContentLength},
		{"Connection", "keep-alive, Foo", Connection},
		{"X-Forwarded-For", "1.2.3.4, 5.6.7.8", XForwardedFor},
		{"x-forwarded-proto", "https", XForwardedProto},
		{"X-FORWARDED-HOST", "h", XForwardedHost},
		{"Forwarded", "for=1.2.3.4", Forwarded},
		{"cookie", "a=b", Cookie},
		{"X-Custom", "v  w", Other},
	}
	var h Head
	if err := ParseRequest([]byte(head), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Fields) != len(want) {
		t.Fatalf("%d fields, want %d", len(h.Fields), len(want))
	}
	for i, w := range want {
		f := h.Fields[i]
		if string(f.Name) != w.name || string(f.Value) != w.value || f.Kind != w.kind {
			t.Errorf("field %d = %q: %q (%d), want %q: %q (%d)", i, f.Name, f.Value, f.Kind, w.name, w.value, w.kind)
		}
	}
	if got := h.Get("x-custom"); string(got) != "v  w" {
		t.Errorf("Get(x-custom) = %q", got)
	}
	if got := h.Get("absent"); got != nil {
		t.Errorf("Get(absent) = %q, want nil", got)
	}
	if !h.Named([]byte("foo")) || !h.Named([]byte("FOO")) || !h.Named([]byte("Keep-Alive")) {
		t.Error("Named misses an option of Connection")
	}
	if h.Named([]byte("fo")) || h.Named([]byte("X-Custom")) || h.Named(nil) {
		t.Error("Named reports a field that Connection does not name")
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
	}{
		{"Host", Host}, {"HOST", Host}, {"host", Host},
		{"Content-Length", ContentLength}, {"CONTENT-LENGTH", ContentLength},
		{"Transfer-Encoding", TransferEncoding}, {"transfer-ENCODING", TransferEncoding},
		{"Connection", Connection}, {"Keep-Alive", KeepAlive}, {"Proxy-Connection", ProxyConnection},
		{"TE", TE}, {"te", TE}, {"Trailer", Trailer}, {"Upgrade", Upgrade},
		{"Proxy-Authenticate", ProxyAuthenticate}, {"Proxy-Authorization", ProxyAuthorization},
		{"Expect", Expect}, {"Cookie", Cookie}, {"X-Request-ID", XRequestID}, {"x-request-id", XRequestID},
		{"X-Forwarded-For", XForwardedFor}, {"X-Forwarded-Proto", XForwardedProto},
		{"X-Forwarded-Host", XForwardedHost}, {"Forwarded", Forwarded},
		// Near misses must not inherit a special meaning.
		{"Hosts", Other}, {"Hos", Other}, {"Content-Lengt", Other}, {"Content_Length", Other},
		{"Transfer-Encodings", Other}, {"Trailers", Other}, {"T", Other}, {"X", Other}, {"Cookie2", Other},
		{"Set-Cookie", Other}, {"Authorization", Other}, {"Content-Type", Other},
		// Case folding is ASCII only: bytes that are letters in other
		// encodings must not fold onto a known name.
		{"Ho\xd3t", Other}, {"ho\x93t", Other},
		{strings.Repeat("x", 31), Other}, {strings.Repeat("x", 32), Other}, {strings.Repeat("host", 100), Other},
		{"", Other},
	}
	for _, tt := range tests {
		if got := kindOf([]byte(tt.name)); got != tt.kind {
			t.Errorf("kindOf(%q) = %d, want %d", tt.name, got, tt.kind)
		}
	}
	// Every known name must be reachable through the length index.
	for _, k := range known {
		if got := kindOf([]byte(strings.ToUpper(k.name))); got != k.kind {
			t.Errorf("kindOf(%q) = %d, want %d", strings.ToUpper(k.name), got, k.kind)
		}
	}
}

func TestKindHop(t *testing.T) {
	hop := map[Kind]bool{
		ContentLength: true, TransferEncoding: true, Connection: true, KeepAlive: true, ProxyConnection: true,
		TE: true, Trailer: true, Upgrade: true, ProxyAuthenticate: true, ProxyAuthorization: true,
	}
	for k := Other; k <= Forwarded; k++ {
		if k.Hop() != hop[k] {
			t.Errorf("Kind(%d).Hop() = %v, want %v", k, k.Hop(), hop[k])
		}
	}
}

func TestEqualFold(t *testing.T) {
	tests := []struct {
		b, lower string
		want     bool
	}{
		{"chunked", "chunked", true},
		{"CHUNKED", "chunked", true},
		{"ChUnKeD", "chunked", true},
		{"chunke", "chunked", false},
		{"chunkedx", "chunked", false},
		{"", "", true},
		{"[", "{", false}, // '[' is 'Z'+1: only A-Z may fold
		{"@", "`", false},
	}
	for _, tt := range tests {
		if got := EqualFold([]byte(tt.b), tt.lower); got != tt.want {
			t.Errorf("EqualFold(%q, %q) = %v", tt.b, tt.lower, got)
		}
	}
}

// A Head is reused across a connection's requests; nothing of one
// request may leak into the next.
func TestParseRequestResetsHead(t *testing.T) {
	var h Head
	first := "POST /a HTTP/1.1\r\nHost: one\r\nTransfer-Encoding: chunked\r\nConnection: close, upgrade, x\r\n" +
		"Expect: 100-continue\r\nX-Request-Id: r1\r\n\r\n"
	if err := ParseRequest([]byte(first), &h); err != nil {
		t.Fatal(err)
	}
	capBefore := cap(h.Fields)
	if err := ParseRequest([]byte("GET /b HTTP/1.1\r\nHost: two\r\n\r\n"), &h); err != nil {
		t.Fatal(err)
	}
	if h.Chunked || h.Close || h.Upgrade || h.Expect || h.ConnNames || h.RequestID != nil ||
		h.ContentLength != -1 || string(h.Host) != "two" || len(h.Fields) != 1 {
		t.Errorf("state of the previous request leaked: %+v", h)
	}
	if cap(h.Fields) != capBefore {
		t.Errorf("Fields capacity %d, want the reused %d", cap(h.Fields), capBefore)
	}
	// A failed parse must not leave a half-parsed head that looks usable.
	if err := ParseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), &h); err == nil {
		t.Fatal("duplicate Host accepted")
	}
	if err := ParseResponse([]byte("HTTP/1.1 204 No Content\r\n\r\n"), &h); err != nil {
		t.Fatal(err)
	}
	if h.Method != nil || h.Target != nil || h.Host != nil || len(h.Fields) != 0 {
		t.Errorf("request state leaked into a response: %+v", h)
	}
}

// validRequests are complete heads whose every strict prefix must be
// reported as incomplete: the proxy calls the parser after each read and
// must neither act on nor reject a head that is still arriving.
var validRequests = []string{
	wrkHead,
	browserHead,
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"\r\n\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Empty:\r\n\r\n",
}

func TestParseRequestIncomplete(t *testing.T) {
	var h Head
	for _, head := range validRequests {
		b := []byte(head)
		if err := ParseRequest(b, &h); err != nil {
			t.Fatalf("ParseRequest(%q) = %v", head, err)
		}
		for n := 0; n < len(b); n++ {
			if err := ParseRequest(b[:n], &h); err != ErrIncomplete {
				t.Errorf("ParseRequest(%q) = %v, want ErrIncomplete", b[:n], err)
			}
		}
	}
}

// smuggling and other malformed requests, with the status they must get.
var badRequests = []struct {
	name   string
	head   string
	status int
}{
	// Framing.
	{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400},
	{"conflicting CL fields", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
	{"conflicting CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400},
	{"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400},
	{"CL minus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400},
	{"CL space inside", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", 400},
	{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400},
	{"CL exponent", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", 400},
	{"CL 19 digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n", 400},
	{"CL overflows int64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
	{"CL with parameter", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5;x\r\n\r\n", 400},
	{"CL words", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: five\r\n\r\n", 400},
	{"CL vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \v5\r\n\r\n", 400},
	{"Host with a quote", "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400},
	{"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
	{"Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
	{"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
	{"TE chunked then gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501},
	{"TE gzip then chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
	{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501},
	// RFC 9112 7: chunked must not be applied more than once: faulty framing.
	{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
	{"TE chunked in two fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"TE chunked then gzip field", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501},
	{"TE chunked with parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 501},
	{"TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 501},
	{"TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \vchunked\r\n\r\n", 400},
	{"TE form feed", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\f\r\n\r\n", 400},
	{"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"TE and CL in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},

	// Field syntax.
	{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
	{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
	{"space before colon on TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n", 400},
	{"obs-fold space", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400},
	{"first field folded", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
	{"bare CR line end", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400},
	{"CR CR LF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400},
	{"bare CR in request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"bare CR before request", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"bare CR empty line", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400},
	{"SOH in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", 400},
	{"ESC in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n", 400},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400},
	{"NUL in Host", "GET / HTTP/1.1\r\nHost: a\x00.example\r\n\r\n", 400},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-No-Colon\r\n\r\n", 400},
	{"paren in name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n", 400},
	{"at in name", "GET / HTTP/1.1\r\nHost: a\r\nX@Y: z\r\n\r\n", 400},
	{"quote in name", "GET / HTTP/1.1\r\nHost: a\r\nX\"Y: z\r\n\r\n", 400},
	{"slash in name", "GET / HTTP/1.1\r\nHost: a\r\nX/Y: z\r\n\r\n", 400},
	{"space in name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", 400},
	{"NUL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x00: z\r\n\r\n", 400},
	{"non-ASCII name", "GET / HTTP/1.1\r\nHost: a\r\nH\xc3\xb3st: z\r\n\r\n", 400},

	// Host.
	{"missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
	{"two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"two identical Host", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400},
	{"empty then other Host", "GET / HTTP/1.1\r\nHost:\r\nHost: b\r\n\r\n", 400},
	{"two Host in 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},

	// Request line.
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
	{"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505},
	{"HTTP/3.0", "GET / HTTP/3.0\r\n\r\n", 505},
	{"HTTP/1.1x", "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400},
	{"HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
	{"HTTP/11.1", "GET / HTTP/11.1\r\nHost: a\r\n\r\n", 400},
	{"HTTP/1", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400},
	{"HTTP/1.x", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400},
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
	{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"NUL in target", "GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"SOH in target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"DEL in target", "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"method only", "GET\r\nHost: a\r\n\r\n", 400},
	{"no version", "GET /\r\nHost: a\r\n\r\n", 400},
	{"empty version", "GET / \r\nHost: a\r\n\r\n", 400},
	{"no method", " / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"non-token method", "G(ET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"non-ASCII method", "G\xc9T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"five leading empty lines", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"empty request line", "\r\n\r\n\r\n\r\n\r\n", 400},
}

func TestParseRequestErrors(t *testing.T) {
	// Whatever follows a rejected head must not change the verdict: the
	// parser has to decide on complete lines only.
	const more = "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tt := range badRequests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			for _, in := range []string{tt.head, tt.head + more} {
				err := ParseRequest([]byte(in), &h)
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("ParseRequest(%q) = %v, want *Error with status %d", in, err, tt.status)
				}
				if e.Status != tt.status {
					t.Errorf("ParseRequest(%q) status = %d (%s), want %d", in, e.Status, e.Msg, tt.status)
				}
				if e.Error() == "" {
					t.Error("empty error message")
				}
			}
		})
	}
}

type respWant struct {
	status      int
	reason      string
	minor       int
	fields      int
	cl          int64
	chunked     bool
	otherCoding bool
	close       bool
	keepAlive   bool
	upgrade     bool
}

func TestParseResponseValid(t *testing.T) {
	tests := []struct {
		name string
		head string
		body string
		want respWant
	}{
		{"ok", okResponse, "x", respWant{status: 200, reason: "OK", minor: 1, fields: 4, cl: 1234}},
		{"no reason", "HTTP/1.1 200\r\n\r\n", "", respWant{status: 200, minor: 1, cl: -1}},
		{"empty reason", "HTTP/1.1 204 \r\n\r\n", "", respWant{status: 204, minor: 1, cl: -1}},
		{"reason with spaces, tab and obs-text", "HTTP/1.1 404 Not \tFound \xe2\x9c\x97\r\n\r\n", "",
			respWant{status: 404, reason: "Not \tFound \xe2\x9c\x97", minor: 1, cl: -1}},
		{"status 100", "HTTP/1.1 100 Continue\r\n\r\n", "", respWant{status: 100, reason: "Continue", minor: 1, cl: -1}},
		{"status 999", "HTTP/1.1 999 X\r\n\r\n", "", respWant{status: 999, reason: "X", minor: 1, cl: -1}},
		{"1.0 without keep-alive closes", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", "hi",
			respWant{status: 200, reason: "OK", minor: 0, fields: 1, cl: 2, close: true}},
		{"1.0 with keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", "hi",
			respWant{status: 200, reason: "OK", minor: 0, fields: 2, cl: 2, keepAlive: true}},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "",
			respWant{status: 200, reason: "OK", minor: 1, fields: 1, cl: -1, close: true}},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "0\r\n\r\n",
			respWant{status: 200, reason: "OK", minor: 1, fields: 1, cl: -1, chunked: true}},
		// RFC 9112 6.3: Transfer-Encoding overrides Content-Length, and
		// the connection cannot be trusted afterwards; a body that is not
		// chunked runs until the close.
		{"CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", "",
			respWant{status: 200, reason: "OK", minor: 1, fields: 2, cl: -1, chunked: true, close: true}},
		{"TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n", "",
			respWant{status: 200, reason: "OK", minor: 1, fields: 2, cl: -1, chunked: true, close: true}},
		{"TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "",
			respWant{status: 200, reason: "OK", minor: 1, fields: 1, cl: -1, otherCoding: true, close: true}},
		{"TE gzip and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n", "",
			respWant{status: 200, reason: "OK", minor: 1, fields: 2, cl: -1, otherCoding: true, close: true}},
		{"TE chunked then gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "",
			respWant{status: 200, reason: "OK", minor: 1, fields: 1, cl: -1, otherCoding: true, close: true}},
		{"TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "",
			respWant{status: 200, reason: "OK", minor: 1, fields: 2, cl: -1, otherCoding: true, close: true}},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "",
			respWant{status: 101, reason: "Switching Protocols", minor: 1, fields: 2, cl: -1, upgrade: true}},
		{"LF only", "HTTP/1.1 200 OK\nContent-Length: 1\n\n", "x",
			respWant{status: 200, reason: "OK", minor: 1, fields: 1, cl: 1}},
		{"CL identical list", "HTTP/1.1 200 OK\r\nContent-Length: 3,3\r\nContent-Length: 3\r\n\r\n", "abc",
			respWant{status: 200, reason: "OK", minor: 1, fields: 2, cl: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			if err := ParseResponse([]byte(tt.head+tt.body), &h); err != nil {
				t.Fatalf("ParseResponse(%q) = %v", tt.head, err)
			}
			w := tt.want
			if h.Len != len(tt.head) {
				t.Errorf("Len = %d, want %d", h.Len, len(tt.head))
			}
			if h.Status != w.status || string(h.Reason) != w.reason || h.Minor != w.minor {
				t.Errorf("status line = 1.%d %d %q, want 1.%d %d %q", h.Minor, h.Status, h.Reason, w.minor, w.status, w.reason)
			}
			if len(h.Fields) != w.fields {
				t.Errorf("%d fields, want %d", len(h.Fields), w.fields)
			}
			if h.ContentLength != w.cl {
				t.Errorf("ContentLength = %d, want %d", h.ContentLength, w.cl)
			}
			got := [...]bool{h.Chunked, h.OtherCoding, h.Close, h.KeepAlive, h.Upgrade}
			want := [...]bool{w.chunked, w.otherCoding, w.close, w.keepAlive, w.upgrade}
			if got != want {
				t.Errorf("Chunked, OtherCoding, Close, KeepAlive, Upgrade = %v, want %v", got, want)
			}
			if h.Method != nil || h.Target != nil {
				t.Errorf("request line fields set on a response: %q %q", h.Method, h.Target)
			}
		})
	}
}

func TestParseResponseIncomplete(t *testing.T) {
	var h Head
	for _, head := range []string{
		okResponse,
		"HTTP/1.1 200\r\n\r\n",
		"HTTP/1.0 304 Not Modified\nETag: \"x\"\n\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	} {
		b := []byte(head)
		if err := ParseResponse(b, &h); err != nil {
			t.Fatalf("ParseResponse(%q) = %v", head, err)
		}
		for n := 0; n < len(b); n++ {
			if err := ParseResponse(b[:n], &h); err != ErrIncomplete {
				t.Errorf("ParseResponse(%q) = %v, want ErrIncomplete", b[:n], err)
			}
		}
	}
}

func TestParseResponseErrors(t *testing.T) {
	tests := []struct {
		name   string
		head   string
		status int
	}{
		{"letter in code", "HTTP/1.1 2x0 OK\r\n\r\n", 400},
		{"leading zero code", "HTTP/1.1 099 OK\r\n\r\n", 400},
		{"two digit code", "HTTP/1.1 20 OK\r\n\r\n", 400},
		{"four digit code", "HTTP/1.1 2000 OK\r\n\r\n", 400},
		{"code glued to reason", "HTTP/1.1 200OK\r\n\r\n", 400},
		{"double space", "HTTP/1.1  200 OK\r\n\r\n", 400},
		{"short line", "HTTP/1.1 20\r\n\r\n", 400},
		{"version only", "HTTP/1.1\r\n\r\n", 400},
		{"empty line", "\r\n\r\n", 400},
		{"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", 400},
		{"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", 505},
		{"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", 505},
		{"bad version", "HTTP/1.x 200 OK\r\n\r\n", 400},
		{"ICY", "ICY 200 OK\r\n\r\n", 400},
		{"control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 400},
		{"DEL in reason", "HTTP/1.1 200 OK\x7f\r\n\r\n", 400},
		{"bare CR in reason", "HTTP/1.1 200 O\rK\r\n\r\n", 400},
		{"conflicting CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
		{"bad CL", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 400},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 400},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", 400},
		{"NUL in value", "HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n", 400},
		{"bare CR in field", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", 400},
	}
	const more = "HTTP/1.1 200 OK\r\n\r\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Head
			for _, in := range []string{tt.head, tt.head + more} {
				err := ParseResponse([]byte(in), &h)
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("ParseResponse(%q) = %v, want *Error with status %d", in, err, tt.status)
				}
				if e.Status != tt.status {
					t.Errorf("ParseResponse(%q) status = %d (%s), want %d", in, e.Status, e.Msg, tt.status)
				}
			}
		})
	}
}

func TestChunkSize(t *testing.T) {
	ok := []struct {
		line string
		n    int64
	}{
		{"0", 0},
		{"a", 10},
		{"A", 10},
		{"FF", 255},
		{"ff", 255},
		{"1f;ext=1", 31},
		{"5 ;x", 5},
		{"5\t;x", 5},
		{"5;", 5},
		{"5 ", 5},
		{"5;name=\"quoted value\"", 5},
		{"5;a=1;b\t=2", 5},
		{"0000", 0},
		{"fffffffffffffff", 1<<60 - 1}, // 15 digits: the most that fits unchecked
		{"5;caf\xc3\xa9", 5},
	}
	for _, tt := range ok {
		n, err := ChunkSize([]byte(tt.line))
		if err != nil || n != tt.n {
			t.Errorf("ChunkSize(%q) = %d, %v, want %d", tt.line, n, err, tt.n)
		}
	}
	bad := []string{
		"", "g", ";x", " 5", "1 2", "-1", "+1", "0x10", "5,6", "5\x00", "5;\x00", "5;a=\x7f", "5;\r",
		"ffffffffffffffff",  // 16 digits would overflow int64
		"0000000000000001",  // leading zeros still count towards the limit
		"10000000000000000", // 17 digits
	}
	for _, line := range bad {
		n, err := ChunkSize([]byte(line))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 {
			t.Errorf("ChunkSize(%q) = %d, %v, want a 400 *Error", line, n, err)
		}
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		in   string
		ln   string
		n    int
		err  error
		fail bool // an *Error
	}{
		{in: "abc\r\n", ln: "abc", n: 5},
		{in: "abc\n", ln: "abc", n: 4},
		{in: "ab\r\ncd\r\n", ln: "ab", n: 4},
		{in: "\r\n", ln: "", n: 2},
		{in: "\n", ln: "", n: 1},
		{in: "abc", err: ErrIncomplete},
		{in: "abc\r", err: ErrIncomplete},
		{in: "", err: ErrIncomplete},
		{in: "a\rb\n", fail: true},
		{in: "a\r\r\n", fail: true},
	}
	for _, tt := range tests {
		ln, n, err := Line([]byte(tt.in))
		var e *Error
		switch {
		case tt.fail:
			if !errors.As(err, &e) || e.Status != 400 {
				t.Errorf("Line(%q) = %q, %d, %v, want a 400 *Error", tt.in, ln, n, err)
			}
		case err != tt.err || string(ln) != tt.ln || n != tt.n:
			t.Errorf("Line(%q) = %q, %d, %v, want %q, %d, %v", tt.in, ln, n, err, tt.ln, tt.n, tt.err)
		}
	}
}

func TestAppendStatus(t *testing.T) {
	got := AppendStatus([]byte("x"), 502, []byte("Bad Gateway"))
	if string(got) != "xHTTP/1.1 502 Bad Gateway\r\n" {
		t.Errorf("AppendStatus = %q", got)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { AppendStatus(buf[:0], 200, []byte("OK")) }); n != 0 {
		t.Errorf("AppendStatus allocates %v times into a buffer with room", n)
	}
}

// The proxy parses every request head; the package promises that this
// costs no allocation once h.Fields has grown.
func TestParseZeroAllocs(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		parse func([]byte, *Head) error
		err   error
	}{
		{"wrk request", wrkHead, ParseRequest, nil},
		{"browser request", browserHead, ParseRequest, nil},
		{"chunked request", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, x\r\n\r\n", ParseRequest, nil},
		// Called after every read while a head arrives.
		{"incomplete request", browserHead[:len(browserHead)/2], ParseRequest, ErrIncomplete},
		{"response", okResponse, ParseResponse, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Head{Fields: make([]Field, 0, 32)}
			b := []byte(tt.in)
			if err := tt.parse(b, &h); err != tt.err {
				t.Fatalf("parse = %v, want %v", err, tt.err)
			}
			n := testing.AllocsPerRun(1000, func() { _ = tt.parse(b, &h) })
			if n != 0 {
				t.Errorf("%v allocations per parse, want 0", n)
			}
		})
	}
}

// Known bugs: each test states the behaviour the package documents or
// RFC 9112 requires, and is skipped until head.go is fixed.

// RFC 9112 6.3 item 4: when chunked is the final coding of a response,
// the body is chunked. Treating "gzip, chunked" as read-until-close makes
// the proxy forward the chunk framing as body bytes (the framing fields
// are hop-by-hop and rewritten) and wait for a close that a keep-alive
// backend never sends. head.go documents Chunked as "Transfer-Encoding
// ends in chunked".
func TestBugResponseCodingThenChunked(t *testing.T) {

	for _, in := range []string{
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		var h Head
		if err := ParseResponse([]byte(in), &h); err != nil {
			t.Fatalf("ParseResponse(%q) = %v", in, err)
		}
		if !h.Chunked || h.OtherCoding {
			t.Errorf("ParseResponse(%q): Chunked = %v, OtherCoding = %v, want true, false", in, h.Chunked, h.OtherCoding)
		}
	}
}

// RFC 9110 8.6: Content-Length = 1*DIGIT; RFC 9112 6.3 item 5: an invalid
// Content-Length is an unrecoverable framing error (400 for a request,
// 502 for a response). An empty value, or one of commas only, is taken
// as "absent" instead, and so slips past the CL+TE check too.
func TestBugEmptyContentLength(t *testing.T) {

	for _, in := range []string{
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length:\r\n\r\n",
	} {
		var h Head
		err := ParseRequest([]byte(in), &h)
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 {
			t.Errorf("ParseRequest(%q) = %v, want a 400 *Error", in, err)
		}
	}
	var h Head
	in := "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n"
	if err := ParseResponse([]byte(in), &h); err == nil {
		t.Errorf("ParseResponse(%q) accepted (ContentLength %d)", in, h.ContentLength)
	}
}

// RFC 9112 6.3 item 4: a Transfer-Encoding field whose final coding is not
// chunked means 400 for a request and read-until-close for a response; an
// empty field has no final coding at all. The parser ignores such a field,
// so a request carrying it and a Content-Length passes the "never both"
// rule that the package documents, and is framed by Content-Length while
// a peer that honours Transfer-Encoding's presence frames it otherwise.
func TestBugEmptyTransferEncoding(t *testing.T) {

	for _, in := range []string{
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: \r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\nContent-Length: 5\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
	} {
		var h Head
		err := ParseRequest([]byte(in), &h)
		var e *Error
		if !errors.As(err, &e) || (e.Status != 400 && e.Status != 501) {
			t.Errorf("ParseRequest(%q) = %v, want a 400 or 501 *Error", in, err)
		}
	}
	var h Head
	in := "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\n"
	if err := ParseResponse([]byte(in), &h); err != nil {
		t.Fatal(err)
	}
	if !h.OtherCoding || h.ContentLength != -1 || !h.Close {
		t.Errorf("ParseResponse(%q): OtherCoding %v, ContentLength %d, Close %v; want true, -1, true",
			in, h.OtherCoding, h.ContentLength, h.Close)
	}
}

// RFC 9112 6.1: "A server or client that receives an HTTP/1.0 message
// containing a Transfer-Encoding header field MUST treat the message as if
// the framing is faulty, even if a Content-Length is present, and close
// the connection after processing the message." A keep-alive HTTP/1.0
// backend response with Transfer-Encoding comes back with Close false, so
// the connection would be pooled and reused.
func TestBugResponse10TransferEncodingKeepAlive(t *testing.T) {

	for _, in := range []string{
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: gzip\r\n\r\n",
	} {
		var h Head
		if err := ParseResponse([]byte(in), &h); err != nil {
			continue // rejecting is as good
		}
		if !h.Close {
			t.Errorf("ParseResponse(%q): Close = false, want true", in)
		}
	}
}

func BenchmarkParseRequest(b *testing.B) {
	for _, bm := range []struct{ name, head string }{
		{"wrk5", wrkHead},
		{"browser12", browserHead},
	} {
		b.Run(bm.name, func(b *testing.B) {
			in := []byte(bm.head)
			h := Head{Fields: make([]Field, 0, 32)}
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := ParseRequest(in, &h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseResponse(b *testing.B) {
	in := []byte(okResponse)
	h := Head{Fields: make([]Field, 0, 32)}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseResponse(in, &h); err != nil {
			b.Fatal(err)
		}
	}
}
