package l7

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	active   *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	grpc     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlb_l7_requests_total", Help: "HTTP requests by service, backend (none: no backend answered) and status code.",
		}, []string{"service", "backend", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xlb_l7_request_duration_seconds", Help: "Time from request to the end of the response, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xlb_l7_active_requests", Help: "Requests in flight.",
		}, []string{"service"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlb_l7_retries_total", Help: "Requests sent again to another backend.",
		}, []string{"service"}),
		grpc: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlb_l7_grpc_calls_total", Help: "gRPC calls by service, backend and the gRPC status they ended with (xlb's own answers included).",
		}, []string{"service", "backend", "grpc_status"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.active, m.retries, m.grpc} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}
