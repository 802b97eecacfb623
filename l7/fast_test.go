package l7_test

// Wire-level tests of the HTTP/1.1 engine that serves plain-HTTP listeners
// (fast.go, upconn.go): raw client connections write bytes by hand and read
// with bufio + http.ReadResponse, so framing, keep-alive and connection
// closes are seen exactly as a client sees them.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/internal/promtest"
	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/l7"
)

// rawTimeout bounds every raw client connection: a proxy that hangs fails
// the test with a timeout instead of hanging it.
const rawTimeout = 5 * time.Second

// rawClient is a client connection driven by hand.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(rawTimeout))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) write(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write %q: %v", abbrev(s), err)
	}
}

// read reads one response to a request of method, and its whole body.
func (rc *rawClient) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading a response: %v%s", err, hangHint(err))
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		rc.t.Fatalf("reading a %d response's body (%d bytes so far): %v%s", resp.StatusCode, len(b), err, hangHint(err))
	}
	return resp, string(b)
}

// expectClosed checks that the server closes the connection with nothing
// more to say: the next read ends (EOF, or a reset) without data.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	b, err := rc.br.ReadByte()
	switch {
	case err == nil:
		rest, _ := rc.br.Peek(rc.br.Buffered())
		rc.t.Fatalf("connection not closed: more bytes %q", append([]byte{b}, rest...))
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	default:
		rc.t.Fatalf("connection not closed by the server: %v%s", err, hangHint(err))
	}
}

func hangHint(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return " (the proxy hung: nothing came within " + rawTimeout.String() + ")"
	}
	return ""
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// echoBackend answers with the request's path, then "|" and its body when
// it has one.
func echoBackend(t *testing.T) *backend {
	return newBackend(t, "echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.URL.Path)
		if len(body) > 0 {
			io.WriteString(w, "|"+string(body))
		}
	})
}

func getReq(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }

// expectEcho reads a response from echoBackend and checks it.
func (rc *rawClient) expectEcho(want string) *http.Response {
	rc.t.Helper()
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 || body != want {
		rc.t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, want)
	}
	return resp
}

// countedBackend is a net/http backend that counts the connections it
// accepts and the requests it serves.
type countedBackend struct {
	srv   *httptest.Server
	conns atomic.Int64
	hits  atomic.Int64
}

func newCountedBackend(t *testing.T, idle time.Duration, h http.HandlerFunc) *countedBackend {
	t.Helper()
	b := &countedBackend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	b.srv.Config.IdleTimeout = idle
	b.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *countedBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func addrYAML(addrs ...string) string {
	var b strings.Builder
	b.WriteString("backends:\n")
	for _, a := range addrs {
		fmt.Fprintf(&b, "  - {address: %q}\n", a)
	}
	return b.String()
}

// rawBackend is a TCP backend that reads one request per connection,
// writes reply and closes: no keep-alive, whatever reply says.
func rawBackend(t *testing.T, reply string) (addr string, reqs *atomic.Int64) {
	t.Helper()
	reqs = new(atomic.Int64)
	ln := serveTCP(t, func(c net.Conn, _ int) {
		c.SetDeadline(time.Now().Add(rawTimeout))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		reqs.Add(1)
		io.WriteString(c, reply)
	})
	return ln.Addr().String(), reqs
}

// gate is a channel a backend handler waits on; opened at most once, and
// at cleanup at the latest so that no handler outlives the test.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// wait blocks until the gate opens; false after a bound, so that a test
// that fails elsewhere cannot leave a handler stuck.
func (g *gate) wait() bool {
	select {
	case <-g.ch:
		return true
	case <-time.After(2 * rawTimeout):
		return false
	}
}

// TestFastPipelining: pipelined requests are all answered, in order, on
// one connection, whether they come in one write, across the read buffer,
// or while the previous one is being served.
func TestFastPipelining(t *testing.T) {
	// /hold/... requests wait, after telling arrived, until proceed.
	arrived, proceed := make(chan string, 1), make(chan struct{})
	a := newBackend(t, "echo", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/hold/") {
			arrived <- r.URL.Path
			select {
			case <-proceed:
			case <-time.After(2 * rawTimeout):
			}
		}
		io.WriteString(w, r.URL.Path)
	})
	p := startProxy(t, backendsYAML(a), "")

	t.Run("OneWrite", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write(getReq("/a") + getReq("/b") + getReq("/c"))
		for _, want := range []string{"/a", "/b", "/c"} {
			rc.expectEcho(want)
		}
		rc.write(getReq("/d"))
		rc.expectEcho("/d")
	})

	t.Run("LargerThanReadBuffer", func(t *testing.T) {
		// Three heads of 3 KB each: the 4 KB read buffer ends inside the
		// second head.
		rc := dialRaw(t, p.listen)
		pad := strings.Repeat("p", 3000)
		var batch strings.Builder
		for _, path := range []string{"/l1", "/l2", "/l3"} {
			fmt.Fprintf(&batch, "GET %s HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", path, pad)
		}
		rc.write(batch.String())
		for _, want := range []string{"/l1", "/l2", "/l3"} {
			rc.expectEcho(want)
		}
	})

	t.Run("Partial", func(t *testing.T) {
		// Request 2 after response 1; request 3 before response 2 is
		// read, so it may arrive while request 2 is being served.
		for i := 0; i < 20; i++ {
			rc := dialRaw(t, p.listen)
			rc.write(getReq("/1"))
			rc.expectEcho("/1")
			rc.write(getReq("/2"))
			rc.write(getReq("/3"))
			rc.expectEcho("/2")
			rc.expectEcho("/3")
			rc.write(getReq("/4"))
			rc.expectEcho("/4")
			rc.c.Close()
		}
	})

	t.Run("PartialWhileServing", func(t *testing.T) {
		// The same, with request 3 written for sure while request 2 is
		// at the backend: after the read that took request 2 left the
		// socket empty, so the engine must wait for the socket again.
		for i := 0; i < 5; i++ {
			rc := dialRaw(t, p.listen)
			rc.write(getReq("/1"))
			rc.expectEcho("/1")
			rc.write(getReq("/hold/2"))
			select {
			case <-arrived:
			case <-time.After(rawTimeout):
				t.Fatal("request 2 never reached the backend")
			}
			rc.write(getReq("/3"))
			proceed <- struct{}{}
			rc.expectEcho("/hold/2")
			rc.expectEcho("/3")
			rc.write(getReq("/4"))
			rc.expectEcho("/4")
			rc.c.Close()
		}
	})

	t.Run("SplitHead", func(t *testing.T) {
		// A head in two writes: the first part is read and found
		// incomplete, the rest must still be waited for and read.
		rc := dialRaw(t, p.listen)
		rc.write(getReq("/s1"))
		rc.expectEcho("/s1")
		rc.write("GET /s2 HTTP/1.1\r\nHo")
		time.Sleep(20 * time.Millisecond)
		rc.write("st: x\r\n\r\n")
		rc.expectEcho("/s2")
		// A whole request plus the start of the next one.
		rc.write(getReq("/s3") + "GET /s4 HTTP/1.1\r\n")
		rc.expectEcho("/s3")
		rc.write("Host: x\r\n\r\n")
		rc.expectEcho("/s4")
	})
}

// bodyBackend answers with what it received: path, body length, body
// sha256, and the X-Sum trailer.
func bodyBackend(t *testing.T) *backend {
	return newBackend(t, "body", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%s %d %x %s %v", r.URL.Path, n, h.Sum(nil), r.Trailer.Get("X-Sum"), r.TransferEncoding)
	})
}

func bodySummary(path string, body []byte, trailer, te string) string {
	return fmt.Sprintf("%s %d %x %s %s", path, len(body), sha256.Sum256(body), trailer, te)
}

// pattern is n deterministic bytes that are not all alike.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>9 + i>>17)
	}
	return b
}

// TestFastRequestBody: request bodies reach the backend intact, streamed or
// whole, and the client connection stays usable after each.
func TestFastRequestBody(t *testing.T) {
	a := bodyBackend(t)
	p := startProxy(t, backendsYAML(a), "")

	t.Run("ContentLength1MiB", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		body := pattern(1 << 20)
		rc.write("POST /big HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
		for part := range slices.Chunk(body, 128<<10) {
			rc.write(string(part))
			time.Sleep(2 * time.Millisecond)
		}
		resp, got := rc.read("POST")
		if want := bodySummary("/big", body, "", "[]"); resp.StatusCode != 200 || got != want {
			t.Fatalf("backend saw %d %q, want %q", resp.StatusCode, got, want)
		}
		rc.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, got := rc.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(got, "/after 0 ") {
			t.Fatalf("GET after the upload: %d %q", resp.StatusCode, got)
		}
	})

	t.Run("ChunkedWithTrailer", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write("POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
		parts := []string{"5\r\nhello\r\n", "6\r\n world\r\n", "a;ext=1\r\n0123456789\r\n", "1000\r\n" + strings.Repeat("z", 4096) + "\r\n", "0\r\nX-Sum: abc\r\n\r\n"}
		for _, part := range parts {
			rc.write(part)
			time.Sleep(2 * time.Millisecond)
		}
		body := []byte("hello world0123456789" + strings.Repeat("z", 4096))
		resp, got := rc.read("POST")
		if want := bodySummary("/chunked", body, "abc", "[chunked]"); resp.StatusCode != 200 || got != want {
			t.Fatalf("backend saw %d %q, want %q", resp.StatusCode, got, want)
		}
		rc.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, got := rc.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(got, "/after 0 ") {
			t.Fatalf("GET after the chunked upload: %d %q", resp.StatusCode, got)
		}
	})

	t.Run("SmallWithHead", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		// Head, body and the next request in one write.
		rc.write("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, got := rc.read("POST"); resp.StatusCode != 200 || got != bodySummary("/small", []byte("hello"), "", "[]") {
			t.Fatalf("small POST: %d %q", resp.StatusCode, got)
		}
		if resp, got := rc.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(got, "/after 0 ") {
			t.Fatalf("GET after the small POST: %d %q", resp.StatusCode, got)
		}
		// Once more, the body alone in the write after the head's.
		rc.write("POST /small2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
		time.Sleep(5 * time.Millisecond)
		rc.write("world")
		if resp, got := rc.read("POST"); resp.StatusCode != 200 || got != bodySummary("/small2", []byte("world"), "", "[]") {
			t.Fatalf("POST with the body after the head: %d %q", resp.StatusCode, got)
		}
		rc.write("GET /after2 HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, got := rc.read("GET"); resp.StatusCode != 200 || !strings.HasPrefix(got, "/after2 0 ") {
			t.Fatalf("GET after: %d %q", resp.StatusCode, got)
		}
	})
}

// TestFastResponseBody: response bodies of every framing reach the client
// whole, framed so that the connection stays usable.
func TestFastResponseBody(t *testing.T) {
	big := pattern(2 << 20)
	a := newBackend(t, "resp", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
		case "/chunked":
			for i := 0; i < 5; i++ {
				fmt.Fprintf(w, "part %d %s\n", i, strings.Repeat("c", 5000*i))
				w.(http.Flusher).Flush()
			}
		case "/head":
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, r.URL.Path)
		}
	})
	p := startProxy(t, backendsYAML(a), "")

	t.Run("ContentLength2MiB", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write(getReq("/big"))
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) {
			t.Fatalf("status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
		}
		if !bytes.Equal([]byte(body), big) {
			t.Fatalf("body of %d bytes differs from the backend's %d", len(body), len(big))
		}
		rc.write(getReq("/next"))
		rc.expectEcho("/next")
	})

	t.Run("Chunked", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write(getReq("/chunked"))
		resp, body := rc.read("GET")
		var want strings.Builder
		for i := 0; i < 5; i++ {
			fmt.Fprintf(&want, "part %d %s\n", i, strings.Repeat("c", 5000*i))
		}
		if resp.StatusCode != 200 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("status %d, Transfer-Encoding %v", resp.StatusCode, resp.TransferEncoding)
		}
		if body != want.String() {
			t.Fatalf("chunked body of %d bytes, want %d", len(body), want.Len())
		}
		rc.write(getReq("/next"))
		rc.expectEcho("/next")
	})

	t.Run("UntilClose", func(t *testing.T) {
		addr, reqs := rawBackend(t, "HTTP/1.0 200 OK\r\nX-Raw: 1\r\n\r\nhello")
		q := startProxy(t, addrYAML(addr), "")
		rc := dialRaw(t, q.listen)
		for i := 0; i < 2; i++ {
			rc.write(getReq("/raw"))
			resp, body := rc.read("GET")
			if resp.StatusCode != 200 || body != "hello" || resp.Header.Get("X-Raw") != "1" {
				t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, body, resp.Header)
			}
		}
		if n := reqs.Load(); n != 2 {
			t.Errorf("backend saw %d requests, want 2", n)
		}
	})

	t.Run("Head", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write("HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := rc.read("HEAD")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "11" || body != "" {
			t.Fatalf("HEAD: %d, Content-Length %q, body %q", resp.StatusCode, resp.Header.Get("Content-Length"), body)
		}
		// A body sent after the head would be read as the next response.
		rc.write(getReq("/next"))
		rc.expectEcho("/next")
	})

	for _, code := range []int{204, 304} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			rc := dialRaw(t, p.listen)
			rc.write(getReq("/" + strconv.Itoa(code)))
			resp, body := rc.read("GET")
			if resp.StatusCode != code || body != "" {
				t.Fatalf("got %d %q, want %d and no body", resp.StatusCode, body, code)
			}
			if len(resp.TransferEncoding) > 0 {
				t.Errorf("%d response with Transfer-Encoding %v", code, resp.TransferEncoding)
			}
			if code == 204 && resp.Header.Get("Content-Length") != "" {
				t.Errorf("204 response with Content-Length %q", resp.Header.Get("Content-Length"))
			}
			// Any body bytes would be read as the next response.
			rc.write(getReq("/next"))
			rc.expectEcho("/next")
		})
	}
}

// TestFastHopByHopAndForwarding: hop-by-hop fields stop at the proxy,
// forwarding fields are added, request ids are kept or made, and a client's
// Connection: close closes the connection.
func TestFastHopByHopAndForwarding(t *testing.T) {
	var seen atomic.Pointer[http.Header]
	a := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		seen.Store(&h)
		w.Header().Set("Connection", "X-Resp-Secret")
		w.Header().Set("X-Resp-Secret", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "ok")
	})
	p := startProxy(t, backendsYAML(a), "")

	rc := dialRaw(t, p.listen)
	rc.write("GET /hop HTTP/1.1\r\nHost: example.test:8080\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\nX-Forwarded-For: 1.2.3.4\r\nX-Request-Id: client-id-42\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	h := *seen.Load()
	for _, name := range []string{"Connection", "X-Secret", "Keep-Alive", "Te", "Proxy-Authorization"} {
		if v, ok := h[name]; ok {
			t.Errorf("backend got hop-by-hop %s: %q", name, v)
		}
	}
	for name, want := range map[string]string{
		"X-Forwarded-For":   "1.2.3.4, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "example.test:8080",
		"X-Request-Id":      "client-id-42",
	} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("backend got %s %q, want %q", name, got, want)
		}
	}
	if fwd := h.Get("Forwarded"); !strings.HasSuffix(fwd, `for=127.0.0.1;proto=http;host="example.test:8080"`) {
		t.Errorf("Forwarded %q", fwd)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "client-id-42" {
		t.Errorf("response X-Request-Id %q, want the client's", got)
	}
	for _, name := range []string{"X-Resp-Secret", "Keep-Alive"} {
		if v, ok := resp.Header[name]; ok {
			t.Errorf("client got the backend's hop-by-hop %s: %q", name, v)
		}
	}
	if !resp.Close { // http.ReadResponse turns Connection: close into Close
		t.Errorf("response to Connection: close does not say Connection: close")
	}
	rc.expectClosed()

	// No id, or an insane one: a fresh 32-hex id per request.
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	rc = dialRaw(t, p.listen)
	var ids []string
	for _, extra := range []string{"", "X-Request-Id: " + strings.Repeat("i", 129) + "\r\n", ""} {
		rc.write("GET /id HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n")
		resp, _ := rc.read("GET")
		id := resp.Header.Get("X-Request-Id")
		if back := seen.Load().Get("X-Request-Id"); !hex32.MatchString(id) || back != id {
			t.Errorf("request id %q to the client, %q to the backend; want the same 32 hex digits", id, back)
		}
		if resp.Close {
			t.Errorf("keep-alive request answered with Connection: close")
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
		t.Errorf("generated ids repeat: %q", ids)
	}
}

// TestFastHandOff: requests the engine leaves to net/http are answered
// correctly on the same connection, bytes already read included.
func TestFastHandOff(t *testing.T) {
	a := echoBackend(t)
	p := startProxy(t, backendsYAML(a), "")

	t.Run("HTTP10", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write("GET /ten HTTP/1.0\r\nHost: x\r\n\r\n")
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || body != "/ten" {
			t.Fatalf("HTTP/1.0: %d %q", resp.StatusCode, body)
		}
		rc.expectClosed()
	})

	t.Run("Expect100Continue", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write("POST /exp HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, _ := rc.read("POST")
		if resp.StatusCode != 100 {
			t.Fatalf("got %d before the body was sent, want 100 Continue", resp.StatusCode)
		}
		rc.write("hello")
		resp, body := rc.read("POST")
		if resp.StatusCode != 200 || body != "/exp|hello" {
			t.Fatalf("after 100 Continue: %d %q", resp.StatusCode, body)
		}
		rc.write(getReq("/again"))
		rc.expectEcho("/again")
	})

	t.Run("AbsoluteForm", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write("GET http://example.test/abs HTTP/1.1\r\nHost: example.test\r\n\r\n")
		rc.expectEcho("/abs")
	})

	t.Run("AfterKeepAlive", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write(getReq("/1"))
		rc.expectEcho("/1")
		rc.write(getReq("/2"))
		rc.expectEcho("/2")
		// A hand-off with a pipelined request behind it: both were read
		// by the engine and must be replayed to net/http.
		rc.write(getReq("/3") + "GET http://x/4 HTTP/1.1\r\nHost: x\r\n\r\n" + getReq("/5"))
		rc.expectEcho("/3")
		rc.expectEcho("/4")
		rc.expectEcho("/5")
		// And an HTTP/1.0 request with its body, read whole with the head.
		rc.write("POST /6 HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
		resp, body := rc.read("POST")
		if resp.StatusCode != 200 || body != "/6|abc" {
			t.Fatalf("HTTP/1.0 POST after the hand-off: %d %q", resp.StatusCode, body)
		}
		rc.expectClosed()
	})

	t.Run("HTTP10WithBodyAfterKeepAlive", func(t *testing.T) {
		rc := dialRaw(t, p.listen)
		rc.write(getReq("/1"))
		rc.expectEcho("/1")
		rc.write(getReq("/2"))
		rc.expectEcho("/2")
		rc.write("POST /3 HTTP/1.0\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
		resp, body := rc.read("POST")
		if resp.StatusCode != 200 || body != "/3|body" {
			t.Fatalf("HTTP/1.0 POST: %d %q", resp.StatusCode, body)
		}
		rc.expectClosed()
	})
}

// TestFastMalformed: requests that cannot be read safely are refused with
// the right status, the connection is closed and nothing reaches the
// backend.
func TestFastMalformed(t *testing.T) {
	a := echoBackend(t)
	p := startProxy(t, backendsYAML(a), "")
	cases := []struct {
		name string
		req  string
		want int
	}{
		{"ContentLengthAndChunked", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"ContentLengthAndChunkedWithBody", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"Garbage", "hello\r\n\r\n", 400},
		{"HTTP2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"Gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"QuoteInHost", "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400},
		{"NoHost", "GET / HTTP/1.1\r\n\r\n", 400},
		{"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := a.hits.Load()
			rc := dialRaw(t, p.listen)
			// A good request first: the refusal must also work mid-connection.
			rc.write(getReq("/ok"))
			rc.expectEcho("/ok")
			rc.write(c.req)
			resp, _ := rc.read("GET")
			if resp.StatusCode != c.want {
				t.Errorf("status %d, want %d", resp.StatusCode, c.want)
			}
			if !resp.Close {
				t.Errorf("refusal without Connection: close")
			}
			rc.expectClosed()
			if n := a.hits.Load() - before; n != 1 {
				t.Errorf("backend saw %d requests, want only the good one", n)
			}
		})
	}
}

// TestFastStaleKeepAlive: backends close kept-alive connections (idle
// timeout, or after every response without saying so); the proxy must
// notice or retry on a fresh connection, never fail the client.
func TestFastStaleKeepAlive(t *testing.T) {
	// No retries: only the engine's own stale-connection handling may save
	// a request.
	const noRetry = "retries: {attempts: 0}\n"

	t.Run("IdleTimeout", func(t *testing.T) {
		const idle = 100 * time.Millisecond
		b := newCountedBackend(t, idle, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
		p := startProxy(t, addrYAML(b.addr())+noRetry, "")
		rc := dialRaw(t, p.listen)
		gaps := []time.Duration{0, 90, 95, 100, 102, 105, 110, 150, 0, 250, 98, 100, 101, 103, 0, 120, 200, 100, 99, 104}
		for i, gap := range gaps {
			time.Sleep(gap * time.Millisecond)
			rc.c.SetDeadline(time.Now().Add(rawTimeout))
			path := "/s" + strconv.Itoa(i)
			rc.write(getReq(path))
			resp, body := rc.read("GET")
			if resp.StatusCode != 200 || body != path {
				t.Fatalf("request %d after %v idle: %d %q", i, gap*time.Millisecond, resp.StatusCode, body)
			}
		}
		t.Logf("%d requests over %d backend connections", b.hits.Load(), b.conns.Load())
		if b.conns.Load() < 2 {
			t.Errorf("backend idle timeout never closed a connection: the test proved nothing")
		}
	})

	t.Run("CloseAfterEachResponse", func(t *testing.T) {
		addr, reqs := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		p := startProxy(t, addrYAML(addr)+noRetry, "")
		rc := dialRaw(t, p.listen)
		gaps := []time.Duration{0, 0, 1, 0, 5, 0, 10, 2, 0, 20, 0, 0, 3, 50, 0, 1, 0, 30, 0, 0}
		for i, gap := range gaps {
			time.Sleep(gap * time.Millisecond)
			rc.write(getReq("/c"))
			resp, body := rc.read("GET")
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
			}
		}
		if n := reqs.Load(); n != int64(len(gaps)) {
			t.Errorf("backend answered %d requests, want %d", n, len(gaps))
		}
	})
}

// TestFastBackendReuse: sequential requests reuse kept-alive backend
// connections.
func TestFastBackendReuse(t *testing.T) {
	b := newCountedBackend(t, 0, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	p := startProxy(t, addrYAML(b.addr()), "")
	rc := dialRaw(t, p.listen)
	for i := 0; i < 200; i++ {
		rc.write(getReq("/r"))
		rc.expectEcho("/r")
	}
	if hits, conns := b.hits.Load(), b.conns.Load(); hits != 200 || conns > 3 {
		t.Errorf("200 sequential requests: backend saw %d requests over %d connections, want 200 over at most 3", hits, conns)
	}
}

// TestFastDrain: Shutdown closes idle keep-alive connections at once, lets
// an in-flight request finish (its response saying Connection: close) and
// returns only then.
func TestFastDrain(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := newGate(t)
	a := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			release.wait()
		}
		io.WriteString(w, r.URL.Path)
	})
	p := startProxy(t, backendsYAML(a), "")

	idle := dialRaw(t, p.listen)
	idle.write(getReq("/idle"))
	idle.expectEcho("/idle")

	busy := dialRaw(t, p.listen)
	busy.write(getReq("/slow"))
	select {
	case <-arrived:
	case <-time.After(rawTimeout):
		t.Fatal("slow request never reached the backend")
	}

	shut := p.shutdownInBackground()
	idle.expectClosed()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	default:
	}
	release.open()
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || body != "/slow" {
		t.Fatalf("in-flight request: %d %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Errorf("response finished during a drain lacks Connection: close")
	}
	busy.expectClosed()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(rawTimeout):
		t.Fatal("Shutdown did not return after the last request finished")
	}
}

// TestFastStreamedResponse: each event of a streamed response reaches the
// client before the backend writes the next one.
func TestFastStreamedResponse(t *testing.T) {
	const events = 4
	acks := make(chan struct{})
	t.Cleanup(func() { close(acks) })
	a := newBackend(t, "sse", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events" {
			io.WriteString(w, r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < events; i++ {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			if i == events-1 {
				return
			}
			select {
			case <-acks: // the client has this event: write the next
			case <-r.Context().Done():
				return
			case <-time.After(2 * rawTimeout):
				return
			}
		}
	})
	p := startProxy(t, backendsYAML(a), "")
	rc := dialRaw(t, p.listen)
	rc.write(getReq("/events"))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("response head: %v%s", err, hangHint(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("status %d, Transfer-Encoding %v", resp.StatusCode, resp.TransferEncoding)
	}
	br := bufio.NewReader(resp.Body)
	for i := 0; i < events; i++ {
		var ev strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("event %d: got %q then %v%s (the proxy holds back what the backend flushed)", i, ev.String()+line, err, hangHint(err))
			}
			ev.WriteString(line)
			if line == "\n" {
				break
			}
		}
		if want := fmt.Sprintf("data: event %d\n\n", i); ev.String() != want {
			t.Fatalf("event %d: %q, want %q", i, ev.String(), want)
		}
		if i < events-1 {
			acks <- struct{}{}
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the last event: %q, %v", rest, err)
	}
	rc.write(getReq("/after"))
	rc.expectEcho("/after")
}

// TestFastLingeringClose: after refusing a request whose body is still
// coming, the server stops sending but keeps draining for a while, so the
// client can finish its upload and read the 400 (a plain close with unread
// input makes the kernel answer the client's next bytes with a reset).
func TestFastLingeringClose(t *testing.T) {
	a := echoBackend(t)
	p := startProxy(t, backendsYAML(a), "")
	rc := dialRaw(t, p.listen)
	rc.write("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")
	resp, _ := rc.read("POST")
	if resp.StatusCode != http.StatusNotImplemented {
		t.Fatalf("status %d, want 501", resp.StatusCode)
	}
	rc.expectClosed() // the server's sending side is shut
	// The client is still sending its body: it must not be reset.
	chunk := bytes.Repeat([]byte("x"), 16<<10)
	for i := range 8 {
		if _, err := rc.c.Write(chunk); err != nil {
			t.Fatalf("write %d of the rest of the body after the refusal: %v (no lingering close)", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFastIdleAfterSlowHead: a head that came in pieces sets the longer
// read_header_timeout; once answered, the connection must go back to
// idle_timeout, not keep the longer deadline.
func TestFastIdleAfterSlowHead(t *testing.T) {
	a := echoBackend(t)
	p := startProxy(t, backendsYAML(a), "read_header_timeout: 4s\nidle_timeout: 300ms")
	rc := dialRaw(t, p.listen)
	rc.write("GET /slow HTTP/1.1\r\n")
	time.Sleep(50 * time.Millisecond)
	rc.write("Host: x\r\n\r\n")
	rc.expectEcho("/slow")
	start := time.Now()
	rc.c.SetReadDeadline(start.Add(2 * time.Second)) // well under read_header_timeout
	rc.expectClosed()
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("idle connection closed after %v, want about idle_timeout (300ms)", d)
	}
}

// handedOffGet sends an HTTP/1.0 request, which the engine hands to
// net/http, and reads the answer: an error unless one comes whole.
func handedOffGet(addr, path string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return err
	}
	return fmt.Errorf("answered %d", resp.StatusCode)
}

// TestDrainTimeoutCutsInFlightRequests: when drain_timeout passes, a
// request still waiting for its backend is cut, on every protocol (a
// request handed to net/http too): Shutdown returns then (not when the
// backend answers), with the cut request already in the access log and
// the metrics as 499 (xlbd exits once Shutdown returns), the client sees
// its connection end, and the backend request is cancelled.
func TestDrainTimeoutCutsInFlightRequests(t *testing.T) {
	for _, proto := range []string{"http1", "https", "h2c", "h2", "handoff"} {
		t.Run(proto, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			cancelled := make(chan struct{}, 1)
			release := newGate(t)
			slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				select {
				case <-r.Context().Done():
					cancelled <- struct{}{}
				case <-release.ch:
					io.WriteString(w, "too late")
				}
			})
			svc := backendsYAML(slow)
			withTLS := proto == "https" || proto == "h2"
			if withTLS {
				cert, key := writeSelfSigned(t, t.TempDir())
				svc += fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", cert, key)
			}
			var access syncbuf.Buffer
			reg := prometheus.NewRegistry()
			p := &proxy{listen: freePort(t)}
			p.srv = must(l7.New(l7.Options{AccessLog: slog.New(slog.NewJSONHandler(&access, nil)), Registry: reg, StickySecret: make([]byte, 32)}))
			p.apply(t, svc, "drain_timeout: 300ms")
			t.Cleanup(func() { p.srv.Shutdown(context.Background()) })
			var c *http.Client
			scheme := "http"
			switch proto {
			case "http1", "handoff":
				c = &http.Client{Timeout: 20 * time.Second}
			case "https":
				scheme = "https"
				tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
					TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
				t.Cleanup(tr.CloseIdleConnections)
				c = &http.Client{Transport: tr, Timeout: 20 * time.Second}
			default:
				c, scheme = h2Client(t, withTLS)
				c.Timeout = 20 * time.Second
			}
			got := make(chan error, 1)
			go func() {
				if proto == "handoff" {
					got <- handedOffGet(p.listen, "/slow")
					return
				}
				resp, err := c.Get(scheme + "://" + p.listen + "/slow")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil {
						err = fmt.Errorf("answered %d", resp.StatusCode)
					}
				}
				got <- err
			}()
			select {
			case <-arrived:
			case <-time.After(rawTimeout):
				t.Fatal("the request never reached the backend")
			}
			start := time.Now()
			shut := p.shutdownInBackground()
			// The backend would hold the request for 10 s.
			go func() {
				select {
				case <-time.After(10 * time.Second):
					release.open()
				case <-release.ch:
				}
			}()
			select {
			case err := <-shut:
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("Shutdown returned after %v with drain_timeout 300ms", took)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown after its drain timed out: %v, want deadline exceeded", err)
				}
				if log := access.String(); strings.Count(log, `"status":499`) != 1 || !strings.Contains(log, `"path":"/slow"`) {
					t.Errorf("when Shutdown returned, the access log was %q; want the cut request, as 499", log)
				} else if !strings.Contains(log, "cut by the shutdown at the end of l7.drain_timeout") {
					t.Errorf("the cut request's log line blames its client: %q", log)
				}
				want := "backend=" + slow.addr() + ",code=499,service=web"
				if got := promtest.Series(t, reg, "xlb_l7_requests_total"); !slices.Equal(got, []string{want}) {
					t.Errorf("when Shutdown returned, xlb_l7_requests_total had %q; want %s", got, want)
				}
			case <-time.After(8 * time.Second):
				t.Fatal("Shutdown still waits for an in-flight request 8 s after a 300ms drain_timeout")
			}
			select {
			case err := <-got:
				if err == nil || strings.HasPrefix(err.Error(), "answered") {
					t.Errorf("client of a request cut by the drain: %v, want a broken connection", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("the client still waits after the drain ended")
			}
			select {
			case <-cancelled:
			case <-time.After(5 * time.Second):
				t.Error("the backend request was not cancelled when the drain ended")
			}
			release.open()
		})
	}
}
