//go:build linux

package daemon

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
)

// series lists a metric family's series on reg by their labels
// ("result=ok"), sorted.
func series(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out = append(out, strings.Join(labels, ","))
		}
	}
	slices.Sort(out)
	return out
}

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
	if got, want := series(t, reg, "xlb_config_reloads_total"), []string{"result=error", "result=ok"}; !slices.Equal(got, want) {
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
	if got, want := series(t, reg, name), []string{"service=checked"}; !slices.Equal(got, want) {
		t.Errorf("after the first load: %v, want %v", got, want)
	}
	cfg.Services[0].HealthCheck = nil
	m.trackChecked(md.reloaded(cfg, false, noPrior, time.Now()))
	if got := series(t, reg, name); len(got) != 0 {
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
	if got, want := series(t, reg, "xlb_backend_up"), []string{"backend=10.0.0.11,service=api", "backend=10.0.0.12,service=api"}; !slices.Equal(got, want) {
		t.Errorf("xlb_backend_up with L4 off: %v, want %v", got, want)
	}
	if got := series(t, reg, "xlb_l4_packets_total"); len(got) != 0 {
		t.Errorf("L4 packet counters with L4 off: %v", got)
	}
}
