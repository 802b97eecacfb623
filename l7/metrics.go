package l7

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/internal/promfamily"
	"github.com/xlbproject/xlb/internal/promprune"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	active   *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	grpc     *prometheus.CounterVec

	// srv is the server whose services and backends the series may name;
	// nil: every series is kept.
	srv atomic.Pointer[Server]
}

var (
	famRequests = promfamily.Counter("xlb_l7_requests_total", "HTTP requests by service, backend (none: no backend answered) and status code.")
	famDuration = promfamily.Histogram("xlb_l7_request_duration_seconds", "Time from request to the end of the response, retries included.")
	famActive   = promfamily.Gauge("xlb_l7_active_requests", "Requests in flight.")
	famRetries  = promfamily.Counter("xlb_l7_retries_total", "Requests sent again to another backend.")
	famGRPC     = promfamily.Counter("xlb_l7_grpc_calls_total", "gRPC calls by service, backend and the gRPC status they ended with (xlb's own answers included).")
)

// MetricFamilies is every family the L7 tier exports, for /metrics to
// name before they have series.
func MetricFamilies() []promfamily.Family {
	return []promfamily.Family{famRequests, famDuration, famActive, famRetries, famGRPC}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(famRequests.CounterOpts(), []string{"service", "backend", "code"}),
		duration: prometheus.NewHistogramVec(famDuration.HistogramOpts(
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}), []string{"service"}),
		active:  prometheus.NewGaugeVec(famActive.GaugeOpts(), []string{"service"}),
		retries: prometheus.NewCounterVec(famRetries.CounterOpts(), []string{"service"}),
		grpc:    prometheus.NewCounterVec(famGRPC.CounterOpts(), []string{"service", "backend", "grpc_status"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(liveSeries{m}); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) vecs() []promprune.Vec {
	return []promprune.Vec{m.requests, m.duration, m.active, m.retries, m.grpc}
}

// liveSeries collects the server's metrics and deletes the series of
// services it no longer runs (a reload removed them, or a failed one built
// them and never ran them) and of backends its services no longer have
// (DNS discovery, autoscalers), which would otherwise pile up for good. A
// service that a reload replaces by one of the same name keeps its series.
// Pruning at scrape time, rather than when a service or backend goes, also
// drops the series a request that was still in flight then brings back.
type liveSeries struct{ m *metrics }

func (l liveSeries) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range l.m.vecs() {
		v.Describe(ch)
	}
}

func (l liveSeries) Collect(ch chan<- prometheus.Metric) {
	srv := l.m.srv.Load()
	if srv == nil {
		for _, v := range l.m.vecs() {
			v.Collect(ch)
		}
		return
	}
	var out []prometheus.Metric
	// Under the server's lock, which Apply and SetBackends hold while they
	// build and commit: a service or backend that runs is in upstreams (or,
	// a route's own, in routeUps), so its series (which its running value
	// keeps resolved) stay.
	srv.mu.Lock()
	keep := func(lb prometheus.Labels) bool {
		name := lb["service"]
		byAddr, ok := srv.upstreams[name]
		if !ok {
			return false
		}
		b, ok := lb["backend"]
		return !ok || b == "none" || byAddr[b] != nil || srv.routeUps[name][b] != nil
	}
	for _, v := range l.m.vecs() {
		out = append(out, promprune.Prune(v, keep)...)
	}
	srv.mu.Unlock()
	for _, met := range out {
		ch <- met
	}
}
