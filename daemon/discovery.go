//go:build linux

package daemon

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/discovery"
)

// follower feeds the backends a service's discover name gives into the
// model. The resolver loops never wait for the reconciler: a delivery only
// counts the lookup and parks the set, which run applies; Set is called
// outside the reconciler's lock, after a load.
type follower struct {
	log      *slog.Logger
	r        *reconciler
	disc     *discovery.Discoverer
	lookups  *prometheus.CounterVec
	backends *prometheus.GaugeVec
	wake     chan struct{}

	mu      sync.Mutex
	pending map[string][]discovery.Backend // by service: the newest set not applied yet
	targets map[string]discovery.Target    // what the Discoverer follows, by service
}

func newFollower(log *slog.Logger, r *reconciler, reg prometheus.Registerer) (*follower, error) {
	f := &follower{
		log: log, r: r, wake: make(chan struct{}, 1),
		pending: map[string][]discovery.Backend{}, targets: map[string]discovery.Target{},
		lookups:  prometheus.NewCounterVec(famLookups.CounterOpts(), []string{"service", "result"}),
		backends: prometheus.NewGaugeVec(famDiscovered.GaugeOpts(), []string{"service"}),
	}
	for _, c := range []prometheus.Collector{f.lookups, f.backends} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	f.disc = discovery.New(discovery.Options{Logger: log, OnUpdate: f.deliver})
	return f, nil
}

func (f *follower) deliver(u discovery.Update) {
	f.mu.Lock()
	// A lookup that was under way when a reload stopped following the
	// service must not bring back the series follow deleted.
	_, ok := f.targets[u.Service]
	// Until the name has settled (records, or no backends twice in a
	// row), a lookup's set is no verdict: a failure's or one NXDOMAIN's
	// would be the loop's empty start, and applying it would drain what a
	// restart recovered from the pins (SPEC: a failed lookup keeps the
	// last good set, one NXDOMAIN drains nothing) and end the first
	// answer's start-up exemption (firstAnswerUp) before any answer.
	apply := ok && u.Settled
	if ok {
		f.lookups.WithLabelValues(u.Service, string(u.Result)).Inc()
	}
	if apply {
		f.backends.WithLabelValues(u.Service).Set(float64(len(u.Backends)))
		f.pending[u.Service] = u.Backends
	}
	f.mu.Unlock()
	if !apply {
		return
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run applies the delivered sets until ctx ends.
func (f *follower) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		f.mu.Lock()
		sets := f.pending
		f.pending = map[string][]discovery.Backend{}
		f.mu.Unlock()
		for service, bs := range sets {
			if err := f.r.discovered(service, bs); err != nil {
				f.log.Error("discovered backends", "service", service, "err", err)
			}
		}
	}
}

// follow makes the Discoverer follow cfg's discover sections. A set that
// an old name delivered is dropped, so that it cannot land after the new
// name's; a service that stops discovering drains its dns backends (the
// load that dropped the section did).
func (f *follower) follow(cfg *config.Config, l4 bool) {
	want := map[string]discovery.Target{}
	var targets []discovery.Target
	for _, c := range cfg.Services {
		if c.Discover == nil || (c.IsL4() && !l4) {
			continue
		}
		dc := c.Discover
		t := discovery.Target{
			Service: c.Name, Layer: c.Layer, Name: dc.DNS, Type: dc.Type, Port: dc.Port, Weight: dc.Weight,
			Refresh: dc.Refresh, Resolvers: dc.Resolvers, MaxBackends: dc.MaxBackends,
		}
		want[c.Name] = t
		targets = append(targets, t)
	}
	f.mu.Lock()
	for service, old := range f.targets {
		if t, ok := want[service]; !ok || !sameTarget(t, old) {
			delete(f.pending, service)
		}
		if _, ok := want[service]; !ok {
			// Gone, or no longer discovering: every result's counter goes
			// with the gauge, or they would stay at their last value for good.
			l := prometheus.Labels{"service": service}
			f.lookups.DeletePartialMatch(l)
			f.backends.DeletePartialMatch(l)
		}
	}
	f.targets = want
	f.mu.Unlock()
	if err := f.disc.Set(targets); err != nil {
		f.log.Error("discovery", "err", err)
	}
}

func sameTarget(a, b discovery.Target) bool {
	return a.Service == b.Service && a.Layer == b.Layer && a.Name == b.Name && a.Type == b.Type && a.Port == b.Port &&
		a.Weight == b.Weight && a.Refresh == b.Refresh && a.MaxBackends == b.MaxBackends && slices.Equal(a.Resolvers, b.Resolvers)
}

func (f *follower) close() { f.disc.Close() }

// discovered applies a lookup's set to a service that follows a name, and
// projects the service when it changed.
func (r *reconciler) discovered(name string, set []discovery.Backend) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.model.services[name]
	if s == nil || s.cfg.Discover == nil || (s.cfg.IsL4() && r.l4.maps == nil) {
		return nil
	}
	changed, err := r.model.discovered(s, set, time.Now())
	if !changed {
		return err
	}
	for _, b := range s.backends {
		if b.src == fromDNS {
			r.log.Debug("discovered backend", "service", name, "backend", b.name, "removing", b.removing())
		}
	}
	r.log.Info("discovered backends changed", "service", name, "answer", len(set))
	if perr := r.project(s); perr != nil {
		return perr
	}
	r.retarget(r.model)
	r.changed()
	return err
}
