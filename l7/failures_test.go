package l7_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/l7"
)

// slowUpload posts n bytes to url, one every gap, in a body of unknown
// length (streamed through xlb, not buffered).
func slowUpload(t *testing.T, url string, n int, gap time.Duration) (int, string) {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		for range n {
			time.Sleep(gap)
			if _, err := pw.Write([]byte("x")); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, err := http.Post(url, "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestResponseHeaderTimeoutCountsFromTheBodysEnd: timeouts.response_header
// is the backend's time to answer, from when the request was sent whole: an
// upload slower than it (the client's pace) is served, to an HTTP/1.1 and
// to an HTTP/2 backend, while a backend slow to answer after the body
// still gets its 504.
func TestResponseHeaderTimeoutCountsFromTheBodysEnd(t *testing.T) {
	handler := func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("slow") != "" {
			time.Sleep(time.Second)
		}
		fmt.Fprintf(w, "%d", n)
	}
	for _, proto := range []string{"http1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			addr := newBackend(t, "a", handler).addr()
			if proto == "h2c" {
				addr = newH2CBackend(t, "a", handler).addr()
			}
			p := startProxy(t, addrYAML(addr)+"backend_protocol: "+proto+"\ntimeouts: {response_header: 300ms}\n", "")
			if code, body := slowUpload(t, p.url+"/", 5, 150*time.Millisecond); code != 200 || body != "5" {
				t.Errorf("a 750 ms upload under a 300 ms response_header: %d %q, want 200 \"5\"", code, body)
			}
			if code, _ := slowUpload(t, p.url+"/?slow=1", 1, 0); code != 504 {
				t.Errorf("a backend 1 s slow after the body: %d, want 504", code)
			}
		})
	}
}

// TestRetryWithNoOtherBackend: a request whose retry would find no backend
// it has not tried is not retried: its client gets what the failure was (a
// 502 for a connection the backend closed, the backend's own 503 answer),
// not a 503 "no backend available" that hides it.
func TestRetryWithNoOtherBackend(t *testing.T) {
	closer := newBackend(t, "closer", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			http.Error(w, "busy from the backend", http.StatusServiceUnavailable)
			return
		}
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	p := startProxy(t, backendsYAML(closer)+"retries: {attempts: 2, on: [connect_error, 503]}\npassive_health: {max_fails: 0}\n", "")
	resp, body := get(t, p.url+"/", nil)
	if resp.StatusCode != 502 || strings.Contains(body, "no backend") {
		t.Errorf("GET closed by the only backend: %d %q, want 502", resp.StatusCode, body)
	}
	before := closer.hits.Load()
	resp, body = get(t, p.url+"/busy", nil)
	if resp.StatusCode != 503 || !strings.Contains(body, "busy from the backend") {
		t.Errorf("503 from the only backend: %d %q, want its own answer", resp.StatusCode, body)
	}
	if n := closer.hits.Load() - before; n != 1 {
		t.Errorf("the only backend got the request %d times, want 1", n)
	}
}

// TestEjectedBackendServesWhenNothingElseCan: a backend that passive
// health ejected, and that recovered before its fail_timeout, serves when
// its peer goes down (an active check's verdict) instead of every client
// getting 503 until the ejection ends; its first success ends the ejection.
func TestEjectedBackendServesWhenNothingElseCan(t *testing.T) {
	var sick atomic.Bool
	b5 := newBackend(t, "b5", nil)
	b6 := newBackend(t, "b6", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "b6")
	})
	p := startProxy(t, backendsYAML(b5, b6)+"passive_health: {max_fails: 1, fail_timeout: 1h}\n", "")
	sick.Store(true)
	for range 4 {
		get(t, p.url+"/", nil)
	}
	if st, _ := p.srv.Status("web"); !slices.ContainsFunc(st, func(b l7.BackendStatus) bool { return b.Address == b6.addr() && b.Ejected }) {
		t.Fatalf("b6 not ejected after its 500s: %+v", st)
	}
	sick.Store(false) // repaired, still ejected for the hour
	p.srv.Upstream("web", b5.addr()).SetHealthy(false, time.Now())
	for i := range 5 {
		if resp, body := get(t, p.url+"/", nil); resp.StatusCode != 200 || strings.TrimSpace(body) != "b6" {
			t.Fatalf("request %d with b5 down and b6 ejected but serving: %d %q, want 200 from b6", i, resp.StatusCode, body)
		}
	}
	if st, _ := p.srv.Status("web"); slices.ContainsFunc(st, func(b l7.BackendStatus) bool { return b.Ejected }) {
		t.Errorf("b6's success did not end its ejection: %+v", st)
	}
}

// blackhole is a loopback address whose connects time out: a listening
// socket with a full accept queue that never accepts, as a dead or
// firewalled host is.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 4 { // fill the queue
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("the full accept queue still takes connections: no blackhole")
	}
	return addr
}

// TestConnectTimeoutIsAConnectError: a backend whose connect times out
// (nothing was sent) is a connect error as retries.on names it, so the
// default retries send the request to a healthy backend, as NGINX's
// proxy_next_upstream and Envoy's connect-failure do; unretried, it is 504.
func TestConnectTimeoutIsAConnectError(t *testing.T) {
	hole, good := blackhole(t), newBackend(t, "good", nil)
	p := startProxy(t, fmt.Sprintf("backends:\n  - {address: %q}\n  - {address: %q}\ntimeouts: {connect: 200ms}\npassive_health: {max_fails: 0}\n", hole, good.addr()), "")
	for i := range 4 {
		if resp, body := get(t, p.url+"/", nil); resp.StatusCode != 200 || strings.TrimSpace(body) != "good" {
			t.Errorf("GET %d with one backend's connects timing out: %d %q, want 200 from the other", i, resp.StatusCode, body)
		}
	}
	p.apply(t, fmt.Sprintf("backends:\n  - {address: %q}\ntimeouts: {connect: 200ms}\nretries: {attempts: 0}\npassive_health: {max_fails: 0}\n", hole), "")
	if resp, _ := get(t, p.url+"/", nil); resp.StatusCode != 504 {
		t.Errorf("a connect timeout not retried: %d, want 504", resp.StatusCode)
	}
}
