package l7_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/l7"
)

// spread sends n requests and counts the answers by backend name.
func spread(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		resp, body := get(t, url, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %q", resp.StatusCode, body)
		}
		counts[body]++
	}
	return counts
}

func TestSetBackendsKeepsLiveStateAndAppliesWeights(t *testing.T) {
	a, b, c := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)
	p := startProxy(t, backendsYAML(a, b), "")
	spread(t, p.url+"/", 10)
	ua := p.srv.Upstream("web", a.addr())
	before := ua.Requests()
	if before == 0 {
		t.Fatal("a got no requests before the change")
	}
	ub := p.srv.Upstream("web", b.addr())
	start := time.Now()
	ub.Fail(start, 1, 300*time.Millisecond) // passive health ejects b

	err := p.srv.SetBackends("web", []l7.BackendSpec{
		{Address: a.addr(), Weight: 3}, {Address: b.addr(), Weight: 1}, {Address: c.addr(), Weight: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.srv.Upstream("web", a.addr()); got != ua {
		t.Fatal("a's live state was replaced by a new one")
	}
	if ua.Requests() != before {
		t.Errorf("a's request counter went from %d to %d across SetBackends", before, ua.Requests())
	}
	if !ub.Ejected(time.Now()) {
		t.Error("b's passive-health ejection was lost")
	}
	if counts := spread(t, p.url+"/", 40); counts["b"] != 0 {
		t.Errorf("ejected b got requests: %v", counts)
	}
	time.Sleep(time.Until(start.Add(350 * time.Millisecond))) // the ejection ends
	if counts := spread(t, p.url+"/", 400); counts["a"] != 300 || counts["b"] != 100 || counts["c"] != 0 {
		t.Errorf("weights 3:1:0 over 400 requests gave %v", counts)
	}
	st, _ := p.srv.Status("web")
	if len(st) != 3 {
		t.Errorf("status lists %d backends, want 3: %+v", len(st), st)
	}
}

func TestSetBackendsRemovedGetsNothing(t *testing.T) {
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := startProxy(t, backendsYAML(a, b), "")
	spread(t, p.url+"/", 10)
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	hits := b.hits.Load()
	if counts := spread(t, p.url+"/", 50); counts["b"] != 0 || b.hits.Load() != hits {
		t.Errorf("removed backend b still gets requests: %v", counts)
	}
	if u := p.srv.Upstream("web", b.addr()); u != nil {
		t.Errorf("removed backend still has live state in the server")
	}
}

func TestSetBackendsDrained(t *testing.T) {
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := startProxy(t, backendsYAML(a, b), "")
	err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}, {Address: b.addr(), Weight: 5, Drained: true}})
	if err != nil {
		t.Fatal(err)
	}
	if counts := spread(t, p.url+"/", 40); counts["b"] != 0 {
		t.Errorf("drained backend got requests: %v", counts)
	}
	if u := p.srv.Upstream("web", b.addr()); !u.Drained() || u.Weight() != 5 {
		t.Errorf("drained backend: drained %v weight %d, want true 5", u.Drained(), u.Weight())
	}
	// Undrained: its weight is back without being given again.
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}, {Address: b.addr(), Weight: 5}}); err != nil {
		t.Fatal(err)
	}
	if counts := spread(t, p.url+"/", 60); counts["b"] != 50 {
		t.Errorf("undrained backend with weight 5 of 6 got %v", counts)
	}
}

func TestSetBackendsNewWaitsForHealth(t *testing.T) {
	a, c := newBackend(t, "a", nil), newBackend(t, "c", nil)
	svc := backendsYAML(a) + "health_check: {type: http, path: /health, interval: 1s, timeout: 500ms}\n"
	p := startProxy(t, svc, "")
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}, {Address: c.addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	uc := p.srv.Upstream("web", c.addr())
	if uc == nil || uc.Healthy() {
		t.Fatalf("a backend new to a checked service must start down, got %+v", uc)
	}
	if ua := p.srv.Upstream("web", a.addr()); !ua.Healthy() {
		t.Error("a, which stays, lost its health")
	}
	if counts := spread(t, p.url+"/", 20); counts["c"] != 0 {
		t.Errorf("new backend served before its first passing check: %v", counts)
	}
	uc.SetHealthy(true, time.Now())
	if counts := spread(t, p.url+"/", 20); counts["c"] != 10 {
		t.Errorf("new backend once healthy: %v", counts)
	}
}

// The rest of the service is untouched: the rate limiter keeps its buckets,
// and a route keeps its own backends.
func TestSetBackendsLeavesLimiterAndRoutes(t *testing.T) {
	a, b, r := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "r", nil)
	svc := backendsYAML(a) + fmt.Sprintf("rate_limit: {rate: 5/m, burst: 5}\nroutes:\n  - match: {path_prefix: /r/}\n    backends: [{address: %q}]\n", r.addr())
	p := startProxy(t, svc, "")
	for i := range 4 {
		if resp, body := get(t, p.url+"/", nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: b.addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, p.url+"/r/x", nil); resp.StatusCode != 200 || body != "r" {
		t.Errorf("route after SetBackends: %d %q, want its own backend r", resp.StatusCode, body)
	}
	// That was the 5th request of the burst: a limiter rebuilt by
	// SetBackends would let the next one through.
	if resp, _ := get(t, p.url+"/", nil); resp.StatusCode != 429 {
		t.Errorf("6th request within the burst of 5: status %d, want 429 (limiter reset?)", resp.StatusCode)
	}
}

func TestSetBackendsErrors(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a), "")
	if err := p.srv.SetBackends("nope", nil); !errors.Is(err, l7.ErrNoService) {
		t.Errorf("unknown service: %v, want ErrNoService", err)
	}
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr()}, {Address: a.addr()}}); err == nil {
		t.Error("a backend given twice was accepted")
	}
	if counts := spread(t, p.url+"/", 5); counts["a"] != 5 {
		t.Errorf("a refused SetBackends changed the service: %v", counts)
	}
}

// Kept-alive connections to a backend that stays are reused after the
// change: its connection pool is not replaced.
func TestSetBackendsKeepsBackendConnections(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]bool{}
	a := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes[r.RemoteAddr] = true
		mu.Unlock()
		fmt.Fprintln(w, "a")
	})
	c := newBackend(t, "c", nil)
	p := startProxy(t, backendsYAML(a), "")
	spread(t, p.url+"/", 3)
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}, {Address: c.addr(), Weight: 0}}); err != nil {
		t.Fatal(err)
	}
	spread(t, p.url+"/", 3)
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) != 1 {
		t.Errorf("a saw %d backend connections over 6 sequential requests, want 1 kept across SetBackends: %v", len(remotes), remotes)
	}
}

// routeYAML is a service with pool bs and a route /r/ whose own backend is r.
func routeYAML(r *backend, bs ...*backend) string {
	return backendsYAML(bs...) + fmt.Sprintf("routes:\n  - match: {path_prefix: /r/}\n    backends: [{address: %q}]\n", r.addr())
}

// TestSetBackendsLeavesARouteItsCopyOfAPoolAddress: an address both in the
// pool and in a route's own backends is two backends; draining, re-weighting
// or removing the pool's leaves the route's as the file has it.
func TestSetBackendsLeavesARouteItsCopyOfAPoolAddress(t *testing.T) {
	a, r := newBackend(t, "a", nil), newBackend(t, "r", nil)
	p := startProxy(t, routeYAML(r, a, r), "")
	pool, route := p.srv.Upstreams("web", r.addr())
	if pool == nil || route == nil || pool == route {
		t.Fatalf("upstreams of r: pool %p, route %p; want two apart", pool, route)
	}
	for _, tc := range []struct {
		name string
		pool []l7.BackendSpec
	}{
		{"drain", []l7.BackendSpec{{Address: a.addr(), Weight: 1}, {Address: r.addr(), Weight: 1, Drained: true}}},
		{"weight-0", []l7.BackendSpec{{Address: a.addr(), Weight: 1}, {Address: r.addr(), Weight: 0}}},
		{"removed", []l7.BackendSpec{{Address: a.addr(), Weight: 1}}},
	} {
		if err := p.srv.SetBackends("web", tc.pool); err != nil {
			t.Fatal(err)
		}
		if counts := spread(t, p.url+"/r/x", 5); counts["r"] != 5 {
			t.Errorf("%s: route /r/ got %v, want its own backend r", tc.name, counts)
		}
		if counts := spread(t, p.url+"/", 6); counts["a"] != 6 {
			t.Errorf("%s: pool got %v, want a only", tc.name, counts)
		}
		if _, got := p.srv.Upstreams("web", r.addr()); got != route || got.Drained() || got.Weight() != 1 {
			t.Errorf("%s: the route's r: same %v, drained %v, weight %d; want its live state, undrained, weight 1", tc.name, got == route, got.Drained(), got.Weight())
		}
	}
	// Gone from the pool, r is still the route's: reported, and what the
	// health checks reach.
	if got := p.srv.Upstream("web", r.addr()); got != route {
		t.Error("Upstream of an address only the route has now is not the route's")
	}
	st, _ := p.srv.Status("web")
	if len(st) != 2 || (st[0].Address != r.addr() && st[1].Address != r.addr()) {
		t.Errorf("status %+v, want a and the route's r", st)
	}
	route.SetHealthy(false, time.Now())
	if resp, body := get(t, p.url+"/r/x", nil); resp.StatusCode != 503 {
		t.Errorf("route with its only backend down: %d %q, want 503", resp.StatusCode, body)
	}
}

// TestSetBackendsAddThenRemoveAnAddressARouteNames: the API may add to the
// pool an address a route names; removing it again leaves the route served.
func TestSetBackendsAddThenRemoveAnAddressARouteNames(t *testing.T) {
	a, r := newBackend(t, "a", nil), newBackend(t, "r", nil)
	svc := routeYAML(r, a) + "health_check: {type: http, path: /health, interval: 1s, timeout: 500ms}\n"
	p := startProxy(t, svc, "")
	_, route := p.srv.Upstreams("web", r.addr())
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}, {Address: r.addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	pool, got := p.srv.Upstreams("web", r.addr())
	if pool == nil || pool == route || pool.Healthy() || got != route || !route.Healthy() {
		t.Fatalf("after the add: the pool's r must be new and down until checked, the route's the same and up")
	}
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}, {Address: r.addr(), Weight: 1, Drained: true}}); err != nil {
		t.Fatal(err)
	}
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if counts := spread(t, p.url+"/r/x", 5); counts["r"] != 5 {
		t.Errorf("route after the add and removal of r in the pool: %v, want r", counts)
	}
}

// TestReloadedRouteKeepsItsAddressVerdict: a reload that adds a route
// naming a pool address already checked serves the route at once (healthy
// stays healthy, down stays down), as the daemon's model has it, instead of
// answering 503 until the daemon sets its health.
func TestReloadedRouteKeepsItsAddressVerdict(t *testing.T) {
	a, d := newBackend(t, "a", nil), newBackend(t, "d", nil)
	const hc = "health_check: {type: http, path: /health, interval: 1s, timeout: 500ms}\n"
	p := startProxy(t, backendsYAML(a, d)+hc, "")
	p.srv.Upstream("web", d.addr()).SetHealthy(false, time.Now())
	p.apply(t, backendsYAML(a, d)+hc+fmt.Sprintf("routes:\n  - match: {path_prefix: /a/}\n    backends: [{address: %q}]\n  - match: {path_prefix: /d/}\n    backends: [{address: %q}]\n", a.addr(), d.addr()), "")
	if resp, body := get(t, p.url+"/a/x", nil); resp.StatusCode != 200 || strings.TrimSpace(body) != "a" {
		t.Errorf("new route to the healthy pool address a: %d %q, want 200 from a", resp.StatusCode, body)
	}
	if _, route := p.srv.Upstreams("web", d.addr()); route == nil || route.Healthy() {
		t.Errorf("new route to the pool address d, down: its backend is up, want it down like the pool's")
	}
}
