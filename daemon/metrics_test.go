//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/internal/promtest"
	"github.com/xlbproject/xlb/maps"
)

func testMetrics(t *testing.T) (*metrics, *prometheus.Registry) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	r := &reconciler{log: log, model: newModel(), l4: newL4Projector(log, nil, newIDs())}
	m := newMetrics("test", r)
	reg := prometheus.NewRegistry()
	if err := m.register(reg); err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// TestMetricsReloadSeriesBeforeTheFirstReload: both results are exported
// at 0 from the start, so an alert on increase(...{result="error"}) fires
// on the first failed reload.
func TestMetricsReloadSeriesBeforeTheFirstReload(t *testing.T) {
	_, reg := testMetrics(t)
	if got, want := promtest.Series(t, reg, "xlb_config_reloads_total"), []string{"result=error", "result=ok"}; !slices.Equal(got, want) {
		t.Errorf("reload series %v, want %v", got, want)
	}
}

// TestMetricsCheckDurationSeriesFollowTheConfig: every service with active
// checks has its series before its first check ends; one whose checks are
// gone loses it.
func TestMetricsCheckDurationSeriesFollowTheConfig(t *testing.T) {
	m, reg := testMetrics(t)
	cfg, err := config.Parse("test.yaml", []byte(`services:
  - name: checked
    layer: 4
    vip: 10.0.0.100
    port: 80
    backends: [{address: 10.0.0.11}]
    health_check: {type: tcp}
  - name: unchecked
    layer: 4
    vip: 10.0.0.101
    port: 80
    backends: [{address: 10.0.0.12}]
`))
	if err != nil {
		t.Fatal(err)
	}
	const name = "xlb_health_check_duration_seconds"
	md := newModel().reloaded(cfg, true, noPrior, time.Now())
	m.trackChecked(md)
	if got, want := promtest.Series(t, reg, name), []string{"service=checked"}; !slices.Equal(got, want) {
		t.Errorf("after the first load: %v, want %v", got, want)
	}
	cfg.Services[0].HealthCheck = nil
	m.trackChecked(md.reloaded(cfg, false, noPrior, time.Now()))
	if got := promtest.Series(t, reg, name); len(got) != 0 {
		t.Errorf("after a reload without checks: %v, want none", got)
	}
}

// TestMetricsBackendUpWithL4Off: with the L4 data plane off, a layer 4
// service's backends still have xlb_backend_up (the API lists them and
// they are checked), but no packet counters.
func TestMetricsBackendUpWithL4Off(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`services:
  - name: api
    layer: 4
    vip: 10.0.0.100
    port: 80
    backends: [{address: 10.0.0.11}, {address: 10.0.0.12}]
`))
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := l7Parts(t, cfg)
	reg := prometheus.NewRegistry()
	if err := newMetrics("test", ctl.r).register(reg); err != nil {
		t.Fatal(err)
	}
	if got, want := promtest.Series(t, reg, "xlb_backend_up"), []string{"backend=10.0.0.11,service=api", "backend=10.0.0.12,service=api"}; !slices.Equal(got, want) {
		t.Errorf("xlb_backend_up with L4 off: %v, want %v", got, want)
	}
	// Every counter SPEC lists is there at 0, as /api/v1/stats has them.
	for _, name := range []string{"xlb_l4_packets_total", "xlb_l4_bytes_total", "xlb_l4_new_flows_total"} {
		if got, want := promtest.Series(t, reg, name), []string{"backend=10.0.0.11,service=api", "backend=10.0.0.12,service=api"}; !slices.Equal(got, want) {
			t.Errorf("%s with L4 off: %v, want %v", name, got, want)
		}
	}
	var reasons []string
	for _, name := range maps.StatNames {
		if r, ok := strings.CutPrefix(name, "drop_"); ok {
			reasons = append(reasons, "reason="+r)
		}
	}
	slices.Sort(reasons)
	if got := promtest.Series(t, reg, "xlb_l4_dropped_total"); len(reasons) == 0 || !slices.Equal(got, reasons) {
		t.Errorf("xlb_l4_dropped_total with L4 off: %v, want %v", got, reasons)
	}
	if got := promtest.Series(t, reg, "xlb_l4_verdicts_total"); len(got) != len(maps.StatNames)-len(eventNames) {
		t.Errorf("xlb_l4_verdicts_total with L4 off: %v", got)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "xlb_l4_") {
			for _, m := range f.GetMetric() {
				if v := m.GetCounter().GetValue(); v != 0 {
					t.Errorf("%s %v = %v with L4 off, want 0", f.GetName(), m.GetLabel(), v)
				}
			}
		}
	}
}

// TestMetricsHealthSeriesGoWithTheirBackend: xlb_health_checks_total and
// xlb_backend_transitions_total lose the series of a backend once it is
// removed, and of a service a reload removes, so that addresses that come
// and go (autoscaling, discovery) do not pile up; backends that stay keep
// theirs, across a reload too.
func TestMetricsHealthSeriesGoWithTheirBackend(t *testing.T) {
	listen, apiListen := freeListen(t), freeListen(t)
	yaml := func(withAPI bool) string {
		s := fmt.Sprintf(`services:
  - name: web
    layer: 7
    listen: %q
    backends: [{address: 127.0.0.1:9001}]
    health_check: {type: tcp}
`, listen)
		if withAPI {
			s += fmt.Sprintf(`  - name: api
    layer: 7
    listen: %q
    backends: [{address: 127.0.0.1:9005}]
    health_check: {type: tcp}
`, apiListen)
		}
		return s
	}
	cfg, err := config.Parse("test.yaml", []byte(yaml(true)))
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := l7Parts(t, cfg)
	m := newMetrics("test", ctl.r)
	reg := prometheus.NewRegistry()
	if err := m.register(reg); err != nil {
		t.Fatal(err)
	}
	sink := &healthSink{met: m, r: ctl.r}
	check := func(key string, ok bool) {
		var err error
		if !ok {
			err = errors.New("refused")
		}
		sink.Observed(health.Target{Key: key}, time.Millisecond, err)
		sink.Changed(health.Target{Key: key}, ok, "test")
	}
	if _, err := ctl.AddBackend("web", api.AddBackend{Address: "127.0.0.1:9003"}); err != nil {
		t.Fatal(err)
	}
	check("web/127.0.0.1:9001", true)
	check("web/127.0.0.1:9003", false)
	check("api/127.0.0.1:9005", true)
	all := []string{
		"backend=127.0.0.1:9001,result=ok,service=web", "backend=127.0.0.1:9003,result=fail,service=web",
		"backend=127.0.0.1:9005,result=ok,service=api",
	}
	slices.Sort(all)
	if got := promtest.Series(t, reg, "xlb_health_checks_total"); !slices.Equal(got, all) {
		t.Fatalf("check series %v, want %v", got, all)
	}

	if _, err := ctl.RemoveBackend("web", "127.0.0.1:9003"); err != nil {
		t.Fatal(err)
	}
	if got := promtest.Series(t, reg, "xlb_health_checks_total"); !slices.Equal(got, all) {
		t.Errorf("check series while 9003 drains: %v, want them all still", got)
	}
	if _, err := ctl.r.expire(time.Now().Add(2*removalGrace), false); err != nil {
		t.Fatal(err)
	}
	// A check that was under way when 9003 went ends after it.
	check("web/127.0.0.1:9003", false)
	next, err := config.Parse("test.yaml", []byte(yaml(false)))
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.r.load(next, false); err != nil {
		t.Fatal(err)
	}
	want := []string{"backend=127.0.0.1:9001,result=ok,service=web"}
	if got := promtest.Series(t, reg, "xlb_health_checks_total"); !slices.Equal(got, want) {
		t.Errorf("check series after 9003 went and api was removed: %v, want %v", got, want)
	}
	if got, want := promtest.Series(t, reg, "xlb_backend_transitions_total"), []string{"backend=127.0.0.1:9001,service=web,state=up"}; !slices.Equal(got, want) {
		t.Errorf("transition series: %v, want %v", got, want)
	}
}

// TestMetricFamiliesDeclared: every family SPEC lists is declared, and
// every xlb_ family the collectors export is declared with its type, so
// that /metrics names each from the first scrape and with the right TYPE.
func TestMetricFamiliesDeclared(t *testing.T) {
	declared := map[string]string{}
	for _, f := range MetricFamilies() {
		if _, dup := declared[f.Name]; dup {
			t.Errorf("%s declared twice", f.Name)
		}
		declared[f.Name] = f.Type
	}
	for _, name := range []string{"xlb_l4_packets_total", "xlb_l4_bytes_total", "xlb_l4_new_flows_total",
		"xlb_l4_dropped_total", "xlb_backend_up", "xlb_l7_requests_total", "xlb_l7_request_duration_seconds",
		"xlb_l7_active_requests", "xlb_health_check_duration_seconds", "xlb_config_reloads_total",
		"xlb_bgp_peer_up", "xlb_bgp_announced", "xlb_discovery_lookups_total", "xlb_discovery_backends"} {
		if declared[name] == "" {
			t.Errorf("SPEC's %s is not declared", name)
		}
	}
	cfg, err := config.Parse("test.yaml", []byte(`services:
  - name: api
    layer: 4
    vip: 10.0.0.100
    port: 80
    backends: [{address: 10.0.0.11}]
    health_check: {type: tcp}
`))
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := l7Parts(t, cfg)
	m := newMetrics("test", ctl.r)
	reg := prometheus.NewRegistry()
	if err := m.register(reg); err != nil {
		t.Fatal(err)
	}
	m.trackChecked(newModel().reloaded(cfg, true, noPrior, time.Now()))
	m.checks.WithLabelValues("api", "10.0.0.11", "ok")
	m.transitions.WithLabelValues("api", "10.0.0.11", "up")
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "xlb_") {
			continue
		}
		seen++
		if got, want := strings.ToLower(f.GetType().String()), declared[f.GetName()]; got != want {
			t.Errorf("%s exported as %s, declared %q", f.GetName(), got, want)
		}
	}
	if seen < 10 {
		t.Errorf("only %d xlb_ families exported", seen)
	}
}
