//go:build linux

package daemon

import (
	"crypto/tls"
	"strings"
	"time"

	"github.com/xlbproject/xlb/health"
)

// checkPaths make a check travel the way requests and packets do; either
// may be nil.
type checkPaths struct {
	// backendTLS gives the TLS configuration an L7 backend is reached with
	// (nil: cleartext), so that its checks speak the same protocol.
	backendTLS func(service, addr string) *tls.Config
	// viaVIP rewrites an L4 target to probe through the forwarding path
	// (health_check.via: vip).
	viaVIP func(s *service, b *backend, t *health.Target)
}

// healthSink is the health checker's observer: it counts checks and
// transitions and hands each transition to the reconciler.
type healthSink struct {
	met     *metrics
	r       *reconciler
	bgp     *announcer      // nil: no bgp section
	checker *health.Checker // set once it exists
}

var _ health.Observer = (*healthSink)(nil)

func (h *healthSink) Observed(t health.Target, d time.Duration, err error) {
	svc, be, _ := strings.Cut(t.Key, "/")
	h.met.checkTime.WithLabelValues(svc).Observe(d.Seconds())
	res := "ok"
	if err != nil {
		res = "fail"
	}
	h.met.checks.WithLabelValues(svc, be, res).Inc()
	if h.checker != nil {
		if st, ok := h.checker.State(t.Key); ok {
			h.r.healthObserved(t.Key, st, err)
		}
	}
	if h.bgp != nil {
		h.bgp.observed()
	}
}

func (h *healthSink) Changed(t health.Target, up bool, reason string) {
	svc, be, _ := strings.Cut(t.Key, "/")
	state := "down"
	if up {
		state = "up"
	}
	h.met.transitions.WithLabelValues(svc, be, state).Inc()
	h.r.healthChanged(t.Key, up, reason)
}

// checkTargets lists what the checker probes: every backend of a checked
// service except those draining before removal, each starting from the
// model's view of its health.
func checkTargets(m *model, paths checkPaths) ([]health.Target, map[string]bool) {
	var targets []health.Target
	initial := map[string]bool{}
	for _, name := range m.order {
		s := m.services[name]
		if !s.checked() {
			continue
		}
		hc := s.cfg.HealthCheck
		spec := health.Spec{
			Type: hc.Type, Path: hc.Path, Host: hc.Host, Service: hc.Service,
			ExpectMin: hc.ExpectMin, ExpectMax: hc.ExpectMax,
			Interval: hc.Interval, Timeout: hc.Timeout,
			HealthyThreshold: hc.HealthyThreshold, UnhealthyThreshold: hc.UnhealthyThreshold,
		}
		for _, b := range s.checkedBackends() {
			if b.removing() {
				continue
			}
			key := checkKey(name, b.name)
			t := health.Target{Key: key, Addr: s.cfg.CheckAddress(&b.conf), Spec: spec}
			switch {
			case !s.cfg.IsL4() && paths.backendTLS != nil:
				t.Spec.TLS = paths.backendTLS(name, b.conf.Address)
			case s.cfg.IsL4() && paths.viaVIP != nil:
				paths.viaVIP(s, b, &t)
			}
			targets = append(targets, t)
			initial[key] = b.up
		}
	}
	return targets, initial
}
