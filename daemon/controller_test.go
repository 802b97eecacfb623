//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/discovery"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/l7"
	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/freeport"
)

// l7Parts wires the reconciler and controller to a real l7 server with the
// L4 data plane off: what xlbd runs for layer 7 services, minus the checker.
func l7Parts(t *testing.T, cfg *config.Config) (*controller, *l7.Server) {
	t.Helper()
	web, err := l7.New(l7.Options{StickySecret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		web.Shutdown(ctx)
	})
	log := slog.New(slog.DiscardHandler)
	r := &reconciler{log: log, model: newModel(), l4: newL4Projector(log, nil, newIDs()), l7: &l7Projector{web: web},
		retarget: func(*model) {}, changed: func() {}}
	if err := r.load(cfg, true); err != nil {
		t.Fatal(err)
	}
	return &controller{log: log, r: r, reload: func() error { return r.load(cfg, false) }}, web
}

func freeListen(t *testing.T) string { return freeport.Addr(t) }

func l7Config(t *testing.T) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`l7: {drain_timeout: 10s}
services:
  - name: web
    layer: 7
    listen: %q
    backends:
      - {address: 127.0.0.1:9001, weight: 2}
      - {address: 127.0.0.1:9002}
    routes:
      - match: {path_prefix: /r/}
        backends: [{address: 127.0.0.1:9009}]
`, freeListen(t))
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestControllerL7RuntimeChanges(t *testing.T) {
	ctl, web := l7Parts(t, l7Config(t))
	u1 := web.Upstream("web", "127.0.0.1:9001")
	u1.Acquire()
	u1.Release()
	if _, err := ctl.PatchBackend("web", "127.0.0.1:9001", api.PatchBackend{Weight: ptr(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.AddBackend("web", api.AddBackend{Address: "127.0.0.1:9003"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.PatchBackend("web", "127.0.0.1:9002", api.PatchBackend{Drain: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if got := web.Upstream("web", "127.0.0.1:9001"); got != u1 || got.Weight() != 7 || got.Requests() != 1 {
		t.Errorf("9001 after an add and a drain: same %v, weight %d, requests %d; want its live state with the API weight 7",
			got == u1, got.Weight(), got.Requests())
	}
	if u := web.Upstream("web", "127.0.0.1:9002"); !u.Drained() {
		t.Error("drain through the API did not reach the l7 pool")
	}

	ch, err := ctl.RemoveBackend("web", "127.0.0.1:9002")
	if err != nil || ch.Note != removedNote {
		t.Errorf("remove of a config backend: %+v, %v; want the note %q", ch, err, removedNote)
	}
	_, err = ctl.PatchBackend("web", "127.0.0.1:9009", api.PatchBackend{Weight: ptr(3)})
	if !errors.Is(err, api.ErrInvalid) {
		t.Errorf("patch of a route-only backend: %v, want ErrInvalid", err)
	}
	if _, err := ctl.AddBackend("web", api.AddBackend{Address: "127.0.0.1:9003"}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("second add: %v, want ErrConflict", err)
	}

	if _, err := ctl.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := web.Upstream("web", "127.0.0.1:9001"); got != u1 || got.Weight() != 2 {
		t.Errorf("after a reload 9001 has weight %d, want the file's 2 (same live state: %v)", got.Weight(), got == u1)
	}
	if u := web.Upstream("web", "127.0.0.1:9002"); u == nil || u.Drained() {
		t.Error("after a reload 9002 should be back and not drained")
	}
	if u := web.Upstream("web", "127.0.0.1:9003"); u == nil || !u.Drained() {
		t.Error("after a reload the API-added 9003 should drain before it goes")
	}
	var listed []string
	for _, s := range ctl.Services() {
		for _, b := range s.Backends {
			listed = append(listed, fmt.Sprintf("%s:%s:%v", b.Address, b.Source, b.Draining))
		}
	}
	want := "[127.0.0.1:9001:config:false 127.0.0.1:9002:config:false 127.0.0.1:9003:api:true 127.0.0.1:9009:config:false]"
	if fmt.Sprint(listed) != want {
		t.Errorf("services after the reload list %v, want %s", listed, want)
	}
}

func ptr[T any](v T) *T { return &v }

// TestControllerDeletedBackendGoesOnceIdle: a DELETE, or a reload that
// drops an API-added backend, drains it only while it has requests in
// flight, not for the whole drain_timeout (10s here).
func TestControllerDeletedBackendGoesOnceIdle(t *testing.T) {
	cfg := l7Config(t)
	ctl, web := l7Parts(t, cfg)
	listed := func(addr string) (api.Backend, bool) {
		for _, s := range ctl.Services() {
			for _, b := range s.Backends {
				if b.Address == addr {
					return b, true
				}
			}
		}
		return api.Backend{}, false
	}
	u := web.Upstream("web", "127.0.0.1:9002")
	u.Acquire()
	if _, err := ctl.RemoveBackend("web", "127.0.0.1:9002"); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * removalGrace)
	if _, err := ctl.r.expire(later, false); err != nil {
		t.Fatal(err)
	}
	if b, ok := listed("127.0.0.1:9002"); !ok || !b.Draining || b.Active != 1 {
		t.Fatalf("with a request in flight: %+v (listed %v), want listed, draining, 1 active", b, ok)
	}
	u.Release()
	if _, err := ctl.r.expire(later, false); err != nil {
		t.Fatal(err)
	}
	if b, ok := listed("127.0.0.1:9002"); ok {
		t.Errorf("idle deleted backend still listed: %+v", b)
	}
	if web.Upstream("web", "127.0.0.1:9002") != nil {
		t.Error("idle deleted backend still in the l7 pool")
	}

	if _, err := ctl.AddBackend("web", api.AddBackend{Address: "127.0.0.1:9003"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Reload(); err != nil {
		t.Fatal(err)
	}
	if b, ok := listed("127.0.0.1:9003"); !ok || !b.Draining {
		t.Fatalf("API-added backend right after a reload: %+v (listed %v), want draining", b, ok)
	}
	if _, err := ctl.r.expire(time.Now().Add(2*removalGrace), false); err != nil {
		t.Fatal(err)
	}
	if b, ok := listed("127.0.0.1:9003"); ok {
		t.Errorf("idle API-added backend still listed after a reload: %+v", b)
	}
	if _, ok := listed("127.0.0.1:9001"); !ok {
		t.Error("a backend that was not removed went")
	}
}

// TestControllerWeightZeroReadsAsDraining: weight 0 takes no new flows, so
// the API calls it draining; a weight back undoes it, and an undrain does
// not give weight to a backend set to 0.
func TestControllerWeightZeroReadsAsDraining(t *testing.T) {
	ctl, _ := l7Parts(t, l7Config(t))
	draining := func() (bool, int) {
		for _, b := range ctl.Services()[0].Backends {
			if b.Address == "127.0.0.1:9001" {
				return b.Draining, b.Weight
			}
		}
		t.Fatal("backend 9001 not listed")
		return false, 0
	}
	for _, tc := range []struct {
		name         string
		patch        api.PatchBackend
		wantDraining bool
		wantWeight   int
	}{
		{"weight-0", api.PatchBackend{Weight: ptr(0)}, true, 0},
		{"undrain-keeps-weight-0", api.PatchBackend{Drain: ptr(false)}, true, 0},
		{"weight-back", api.PatchBackend{Weight: ptr(3)}, false, 3},
		{"drain", api.PatchBackend{Drain: ptr(true)}, true, 0},
		{"undrain", api.PatchBackend{Drain: ptr(false)}, false, 3},
	} {
		if _, err := ctl.PatchBackend("web", "127.0.0.1:9001", tc.patch); err != nil {
			t.Fatal(err)
		}
		if d, w := draining(); d != tc.wantDraining || w != tc.wantWeight {
			t.Errorf("%s: draining %v weight %d, want %v %d", tc.name, d, w, tc.wantDraining, tc.wantWeight)
		}
	}
}

func TestControllerPatchResultIsText(t *testing.T) {
	ctl, _ := l7Parts(t, l7Config(t))
	ch, err := ctl.PatchBackend("web", "127.0.0.1:9001", api.PatchBackend{Weight: ptr(1), Drain: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	if want := "weight 1, not draining"; ch.Result != want {
		t.Errorf("result %q, want %q", ch.Result, want)
	}
}

// TestControllerStatsWithL4Off: every counter is there by name, at 0.
func TestControllerStatsWithL4Off(t *testing.T) {
	ctl, _ := l7Parts(t, l7Config(t))
	st, err := ctl.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.L4) != len(maps.StatNames) {
		t.Fatalf("%d counters, want every one of maps.StatNames (%d)", len(st.L4), len(maps.StatNames))
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var byName map[string]json.RawMessage
	if err := json.Unmarshal(raw, &byName); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tx", "drop_malformed", "flow_insert_skipped"} {
		if got := string(byName[name]); got != `{"packets":0,"bytes":0}` {
			t.Errorf("%s: %s, want 0 packets and bytes", name, got)
		}
	}
}

// TestControllerL4ServicesListedWithL4Off: GET lists every service, an L4
// one from the model when no xdp.interfaces are set; changing it is a
// conflict with the daemon's state, not a missing service.
func TestControllerL4ServicesListedWithL4Off(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`services:
  - name: api
    layer: 4
    vip: 10.0.0.100
    port: 80
    backends: [{address: 10.0.0.11, weight: 2}, {address: 10.0.0.12, weight: 0}]
  - name: web
    layer: 7
    listen: %q
    backends: [{address: 127.0.0.1:9001}]
`, freeListen(t))))
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := l7Parts(t, cfg)
	svcs := ctl.Services()
	if len(svcs) != 2 || svcs[0].Name != "api" || svcs[0].Layer != 4 || svcs[1].Name != "web" {
		t.Fatalf("services %+v, want api (layer 4) and web", svcs)
	}
	got := fmt.Sprintf("%+v", svcs[0].Backends)
	want := fmt.Sprintf("%+v", []api.Backend{
		{Address: "10.0.0.11", Weight: 2, ConfigWeight: 2, Healthy: true, Source: "config", Persisted: true},
		{Address: "10.0.0.12", Weight: 0, ConfigWeight: 0, Healthy: true, Draining: true, Source: "config", Persisted: true},
	})
	if got != want {
		t.Errorf("L4 backends with L4 off:\n got %s\nwant %s", got, want)
	}
	if svcs[0].Address != "10.0.0.100:80" || svcs[0].Protocol != "tcp" {
		t.Errorf("L4 service: %+v", svcs[0])
	}
	_, addErr := ctl.AddBackend("api", api.AddBackend{Address: "10.0.0.13"})
	_, removeErr := ctl.RemoveBackend("api", "10.0.0.11")
	_, patchErr := ctl.PatchBackend("api", "10.0.0.11", api.PatchBackend{Drain: ptr(true)})
	for name, err := range map[string]error{"add": addErr, "remove": removeErr, "patch": patchErr} {
		if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "L4 data plane is off") {
			t.Errorf("%s on an L4 service with L4 off: %v, want a conflict that says the L4 data plane is off", name, err)
		}
	}
}

// TestControllerDiscoveredBackendDrainsTheWholeTimeout: unlike a deleted
// one, a backend that left its DNS answer drains for all of drain_timeout
// even when idle (SPEC: the name may bring it back meanwhile).
func TestControllerDiscoveredBackendDrainsTheWholeTimeout(t *testing.T) {
	yaml := fmt.Sprintf(`l7: {drain_timeout: 10s}
services:
  - name: web
    layer: 7
    listen: %q
    discover: {dns: web.internal, port: 9001, resolvers: ["127.0.0.1:53"]}
`, freeListen(t))
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := l7Parts(t, cfg)
	listed := func() (api.Backend, bool) {
		for _, b := range ctl.Services()[0].Backends {
			if b.Address == "127.0.0.2:9001" {
				return b, true
			}
		}
		return api.Backend{}, false
	}
	if err := ctl.r.discovered("web", []discovery.Backend{{Address: "127.0.0.2:9001", Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := listed(); !ok {
		t.Fatal("discovered backend not listed")
	}
	if err := ctl.r.discovered("web", nil); err != nil {
		t.Fatal(err)
	}
	// An empty answer removes only when it comes twice (SPEC).
	if err := ctl.r.discovered("web", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.r.expire(time.Now().Add(5*time.Second), true); err != nil {
		t.Fatal(err)
	}
	if b, ok := listed(); !ok || !b.Draining {
		t.Fatalf("idle backend that left the answer, within drain_timeout: %+v (listed %v), want listed and draining", b, ok)
	}
	if _, err := ctl.r.expire(time.Now().Add(11*time.Second), true); err != nil {
		t.Fatal(err)
	}
	if b, ok := listed(); ok {
		t.Errorf("backend that left the answer still listed after drain_timeout: %+v", b)
	}
}

// TestControllerPatchOfABackendBeingRemoved: a drain or weight cannot stop
// a removal, so a PATCH after a DELETE is a conflict that says how to keep
// the backend, not a 200 that changed nothing.
func TestControllerPatchOfABackendBeingRemoved(t *testing.T) {
	ctl, web := l7Parts(t, l7Config(t))
	u := web.Upstream("web", "127.0.0.1:9002")
	u.Acquire() // in flight: the removal waits
	defer u.Release()
	if _, err := ctl.RemoveBackend("web", "127.0.0.1:9002"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []api.PatchBackend{{Weight: ptr(5), Drain: ptr(false)}, {Drain: ptr(true)}} {
		ch, err := ctl.PatchBackend("web", "127.0.0.1:9002", p)
		if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "being removed") || !strings.Contains(err.Error(), "POST it again") {
			t.Errorf("patch %+v of a backend being removed: %+v, %v; want a conflict that says it is being removed", p, ch, err)
		}
	}
	if u.Weight() != 1 {
		t.Errorf("the refused patch changed the l7 weight to %d", u.Weight())
	}
	// The way the message gives works, and then a patch does.
	if ch, err := ctl.AddBackend("web", api.AddBackend{Address: "127.0.0.1:9002"}); err != nil || ch.Result != "removal cancelled" {
		t.Fatalf("add back: %+v, %v", ch, err)
	}
	if _, err := ctl.PatchBackend("web", "127.0.0.1:9002", api.PatchBackend{Weight: ptr(5)}); err != nil {
		t.Errorf("patch after the removal was cancelled: %v", err)
	}
}

// TestControllerAddChecksL7AddressesAsTheConfigDoes: what the file rejects
// an add rejects too, with a short message, and an IP written another way
// is no second backend.
func TestControllerAddChecksL7AddressesAsTheConfigDoes(t *testing.T) {
	ctl, _ := l7Parts(t, l7Config(t))
	long := strings.Repeat("a", 900<<10) + ":80"
	for _, addr := range []string{
		"999.1.1.1:80", "300.1.1.1:80", "127.000.000.001:9001", "foo_bar..x:80", "-bad-:80", "bad-.example:80",
		strings.Repeat("a", 64) + ".example:80", strings.Repeat("abcdefgh.", 30) + "x:80", long,
		"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:+80", "127.0.0.1", "http://127.0.0.1:80", "host name:80",
		"0.0.0.0:80", "224.0.0.1:80", "255.255.255.255:80", "[::ffff:127.0.0.1]:80", "[fe80::1%eth0]:80",
	} {
		_, err := ctl.AddBackend("web", api.AddBackend{Address: addr})
		if !errors.Is(err, api.ErrInvalid) {
			t.Errorf("add %.40q: %v, want ErrInvalid", addr, err)
		} else if len(err.Error()) > 400 {
			t.Errorf("add %.40q: a message of %d bytes", addr, len(err.Error()))
		}
	}
	for _, addr := range []string{"backend-1.internal_zone.example:8080", "localhost:9003", "[2001:db8::1]:80", "web.internal.:80"} {
		if _, err := ctl.AddBackend("web", api.AddBackend{Address: addr}); err != nil {
			t.Errorf("add %s: %v", addr, err)
		}
	}
	if _, err := ctl.AddBackend("web", api.AddBackend{Address: "[2001:DB8:0::1]:80"}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("add of [2001:db8::1]:80 written another way: %v, want ErrConflict", err)
	}
}

// TestControllerWhichOnAnL7Service: the service exists, so not 404.
func TestControllerWhichOnAnL7Service(t *testing.T) {
	ctl, _ := l7Parts(t, l7Config(t))
	_, err := ctl.Which("web", "192.0.2.10:40000")
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "web is layer 7") {
		t.Errorf("which on a layer 7 service: %v, want ErrInvalid saying web is layer 7", err)
	}
	if _, err := ctl.Which("nosuch", "192.0.2.10:40000"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("which on a missing service: %v, want ErrNotFound", err)
	}
}

// namedBackend is an HTTP backend that answers with its name.
func namedBackend(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// routeConfig is service rt with its pool, a route /v1/ with backends of
// its own, and health checks (no checker runs: tests call healthChanged).
func routeConfig(t *testing.T, pool, route []string) *config.Config {
	t.Helper()
	list := func(addrs []string) string {
		var parts []string
		for _, a := range addrs {
			parts = append(parts, fmt.Sprintf("{address: %q}", a))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	yaml := fmt.Sprintf(`l7: {drain_timeout: 10s}
services:
  - name: rt
    layer: 7
    listen: %q
    backends: %s
    health_check: {type: tcp, interval: 1h}
    routes:
      - match: {path_prefix: /v1/}
        backends: %s
`, freeListen(t), list(pool), list(route))
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// answer is the status and body of a GET to the service.
func answer(t *testing.T, cfg *config.Config, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + cfg.Services[0].Listen + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// listedBackend is the API's view of one backend of rt.
func listedBackend(ctl *controller, addr string) (api.Backend, bool) {
	for _, s := range ctl.Services() {
		for _, b := range s.Backends {
			if s.Name == "rt" && b.Address == addr {
				return b, true
			}
		}
	}
	return api.Backend{}, false
}

// checked says whether the checker would probe rt/addr, and from which
// state.
func checked(ctl *controller, addr string) (probed, up bool) {
	ctl.r.read(func(_ *config.Config, m *model) {
		targets, initial := checkTargets(m, checkPaths{})
		for _, tg := range targets {
			if tg.Key == checkKey("rt", addr) {
				probed, up = true, initial[tg.Key]
			}
		}
	})
	return probed, up
}

// TestControllerAddThenDeleteOfARouteBackendLeavesTheRoute: the API may
// add to the pool an address a route names; deleting it again drains the
// pool's only, and the route keeps serving it, checked and listed.
func TestControllerAddThenDeleteOfARouteBackendLeavesTheRoute(t *testing.T) {
	pool, route := namedBackend(t, "pool"), namedBackend(t, "route")
	cfg := routeConfig(t, []string{pool}, []string{route})
	ctl, _ := l7Parts(t, cfg)
	if _, err := ctl.AddBackend("rt", api.AddBackend{Address: route}); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, cfg, "/v1/a"); got != "200 route" {
		t.Errorf("route after the add of its backend to the pool: %q, want 200 route", got)
	}
	// The pool's copy waits for its first passing check, the route's is up;
	// one check key reaches both.
	ctl.r.healthChanged(checkKey("rt", route), true, "passed its checks")
	ctl.r.healthChanged(checkKey("rt", route), false, "3 consecutive failures")
	if got := answer(t, cfg, "/v1/a"); got != "503 no backend available for service rt" {
		t.Errorf("route with its backend down: %q, want 503", got)
	}
	ctl.r.healthChanged(checkKey("rt", route), true, "passed its checks")

	if _, err := ctl.RemoveBackend("rt", route); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, cfg, "/v1/a"); got != "200 route" {
		t.Errorf("route while the pool's copy drains: %q, want 200 route", got)
	}
	if probed, _ := checked(ctl, route); !probed {
		t.Error("the address is not checked while the pool's copy drains, though the route uses it")
	}
	if _, err := ctl.r.expire(time.Now().Add(2*removalGrace), false); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, cfg, "/v1/a"); got != "200 route" {
		t.Errorf("route after the removal from the pool: %q, want 200 route", got)
	}
	if b, ok := listedBackend(ctl, route); !ok || b.Draining || b.Source != "config" || !b.Healthy {
		t.Errorf("route backend after the removal: %+v (listed %v), want listed from config, up, not draining", b, ok)
	}
	if probed, up := checked(ctl, route); !probed || !up {
		t.Errorf("route backend after the removal: probed %v from up %v, want probed from up", probed, up)
	}
	if got := answer(t, cfg, "/"); got != "200 pool" {
		t.Errorf("pool: %q, want 200 pool", got)
	}
	if _, err := ctl.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, cfg, "/v1/a"); got != "200 route" {
		t.Errorf("route after a reload: %q, want 200 route", got)
	}
}

// TestControllerPoolChangesLeaveARouteItsOwnBackend: an address the file
// lists both in the pool and in a route is changed by the API in the pool
// only; the route serves it as the file says, and once the pool's copy is
// removed the address stays checked and listed.
func TestControllerPoolChangesLeaveARouteItsOwnBackend(t *testing.T) {
	a, r := namedBackend(t, "a"), namedBackend(t, "r")
	cfg := routeConfig(t, []string{a, r}, []string{r})
	ctl, web := l7Parts(t, cfg)
	poolCount := func() map[string]int {
		n := map[string]int{}
		for range 6 {
			n[answer(t, cfg, "/")]++
		}
		return n
	}
	for _, tc := range []struct {
		name  string
		patch api.PatchBackend
	}{
		{"drain", api.PatchBackend{Drain: ptr(true)}},
		{"weight-0", api.PatchBackend{Drain: ptr(false), Weight: ptr(0)}},
		{"weight-5", api.PatchBackend{Weight: ptr(5)}},
	} {
		if _, err := ctl.PatchBackend("rt", r, tc.patch); err != nil {
			t.Fatal(err)
		}
		if got := answer(t, cfg, "/v1/x"); got != "200 r" {
			t.Errorf("%s of the pool's r: route answers %q, want 200 r", tc.name, got)
		}
		if _, u := web.Upstreams("rt", r); u == nil || u.Drained() || u.Weight() != 1 {
			t.Errorf("%s of the pool's r reached the route's (drained or weight not 1)", tc.name)
		}
	}
	if got := poolCount(); got["200 r"] != 5 || got["200 a"] != 1 {
		t.Errorf("pool with r at weight 5 and a at 1: %v", got)
	}
	if _, err := ctl.PatchBackend("rt", r, api.PatchBackend{Drain: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if got := poolCount(); got["200 a"] != 6 {
		t.Errorf("pool with r drained: %v, want a only", got)
	}

	if _, err := ctl.RemoveBackend("rt", r); err != nil {
		t.Fatal(err)
	}
	if probed, _ := checked(ctl, r); !probed {
		t.Error("r is not checked while the pool's copy drains, though the route uses it")
	}
	if _, err := ctl.r.expire(time.Now().Add(2*removalGrace), false); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, cfg, "/v1/x"); got != "200 r" {
		t.Errorf("route after r left the pool: %q, want 200 r", got)
	}
	if b, ok := listedBackend(ctl, r); !ok || b.Draining || b.Weight != 1 {
		t.Errorf("r after it left the pool: %+v (listed %v), want listed as the route's, weight 1, not draining", b, ok)
	}
	if probed, _ := checked(ctl, r); !probed {
		t.Error("r is not checked after it left the pool, though the route uses it")
	}
	// Its health still reaches the route.
	ctl.r.healthChanged(checkKey("rt", r), false, "3 consecutive failures")
	if got := answer(t, cfg, "/v1/x"); got != "503 no backend available for service rt" {
		t.Errorf("route with r down: %q, want 503", got)
	}
	ctl.r.healthChanged(checkKey("rt", r), true, "passed its checks")
	if got := answer(t, cfg, "/v1/x"); got != "200 r" {
		t.Errorf("route with r up again: %q, want 200 r", got)
	}
}

// TestControllerUndrainAtWeightZeroSaysItStillDrains: weight 0 drains too,
// so an undrain that leaves it there says so rather than "not draining".
func TestControllerUndrainAtWeightZeroSaysItStillDrains(t *testing.T) {
	yaml := fmt.Sprintf(`services:
  - name: web
    layer: 7
    listen: %q
    backends: [{address: 127.0.0.1:9001}, {address: 127.0.0.1:9002, weight: 0}]
`, freeListen(t))
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := l7Parts(t, cfg)
	const still = "still draining: weight is 0; set a weight to bring it back"
	for _, tc := range []struct {
		name, addr string
		patch      api.PatchBackend
		want       string
	}{
		{"file-weight-0", "127.0.0.1:9002", api.PatchBackend{Drain: ptr(false)}, still},
		{"api-weight-0", "127.0.0.1:9001", api.PatchBackend{Weight: ptr(0)}, "weight 0"},
		{"undrain-at-api-weight-0", "127.0.0.1:9001", api.PatchBackend{Drain: ptr(false)}, still},
		{"weight-and-undrain", "127.0.0.1:9001", api.PatchBackend{Weight: ptr(2), Drain: ptr(false)}, "weight 2, not draining"},
	} {
		ch, err := ctl.PatchBackend("web", tc.addr, tc.patch)
		if err != nil || ch.Result != tc.want {
			t.Errorf("%s: %+v, %v; want result %q", tc.name, ch, err, tc.want)
		}
	}
}

// TestHousekeeperRemovesAtTheDrainEnd: a backend still busy when its
// drain before removal ends goes then, not at the next periodic pass
// (README: after l7.drain_timeout at the latest). It went up to a second
// late.
func TestHousekeeperRemovesAtTheDrainEnd(t *testing.T) {
	cfg := l7Config(t)
	cfg.L7.DrainTimeout = 1500 * time.Millisecond
	ctl, web := l7Parts(t, cfg)
	hk := newHousekeeper(slog.New(slog.DiscardHandler), ctl.r, false)
	ctl.r.changed = hk.poke
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go hk.run(ctx)

	u := web.Upstream("web", "127.0.0.1:9002")
	u.Acquire() // in flight until the end: never idle
	defer u.Release()
	if _, err := ctl.RemoveBackend("web", "127.0.0.1:9002"); err != nil {
		t.Fatal(err)
	}
	var from, at time.Time
	ctl.r.read(func(_ *config.Config, m *model) {
		b := m.services["web"].find("127.0.0.1:9002")
		from, at = b.removeFrom, b.removeAt
	})
	if d := at.Sub(from); d != cfg.L7.DrainTimeout {
		t.Fatalf("drain of %s, want l7.drain_timeout %s", d, cfg.L7.DrainTimeout)
	}
	listed := func() (ok bool) {
		ctl.r.read(func(_ *config.Config, m *model) { ok = m.services["web"].find("127.0.0.1:9002") != nil })
		return ok
	}
	var gone time.Time
	for deadline := at.Add(3 * time.Second); gone.IsZero() && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !listed() {
			gone = time.Now()
		}
	}
	switch late := gone.Sub(at); {
	case gone.IsZero():
		t.Fatalf("not removed 3s after its drain ended")
	case late < 0:
		t.Errorf("a busy backend removed %s before its drain ended", -late)
	case late > 200*time.Millisecond:
		t.Errorf("removed %s after its drain ended (%s after the removal began), want within 200ms", late, gone.Sub(from))
	}
}

// TestControllerSwapOfL4NamesRestartsTheirChecks: the checker keeps a
// target's state by key, service/backend. After two services swap names
// each key names the other service's backend, and the checker's verdict
// (which the model takes at the next probe) must be that service's, as
// the model carried it over, not the one the name had.
func TestControllerSwapOfL4NamesRestartsTheirChecks(t *testing.T) {
	web, err := l7.New(l7.Options{StickySecret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	checker := health.NewChecker(health.Options{Logger: log})
	r := &reconciler{log: log, model: newModel(), l4: newL4Projector(log, nil, newIDs()), l7: &l7Projector{web: web},
		retarget: func(m *model) { checker.Set(checkTargets(m, checkPaths{})) }, changed: func() {}}
	if err := r.load(renameYAML(t, "api:80", "web:81"), true); err != nil {
		t.Fatal(err)
	}
	// web's 10.0.0.11 fails its checks: the model and (as its own probes
	// would have it) the checker say down; api's is up.
	r.healthChanged("web/10.0.0.11", false, "connection refused")
	r.retarget(r.model.without([]string{"web"}))
	r.retarget(r.model)
	if st, _ := checker.State("web/10.0.0.11"); st.Up {
		t.Fatal("setup: the checker has web/10.0.0.11 up")
	}

	if err := r.load(renameYAML(t, "web:80", "api:81"), false); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"api/10.0.0.11": false, "web/10.0.0.11": true} {
		_, bs := r.model.health(key)
		st, ok := checker.State(key)
		if len(bs) != 1 || bs[0].up != want || !ok || st.Up != want {
			t.Errorf("%s after the swap: model %v, checker %+v (%v); want both up %v, the health of the service now so named", key, bs, st, ok, want)
		}
	}
}

// TestControllerLastCheckIsTheLatestProbe: last_check says what the latest
// probe found, also for a backend that passes from the start (no
// transition ever set it) and one still up while it fails below the
// threshold.
func TestControllerLastCheckIsTheLatestProbe(t *testing.T) {
	ctl, _ := l7Parts(t, l7Config(t))
	last := func() string {
		for _, s := range ctl.Services() {
			for _, b := range s.Backends {
				if b.Address == "127.0.0.1:9001" {
					return b.LastCheck
				}
			}
		}
		t.Fatal("no backend 127.0.0.1:9001")
		return ""
	}
	key := checkKey("web", "127.0.0.1:9001")
	ctl.r.healthObserved(key, health.State{Up: true, Checked: true, Successes: 3}, nil)
	if got := last(); got != "3 consecutive successes" {
		t.Errorf("after passing probes: last_check %q", got)
	}
	ctl.r.healthObserved(key, health.State{Up: true, Checked: true, Failures: 1, LastError: "status 503"}, errors.New("status 503"))
	if got := last(); got != "1 consecutive failures: status 503" {
		t.Errorf("after one failure below the threshold: last_check %q", got)
	}
}

// TestControllerReloadOntoABusyListenNamesTheKey: a reload that cannot
// listen (another process holds the address) is the file's to fix: the
// error names file, line and key, as a validation error does (the API
// answers 400 with it), and the running config keeps serving.
func TestControllerReloadOntoABusyListenNamesTheKey(t *testing.T) {
	cfg := l7Config(t)
	ctl, web := l7Parts(t, cfg)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	next, err := config.Parse("test.yaml", []byte(fmt.Sprintf("services:\n  - name: web\n    layer: 7\n    listen: %q\n    backends: [{address: 127.0.0.1:9001}]\n", busy.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	err = ctl.r.load(next, false)
	var list config.ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Key != "services[0].listen" || list[0].Line != 2 || list[0].File != "test.yaml" {
		t.Fatalf("reload onto a busy address: %v, want one error at test.yaml:2 services[0].listen", err)
	}
	if web.Addr(cfg.Services[0].Listen) == nil {
		t.Error("the running listener went with the failed reload")
	}
}
