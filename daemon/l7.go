//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/l7"
	"github.com/xlbproject/xlb/l7/balance"
)

// l7Projector turns the model's layer 7 services into the l7 server's
// pools: the whole config on a reload (listeners, certificates, routes),
// one service's backends on a runtime change.
type l7Projector struct {
	web *l7.Server
}

// apply hands a reload to the l7 server: cfg with each service's own
// backends as the model has them (so draining ones keep their live state
// until they go), then their drain states.
func (p *l7Projector) apply(cfg *config.Config, m *model) error {
	c := *cfg
	c.Services = slices.Clone(cfg.Services)
	for i := range c.Services {
		cs := &c.Services[i]
		s := m.services[cs.Name]
		if cs.IsL4() || s == nil {
			continue
		}
		cs.Backends = make([]config.Backend, 0, len(s.backends))
		for _, b := range s.backends {
			cb := b.conf
			cb.Weight = b.weight()
			cs.Backends = append(cs.Backends, cb)
		}
	}
	if err := p.web.Apply(&c); err != nil {
		return err
	}
	var errs []error
	for _, name := range m.order {
		if s := m.services[name]; !s.cfg.IsL4() {
			errs = append(errs, p.sync(s))
		}
	}
	return errors.Join(errs...)
}

// sync replaces one service's own backends, keeping the live state of
// those that stay, and makes their health the model's.
func (p *l7Projector) sync(s *service) error {
	specs := make([]l7.BackendSpec, 0, len(s.backends))
	stand := s.standIns()
	for _, b := range s.backends {
		specs = append(specs, l7.BackendSpec{
			Address: b.name, Weight: b.weight(), MaxConns: b.conf.MaxConns, SlowStart: b.conf.SlowStart, Drained: b.drained() && !stand[b],
			Leaving: b.removing() && !stand[b],
		})
	}
	if err := p.web.SetBackends(s.cfg.Name, specs); err != nil {
		return fmt.Errorf("project service %s to l7: %w", s.cfg.Name, err)
	}
	now := time.Now()
	for _, list := range [][]*backend{s.backends, s.routeBackends} {
		for _, b := range list {
			p.setHealth(s, b, now)
		}
	}
	return nil
}

// setHealth makes the l7 server's health of b's address the model's, on
// both backends the address may have there: the pool's, and the one its
// routes name as their own (kept apart, so that the pool's can wait for
// its first check after an API add while the route's keeps serving).
func (p *l7Projector) setHealth(s *service, b *backend, now time.Time) {
	set := func(u *balance.Upstream, m *backend) {
		if u != nil && m != nil && u.Healthy() != m.up {
			u.SetHealthy(m.up, now)
		}
	}
	if own := s.find(b.name); own != nil {
		u, _ := p.web.Upstreams(s.cfg.Name, own.name)
		set(u, own)
	}
	if rb := s.findRouteBackend(b.name); rb != nil {
		_, u := p.web.Upstreams(s.cfg.Name, rb.name)
		set(u, rb)
	}
}

// status is the l7 server's live state of a service's backends, by address.
func (p *l7Projector) status(name string) map[string]l7.BackendStatus {
	st, _ := p.web.Status(name)
	out := make(map[string]l7.BackendStatus, len(st))
	for _, b := range st {
		out[b.Address] = b
	}
	return out
}
