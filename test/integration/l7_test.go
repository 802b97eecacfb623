//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/test/freeport"
)

// TestDaemonL7 runs the real xlbd with a layer 7 service on loopback: it
// balances, takes a failing backend out on its health checks, reports L7
// backends in the API and metrics, and finishes a slow request across SIGTERM.
func TestDaemonL7(t *testing.T) {
	buildBinaries(t)
	var sick atomic.Bool
	var bs []*httptest.Server
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("b%d", i+1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/health":
				if name == "b2" && sick.Load() {
					http.Error(w, "sick", 503)
					return
				}
				io.WriteString(w, "ok")
			case "/slow":
				time.Sleep(1500 * time.Millisecond)
				io.WriteString(w, "slow "+name)
			default:
				io.WriteString(w, name)
			}
		}))
		t.Cleanup(srv.Close)
		bs = append(bs, srv)
	}
	listen, admin := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`admin: {listen: %q}
l7: {drain_timeout: 5s}
services:
  - name: web
    layer: 7
    listen: %q
    health_check: {type: http, path: /health, interval: 200ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2}
    backends:
      - {address: %q}
      - {address: %q}
      - {address: %q}
`, admin, listen, hostport(bs[0]), hostport(bs[1]), hostport(bs[2]))
	path := filepath.Join(dir, "xlb.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	cmd := startXlbd(t, path, admin, "-access-log", filepath.Join(dir, "access.log"))
	hc := &http.Client{Timeout: 5 * time.Second}
	count := func(n int) map[string]int {
		c := map[string]int{}
		for i := 0; i < n; i++ {
			resp, err := hc.Get("http://" + listen + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			c[string(b)]++
		}
		return c
	}
	if c := count(300); c["b1"] != 100 || c["b2"] != 100 || c["b3"] != 100 {
		t.Errorf("round robin over 3 backends: %v", c)
	}

	sick.Store(true)
	backendOf := func(addr string) api.Backend {
		resp, err := hc.Get("http://" + admin + "/api/v1/services/web")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s api.Service
		json.NewDecoder(resp.Body).Decode(&s)
		for _, b := range s.Backends {
			if b.Address == addr {
				return b
			}
		}
		t.Fatalf("no backend %s in %+v", addr, s)
		return api.Backend{}
	}
	waitFor(t, "b2 down", 5*time.Second, func() bool { return !backendOf(hostport(bs[1])).Healthy })
	if c := count(100); c["b2"] != 0 {
		t.Errorf("unhealthy backend still served: %v", c)
	}
	if b := backendOf(hostport(bs[0])); b.Counters.Requests == 0 || b.Source != "config" || b.ResponseTimeMs <= 0 {
		t.Errorf("API backend %+v, want requests, source config and a response time", b)
	}
	out, err := exec.Command(bins.xlbctl, "-admin", "http://"+admin, "status").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(hostport(bs[1]))) || !bytes.Contains(out, []byte("DOWN")) {
		t.Errorf("xlbctl status: %v\n%s", err, out)
	}
	resp, _ := hc.Get("http://" + admin + "/metrics")
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte(`xlb_l7_requests_total{backend="`+hostport(bs[0])+`",code="200",service="web"}`)) {
		t.Errorf("/metrics lacks xlb_l7_requests_total for b1")
	}

	// Runtime changes through the API: drain, add, bad input, remove.
	call := func(method, path, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+admin+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
	}
	call("PATCH", "/api/v1/services/web/backends/"+hostport(bs[0]), `{"drain": true}`, 200)
	if c := count(60); c["b1"] != 0 || c["b3"] != 60 {
		t.Errorf("after draining b1 (b2 down): %v", c)
	}
	extra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b4") }))
	t.Cleanup(extra.Close)
	call("POST", "/api/v1/services/web/backends", fmt.Sprintf(`{"address": %q}`, hostport(extra)), 201)
	waitFor(t, "added backend healthy", 5*time.Second, func() bool { return backendOf(hostport(extra)).Healthy })
	if b := backendOf(hostport(extra)); b.Source != "api" || b.Persisted {
		t.Errorf("API-added backend %+v", b)
	}
	if c := count(60); c["b4"] != 30 || c["b3"] != 30 {
		t.Errorf("with b4 added: %v", c)
	}
	call("POST", "/api/v1/services/web/backends", `{"address": "no-port"}`, 400)
	call("POST", "/api/v1/services/web/backends", fmt.Sprintf(`{"address": %q}`, hostport(extra)), 409)
	call("DELETE", "/api/v1/services/web/backends/"+hostport(extra), "", 200)
	if c := count(30); c["b4"] != 0 {
		t.Errorf("removed (draining) backend still served: %v", c)
	}
	call("PATCH", "/api/v1/services/web/backends/"+hostport(bs[0]), `{"drain": false}`, 200)

	// A slow request in flight when SIGTERM arrives still completes.
	done := make(chan string, 1)
	go func() {
		resp, err := hc.Get("http://" + listen + "/slow")
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	// While it drains, a reload is refused: it would listen again on the
	// closed address, and the exit would cut what that accepted.
	waitFor(t, "the listener closed by the drain", 2*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	resp, err = hc.Post("http://"+admin+"/api/v1/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !bytes.Contains(body, []byte("shutting down")) {
		t.Errorf("reload while draining: %d %s, want 503 naming the shutdown", resp.StatusCode, body)
	}
	if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
		c.Close()
		t.Errorf("the L7 address accepts again after a reload while draining")
	}
	if got := <-done; !strings.HasPrefix(got, "200 slow") {
		t.Errorf("in-flight request across SIGTERM: %s", got)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("xlbd exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("xlbd did not exit after draining")
	}
	access, _ := os.ReadFile(filepath.Join(dir, "access.log"))
	if !bytes.Contains(access, []byte(`"request_id"`)) || !bytes.Contains(access, []byte(`"path":"/slow"`)) {
		t.Errorf("access log lacks request ids or the slow request:\n%.500s", access)
	}
}

func hostport(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func freeAddr(t *testing.T) string { return freeport.Addr(t) }

// TestDaemonL7ReloadReplacesBackends: a reload whose file lists other
// backends loses no request. The new ones wait for their first passing
// checks; until one is up, the old ones stand in, then get nothing new.
func TestDaemonL7ReloadReplacesBackends(t *testing.T) {
	buildBinaries(t)
	var bs []*httptest.Server
	for i := range 4 {
		name := fmt.Sprintf("b%d", i+1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(srv.Close)
		bs = append(bs, srv)
	}
	listen, admin := freeAddr(t), freeAddr(t)
	config := func(a, b *httptest.Server) []byte {
		return fmt.Appendf(nil, `admin: {listen: %q}
l7: {drain_timeout: 10s}
services:
  - name: web
    layer: 7
    listen: %q
    health_check: {type: http, path: /, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2}
    backends: [{address: %q}, {address: %q}]
`, admin, listen, hostport(a), hostport(b))
	}
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	os.WriteFile(path, config(bs[0], bs[1]), 0o644)
	cmd := startXlbd(t, path, admin)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func() (int, string) {
		resp, err := hc.Get("http://" + listen + "/")
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 {
		t.Fatalf("before the reload: %d %s", code, body)
	}
	os.WriteFile(path, config(bs[2], bs[3]), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	served := map[string]int{}
	var failed []string
	deadline := time.Now().Add(6 * time.Second)
	newOnly := 0
	for time.Now().Before(deadline) && newOnly < 50 {
		code, body := get()
		if code != 200 {
			failed = append(failed, fmt.Sprintf("%d %s", code, strings.TrimSpace(body)))
			continue
		}
		served[body]++
		if body == "b3" || body == "b4" {
			newOnly++
		} else {
			newOnly = 0
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("across the reload: %v", served)
	if len(failed) > 0 {
		t.Errorf("%d requests failed across a reload that replaced the backends (first: %s)", len(failed), failed[0])
	}
	if newOnly < 50 {
		t.Fatalf("the new backends did not take over within 6s: %v", served)
	}
	// Once a new one is up, the old ones get nothing new.
	for range 40 {
		if code, body := get(); code != 200 || (body != "b3" && body != "b4") {
			t.Fatalf("after the new backends came up: %d %s", code, body)
		}
	}
}
