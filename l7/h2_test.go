package l7_test

// End-to-end tests of xlb's HTTP/2 engine (h2conn.go) with real HTTP/2
// clients: x/net's Transport over TLS (ALPN h2) and in cleartext with prior
// knowledge (h2c), and hand-driven clients on http2.Framer where a test
// needs frames no well-behaved client sends.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/xlbproject/xlb/l7"
)

// h2Clients are the two ways a client reaches the HTTP/2 engine.
func h2Client(t *testing.T, withTLS bool) (*http.Client, string) {
	t.Helper()
	tr := &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	scheme := "https"
	if !withTLS {
		scheme = "http"
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, scheme
}

// startH2Proxy runs the proxy for service, with TLS when withTLS, and
// returns an HTTP/2 client for it and the base URL.
func startH2Proxy(t *testing.T, withTLS bool, service, l7keys string) (*proxy, *http.Client, string) {
	t.Helper()
	if withTLS {
		cert, key := writeSelfSigned(t, t.TempDir())
		service += fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", cert, key)
	}
	p := startProxy(t, service, l7keys)
	c, scheme := h2Client(t, withTLS)
	return p, c, scheme + "://" + p.listen
}

func transports(t *testing.T, f func(t *testing.T, withTLS bool)) {
	for _, withTLS := range []bool{false, true} {
		name := map[bool]string{false: "h2c", true: "tls"}[withTLS]
		t.Run(name, func(t *testing.T) { f(t, withTLS) })
	}
}

// TestH2Requests: GET and HEAD, request bodies with and without
// content-length (a streamed upload of unknown length reaches the backend
// chunked), a large answer (flow control both ways), a chunked answer with
// trailers, and the forwarding fields, over h2c and TLS.
func TestH2Requests(t *testing.T) {
	transports(t, func(t *testing.T, withTLS bool) {
		big := pattern(3 << 20)
		be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/big":
				w.Header().Set("Content-Length", fmt.Sprint(len(big)))
				w.Write(big)
			case "/echo":
				body, _ := io.ReadAll(r.Body)
				sum := sha256.Sum256(body)
				fmt.Fprintf(w, "%s %d %v %x cookie=%q", r.Method, len(body), r.TransferEncoding, sum[:4], r.Header.Get("Cookie"))
			case "/trailers":
				w.Header().Set("Trailer", "X-Checksum")
				w.Write([]byte("part one,"))
				w.(http.Flusher).Flush()
				w.Write([]byte("part two"))
				w.Header().Set("X-Checksum", "abc123")
			default:
				fmt.Fprintf(w, "%s %s host=%s xfp=%s", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Forwarded-Proto"))
			}
		})
		_, c, base := startH2Proxy(t, withTLS, backendsYAML(be), "")
		do := func(req *http.Request) (*http.Response, string) {
			t.Helper()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", req.Method, req.URL, err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
			}
			if resp.ProtoMajor != 2 {
				t.Fatalf("%s %s answered over %s", req.Method, req.URL, resp.Proto)
			}
			return resp, string(b)
		}
		proto := map[bool]string{false: "http", true: "https"}[withTLS]

		req, _ := http.NewRequest("GET", base+"/a/b?q=1", nil)
		if resp, body := do(req); resp.StatusCode != 200 || body != "GET /a/b?q=1 host="+strings.TrimPrefix(base, proto+"://")+" xfp="+proto {
			t.Errorf("GET: %d %q", resp.StatusCode, body)
		}
		req, _ = http.NewRequest("HEAD", base+"/big", nil)
		if resp, body := do(req); resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len(big)) {
			t.Errorf("HEAD: %d, content-length %d, body %q", resp.StatusCode, resp.ContentLength, body)
		}

		upload := pattern(1 << 20)
		sum := sha256.Sum256(upload)
		req, _ = http.NewRequest("POST", base+"/echo", bytes.NewReader(upload))
		req.Header.Add("Cookie", "a=1")
		req.Header.Add("Cookie", "b=2")
		if _, body := do(req); body != fmt.Sprintf("POST %d [] %x cookie=%q", len(upload), sum[:4], "a=1; b=2") {
			t.Errorf("POST with content-length: %q", body)
		}
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < len(upload); i += 100 << 10 {
				pw.Write(upload[i:min(i+100<<10, len(upload))])
			}
			pw.Close()
		}()
		req, _ = http.NewRequest("PUT", base+"/echo", pr)
		if _, body := do(req); body != fmt.Sprintf("PUT %d [chunked] %x cookie=%q", len(upload), sum[:4], "") {
			t.Errorf("PUT without content-length: %q", body)
		}

		req, _ = http.NewRequest("GET", base+"/big", nil)
		if _, body := do(req); body != string(big) {
			t.Errorf("a %d-byte answer arrived as %d bytes, or altered", len(big), len(body))
		}

		req, _ = http.NewRequest("GET", base+"/trailers", nil)
		resp, body := do(req)
		if body != "part one,part two" || resp.Trailer.Get("X-Checksum") != "abc123" {
			t.Errorf("chunked answer: body %q, trailers %v", body, resp.Trailer)
		}
	})
}

// TestH2StreamsBalancedPerRequest: the streams of one client connection
// are spread over every backend by the scheduler, not pinned to one.
func TestH2StreamsBalancedPerRequest(t *testing.T) {
	transports(t, func(t *testing.T, withTLS bool) {
		a, b, c := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)
		_, client, base := startH2Proxy(t, withTLS, backendsYAML(a, b, c), "")
		var wg sync.WaitGroup
		for range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Get(base + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		wg.Wait()
		for _, be := range []*backend{a, b, c} {
			if got := be.hits.Load(); got != 10 {
				t.Errorf("backend %s got %d of 30 requests, want 10 (round robin per stream)", be.name, got)
			}
		}
	})
}

// h2Raw is a hand-driven HTTP/2 client connection.
type h2Raw struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	// noPingAck: events leaves the server's PINGs unanswered.
	noPingAck bool
}

// dialH2Raw opens an h2c connection: preface, then SETTINGS with settings.
func dialH2Raw(t *testing.T, addr string, settings ...http2.Setting) *h2Raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	h := &h2Raw{t: t, c: c}
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return h
}

// block encodes a GET for path and the extra name/value pairs.
func (h *h2Raw) block(path string, extra ...string) []byte {
	h.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return append([]byte(nil), h.hbuf.Bytes()...)
}

func (h *h2Raw) get(id uint32, path string, extra ...string) error {
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block(path, extra...), EndStream: true, EndHeaders: true})
}

// h2Event is what a client read, in short.
type h2Event struct {
	typ    http2.FrameType
	stream uint32
	code   http2.ErrCode // RST_STREAM, GOAWAY
	last   uint32        // GOAWAY: the last stream the server serves
	status string        // HEADERS
	grpc   string        // HEADERS: grpc-status
	end    bool
	n      int    // DATA bytes
	data   []byte // and a copy of them
	err    error
}

// events reads frames until the connection ends, answering PINGs (unless
// noPingAck; with a framer of its own: the test writes with h.fr).
func (h *h2Raw) events() <-chan h2Event {
	ch := make(chan h2Event, 1<<16)
	acks := http2.NewFramer(h.c, nil)
	go func() {
		defer close(ch)
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				ch <- h2Event{err: err}
				return
			}
			ev := h2Event{typ: f.Header().Type, stream: f.Header().StreamID}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				ev.code = f.ErrCode
			case *http2.GoAwayFrame:
				ev.code = f.ErrCode
				ev.last = f.LastStreamID
			case *http2.PingFrame:
				ev.data = append([]byte(nil), f.Data[:]...)
				if !f.IsAck() && !h.noPingAck {
					acks.WritePing(true, f.Data)
				}
			case *http2.MetaHeadersFrame:
				ev.status = f.PseudoValue("status")
				for _, hf := range f.RegularFields() {
					if hf.Name == "grpc-status" {
						ev.grpc = hf.Value
					}
				}
				ev.end = f.StreamEnded()
			case *http2.DataFrame:
				ev.n = len(f.Data())
				ev.data = append([]byte(nil), f.Data()...)
				ev.end = f.StreamEnded()
			}
			select {
			case ch <- ev:
			default: // a test that stopped listening
			}
		}
	}()
	return ch
}

// closedCleanly fails the test unless the connection ends with EOF (a
// close, not a reset) within 5 s; what names the moment.
func closedCleanly(t *testing.T, evs <-chan h2Event, what string) {
	t.Helper()
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.err != nil }); !ok || !errors.Is(ev.err, io.EOF) {
		t.Errorf("the connection did not close cleanly %s: %+v", what, ev)
	}
}

// until waits for an event that pred accepts; false at the deadline or
// the connection's end.
func until(ch <-chan h2Event, d time.Duration, pred func(h2Event) bool) (h2Event, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return h2Event{}, false
			}
			if pred(ev) {
				return ev, true
			}
			if ev.err != nil {
				return ev, false
			}
		case <-timer.C:
			return h2Event{}, false
		}
	}
}

// TestH2Protocols: protocols decides who reaches which engine. [http1]: a
// TLS listener offers only http/1.1 by ALPN and a cleartext preface gets
// GOAWAY HTTP_1_1_REQUIRED; [h2]: an HTTP/1.1 request gets 505 and HTTP/2
// is served; [http1, h2] serves both on one cleartext port.
func TestH2Protocols(t *testing.T) {
	a := newBackend(t, "a", nil)
	t.Run("http1-only", func(t *testing.T) {
		p := startProxy(t, backendsYAML(a)+"protocols: [http1]\n", "")
		h := dialH2Raw(t, p.listen)
		ev, ok := until(h.events(), 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway })
		if !ok || ev.code != http2.ErrCodeHTTP11Required {
			t.Errorf("an h2c preface on an http1-only listener: %+v, want GOAWAY HTTP_1_1_REQUIRED", ev)
		}
		if _, body := get(t, p.url+"/", nil); body != "a" {
			t.Errorf("HTTP/1.1 on an http1-only listener: %q", body)
		}

		cert, key := writeSelfSigned(t, t.TempDir())
		p = startProxy(t, backendsYAML(a)+fmt.Sprintf("protocols: [http1]\ntls: {cert_file: %q, key_file: %q}\n", cert, key), "")
		tc, err := tls.Dial("tcp", p.listen, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
			t.Errorf("ALPN on an http1-only TLS listener chose %q", got)
		}
		tc.Close()
	})
	t.Run("h2-only", func(t *testing.T) {
		p := startProxy(t, backendsYAML(a)+"protocols: [h2]\n", "")
		resp, body := get(t, p.url+"/", nil)
		if resp.StatusCode != 505 || !strings.Contains(body, "HTTP/2 only") {
			t.Errorf("HTTP/1.1 on an h2-only listener: %d %q, want 505 saying why", resp.StatusCode, body)
		}
		c, _ := h2Client(t, false)
		resp, err := c.Get(p.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || strings.TrimSpace(string(b)) != "a" {
			t.Errorf("h2c on an h2-only listener: %s %q", resp.Proto, b)
		}
	})
	t.Run("both", func(t *testing.T) {
		p := startProxy(t, backendsYAML(a), "")
		if _, body := get(t, p.url+"/", nil); body != "a" {
			t.Errorf("HTTP/1.1: %q", body)
		}
		c, _ := h2Client(t, false)
		resp, err := c.Get(p.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("h2c answered over %s", resp.Proto)
		}
	})
}

// TestH2MalformedRequests: requests RFC 9113 calls malformed are reset
// with PROTOCOL_ERROR and never reach a backend, and the connection
// serves the next stream.
func TestH2MalformedRequests(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "")
	cases := []struct {
		name  string
		extra []string
	}{
		{"upper-case name", []string{"X-Upper", "1"}},
		{"connection-specific field", []string{"connection", "keep-alive"}},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}},
		{"te other than trailers", []string{"te", "gzip"}},
		{"host differs from :authority", []string{"host", "other.example"}},
		{"control character in a value", []string{"x-a", "b\r\nx-injected: 1"}},
		{"pseudo-header after a regular field", []string{"x-a", "1", ":method", "GET"}},
	}
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	id := uint32(1)
	for _, tc := range cases {
		if err := h.get(id, "/", tc.extra...); err != nil {
			t.Fatal(err)
		}
		ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == id && ev.typ != http2.FrameWindowUpdate })
		if !ok || ev.typ != http2.FrameRSTStream || ev.code != http2.ErrCodeProtocol {
			t.Errorf("%s: %+v, want RST_STREAM PROTOCOL_ERROR", tc.name, ev)
		}
		id += 2
	}
	if n := a.hits.Load(); n != 0 {
		t.Errorf("%d malformed requests reached the backend", n)
	}
	h.get(id, "/")
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == id && ev.typ == http2.FrameHeaders }); !ok || ev.status != "200" {
		t.Errorf("a good request after the malformed ones: %+v", ev)
	}
}

// TestH2GoAwayOnShutdown: a drain first sends a GOAWAY that names no last
// stream, with a PING, so a request the client sends before it sees that
// GOAWAY is still served; once the PING comes back, a GOAWAY naming the
// last stream read. Streams up to it are answered, one opened after it is
// refused, and the connection closes once the last answer is out.
func TestH2GoAwayOnShutdown(t *testing.T) {
	g := newGate(t)
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		g.wait()
		io.WriteString(w, "done")
	})
	p := startProxy(t, backendsYAML(slow), "")
	h := dialH2Raw(t, p.listen)
	h.noPingAck = true
	evs := h.events()
	h.get(1, "/")
	deadline := time.Now().Add(5 * time.Second)
	for slow.hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	shut := p.shutdownInBackground()
	ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway })
	if !ok || ev.code != http2.ErrCodeNo || ev.last != 1<<31-1 {
		t.Fatalf("first GOAWAY on shutdown: %+v, want NO_ERROR naming stream 2^31-1", ev)
	}
	ping, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FramePing })
	if !ok {
		t.Fatalf("no PING with the first GOAWAY: %+v", ping)
	}
	// A request on its way when the first GOAWAY came: the PING's answer
	// follows it.
	h.get(3, "/")
	var data [8]byte
	copy(data[:], ping.data)
	h.fr.WritePing(true, data)
	ev, ok = until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway || ev.stream == 3 })
	if !ok || ev.typ != http2.FrameGoAway || ev.code != http2.ErrCodeNo || ev.last != 3 {
		t.Fatalf("after the PING's answer: %+v, want GOAWAY NO_ERROR naming stream 3", ev)
	}
	h.get(5, "/")
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 5 }); !ok || ev.typ != http2.FrameRSTStream || ev.code != http2.ErrCodeRefusedStream {
		t.Errorf("a stream opened after the last GOAWAY: %+v, want RST_STREAM REFUSED_STREAM", ev)
	}
	g.open()
	done := map[uint32]bool{}
	for len(done) < 2 {
		ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.end || ev.err != nil })
		if !ok || ev.err != nil || ev.typ != http2.FrameData {
			t.Fatalf("streams 1 and 3 after the GOAWAYs: finished %v, then %+v", done, ev)
		}
		done[ev.stream] = true
	}
	if !done[1] || !done[3] {
		t.Errorf("finished streams %v, want 1 and 3", done)
	}
	closedCleanly(t, evs, "after its last stream")
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestH2DrainWithoutPingAnswer: a client that never answers the drain's
// PING still gets the GOAWAY naming the last stream, about h2DrainRTT
// later, and an idle connection then closes.
func TestH2DrainWithoutPingAnswer(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "")
	h := dialH2Raw(t, p.listen)
	h.noPingAck = true
	evs := h.events()
	h.get(1, "/")
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 && ev.end }); !ok {
		t.Fatalf("first answer: %+v", ev)
	}
	shut := p.shutdownInBackground()
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway }); !ok || ev.last != 1<<31-1 {
		t.Fatalf("first GOAWAY: %+v", ev)
	}
	start := time.Now()
	ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway })
	if !ok || ev.last != 1 {
		t.Fatalf("second GOAWAY: %+v, want one naming stream 1", ev)
	}
	if d := time.Since(start); d < l7.H2DrainRTT/2 {
		t.Errorf("the last GOAWAY came %v after the first, without the PING's answer: want about %v", d, l7.H2DrainRTT)
	}
	closedCleanly(t, evs, "after the GOAWAYs")
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestH2DrainBeforePreface: a connection accepted before a drain whose
// client has not sent its preface yet is served: its SETTINGS come first
// (nothing may precede them), then the GOAWAYs, and the request it sent
// with its preface is answered. Before, it was closed unserved.
func TestH2DrainBeforePreface(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "")
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The connection is accepted: an HTTP/1.1 request on another one is
	// answered after it.
	if resp, err := http.Get("http://" + p.listen + "/"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	shut := p.shutdownInBackground()
	time.Sleep(100 * time.Millisecond) // the drain is under way
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h := &h2Raw{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	io.WriteString(c, http2.ClientPreface)
	h.fr.WriteSettings()
	evs := h.events()
	h.get(1, "/")
	var types []http2.FrameType
	answered := false
	ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool {
		types = append(types, ev.typ)
		answered = answered || ev.stream == 1 && ev.end
		return ev.err != nil
	})
	if !answered {
		t.Errorf("the request sent with the preface during a drain was not answered: frames %v", types)
	}
	if !ok || !errors.Is(ev.err, io.EOF) {
		t.Errorf("the connection did not close cleanly: %+v", ev)
	}
	if types[0] != http2.FrameSettings {
		t.Errorf("frames %v: SETTINGS must come first", types)
	}
	if !slices.Contains(types, http2.FrameGoAway) {
		t.Errorf("frames %v: no GOAWAY", types)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestH2GoAwayWhenReloadTurnsH2Off: a reload that keeps the listener but
// drops h2 from protocols sends GOAWAY to its HTTP/2 connections.
func TestH2GoAwayWhenReloadTurnsH2Off(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "")
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	h.get(1, "/")
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 && ev.end }); !ok {
		t.Fatalf("first answer: %+v", ev)
	}
	p.apply(t, backendsYAML(a)+"protocols: [http1]\n", "")
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway }); !ok {
		t.Errorf("no GOAWAY after a reload turned h2 off: %+v (%v)", ev, ev.err)
	}
}

// TestH2SmallBodyGoesWhole: a request body that arrives with its head (in
// the same read) reaches the backend whole, with a Content-Length, even
// when the client announced no length; one that is still coming when the
// reader runs dry is streamed (chunked), as before.
func TestH2SmallBodyGoesWhole(t *testing.T) {
	be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %v %q", r.ContentLength, r.TransferEncoding, body)
	})
	p := startProxy(t, backendsYAML(be), "")
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	// HEADERS and DATA in one write, no content-length.
	var frames bytes.Buffer
	fr := http2.NewFramer(&frames, nil)
	block := h.block("/")
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
	fr.WriteData(1, true, []byte("hello"))
	if _, err := h.c.Write(frames.Bytes()); err != nil {
		t.Fatal(err)
	}
	body := func(id uint32) string {
		var got []byte
		for {
			ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool {
				return ev.stream == id && (ev.typ == http2.FrameData || ev.typ == http2.FrameRSTStream)
			})
			if !ok || ev.typ != http2.FrameData {
				t.Fatalf("stream %d: %+v", id, ev)
			}
			got = append(got, ev.data...)
			if ev.end {
				return string(got)
			}
		}
	}
	if got := body(1); got != `5 [] "hello"` {
		t.Errorf("a body that came with its head reached the backend as %s, want it whole with Content-Length 5", got)
	}
	// The head alone, the body later: streamed.
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: h.block("/"), EndHeaders: true})
	time.Sleep(50 * time.Millisecond)
	h.fr.WriteData(3, true, []byte("later"))
	if got := body(3); got != `-1 [chunked] "later"` {
		t.Errorf("a body that came after its head reached the backend as %s, want it chunked", got)
	}
}

// TestH2RequestTrailers: trailers a client sends after its body reach an
// HTTP/1.1 backend in the chunked body's trailer section.
func TestH2RequestTrailers(t *testing.T) {
	be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s checksum=%s", body, r.Trailer.Get("X-Checksum"))
	})
	_, c, base := startH2Proxy(t, false, backendsYAML(be), "")
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/", pr)
	req.Trailer = http.Header{"X-Checksum": nil}
	go func() {
		pw.Write([]byte("data"))
		req.Trailer.Set("X-Checksum", "c0ffee")
		pw.Close()
	}()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "data checksum=c0ffee" {
		t.Errorf("the backend saw %q, want the body and its trailer", b)
	}
}

// TestH2IdleAndStalledUploads: a connection with no stream is closed after
// idle_timeout with GOAWAY; a stream whose client stops sending its body
// holds the backend for idle_timeout at most, then is reset (logged 499).
func TestH2IdleAndStalledUploads(t *testing.T) {
	be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	p := startProxy(t, backendsYAML(be), "idle_timeout: 500ms")

	h := dialH2Raw(t, p.listen)
	evs := h.events()
	h.get(1, "/")
	if _, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 && ev.end }); !ok {
		t.Fatal("no answer")
	}
	start := time.Now()
	ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway })
	if !ok || ev.code != http2.ErrCodeNo {
		t.Errorf("an idle connection: %+v, want GOAWAY NO_ERROR", ev)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("an idle connection was closed after %v with idle_timeout 500ms", d)
	}

	h = dialH2Raw(t, p.listen)
	evs = h.events()
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("/upload"), EndHeaders: true})
	h.fr.WriteData(1, false, []byte("the start of a body that never ends"))
	start = time.Now()
	ev, ok = until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 && ev.typ == http2.FrameRSTStream })
	if !ok {
		t.Errorf("a stalled upload was not reset: %+v", ev)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a stalled upload held its stream for %v with idle_timeout 500ms", d)
	}
}

// TestH2GoroutinesEndWithTheirConnections: after many HTTP/2 connections
// with many streams each have closed, the proxy's goroutines for them (a
// reader per connection, the stream goroutines kept for reuse) are gone.
func TestH2GoroutinesEndWithTheirConnections(t *testing.T) {
	be := newBackend(t, "be", nil)
	p := startProxy(t, backendsYAML(be), "")
	// h2Goroutines counts the goroutines running xlb's HTTP/2 engine.
	h2Goroutines := func() (int, string) {
		buf := make([]byte, 8<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		n := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "l7.(*h2Conn)") {
				n++
			}
		}
		return n, stacks
	}
	keep, _ := h2Client(t, false)
	resp, err := keep.Get(p.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n, _ := h2Goroutines(); n == 0 {
		t.Fatal("no HTTP/2 engine goroutine while a connection is open: the count sees nothing")
	}
	var wg sync.WaitGroup
	for range 10 {
		cl, _ := h2Client(t, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inner sync.WaitGroup
			for range 20 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					resp, err := cl.Get(p.url + "/")
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}()
			}
			inner.Wait()
			cl.Transport.(*http2.Transport).CloseIdleConnections()
		}()
	}
	wg.Wait()
	keep.Transport.(*http2.Transport).CloseIdleConnections()
	// Stream goroutines wait a second for more work, or end with their
	// connection at once.
	deadline := time.Now().Add(5 * time.Second)
	n, stacks := h2Goroutines()
	for n > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n, stacks = h2Goroutines()
	}
	if n > 0 {
		t.Errorf("%d HTTP/2 engine goroutines after every connection closed:\n%s", n, stacks)
	}
}

// TestH2OversizedHeaderField431: one header field longer than
// max_header_bytes gets 431, as several smaller ones adding up do (the
// decoder's string limit once cut the connection instead). The request is
// written by hand: the proxy advertises the limit, and Go's client refuses
// to send past it once it has read the proxy's SETTINGS, which it may or
// may not have done by then.
func TestH2OversizedHeaderField431(t *testing.T) {
	for _, transport := range []string{"h2c", "h2"} {
		t.Run(transport, func(t *testing.T) {
			a := newBackend(t, "a", nil)
			p, _, _ := startH2Proxy(t, transport == "h2", backendsYAML(a), "max_header_bytes: 4096")
			if got := newReloadClient(t, transport, p.listen).statusWithHeader(t, 5000); got != 431 {
				t.Errorf("one 5000-byte field: status %d, want 431", got)
			}
			if a.hits.Load() != 0 {
				t.Error("oversized request reached the backend")
			}
		})
	}
}

// h2PutWhole sends one PUT over a new h2c connection with its HEADERS and
// DATA in one write, so the proxy reads the body whole with the head (a
// body that arrives later is streamed, and cannot be replayed), and
// returns the answer's status and body.
func h2PutWhole(t *testing.T, addr, body string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var out, hb bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "PUT"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}, {"content-length", strconv.Itoa(len(body))}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteSettings()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(1, true, []byte(body))
	if _, err := c.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	status, data := 0, ""
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("h2c PUT: %v", err)
		}
		if f.Header().StreamID != 1 {
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status, _ = strconv.Atoi(f.PseudoValue("status"))
			if f.StreamEnded() {
				return status, data
			}
		case *http2.DataFrame:
			data += string(f.Data())
			if f.StreamEnded() {
				return status, data
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("h2c PUT: stream reset %v", f.ErrCode)
		}
	}
}
