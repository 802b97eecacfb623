//go:build linux

package daemon

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/discovery"
	"github.com/xlbproject/xlb/internal/promtest"
)

// discoveryConfig is a config with service api, which follows a DNS name
// when apiDiscovers, and, when withWeb, service web, which does. The
// resolver is a closed local port, so that the Discoverer's own lookups
// fail at once and never leave the host.
func discoveryConfig(t *testing.T, apiDiscovers, withWeb bool) *config.Config {
	t.Helper()
	const disc = "    discover: {dns: %s.internal, port: 8080, resolvers: [\"127.0.0.1:1\"]}\n"
	yaml := "services:\n"
	if withWeb {
		yaml += "  - name: web\n    layer: 7\n    listen: 127.0.0.1:18080\n" + fmt.Sprintf(disc, "web")
	}
	yaml += "  - name: api\n    layer: 7\n    listen: 127.0.0.1:18081\n    backends: [{address: 127.0.0.1:9001}]\n"
	if apiDiscovers {
		yaml += fmt.Sprintf(disc, "api")
	}
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestDiscoverySeriesGoWithTheService: a reload that removes a discovering
// service, or only its discover block, drops both of its discovery series
// (every result of the lookup counter, not only the gauge); a lookup still
// under way when it went does not bring them back; the services that still
// discover keep theirs.
func TestDiscoverySeriesGoWithTheService(t *testing.T) {
	reg := prometheus.NewRegistry()
	f, err := newFollower(slog.New(slog.DiscardHandler), &reconciler{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	series := func(name string) []string {
		t.Helper()
		// The Discoverer's own failing lookups add result=error or
		// timeout; only which services have series matters here.
		var out []string
		for _, s := range promtest.Series(t, reg, name, "result") {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out
	}
	lookup := func(service string, result discovery.Result, n int) {
		f.deliver(discovery.Update{Service: service, Name: service + ".internal", Result: result, Backends: make([]discovery.Backend, n), Settled: true})
	}

	f.follow(discoveryConfig(t, true, true), false)
	lookup("web", discovery.ResultOK, 2)
	lookup("web", discovery.ResultNXDomain, 2)
	lookup("api", discovery.ResultOK, 1)
	lookup("api", discovery.ResultTimeout, 1)
	for _, name := range []string{"xlb_discovery_lookups_total", "xlb_discovery_backends"} {
		if got, want := series(name), []string{"service=api", "service=web"}; !slices.Equal(got, want) {
			t.Fatalf("%s before the reloads: %v, want %v", name, got, want)
		}
	}

	// api stays, without its discover block.
	f.follow(discoveryConfig(t, false, true), false)
	lookup("api", discovery.ResultOK, 1) // under way when the reload came
	for _, name := range []string{"xlb_discovery_lookups_total", "xlb_discovery_backends"} {
		if got, want := series(name), []string{"service=web"}; !slices.Equal(got, want) {
			t.Errorf("%s after api stopped discovering: %v, want %v", name, got, want)
		}
	}

	// web is gone.
	f.follow(discoveryConfig(t, false, false), false)
	lookup("web", discovery.ResultOK, 2)
	for _, name := range []string{"xlb_discovery_lookups_total", "xlb_discovery_backends"} {
		if got := series(name); len(got) != 0 {
			t.Errorf("%s after web was removed: %v, want none", name, got)
		}
	}
}

// TestUnsettledLookupAppliesNothing: until a service's name has settled
// (records, or no backends twice in a row), a lookup's set is not applied:
// a failure's or one NXDOMAIN's is the loop's empty start, and would drain
// what a restart recovered from the pinned maps. Once settled, a failure's
// set (the last good one) is applied as any.
func TestUnsettledLookupAppliesNothing(t *testing.T) {
	f, err := newFollower(slog.New(slog.DiscardHandler), &reconciler{}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	// Followed without the Discoverer's own lookups, which would deliver
	// too.
	f.mu.Lock()
	f.targets["api"] = discovery.Target{Service: "api", Layer: 7, Name: "api.internal"}
	f.mu.Unlock()
	pending := func() ([]discovery.Backend, bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		bs, ok := f.pending["api"]
		delete(f.pending, "api")
		return bs, ok
	}
	for _, r := range []discovery.Result{discovery.ResultTimeout, discovery.ResultError, discovery.ResultNXDomain, discovery.ResultEmpty} {
		f.deliver(discovery.Update{Service: "api", Name: "api.internal", Result: r})
		if bs, ok := pending(); ok {
			t.Errorf("a %s lookup before the name settled was applied: %v", r, bs)
		}
	}
	kept := []discovery.Backend{{Address: "10.0.0.1:8080", Weight: 1}}
	f.deliver(discovery.Update{Service: "api", Name: "api.internal", Result: discovery.ResultOK, Backends: kept, Settled: true})
	if bs, ok := pending(); !ok || len(bs) != 1 {
		t.Errorf("an answer: applied %v (%v), want its set", bs, ok)
	}
	f.deliver(discovery.Update{Service: "api", Name: "api.internal", Result: discovery.ResultTimeout, Backends: kept, Settled: true})
	if bs, ok := pending(); !ok || len(bs) != 1 {
		t.Errorf("a failed lookup after an answer: applied %v (%v), want the kept set", bs, ok)
	}
}
