//go:build linux

package daemon

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/api"
)

var _ admin.Controller = (*Daemon)(nil)

const notPersisted = "runtime change: a reload or restart undoes it unless the config file says the same"

// Services reports every service with its backends' live state.
func (d *Daemon) Services() []api.Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	var flows map[uint32]int
	if d.maps != nil {
		flows, _ = d.maps.CountFlows()
	}
	var out []api.Service
	for _, name := range d.l4Order {
		s := d.l4[name]
		as := api.Service{
			Name: name, Layer: 4,
			Address:   netip.AddrPortFrom(s.cfg.VIP, uint16(s.cfg.Port)).String(),
			Protocol:  s.cfg.Protocol,
			Scheduler: s.cfg.Scheduler,
			Forward:   s.cfg.Forwarding,
			FailOpen:  s.failOpen,
		}
		as.MaglevFingerprint = s.fingerprint()
		if c, err := d.maps.ServiceCounters(s.id); err == nil {
			as.Counters = api.Counters{Packets: c.Packets, Bytes: c.Bytes, NewFlows: c.NewFlows}
		}
		for _, b := range s.backends {
			ab := api.Backend{
				Address:      b.addr.String(),
				Weight:       b.effWeight(),
				ConfigWeight: b.cfgWeight,
				Healthy:      b.up,
				Draining:     b.drain || !b.removeAt.IsZero(),
				Source:       "config",
				Persisted:    !b.fromAPI && b.weight == nil && !b.drain && b.removeAt.IsZero(),
				LastCheck:    b.lastCheck,
				Active:       int64(flows[b.id]),
			}
			if b.fromAPI {
				ab.Source = "api"
			}
			if c, err := d.maps.BackendCounters(b.id); err == nil {
				ab.Counters = api.Counters{Packets: c.Packets, Bytes: c.Bytes, NewFlows: c.NewFlows}
			}
			as.Backends = append(as.Backends, ab)
		}
		out = append(out, as)
	}
	for i := range d.cfg.Services {
		if c := &d.cfg.Services[i]; !c.IsL4() {
			out = append(out, d.l7Status(c))
		}
	}
	return out
}

func (d *Daemon) findL4(service string) (*l4Service, error) {
	s, ok := d.l4[service]
	if !ok {
		return nil, fmt.Errorf("service %q: %w", service, api.ErrNotFound)
	}
	return s, nil
}

// findBackend resolves an API call's service name and backend address.
func (d *Daemon) findBackend(service, address string) (*l4Service, *l4Backend, error) {
	s, err := d.findL4(service)
	if err != nil {
		return nil, nil, err
	}
	addr, err := parseBackendAddr(s, address)
	if err != nil {
		return nil, nil, err
	}
	b := s.backend(addr)
	if b == nil {
		return nil, nil, fmt.Errorf("service %s has no backend %s: %w", service, addr, api.ErrNotFound)
	}
	return s, b, nil
}

func parseBackendAddr(s *l4Service, address string) (netip.Addr, error) {
	a, err := netip.ParseAddr(address)
	if err != nil {
		return a, fmt.Errorf("backend address %q: L4 backends are IP addresses (they serve on the VIP's port): %w", address, api.ErrInvalid)
	}
	a = a.Unmap()
	if a.Is4() != s.cfg.VIP.Is4() {
		return a, fmt.Errorf("backend %s: address family differs from VIP %s: %w", a, s.cfg.VIP, api.ErrInvalid)
	}
	return a, nil
}

func checkWeight(w int) error {
	if w < 0 || w > 1000 {
		return fmt.Errorf("weight %d: must be between 0 and 1000: %w", w, api.ErrInvalid)
	}
	return nil
}

// AddBackend adds a backend at runtime (autoscalers). With health checks it
// takes traffic once its first check passes.
func (d *Daemon) AddBackend(service string, req api.AddBackend) (api.Change, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.l7Service(service); ok {
		return d.addL7(c, req)
	}
	s, err := d.findL4(service)
	if err != nil {
		return api.Change{}, err
	}
	addr, err := parseBackendAddr(s, req.Address)
	if err != nil {
		return api.Change{}, err
	}
	w := 1
	if req.Weight != nil {
		w = *req.Weight
	}
	if err := checkWeight(w); err != nil {
		return api.Change{}, err
	}
	if b := s.backend(addr); b != nil {
		if b.removeAt.IsZero() {
			return api.Change{}, fmt.Errorf("service %s already has backend %s: %w", service, addr, api.ErrConflict)
		}
		b.removeAt = time.Time{} // revived before its drain ended
		b.weight = &w
		b.fromAPI = s.cfg.Backend(addr.String()) == nil
	} else {
		id, err := d.ids.backend(s.id, addr)
		if err != nil {
			return api.Change{}, err
		}
		s.backends = append(s.backends, &l4Backend{addr: addr, id: id, cfgWeight: w, fromAPI: true, up: !hasChecks(s.cfg)})
		if !hasChecks(s.cfg) {
			s.backends[len(s.backends)-1].lastUp = time.Now()
		}
	}
	if err := d.syncL4(s); err != nil {
		return api.Change{}, err
	}
	d.retargetChecksLocked(false)
	d.log.Info("backend added through the API", "service", service, "backend", addr, "weight", w)
	return api.Change{Service: service, Backend: addr.String(), Result: "added", Persisted: false, Note: notPersisted}, nil
}

// RemoveBackend drains a backend, then removes it once the drain period
// (l7.drain_timeout) is over; established flows keep it until then.
func (d *Daemon) RemoveBackend(service, address string) (api.Change, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.l7Service(service); ok {
		return d.removeL7(c, address)
	}
	s, b, err := d.findBackend(service, address)
	if err != nil {
		return api.Change{}, err
	}
	addr := b.addr
	if b.removeAt.IsZero() {
		b.removeAt = time.Now().Add(d.drainTimeout())
	}
	if err := d.syncL4(s); err != nil {
		return api.Change{}, err
	}
	d.retargetChecksLocked(false)
	d.log.Info("backend draining before removal", "service", service, "backend", addr, "remove_at", b.removeAt)
	return api.Change{Service: service, Backend: addr.String(), Result: fmt.Sprintf("draining; removed at %s", b.removeAt.Format(time.RFC3339)),
		Persisted: false, Note: notPersisted}, nil
}

// PatchBackend changes a backend's weight or drain state at runtime.
func (d *Daemon) PatchBackend(service, address string, p api.PatchBackend) (api.Change, error) {
	if p.Weight == nil && p.Drain == nil {
		return api.Change{}, fmt.Errorf(`nothing to change: give "weight" or "drain": %w`, api.ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.l7Service(service); ok {
		return d.patchL7(c, address, p)
	}
	s, b, err := d.findBackend(service, address)
	if err != nil {
		return api.Change{}, err
	}
	addr := b.addr
	var result []string
	if p.Weight != nil {
		if err := checkWeight(*p.Weight); err != nil {
			return api.Change{}, err
		}
		w := *p.Weight
		b.weight = &w
		if w == b.cfgWeight && !b.fromAPI {
			b.weight = nil
		}
		result = append(result, fmt.Sprintf("weight %d", w))
	}
	if p.Drain != nil {
		b.drain = *p.Drain
		if b.drain {
			result = append(result, "draining")
		} else {
			result = append(result, "not draining")
		}
	}
	if err := d.syncL4(s); err != nil {
		return api.Change{}, err
	}
	persisted := !b.fromAPI && b.weight == nil && !b.drain
	d.log.Info("backend changed through the API", "service", service, "backend", addr, "change", result)
	c := api.Change{Service: service, Backend: addr.String(), Result: fmt.Sprint(result), Persisted: persisted}
	if !persisted {
		c.Note = notPersisted
	}
	return c, nil
}

// Reload is the admin API's reload: the same as SIGHUP. A config error
// carries every validation error as details.
func (d *Daemon) Reload() (api.Reload, error) {
	if err := d.ReloadConfig(); err != nil {
		return api.Reload{}, err
	}
	return api.Reload{Result: "ok", Services: len(d.Config().Services), At: time.Now()}, nil
}

// Stats reports the data plane's verdict and event counters.
func (d *Daemon) Stats() (api.Stats, error) {
	d.mu.Lock()
	m := d.maps
	d.mu.Unlock()
	if m == nil {
		return api.Stats{}, nil
	}
	st, err := m.ReadStats()
	if err != nil {
		return api.Stats{}, err
	}
	var out api.Stats
	for _, s := range st {
		out.L4 = append(out.L4, api.Stat{Name: s.Name, Packets: s.Packets, Bytes: s.Bytes})
	}
	return out, nil
}
