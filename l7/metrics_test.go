package l7_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/internal/promtest"
	"github.com/xlbproject/xlb/l7"
)

// TestMetricsOfRemovedServicesAndBackendsGo: a reload that removes a
// service, a failed reload that would have added one, and a runtime change
// that removes a backend leave no series of them behind; a service a
// reload replaces by one of the same name keeps its own.
func TestMetricsOfRemovedServicesAndBackendsGo(t *testing.T) {
	b1, b2 := newBackend(t, "b1", nil), newBackend(t, "b2", nil)
	reg := prometheus.NewRegistry()
	srv := must(l7.New(l7.Options{Registry: reg, StickySecret: make([]byte, 32)}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	webListen, apiListen := freePort(t), freePort(t)
	service := func(name, listen string, bs ...*backend) string {
		return fmt.Sprintf("  - name: %s\n    layer: 7\n    listen: %q\n  %s", name, listen, indent(backendsYAML(bs...), "  "))
	}
	apply := func(services ...string) error {
		yaml := "l7: {drain_timeout: 5s}\nservices:\n" + strings.Join(services, "\n") + "\n"
		cfg, err := config.Parse("test.yaml", []byte(yaml))
		if err != nil {
			t.Fatalf("config:\n%s\n%v", yaml, err)
		}
		return srv.Apply(cfg)
	}
	if err := apply(service("web", webListen, b1, b2), service("api", apiListen, b1)); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if resp, _ := get(t, "http://"+webListen+"/", nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if got, want := promtest.Series(t, reg, "xlb_l7_active_requests", "code"), []string{"service=api", "service=web"}; !slices.Equal(got, want) {
		t.Fatalf("active-request series %v, want %v", got, want)
	}
	want := []string{"backend=" + b1.addr() + ",service=web", "backend=" + b2.addr() + ",service=web"}
	slices.Sort(want)
	if got := promtest.Series(t, reg, "xlb_l7_requests_total", "code"); !slices.Equal(got, want) {
		t.Fatalf("request series %v, want %v", got, want)
	}

	// The same web, api gone.
	if err := apply(service("web", webListen, b1, b2)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"xlb_l7_active_requests", "xlb_l7_request_duration_seconds", "xlb_l7_retries_total"} {
		if got, want := promtest.Series(t, reg, name, "code"), []string{"service=web"}; !slices.Equal(got, want) {
			t.Errorf("%s after a reload without api: %v, want %v", name, got, want)
		}
	}
	if got := promtest.Series(t, reg, "xlb_l7_requests_total", "code"); !slices.Equal(got, want) {
		t.Errorf("request series of web after a reload that kept it: %v, want %v", got, want)
	}

	// A reload that fails (its listen address is taken) runs nothing new.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := apply(service("web", webListen, b1, b2), service("new", taken.Addr().String(), b1)); err == nil {
		t.Fatal("a reload onto a taken address succeeded")
	}
	if got, want := promtest.Series(t, reg, "xlb_l7_active_requests", "code"), []string{"service=web"}; !slices.Equal(got, want) {
		t.Errorf("active-request series after a failed reload: %v, want %v", got, want)
	}

	// b2 leaves at runtime (what the daemon does once it has drained).
	if err := srv.SetBackends("web", []l7.BackendSpec{{Address: b1.addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if got, want := promtest.Series(t, reg, "xlb_l7_requests_total", "code"), []string{"backend=" + b1.addr() + ",service=web"}; !slices.Equal(got, want) {
		t.Errorf("request series after b2 left: %v, want %v", got, want)
	}
}

// TestMetricsOfARouteBackendStayWhenThePoolLosesIt: an address the pool
// and a route both have keeps its series while the route still has it.
func TestMetricsOfARouteBackendStayWhenThePoolLosesIt(t *testing.T) {
	a, r := newBackend(t, "a", nil), newBackend(t, "r", nil)
	reg := prometheus.NewRegistry()
	srv := must(l7.New(l7.Options{Registry: reg, StickySecret: make([]byte, 32)}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	listen := freePort(t)
	yaml := fmt.Sprintf("services:\n  - name: web\n    layer: 7\n    listen: %q\n%s\n", listen, indent(routeYAML(r, a, r), "    "))
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yaml, err)
	}
	if err := srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, "http://"+listen+"/r/x", nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	want := []string{"backend=" + r.addr() + ",service=web"}
	// The request is counted once its answer is out: the client may see it
	// first.
	for deadline := time.Now().Add(2 * time.Second); !slices.Equal(promtest.Series(t, reg, "xlb_l7_requests_total", "code"), want); {
		if time.Now().After(deadline) {
			t.Fatalf("the route's request never showed in %v", want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := srv.SetBackends("web", []l7.BackendSpec{{Address: a.addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if got := promtest.Series(t, reg, "xlb_l7_requests_total", "code"); !slices.Equal(got, want) {
		t.Errorf("request series after r left the pool but not the route: %v, want %v", got, want)
	}
}
