//go:build linux

package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/discovery"
	"github.com/xlbproject/xlb/l7"
)

// dnsSource is the source of discovered backends in the API.
const dnsSource = "dns"

// discoveryState carries the sets the resolver loops deliver to the daemon.
// The loops never wait for the daemon's lock (Set is called under it, and
// waits for a delivery in progress): a delivery only counts the lookup and
// leaves the set in pending, which runDiscovery applies.
type discoveryState struct {
	disc     *discovery.Discoverer
	lookups  *prometheus.CounterVec
	backends *prometheus.GaugeVec
	wake     chan struct{}

	mu      sync.Mutex
	pending map[string][]discovery.Backend // by service: the newest set not applied yet

	// Under Daemon.mu.
	targets map[string]discovery.Target    // what the Discoverer follows, by service
	current map[string]map[string]struct{} // by service: the addresses whose source is dns
}

func newDiscovery(log *slog.Logger, reg *prometheus.Registry) (*discoveryState, error) {
	ds := &discoveryState{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlb_discovery_lookups_total", Help: "DNS lookups of discovered services, by result (ok, nxdomain, empty, error, timeout).",
		}, []string{"service", "result"}),
		backends: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xlb_discovery_backends", Help: "Backends the service's DNS name gives now (after max_backends).",
		}, []string{"service"}),
		wake:    make(chan struct{}, 1),
		pending: map[string][]discovery.Backend{},
		targets: map[string]discovery.Target{},
		current: map[string]map[string]struct{}{},
	}
	for _, c := range []prometheus.Collector{ds.lookups, ds.backends} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	ds.disc = discovery.New(discovery.Options{Logger: log, OnUpdate: ds.deliver})
	return ds, nil
}

func (ds *discoveryState) deliver(u discovery.Update) {
	ds.lookups.WithLabelValues(u.Service, string(u.Result)).Inc()
	ds.backends.WithLabelValues(u.Service).Set(float64(len(u.Backends)))
	ds.mu.Lock()
	ds.pending[u.Service] = u.Backends
	ds.mu.Unlock()
	select {
	case ds.wake <- struct{}{}:
	default:
	}
}

func (ds *discoveryState) take() map[string][]discovery.Backend {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	p := ds.pending
	ds.pending = map[string][]discovery.Backend{}
	return p
}

func (ds *discoveryState) drop(service string) {
	ds.mu.Lock()
	delete(ds.pending, service)
	ds.mu.Unlock()
}

func (ds *discoveryState) close() { ds.disc.Close() }

// runDiscovery applies the delivered sets until ctx ends.
func (d *Daemon) runDiscovery(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.disc.wake:
		}
		sets := d.disc.take()
		d.mu.Lock()
		for service, bs := range sets {
			if _, ok := d.disc.targets[service]; ok {
				d.applyDiscoveredLocked(service, bs)
			}
		}
		d.mu.Unlock()
	}
}

// setDiscoveryLocked makes the Discoverer follow the running config's
// discover sections. A service that stops discovering drains its dns
// backends; one whose section changed keeps them until its new name answers.
func (d *Daemon) setDiscoveryLocked() {
	want := map[string]discovery.Target{}
	var targets []discovery.Target
	for _, c := range d.cfg.Services {
		if c.Discover == nil || (c.IsL4() && d.maps == nil) {
			continue
		}
		t := targetOf(c)
		want[c.Name] = t
		targets = append(targets, t)
	}
	for service, old := range d.disc.targets {
		t, ok := want[service]
		if !ok || !sameTarget(t, old) {
			d.disc.drop(service) // a set of the old name must not land after the new one
		}
		if !ok {
			d.disc.backends.DeleteLabelValues(service)
			if d.cfg.Service(service) != nil {
				d.applyDiscoveredLocked(service, nil)
			}
			delete(d.disc.current, service)
		}
	}
	d.disc.targets = want
	if err := d.disc.disc.Set(targets); err != nil {
		d.log.Error("discovery", "err", err)
	}
}

func targetOf(c config.Service) discovery.Target {
	dc := c.Discover
	return discovery.Target{
		Service: c.Name, Layer: c.Layer, Name: dc.DNS, Type: dc.Type, Port: dc.Port, Weight: dc.Weight,
		Refresh: dc.Refresh, Resolvers: dc.Resolvers, MaxBackends: dc.MaxBackends,
	}
}

func sameTarget(a, b discovery.Target) bool {
	return a.Service == b.Service && a.Layer == b.Layer && a.Name == b.Name && a.Type == b.Type && a.Port == b.Port &&
		a.Weight == b.Weight && a.Refresh == b.Refresh && a.MaxBackends == b.MaxBackends && slices.Equal(a.Resolvers, b.Resolvers)
}

// applyDiscoveredLocked makes a service's dns backends the set bs: new
// addresses join (down until their first passing check, when the service
// has checks), addresses that left drain for l7.drain_timeout and are then
// removed by the housekeeping. An address the file lists stays the file's.
func (d *Daemon) applyDiscoveredLocked(service string, bs []discovery.Backend) {
	c := d.cfg.Service(service)
	if c == nil {
		return
	}
	if c.IsL4() {
		d.applyDiscoveredL4Locked(service, bs)
	} else {
		d.applyDiscoveredL7Locked(c, bs)
	}
}

func (d *Daemon) applyDiscoveredL4Locked(service string, bs []discovery.Backend) {
	s := d.l4[service]
	if s == nil {
		return
	}
	now := time.Now()
	prev := d.disc.current[service]
	cur := map[string]struct{}{}
	changed := false
	for _, db := range bs {
		addr, err := netip.ParseAddr(db.Address)
		if err != nil || addr.Is4() != s.cfg.VIP.Is4() {
			continue // the config's type follows the VIP's family; a stray record is ignored
		}
		if s.cfg.Backend(addr.String()) != nil {
			continue
		}
		cur[addr.String()] = struct{}{}
		b := s.backend(addr)
		if b == nil {
			id, err := d.ids.backend(s.id, addr)
			if err != nil {
				d.log.Error("discovered backend not added", "service", service, "backend", addr, "err", err)
				continue
			}
			b = &l4Backend{addr: addr, id: id, cfgWeight: db.Weight, fromDNS: true, up: !hasChecks(s.cfg)}
			if up, ok := d.ids.wasUp[backendRef{s.id, addr}]; ok && hasChecks(s.cfg) {
				// A restarted daemon finds the health its predecessor left.
				b.up = up
				delete(d.ids.wasUp, backendRef{s.id, addr})
			}
			if b.up {
				b.lastUp = now
			}
			s.backends = append(s.backends, b)
			d.log.Info("discovered backend added", "service", service, "backend", addr, "weight", db.Weight)
			changed = true
			continue
		}
		if !b.removeAt.IsZero() || b.cfgWeight != db.Weight || !b.fromDNS {
			b.removeAt, b.cfgWeight, b.fromDNS, b.fromAPI = time.Time{}, db.Weight, true, false
			changed = true
		}
	}
	for addr := range prev {
		if _, ok := cur[addr]; ok {
			continue
		}
		if b := s.backend(netip.MustParseAddr(addr)); b != nil && b.fromDNS && b.removeAt.IsZero() {
			b.removeAt = now.Add(d.drainTimeout())
			d.log.Info("discovered backend left the answer; draining before removal", "service", service, "backend", addr, "remove_at", b.removeAt)
			changed = true
		}
	}
	d.disc.current[service] = cur
	if !changed {
		return
	}
	if err := d.syncL4(s); err != nil {
		d.log.Error("apply discovered backends", "service", service, "err", err)
	}
	d.retargetChecksLocked(false)
	d.poke()
}

// reviveDiscoveredL4Locked runs while a reload builds the L4 services:
// the dns backends it found gone from the file (and set draining) are
// still in the answer.
func (d *Daemon) reviveDiscoveredL4Locked() {
	for service, cur := range d.disc.current {
		s := d.l4[service]
		if s == nil || s.cfg.Discover == nil {
			continue
		}
		for _, b := range s.backends {
			if _, ok := cur[b.addr.String()]; ok && b.fromDNS {
				b.removeAt = time.Time{}
			}
		}
	}
}

func (d *Daemon) applyDiscoveredL7Locked(c *config.Service, bs []discovery.Backend) {
	service := c.Name
	prev := d.disc.current[service]
	cur := map[string]struct{}{}
	apply := false
	for _, db := range bs {
		if l7ConfigBackend(c, db.Address) {
			continue
		}
		cur[db.Address] = struct{}{}
		if _, gone := d.l7Gone[service][db.Address]; gone {
			delete(d.l7Gone[service], db.Address)
			if u := d.web.Upstream(service, db.Address); u != nil {
				u.SetDrained(false)
			}
		}
		i := slices.IndexFunc(d.l7Extra[service], func(b config.Backend) bool { return b.Address == db.Address })
		switch {
		case i < 0:
			b := config.Backend{Address: db.Address, Weight: db.Weight}
			if ap, err := netip.ParseAddrPort(db.Address); err == nil {
				b.AddrPort = ap
			}
			d.l7Extra[service] = append(d.l7Extra[service], b)
			d.log.Info("discovered backend added", "service", service, "backend", db.Address, "weight", db.Weight)
			apply = true
		case d.l7Extra[service][i].Weight != db.Weight:
			d.l7Extra[service][i].Weight = db.Weight
			apply = true
		}
	}
	drained := false
	for addr := range prev {
		if _, ok := cur[addr]; ok {
			continue
		}
		if _, gone := d.l7Gone[service][addr]; gone {
			continue
		}
		if u := d.web.Upstream(service, addr); u != nil {
			u.SetDrained(true) // in-flight requests finish; no new ones
			if d.l7Gone[service] == nil {
				d.l7Gone[service] = map[string]time.Time{}
			}
			d.l7Gone[service][addr] = time.Now().Add(d.drainTimeout())
			d.log.Info("discovered backend left the answer; draining before removal", "service", service, "backend", addr)
			drained = true
		}
	}
	d.disc.current[service] = cur
	if apply {
		if err := d.web.Apply(d.withRuntimeL7(d.cfg)); err != nil {
			d.log.Error("apply discovered backends", "service", service, "err", err)
		}
		d.retargetChecksLocked(false)
	}
	if drained {
		d.poke()
	}
}

// l7ConfigBackend reports whether the file lists addr for c or its routes.
func l7ConfigBackend(c *config.Service, addr string) bool {
	if c.Backend(addr) != nil {
		return true
	}
	for _, r := range c.Routes {
		for _, b := range r.Backends {
			if b.Address == addr {
				return true
			}
		}
	}
	return false
}

// dnsStatusL7 marks a layer 7 backend of the API's status as discovered.
func (d *Daemon) dnsStatusL7(service string, ab *api.Backend, st l7.BackendStatus) {
	if _, ok := d.disc.current[service][ab.Address]; !ok || ab.Source != "api" {
		return
	}
	ab.Source = dnsSource
	ab.ConfigWeight = ab.Weight
	for _, b := range d.l7Extra[service] {
		if b.Address == ab.Address {
			ab.ConfigWeight = b.Weight
		}
	}
	// Discovered backends come back from DNS after a reload: persisted
	// unless the API changed them.
	ab.Persisted = st.Weight == ab.ConfigWeight && !ab.Draining
}
