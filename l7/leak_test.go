package l7_test

// What a long-running proxy must not do: keep a goroutine (and the
// buffers and sockets it holds) per request that ended badly.

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestNoGoroutineLeak runs rounds of requests that end in every way a
// client or backend can end them (whole, cancelled mid-answer, cancelled
// mid-upload, refused backend, garbage, a bare HTTP/2 preface), over
// HTTP/1.1, h2c and TLS HTTP/2 clients, to HTTP/1.1 and h2c backends.
// Once the first round has warmed the pools, later rounds must leave no
// more goroutines behind than it did: a leak of one per bad request
// would add dozens a round.
func TestNoGoroutineLeak(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/slow" {
			io.WriteString(w, "ok")
			return
		}
		for range 200 {
			if _, err := w.Write(bytes.Repeat([]byte("x"), 1024)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	h1be := newBackend(t, "h1", slow)
	h2be := newH2CBackend(t, "h2", slow)
	dead := freePort(t)
	proxies := []struct {
		name string
		url  string
		c    func() *http.Client
	}{}
	add := func(name, svc string, withTLS bool, h2 bool) {
		p, _, base := startH2Proxy(t, withTLS, svc+"retries: {attempts: 0}\n", "idle_timeout: 1s")
		c := func() *http.Client { return &http.Client{Timeout: 10 * time.Second} }
		if h2 {
			c = func() *http.Client { hc, _ := h2Client(t, withTLS); return hc }
		}
		proxies = append(proxies, struct {
			name string
			url  string
			c    func() *http.Client
		}{name, base, c})
		_ = p
	}
	for _, be := range []struct{ name, svc string }{
		{"h1-backend", backendsYAML(h1be)},
		{"h2c-backend", "backend_protocol: h2c\n" + addrYAML(h2be.addr())},
	} {
		add(be.name+"/h1-client", be.svc, false, false)
		add(be.name+"/h2c-client", be.svc, false, true)
		add(be.name+"/h2-tls-client", be.svc, true, true)
	}
	deadP := startProxy(t, addrYAML(dead)+"retries: {attempts: 0}\n", "")

	round := func() {
		var wg sync.WaitGroup
		for _, p := range proxies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := p.c()
				defer c.CloseIdleConnections()
				for range 10 {
					if resp, err := c.Get(p.url + "/"); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					} else {
						t.Errorf("%s: %v", p.name, err)
					}
				}
				for range 5 { // cancelled mid-answer
					ctx, cancel := context.WithCancel(context.Background())
					req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/slow", nil)
					if resp, err := c.Do(req); err == nil {
						resp.Body.Read(make([]byte, 1024))
					}
					cancel()
				}
				for range 5 { // cancelled mid-upload
					ctx, cancel := context.WithCancel(context.Background())
					pr, pw := io.Pipe()
					req, _ := http.NewRequestWithContext(ctx, "POST", p.url+"/up", pr)
					go func() {
						pw.Write(make([]byte, 4096))
						time.Sleep(20 * time.Millisecond)
						cancel()
						pw.CloseWithError(context.Canceled)
					}()
					if resp, err := c.Do(req); err == nil {
						resp.Body.Close()
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if resp, err := http.Get(deadP.url + "/"); err == nil {
					resp.Body.Close()
				}
			}
			for _, junk := range []string{"\x16\x03\x01garbage", "GET / HTTP/1.1\r\nHost", http2.ClientPreface, "BREW / HTCPCP/1.0\r\n\r\n"} {
				for _, p := range proxies[:2] {
					c, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimPrefix(p.url, "http://"), "https://"))
					if err != nil {
						continue
					}
					io.WriteString(c, junk)
					c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
					c.Read(make([]byte, 512))
					c.Close()
				}
			}
		}()
		wg.Wait()
	}
	// settle waits until the count is at most atMost, or has not fallen
	// for 3 s: what ended has wound down, and the connections the test's
	// HTTP/2 clients keep have met the proxy's idle_timeout (1s).
	settle := func(atMost int) int {
		n, since := runtime.NumGoroutine(), time.Now()
		for n > atMost && time.Since(since) < 3*time.Second {
			time.Sleep(250 * time.Millisecond)
			if m := runtime.NumGoroutine(); m < n {
				n, since = m, time.Now()
			}
		}
		return n
	}
	round()
	warm := settle(0)
	var counts []int
	for range 4 {
		round()
		counts = append(counts, settle(warm+10))
	}
	t.Logf("goroutines after the warm-up round: %d; after each later round: %v", warm, counts)
	if last := counts[len(counts)-1]; last > warm+10 {
		var b bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("goroutines grow by round: %d after warm-up, then %v; now:\n%s", warm, counts, b.String())
	}
}
