package l7_test

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/l7"
)

// rawExchange sends raw bytes to addr and returns the status line answered.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestParserRefusalsCountedAndLogged: what xlb's parsers answer themselves
// (an oversized head over HTTP/1.1 and HTTP/2, a smuggling attempt) is in
// xlb_l7_requests_total (backend none) and the access log, as NGINX logs
// its 400s; a body whose chunked framing is broken gets a 400, not a
// silent close logged as a client that went away (499).
func TestParserRefusalsCountedAndLogged(t *testing.T) {
	a := newBackend(t, "a", nil)
	reg := prometheus.NewRegistry()
	var access syncbuf.Buffer
	p := &proxy{listen: freePort(t)}
	p.srv = must(l7.New(l7.Options{AccessLog: slog.New(slog.NewJSONHandler(&access, nil)), Registry: reg, StickySecret: make([]byte, 32)}))
	p.apply(t, backendsYAML(a), "max_header_bytes: 2048")
	t.Cleanup(func() { p.srv.Shutdown(context.Background()) })

	big := strings.Repeat("x", 4096)
	if got := rawExchange(t, p.listen, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 431") {
		t.Errorf("oversized head: %q, want 431", got)
	}
	if got := rawExchange(t, p.listen, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("Content-Length with Transfer-Encoding: %q, want 400", got)
	}
	for _, body := range []string{"zz\r\n", "ffffffffffffffffff1\r\n"} {
		if got := rawExchange(t, p.listen, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+body); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("chunked body %q: %q, want 400", body, got)
		}
	}
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	if err := h.get(1, "/", "x-big", big); err != nil {
		t.Fatal(err)
	}
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 && ev.typ == http2.FrameHeaders }); !ok || ev.status != "431" {
		t.Errorf("oversized HTTP/2 head: %+v, want 431", ev)
	}
	// A gRPC call's metadata too large: a gRPC status its library reads
	// (RESOURCE_EXHAUSTED), not a 431 it reads as UNKNOWN.
	if err := h.get(3, "/pkg.Svc/Call", "content-type", "application/grpc", "te", "trailers", "x-big", big); err != nil {
		t.Fatal(err)
	}
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 3 && ev.typ == http2.FrameHeaders }); !ok || ev.status != "200" || ev.grpc != "8" || !ev.end {
		t.Errorf("oversized gRPC metadata: %+v, want a trailers-only answer with grpc-status 8", ev)
	}

	time.Sleep(50 * time.Millisecond)
	codes := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "xlb_l7_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			codes[l["backend"]+" "+l["code"]] += m.GetCounter().GetValue()
		}
	}
	// The chunked ones reached the backend's connection (their heads were
	// sent on), so they name it.
	if codes["none 431"] != 3 || codes["none 400"] != 1 || codes[a.addr()+" 400"] != 2 {
		t.Errorf("xlb_l7_requests_total by backend and code: %v, want none 431: 3, none 400: 1, %s 400: 2", codes, a.addr())
	}
	log := access.String()
	for _, want := range []string{`"status":431`, `"error":"request header fields too large"`, `"status":400`, `malformed request body`} {
		if !strings.Contains(log, want) {
			t.Errorf("the access log has no %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, `"status":499`) {
		t.Errorf("a malformed body was logged as a client that went away:\n%s", log)
	}
}

// TestH2RequestWithoutAuthority: an HTTP/2 request with neither
// :authority nor host is malformed (RFC 9113 8.3.1): a stream error, not
// a request forwarded with an empty Host.
func TestH2RequestWithoutAuthority(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "")
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	h.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 && ev.typ != http2.FrameWindowUpdate })
	if !ok || ev.typ != http2.FrameRSTStream || ev.code != http2.ErrCodeProtocol {
		t.Errorf("no :authority nor host: %+v, want RST_STREAM PROTOCOL_ERROR", ev)
	}
	if a.hits.Load() != 0 {
		t.Error("the request reached the backend")
	}
}
