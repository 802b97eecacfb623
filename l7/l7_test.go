package l7_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/l7"
	"github.com/xlbproject/xlb/test/freeport"
)

// freePort finds a loopback port nobody listens on.
func freePort(t testing.TB) string { return freeport.Addr(t) }

// serveTCP listens on loopback and serves each accepted connection with
// serve, given its number in accept order (from 1), in a goroutine of its
// own (the connection closed after); at cleanup the listener closes and
// every serve has returned.
func serveTCP(t testing.TB, serve func(c net.Conn, n int)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c, n)
			})
		}
	})
	return ln
}

// backend is a real HTTP server on loopback that names itself.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
	last atomic.Pointer[http.Request]
}

func newBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.last.Store(r)
		w.Header().Set("X-Backend", name)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintln(w, name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// proxy runs an l7.Server for one service described by YAML (the service's
// keys, without name/layer/listen) and returns its base URL.
type proxy struct {
	srv    *l7.Server
	url    string
	listen string
	cfg    *config.Config
}

// shutdownInBackground starts the server's drain (no deadline) and
// returns where its result comes.
func (p *proxy) shutdownInBackground() <-chan error {
	shut := make(chan error, 1)
	go func() { shut <- p.srv.Shutdown(context.Background()) }()
	return shut
}

func startProxy(t *testing.T, service string, l7keys string) *proxy {
	t.Helper()
	p := &proxy{listen: freePort(t)}
	p.srv = must(l7.New(l7.Options{StickySecret: []byte("0123456789abcdef0123456789abcdef")}))
	p.apply(t, service, l7keys)
	p.url = "http://" + p.listen
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
	})
	return p
}

func (p *proxy) apply(t testing.TB, service, l7keys string) {
	t.Helper()
	drain := "  drain_timeout: 5s\n"
	if strings.Contains(l7keys, "drain_timeout:") {
		drain = ""
	}
	yaml := fmt.Sprintf("l7:\n%s%s\nservices:\n  - name: web\n    layer: 7\n    listen: %q\n%s\n", drain, indent(l7keys, "  "), p.listen, indent(service, "    "))
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yaml, err)
	}
	if err := p.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	p.cfg = cfg
}

func indent(s, pre string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pre + lines[i]
	}
	return strings.Join(lines, "\n")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func backendsYAML(bs ...*backend) string {
	var b strings.Builder
	b.WriteString("backends:\n")
	for _, be := range bs {
		fmt.Fprintf(&b, "  - {address: %q}\n", be.addr())
	}
	return b.String()
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(b))
}

func TestWeightedRoundRobin(t *testing.T) {
	a, b, c := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)
	p := startProxy(t, fmt.Sprintf("backends:\n  - {address: %q, weight: 1}\n  - {address: %q, weight: 1}\n  - {address: %q, weight: 2}\n", a.addr(), b.addr(), c.addr()), "")
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		resp, body := get(t, p.url+"/", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		counts[body]++
	}
	if counts["a"] != 100 || counts["b"] != 100 || counts["c"] != 200 {
		t.Errorf("smooth weighted round robin 1:1:2 over 400 requests gave %v", counts)
	}
}

func TestProxyHeaders(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "")
	resp, _ := get(t, p.url+"/x?y=1", map[string]string{"X-Forwarded-For": "198.51.100.7", "Connection": "X-Secret", "X-Secret": "hop"})
	r := a.last.Load()
	if got := r.Header.Get("X-Forwarded-For"); got != "198.51.100.7, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
	if r.Header.Get("X-Forwarded-Proto") != "http" || r.Header.Get("X-Forwarded-Host") != p.listen {
		t.Errorf("X-Forwarded-Proto %q, X-Forwarded-Host %q", r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	}
	if fwd := r.Header.Get("Forwarded"); !strings.Contains(fwd, "for=127.0.0.1;proto=http;host=") {
		t.Errorf("Forwarded %q", fwd)
	}
	if r.Header.Get("X-Secret") != "" {
		t.Errorf("a header named by Connection was forwarded")
	}
	id := r.Header.Get("X-Request-Id")
	if len(id) != 32 || resp.Header.Get("X-Request-Id") != id {
		t.Errorf("request id %q to the backend, %q to the client", id, resp.Header.Get("X-Request-Id"))
	}
	if r.URL.RawQuery != "y=1" || r.URL.Path != "/x" {
		t.Errorf("backend saw %s", r.URL)
	}
	get(t, p.url+"/", map[string]string{"X-Request-Id": "keep-me-123"})
	if got := a.last.Load().Header.Get("X-Request-Id"); got != "keep-me-123" {
		t.Errorf("client's X-Request-Id replaced by %q", got)
	}
}

func TestRetryOn503GoesElsewhere(t *testing.T) {
	bad := newBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", 503) })
	good := newBackend(t, "good", nil)
	p := startProxy(t, backendsYAML(bad, good)+"retries: {attempts: 2, on: [connect_error, 503]}\npassive_health: {max_fails: 0}\n", "")
	for i := 0; i < 20; i++ {
		resp, body := get(t, p.url+"/", nil)
		if resp.StatusCode != 200 || body != "good" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// POST is not idempotent: it is never sent twice.
	resp, err := client.Post(p.url+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if bad.hits.Load() == 0 {
		t.Fatal("bad backend never tried")
	}
}

// TestRetriesIdempotentOnly: as SPEC says, only idempotent requests are
// retried: a GET or a PUT with its body is sent to the next backend after a
// refused connection or a 502, with the body intact; a POST never is, not
// even after a refused connection (it gets 503: it reached no backend).
func TestRetriesIdempotentOnly(t *testing.T) {
	echo := func(name string, status int) *backend {
		return newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(status)
			fmt.Fprintf(w, "%s %s %s", name, r.Method, b)
		})
	}
	send := func(p *proxy, method, body string) (int, string) {
		if method == "PUT/h2" {
			return h2PutWhole(t, p.listen, body)
		}
		req, _ := http.NewRequest(method, p.url+"/", strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	const keys = "retries: {attempts: 2, on: [connect_error, 502]}\npassive_health: {max_fails: 0}\n"

	t.Run("refused", func(t *testing.T) {
		good := echo("good", 200)
		p := startProxy(t, fmt.Sprintf("backends:\n  - {address: %q}\n  - {address: %q}\n", freePort(t), good.addr())+keys, "")
		for i := 0; i < 6; i++ {
			for _, m := range []string{"GET", "PUT", "PUT/h2"} {
				if code, body := send(p, m, "data"); code != 200 || body != "good "+strings.TrimSuffix(m, "/h2")+" data" {
					t.Errorf("%s %d: %d %q, want 200 from the good backend with the body", m, i, code, body)
				}
			}
		}
		refused := 0
		for i := 0; i < 6; i++ {
			code, body := send(p, "POST", "data")
			switch {
			case code == 503:
				refused++
			case code != 200 || body != "good POST data":
				t.Errorf("POST %d: %d %q", i, code, body)
			}
		}
		// Round robin over two backends: every other POST meets the dead one.
		if refused != 3 {
			t.Errorf("%d of 6 POSTs got 503, want 3: a POST is never retried", refused)
		}
	})

	t.Run("502", func(t *testing.T) {
		bad, good := echo("bad", 502), echo("good", 200)
		p := startProxy(t, backendsYAML(bad, good)+keys, "")
		for i := 0; i < 6; i++ {
			for _, m := range []string{"PUT", "PUT/h2"} {
				if code, body := send(p, m, "data"); code != 200 || body != "good PUT data" {
					t.Errorf("%s %d: %d %q, want 200 from the good backend with the body", m, i, code, body)
				}
			}
		}
		if r := bad.last.Load(); bad.hits.Load() == 0 || r.Method != "PUT" {
			t.Fatal("the failing backend never got a PUT")
		}
		before := bad.hits.Load() + good.hits.Load()
		codes := map[int]int{}
		for i := 0; i < 6; i++ {
			code, _ := send(p, "POST", "data")
			codes[code]++
		}
		if after := bad.hits.Load() + good.hits.Load(); after-before != 6 || codes[502] != 3 {
			t.Errorf("6 POSTs: backends saw %d requests, answers %v: want 6 requests, 3 of them 502 (no retry)", after-before, codes)
		}
	})
}

func TestAllBackendsDown503(t *testing.T) {
	dead := freePort(t)
	p := startProxy(t, fmt.Sprintf("backends:\n  - {address: %q}\n", dead), "")
	// Before any health verdict: the connection fails, the request reached
	// no backend, and that is what 503 says too.
	resp, body := get(t, p.url+"/", nil)
	if resp.StatusCode != 503 {
		t.Fatalf("first request to a service whose only backend refuses connections: %d %q, want 503", resp.StatusCode, body)
	}
	// Passive health spares the last backend, so the next request tries
	// it again, and is not retried on it: the same 503, not a "no backend"
	// answer of a retry that found none.
	resp, body = get(t, p.url+"/", nil)
	if resp.StatusCode != 503 || strings.Contains(body, "no backend available") {
		t.Errorf("second request: %d %q, want 503 from the refused connection", resp.StatusCode, body)
	}
	// Down by its health: the answer says there is no backend.
	p.srv.Upstream("web", dead).SetHealthy(false, time.Now())
	resp, body = get(t, p.url+"/", nil)
	if resp.StatusCode != 503 || !strings.Contains(body, "no backend available for service web") {
		t.Errorf("status %d %q, want 503 with a clear body", resp.StatusCode, body)
	}
}

func TestRateLimit429RetryAfter(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a)+"rate_limit: {rate: 1/m, burst: 2}\n", "")
	for i := 0; i < 2; i++ {
		if resp, _ := get(t, p.url+"/", nil); resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d", i, resp.StatusCode)
		}
	}
	resp, _ := get(t, p.url+"/", nil)
	if resp.StatusCode != 429 {
		t.Fatalf("third request: %d, want 429", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	if a.hits.Load() != 2 {
		t.Errorf("backend saw %d requests, want 2", a.hits.Load())
	}
}

func TestStickyCookie(t *testing.T) {
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	svc := backendsYAML(a, b) + "sticky: {cookie: srv_id, ttl: 1h}\n"
	p := startProxy(t, svc, "")
	resp, first := get(t, p.url+"/", nil)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "srv_id" {
			cookie = c
		}
	}
	if cookie == nil || cookie.MaxAge != 3600 || !cookie.HttpOnly {
		t.Fatalf("sticky cookie %+v", cookie)
	}
	if strings.Contains(cookie.Value, "127.0.0.1") {
		t.Errorf("cookie reveals the backend address: %q", cookie.Value)
	}
	hdr := map[string]string{"Cookie": "srv_id=" + cookie.Value}
	for i := 0; i < 20; i++ {
		if _, got := get(t, p.url+"/", hdr); got != first {
			t.Fatalf("request %d with the cookie went to %s, not %s", i, got, first)
		}
	}
	// A reload keeps the cookie's meaning.
	p.apply(t, svc, "")
	if _, got := get(t, p.url+"/", hdr); got != first {
		t.Errorf("after a reload the cookie went to %s, not %s", got, first)
	}
	// Its backend goes down: the request goes elsewhere with a new cookie.
	stuck := a
	if first == "b" {
		stuck = b
	}
	p.srv.Upstream("web", stuck.addr()).SetHealthy(false, time.Now())
	resp, got := get(t, p.url+"/", hdr)
	if got == first {
		t.Fatalf("request went to the down backend %s", first)
	}
	if len(resp.Cookies()) == 0 || resp.Cookies()[0].Value == cookie.Value {
		t.Errorf("no new cookie after moving: %v", resp.Cookies())
	}
	// A forged cookie is just unknown.
	if resp, _ := get(t, p.url+"/", map[string]string{"Cookie": "srv_id=" + stuck.addr()}); resp.StatusCode != 200 {
		t.Errorf("forged cookie: %d", resp.StatusCode)
	}
}

// TestStickySessionsOutliveADrain: a drained backend (drain, weight 0)
// takes no new session but keeps the requests its cookie binds, as
// HAProxy's drain and an L4 drain's established flows; one leaving (API
// removal, gone from the file or DNS) keeps none of them.
func TestStickySessionsOutliveADrain(t *testing.T) {
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := startProxy(t, backendsYAML(a, b)+"sticky: {cookie: srv_id, ttl: 1h}\n", "")
	resp, first := get(t, p.url+"/", nil)
	var hdr map[string]string
	for _, c := range resp.Cookies() {
		if c.Name == "srv_id" {
			hdr = map[string]string{"Cookie": "srv_id=" + c.Value}
		}
	}
	if hdr == nil {
		t.Fatal("no sticky cookie")
	}
	bound, other := a, b
	if first == "b" {
		bound, other = b, a
	}
	set := func(drained, leaving bool) {
		t.Helper()
		if err := p.srv.SetBackends("web", []l7.BackendSpec{
			{Address: bound.addr(), Weight: 1, Drained: drained, Leaving: leaving},
			{Address: other.addr(), Weight: 1},
		}); err != nil {
			t.Fatal(err)
		}
	}
	set(true, false)
	for i := range 5 {
		if _, got := get(t, p.url+"/", hdr); got != first {
			t.Fatalf("request %d bound to the drained %s went to %s", i, first, got)
		}
		if _, got := get(t, p.url+"/", nil); got == first {
			t.Fatalf("a new session went to the drained %s", first)
		}
	}
	set(true, true)
	if resp, got := get(t, p.url+"/", hdr); got == first || len(resp.Cookies()) == 0 {
		t.Errorf("a request bound to the leaving %s went to %s (cookies %v), want the other with a new cookie", first, got, resp.Cookies())
	}
}

func TestRoutes(t *testing.T) {
	def, api, canary := newBackend(t, "default", nil), newBackend(t, "api", nil), newBackend(t, "canary", nil)
	svc := backendsYAML(def) + fmt.Sprintf(`routes:
  - match: {host: "*.example.com", path_prefix: /v1/, methods: [GET], headers: {X-Canary: "1"}}
    backends: [{address: %q}]
  - match: {host: api.example.com, path_prefix: /v1/}
    scheduler: least_conn
    backends: [{address: %q}]
`, canary.addr(), api.addr())
	p := startProxy(t, svc, "")
	cases := []struct {
		host, path string
		hdr        map[string]string
		want       string
	}{
		{"api.example.com", "/v1/users", nil, "api"},
		{"API.Example.com:80", "/v1/users", nil, "api"},
		{"api.example.com", "/v2/users", nil, "default"},
		{"www.example.com", "/v1/x", map[string]string{"X-Canary": "1"}, "canary"},
		{"api.example.com", "/v1/x", map[string]string{"X-Canary": "1"}, "canary"},
		{"example.com", "/v1/x", map[string]string{"X-Canary": "1"}, "default"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("GET", p.url+c.path, nil)
		req.Host = c.host
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := strings.TrimSpace(string(b)); got != c.want {
			t.Errorf("%s%s %v: went to %s, want %s", c.host, c.path, c.hdr, got, c.want)
		}
	}

	// A path is matched as the backend will resolve it: dot segments and
	// empty ones do not take a request into or out of a prefix. Sent raw,
	// as a client that does not clean its paths would.
	for target, want := range map[string]string{
		"/v1/../v2/users":  "default",
		"/v1/%2e%2e/v2/x":  "default",
		"/x/../v1/users":   "api",
		"//v1/users":       "api",
		"/v1//users":       "api",
		"/./v1/users":      "api",
		"/v1/.":            "api",
		"/v1/users/..":     "api",
		"/v1/users/../..":  "default",
		"/v1/users?a=/../": "api",
	} {
		c, err := net.Dial("tcp", p.listen)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n", target)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("raw path %s: went to %s (%d), want %s", target, got, resp.StatusCode, want)
		}
	}
}

func TestWebSocketEcho(t *testing.T) {
	// A backend that switches protocols and then echoes raw bytes.
	ws := newBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want websocket", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	})
	p := startProxy(t, backendsYAML(ws), "")
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"hello\n", "through the proxy\n"} {
		io.WriteString(c, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo %q: got %q, %v", msg, got, err)
		}
	}
}

func TestSSEArrivesIncrementally(t *testing.T) {
	release := make(chan struct{})
	sse := newBackend(t, "sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: two\n\n")
	})
	p := startProxy(t, backendsYAML(sse), "")
	resp, err := client.Get(p.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "data: one\n" {
			t.Errorf("first event %q", line)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("first event did not arrive before the stream ended: the proxy buffers")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: two") {
		t.Errorf("second event missing: %q", rest)
	}
}

func TestSlowRequestCompletesAcrossShutdown(t *testing.T) {
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(700 * time.Millisecond)
		fmt.Fprintln(w, "done")
	})
	p := startProxy(t, backendsYAML(slow), "")
	result := make(chan string, 1)
	go func() {
		resp, err := client.Get(p.url + "/")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}()
	time.Sleep(200 * time.Millisecond)
	shut := p.shutdownInBackground()
	time.Sleep(100 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", p.listen, time.Second); err == nil {
		t.Errorf("still accepting connections while draining")
	}
	if got := <-result; got != "200 done" {
		t.Errorf("in-flight request during shutdown: %s", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestOversizedHeaders431(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "max_header_bytes: 2048")
	resp, _ := get(t, p.url+"/", map[string]string{"X-Big": strings.Repeat("x", 8192)})
	if resp.StatusCode != 431 {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
	if a.hits.Load() != 0 {
		t.Errorf("oversized request reached the backend")
	}
}

func TestSlowlorisCutAtReadHeaderTimeout(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "read_header_timeout: 300ms")
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	// Trickle one header byte at a time, never finishing.
	closed := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 512)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := c.Read(buf); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d := <-closed:
			if d > 3*time.Second {
				t.Errorf("slow client kept its connection for %v", d)
			}
			return
		case <-tick.C:
			c.Write([]byte("X"))
		}
	}
}

func TestHTTP2OverTLS(t *testing.T) {
	a := newBackend(t, "a", nil)
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	p := startProxy(t, backendsYAML(a)+fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", cert, key), "")
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + p.listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || strings.TrimSpace(string(b)) != "a" {
		t.Errorf("got %s %q, want HTTP/2 from backend a", resp.Proto, b)
	}
	if r := a.last.Load(); r.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("X-Forwarded-Proto %q over TLS", r.Header.Get("X-Forwarded-Proto"))
	}
}

func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestMaxConnsQueuesThen503(t *testing.T) {
	gate := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		<-gate
		fmt.Fprintln(w, "ok")
	})
	defer close(gate)
	p := startProxy(t, fmt.Sprintf("backends:\n  - {address: %q, max_conns: 1}\n", slow.addr()), "")
	first := make(chan int, 1)
	go func() {
		resp, err := client.Get(p.url + "/")
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	resp, _ := get(t, p.url+"/", nil)
	waited := time.Since(start)
	if resp.StatusCode != 503 {
		t.Errorf("second request beyond max_conns: %d, want 503 after a short queue", resp.StatusCode)
	}
	if waited < 500*time.Millisecond {
		t.Logf("note: answered after %v (queue wait is 1s)", waited)
	}
	if slow.hits.Load() != 1 {
		t.Errorf("backend saw %d concurrent requests with max_conns 1", slow.hits.Load())
	}
}

// TestPassiveHealthSparesTheLastBackend: a client that makes every
// backend answer 500 (an endpoint that fails on its input) ejects all but
// one; that one keeps serving everyone else instead of a 503 for every
// client until fail_timeout.
func TestPassiveHealthSparesTheLastBackend(t *testing.T) {
	fail := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("fail") {
			http.Error(w, "boom", 500)
			return
		}
		io.WriteString(w, "ok")
	}
	bs := []*backend{newBackend(t, "a", fail), newBackend(t, "b", fail), newBackend(t, "c", fail)}
	p := startProxy(t, backendsYAML(bs...)+"scheduler: ip_hash\npassive_health: {max_fails: 1, fail_timeout: 30s}\nretries: {attempts: 0}\n", "")
	for range 6 {
		resp, err := client.Get(p.url + "/?fail")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for i := range 5 {
		resp, err := client.Get(p.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d after every backend answered 500: %d %q, want the last backend kept", i, resp.StatusCode, b)
		}
	}
}

// TestKillBackendUnderLoad: one of three backends dies mid-load; GETs are
// retried on another backend and passive health ejects the dead one, so
// clients see no error.
func TestKillBackendUnderLoad(t *testing.T) {
	bs := []*backend{newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)}
	p := startProxy(t, backendsYAML(bs...)+"retries: {attempts: 2, on: [connect_error, 502, 503]}\npassive_health: {max_fails: 1, fail_timeout: 10s}\n", "")
	var (
		stop     atomic.Bool
		total    atomic.Int64
		failures atomic.Int64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr string
	)
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := hc.Get(p.url + "/")
				total.Add(1)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
					errMu.Lock()
					if firstErr == "" {
						firstErr = fmt.Sprint(err, resp)
					}
					errMu.Unlock()
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	// The closest an in-process server gets to kill -9: listener gone and
	// every open connection reset.
	bs[1].srv.CloseClientConnections()
	bs[1].srv.Listener.Close()
	time.Sleep(700 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests, %d client-visible errors", total.Load(), failures.Load())
	if failures.Load() != 0 {
		t.Errorf("%d of %d GETs failed when a backend died (first: %s)", failures.Load(), total.Load(), firstErr)
	}
}

// TestRateLimitByHeaderFallsBackToTheAddress: with key header:NAME, requests
// carrying the header are limited per value, and those without it per
// client address: not one bucket all header-less clients share.
func TestRateLimitByHeaderFallsBackToTheAddress(t *testing.T) {
	p := startProxy(t, backendsYAML(newBackend(t, "a", nil))+"rate_limit: {rate: 1/m, burst: 1, key: \"header:X-Api-Key\"}\n", "")
	from := func(ip, key string) int {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 5 * time.Second}
		req, _ := http.NewRequest("GET", p.url+"/", nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	got := []int{from("127.0.0.2", ""), from("127.0.0.2", ""), from("127.0.0.3", ""), from("127.0.0.2", "k1"), from("127.0.0.3", "k1"), from("127.0.0.3", "k2")}
	if want := []int{200, 429, 200, 200, 429, 200}; !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v (no header: per address; with it: per value)", got, want)
	}
}

// TestHTTP10WithoutHost: an HTTP/1.0 request may come without Host; sent
// on as HTTP/1.1 it carries the backend's address as Host (a Go backend
// answers 400 to an HTTP/1.1 request without one) and no empty
// X-Forwarded-Host.
func TestHTTP10WithoutHost(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "")
	rc := dialRaw(t, p.listen)
	rc.write("GET /y HTTP/1.0\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "a" {
		t.Fatalf("HTTP/1.0 without Host: %d %q, want 200 from a", resp.StatusCode, body)
	}
	r := a.last.Load()
	if r.Host != a.addr() {
		t.Errorf("Host the backend got: %q, want its address %s", r.Host, a.addr())
	}
	if v, ok := r.Header["X-Forwarded-Host"]; ok {
		t.Errorf("X-Forwarded-Host %q sent for a request without Host", v)
	}
}
