//go:build linux

package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
)

// withRuntimeL7 returns cfg with the API's runtime changes to layer 7
// services applied: added backends join the service's own backends.
// Backends being removed stay (drained) until their removal time.
func (d *Daemon) withRuntimeL7(cfg *config.Config) *config.Config {
	if len(d.l7Extra) == 0 {
		return cfg
	}
	c := *cfg
	c.Services = slices.Clone(cfg.Services)
	for i := range c.Services {
		s := &c.Services[i]
		extra := d.l7Extra[s.Name]
		if s.IsL4() || len(extra) == 0 {
			continue
		}
		s.Backends = slices.Clone(s.Backends)
		for _, b := range extra {
			if s.Backend(b.Address) == nil {
				s.Backends = append(s.Backends, b)
			}
		}
	}
	return &c
}

// l7Backends lists every backend of a layer 7 service: its own, its routes',
// and those the API added.
func (d *Daemon) l7Backends(c config.Service) []config.Backend {
	out := slices.Clone(c.Backends)
	for _, r := range c.Routes {
		out = append(out, r.Backends...)
	}
	return append(out, d.l7Extra[c.Name]...)
}

func (d *Daemon) l7Service(name string) (*config.Service, bool) {
	c := d.cfg.Service(name)
	return c, c != nil && !c.IsL4()
}

// l7Status reports a layer 7 service for the API.
func (d *Daemon) l7Status(c *config.Service) api.Service {
	proto := "http"
	if c.TLS != nil {
		proto = "https"
	}
	as := api.Service{Name: c.Name, Layer: 7, Address: c.Listen, Protocol: proto, Scheduler: c.Scheduler}
	st, _ := d.web.Status(c.Name)
	for _, b := range st {
		cw, fromAPI := 0, true
		if cb := c.Backend(b.Address); cb != nil {
			cw, fromAPI = cb.Weight, false
		} else {
			for _, r := range c.Routes {
				for _, rb := range r.Backends {
					if rb.Address == b.Address {
						cw, fromAPI = rb.Weight, false
					}
				}
			}
		}
		_, gone := d.l7Gone[c.Name][b.Address]
		ab := api.Backend{
			Address: b.Address, Weight: b.Weight, ConfigWeight: cw,
			Healthy: b.Healthy && !b.Ejected, Draining: b.Drained || gone,
			Source: "config", Persisted: !fromAPI && b.Weight == cw && !b.Drained && !gone,
			LastCheck: d.l7Checks[c.Name+"/"+b.Address], Active: b.Inflight,
			Counters: api.Counters{Requests: b.Requests, Errors: b.Failures},
		}
		if fromAPI {
			ab.Source = "api"
		}
		if b.Ejected {
			ab.LastCheck = "ejected by passive health"
		}
		d.dnsStatusL7(c.Name, &ab, b)
		as.Counters.Requests += b.Requests
		as.Counters.Errors += b.Failures
		as.Backends = append(as.Backends, ab)
	}
	return as
}

func (d *Daemon) addL7(c *config.Service, req api.AddBackend) (api.Change, error) {
	w := 1
	if req.Weight != nil {
		w = *req.Weight
	}
	if err := checkWeight(w); err != nil {
		return api.Change{}, err
	}
	b, err := l7Backend(req.Address, w)
	if err != nil {
		return api.Change{}, err
	}
	if d.web.Upstream(c.Name, b.Address) != nil {
		if _, gone := d.l7Gone[c.Name][b.Address]; !gone {
			return api.Change{}, fmt.Errorf("service %s already has backend %s: %w", c.Name, b.Address, api.ErrConflict)
		}
		delete(d.l7Gone[c.Name], b.Address)
		d.web.Upstream(c.Name, b.Address).SetDrained(false)
		return api.Change{Service: c.Name, Backend: b.Address, Result: "removal cancelled", Note: notPersisted}, nil
	}
	d.l7Extra[c.Name] = append(d.l7Extra[c.Name], b)
	if err := d.web.Apply(d.withRuntimeL7(d.cfg)); err != nil {
		d.l7Extra[c.Name] = d.l7Extra[c.Name][:len(d.l7Extra[c.Name])-1]
		return api.Change{}, err
	}
	d.retargetChecksLocked(false)
	d.log.Info("backend added through the API", "service", c.Name, "backend", b.Address, "weight", w)
	return api.Change{Service: c.Name, Backend: b.Address, Result: "added", Note: notPersisted}, nil
}

// l7Backend checks an API-given layer 7 backend: host:port, host an IP or a
// name, as in the config file.
func l7Backend(address string, weight int) (config.Backend, error) {
	host, port, err := net.SplitHostPort(address)
	n, perr := strconv.Atoi(port)
	if err != nil || host == "" || perr != nil || n < 1 || n > 65535 || strings.ContainsAny(host, "/ @") {
		return config.Backend{}, fmt.Errorf("backend address %q: layer 7 backends are host:port, e.g. 10.0.2.1:8080: %w", address, api.ErrInvalid)
	}
	b := config.Backend{Address: address, Weight: weight}
	if ap, err := netip.ParseAddrPort(address); err == nil {
		b.AddrPort = ap
	}
	return b, nil
}

func (d *Daemon) removeL7(c *config.Service, addr string) (api.Change, error) {
	u := d.web.Upstream(c.Name, addr)
	if u == nil {
		return api.Change{}, fmt.Errorf("service %s has no backend %s: %w", c.Name, addr, api.ErrNotFound)
	}
	u.SetDrained(true) // in-flight requests finish; no new ones
	if d.l7Gone[c.Name] == nil {
		d.l7Gone[c.Name] = map[string]time.Time{}
	}
	at := time.Now().Add(d.drainTimeout())
	d.l7Gone[c.Name][addr] = at
	d.poke()
	return api.Change{Service: c.Name, Backend: addr, Result: fmt.Sprintf("draining; removed at %s", at.Format(time.RFC3339)), Note: notPersisted}, nil
}

func (d *Daemon) patchL7(c *config.Service, addr string, p api.PatchBackend) (api.Change, error) {
	u := d.web.Upstream(c.Name, addr)
	if u == nil {
		return api.Change{}, fmt.Errorf("service %s has no backend %s: %w", c.Name, addr, api.ErrNotFound)
	}
	var result []string
	if p.Weight != nil {
		if err := checkWeight(*p.Weight); err != nil {
			return api.Change{}, err
		}
		u.SetWeight(*p.Weight)
		result = append(result, fmt.Sprintf("weight %d", *p.Weight))
	}
	if p.Drain != nil {
		u.SetDrained(*p.Drain)
		result = append(result, map[bool]string{true: "draining", false: "not draining"}[*p.Drain])
	}
	d.log.Info("backend changed through the API", "service", c.Name, "backend", addr, "change", result)
	return api.Change{Service: c.Name, Backend: addr, Result: fmt.Sprint(result), Note: notPersisted}, nil
}

// housekeepL7 removes API-removed backends whose drain period is over.
func (d *Daemon) housekeepL7(now time.Time) {
	changed := false
	for svc, gone := range d.l7Gone {
		for addr, at := range gone {
			if now.Before(at) {
				continue
			}
			delete(gone, addr)
			d.l7Extra[svc] = slices.DeleteFunc(d.l7Extra[svc], func(b config.Backend) bool { return b.Address == addr })
			changed = true
			d.log.Info("backend removed after draining", "service", svc, "backend", addr)
		}
	}
	if changed {
		if err := d.web.Apply(d.withRuntimeL7(d.cfg)); err != nil {
			d.log.Error("apply l7 removal", "err", err)
		}
		d.retargetChecksLocked(false)
	}
}
