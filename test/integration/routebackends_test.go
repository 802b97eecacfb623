//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
)

// TestDaemonL7RouteBackendsOutliveAPIChanges runs the real xlbd with a
// service whose routes name backends of their own: r only in route /v1/
// (the API adds it to the pool, then deletes it), and both in the pool and
// in route /v2/ (the API drains and deletes the pool's). The routes keep
// serving them, and their health checks keep reaching the routes.
func TestDaemonL7RouteBackendsOutliveAPIChanges(t *testing.T) {
	buildBinaries(t)
	sick := map[string]*atomic.Bool{}
	serve := func(name string) string {
		sick[name] = new(atomic.Bool)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" && sick[name].Load() {
				http.Error(w, "sick", 503)
				return
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		return hostport(srv)
	}
	pool, route, both := serve("pool"), serve("route"), serve("both")
	listen, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	cfg := fmt.Sprintf(`admin: {listen: %q}
l7: {drain_timeout: 3s}
services:
  - name: rt
    layer: 7
    listen: %q
    health_check: {type: http, path: /health, interval: 100ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 1}
    backends: [{address: %q}, {address: %q}]
    routes:
      - match: {path_prefix: /v1/}
        backends: [{address: %q}]
      - match: {path_prefix: /v2/}
        backends: [{address: %q}]
`, admin, listen, pool, both, route, both)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startXlbd(t, path, admin)
	hc := &http.Client{Timeout: 5 * time.Second}
	get := func(p string) string {
		resp, err := hc.Get("http://" + listen + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	call := func(method, p, body string, want int) api.Change {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+admin+"/api/v1/services/rt/backends"+p, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s %s: %d %s, want %d", method, p, body, resp.StatusCode, b, want)
		}
		var ch api.Change
		json.Unmarshal(b, &ch)
		return ch
	}
	listed := func(addr string) (api.Backend, int) {
		resp, err := hc.Get("http://" + admin + "/api/v1/services/rt")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s api.Service
		json.NewDecoder(resp.Body).Decode(&s)
		var found api.Backend
		n := 0
		for _, b := range s.Backends {
			if b.Address == addr {
				found, n = b, n+1
			}
		}
		return found, n
	}
	// serving waits for a route to answer want (health takes a few checks).
	serving := func(what, p, want string) {
		t.Helper()
		waitFor(t, what, 5*time.Second, func() bool { return get(p) == want })
	}
	// followsHealth: the route's backend still has its checks.
	followsHealth := func(name, addr, p string) {
		t.Helper()
		sick[name].Store(true)
		serving(name+" down on its checks", p, "503 no backend available for service rt")
		sick[name].Store(false)
		serving(name+" up again", p, "200 "+name)
		if b, n := listed(addr); n != 1 || b.Draining || !b.Healthy || b.Source != "config" {
			t.Errorf("%s listed %d times as %+v, want once, the route's: up, not draining", name, n, b)
		}
	}
	serving("route /v1/", "/v1/a", "200 route")

	// Added to the pool, then deleted: the route keeps it.
	call("POST", "", fmt.Sprintf(`{"address": %q}`, route), 201)
	waitFor(t, "added pool backend up", 5*time.Second, func() bool { b, _ := listed(route); return b.Healthy })
	call("DELETE", "/"+route, "", 200)
	if got := get("/v1/a"); got != "200 route" {
		t.Errorf("route /v1/ while the pool's copy drains: %q", got)
	}
	waitFor(t, "deleted backend gone from the pool", 5*time.Second, func() bool { b, _ := listed(route); return b.Source == "config" })
	followsHealth("route", route, "/v1/a")

	// In both lists: the pool's copy drains and goes, the route's stays.
	call("PATCH", "/"+both, `{"drain": true}`, 200)
	if got := get("/v2/a"); got != "200 both" {
		t.Errorf("route /v2/ with the pool's copy drained: %q", got)
	}
	call("PATCH", "/"+both, `{"drain": false, "weight": 0}`, 200)
	if got := get("/v2/a"); got != "200 both" {
		t.Errorf("route /v2/ with the pool's copy at weight 0: %q", got)
	}
	call("DELETE", "/"+both, "", 200)
	waitFor(t, "deleted backend gone from the pool", 5*time.Second, func() bool { b, _ := listed(both); return !b.Draining })
	if got := get("/v2/a"); got != "200 both" {
		t.Errorf("route /v2/ after the pool's copy went: %q", got)
	}
	followsHealth("both", both, "/v2/a")
	for range 4 {
		if got := get("/"); got != "200 pool" {
			t.Errorf("pool after both left it: %q, want pool only", got)
		}
	}

	// An undrain at weight 0 says it left the backend draining.
	call("PATCH", "/"+pool, `{"weight": 0}`, 200)
	out, err := exec.Command(bins.xlbctl, "-admin", "http://"+admin, "undrain", "rt", pool).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "still draining: weight is 0") {
		t.Errorf("xlbctl undrain at weight 0: %v\n%s", err, out)
	}
	if b, _ := listed(pool); !b.Draining {
		t.Errorf("pool backend at weight 0 after the undrain: %+v, want draining", b)
	}
}
