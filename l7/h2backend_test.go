package l7_test

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/l7"
)

// h2cBackend is an HTTP/2 server in cleartext (prior knowledge), as gRPC
// servers are, counting its connections and requests.
type h2cBackend struct {
	name  string
	srv   *httptest.Server
	conns atomic.Int64
	hits  atomic.Int64
	h2    atomic.Int64 // requests that came over HTTP/2
}

func newH2CBackend(t *testing.T, name string, h http.HandlerFunc) *h2cBackend {
	t.Helper()
	b := &h2cBackend{name: name}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if r.ProtoMajor == 2 {
			b.h2.Add(1)
		}
		w.Header().Set("X-Backend", name)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintln(w, name)
	})
	b.srv = httptest.NewUnstartedServer(h2c.NewHandler(inner, &http2.Server{}))
	b.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *h2cBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// TestH2CBackends: with backend_protocol h2c every request, whatever its
// client speaks (HTTP/1.1, h2c, HTTP/2 over TLS), is a stream to an HTTP/2
// backend: balanced per request over the backends, multiplexed on a few
// connections each, bodies both ways (a streamed upload of unknown length
// included), the backend's trailers passed on.
func TestH2CBackends(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			sum := sha256.Sum256(body)
			fmt.Fprintf(w, "%s %d %x cl=%d xfp=%s", r.Method, len(body), sum[:4], r.ContentLength, r.Header.Get("X-Forwarded-Proto"))
		case "/trailers":
			w.Header().Set("Trailer", "Grpc-Status")
			io.WriteString(w, "payload")
			w.Header().Set("Grpc-Status", "0")
		default:
			time.Sleep(5 * time.Millisecond) // so that requests overlap
			io.WriteString(w, "ok")
		}
	}
	bs := []*h2cBackend{newH2CBackend(t, "a", echo), newH2CBackend(t, "b", echo), newH2CBackend(t, "c", echo)}
	addrs := make([]string, len(bs))
	for i, b := range bs {
		addrs[i] = b.addr()
	}
	svc := addrYAML(addrs...) + "backend_protocol: h2c\n"
	clients := []struct {
		name string
		tls  bool
		h2   bool
	}{{"http1", false, false}, {"h2c", false, true}, {"h2-tls", true, true}}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			for _, b := range bs {
				b.hits.Store(0)
			}
			var c *http.Client
			var base string
			if cl.h2 {
				_, c, base = startH2Proxy(t, cl.tls, svc, "")
			} else {
				p := startProxy(t, svc, "")
				c, base = &http.Client{Timeout: 10 * time.Second}, p.url
			}
			var wg sync.WaitGroup
			for range 60 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := c.Get(base + "/")
					if err != nil {
						t.Error(err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || string(b) != "ok" {
						t.Errorf("GET: %d %q", resp.StatusCode, b)
					}
				}()
			}
			wg.Wait()
			for _, b := range bs {
				if got := b.hits.Load(); got != 20 {
					t.Errorf("backend %s got %d of 60 requests, want 20", b.name, got)
				}
			}

			upload := pattern(300 << 10)
			sum := sha256.Sum256(upload)
			proto := map[bool]string{false: "http", true: "https"}[cl.tls]
			for _, streamed := range []bool{false, true} {
				// A length the client gave reaches the backend.
				cl := len(upload)
				if streamed {
					cl = -1
				}
				want := fmt.Sprintf("POST %d %x cl=%d xfp=%s", len(upload), sum[:4], cl, proto)
				var body io.Reader = strings.NewReader(string(upload))
				if streamed {
					pr, pw := io.Pipe()
					go func() {
						pw.Write(upload[:100<<10])
						pw.Write(upload[100<<10:])
						pw.Close()
					}()
					body = pr
				}
				resp, err := c.Post(base+"/echo", "application/octet-stream", body)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != want {
					t.Errorf("POST (streamed %v): %q, want %q", streamed, b, want)
				}
			}

			resp, err := c.Get(base + "/trailers")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "payload" || resp.Trailer.Get("Grpc-Status") != "0" {
				t.Errorf("an answer with trailers: %q, trailers %v", b, resp.Trailer)
			}
		})
	}
	var conns, h2 int64
	for _, b := range bs {
		conns += b.conns.Load()
		h2 += b.h2.Load()
	}
	if h2 == 0 || conns > 3*3 {
		t.Errorf("%d HTTP/2 requests over %d backend connections: want them multiplexed on a few", h2, conns)
	}
	t.Logf("%d backend connections for all of it", conns)
}

// TestH2CBackendImpatientClients: a client that gives up while an h2c
// backend works cancels the backend's stream, is logged 499, and ejects
// nothing; a backend that refuses connections is retried elsewhere.
func TestH2CBackendImpatientClients(t *testing.T) {
	var cancelled atomic.Int64
	slow := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			io.WriteString(w, "ok")
			return
		}
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(5 * time.Second):
		}
	}
	a, b := newH2CBackend(t, "a", slow), newH2CBackend(t, "b", slow)
	dead := freePort(t) // nothing listens there
	var access syncbuf.Buffer
	p := &proxy{listen: freePort(t)}
	p.srv = must(l7.New(l7.Options{AccessLog: slog.New(slog.NewJSONHandler(&access, nil)), StickySecret: make([]byte, 32)}))
	p.apply(t, addrYAML(a.addr(), b.addr(), dead)+"backend_protocol: h2c\npassive_health: {max_fails: 1, fail_timeout: 30s}\nretries: {attempts: 2, on: [connect_error]}\n", "")
	p.url = "http://" + p.listen
	t.Cleanup(func() { p.srv.Shutdown(t.Context()) })

	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	for range 4 {
		if resp, err := impatient.Get(p.url + "/slow"); err == nil {
			resp.Body.Close()
			t.Errorf("a slow request answered %s before the client's timeout", resp.Status)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for cancelled.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := cancelled.Load(); got != 4 {
		t.Errorf("%d of 4 backend streams cancelled after their clients left", got)
	}
	for i := range 12 {
		resp, body := get(t, p.url+"/", nil)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	st, _ := p.srv.Status("web")
	for _, s := range st {
		if s.Address != dead && (s.Ejected || s.Failures != 0) {
			t.Errorf("backend %s: ejected %v, %d failures; a client that gave up is not a backend fault", s.Address, s.Ejected, s.Failures)
		}
		if s.Address == dead && s.Failures == 0 {
			t.Errorf("the dead backend was never tried, or not counted")
		}
	}
	if got := strings.Count(access.String(), `"status":499`); got != 4 {
		t.Errorf("%d requests logged 499, want 4", got)
	}
}

// TestUpgradeToAnH2Backend: a WebSocket upgrade to a service whose backends
// speak HTTP/2 (which has no Upgrade) is refused with a 501 that says why,
// and the connection closes, instead of a plain GET and a 400 for the
// client's next bytes.
func TestUpgradeToAnH2Backend(t *testing.T) {
	b := newH2CBackend(t, "a", nil)
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\n", "")
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 501 || !strings.Contains(string(body), "need backend_protocol http1 or https") {
		t.Errorf("upgrade to an h2c backend: %d %q", resp.StatusCode, body)
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("the backend got %d requests", n)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection still open after the refused upgrade: %v", err)
	}
}
