//go:build linux

package daemon

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/maps"
)

// controller is the admin API's view of the daemon: it checks requests,
// turns them into changes of the model and reports the model with the
// data plane's counters.
type controller struct {
	log    *slog.Logger
	r      *reconciler
	maps   *maps.Maps // nil: L4 off
	reload func() error
	// restartNeeded is what the last good reload left for a restart.
	restartNeeded func() []string
	bgp           *announcer // nil: no bgp section
}

var _ admin.Controller = (*controller)(nil)

const (
	notPersisted = "runtime change: a reload or restart undoes it unless the config file says the same"
	// removedNote answers the removal of a backend the file lists: only
	// the runtime state loses it.
	removedNote = "removed until the next reload; the config file still lists it"
)

// Services reports every service with its backends' live state.
func (c *controller) Services() []api.Service {
	var out []api.Service
	c.r.read(func(_ *config.Config, m *model) {
		var flows map[uint32]int
		if c.maps != nil {
			flows, _ = c.maps.CountFlows()
		}
		for _, name := range m.order {
			s := m.services[name]
			if s.cfg.IsL4() {
				out = append(out, c.l4Status(s, flows))
				continue
			}
			out = append(out, c.l7Status(s))
		}
	})
	return out
}

func modelBackend(b *backend) api.Backend {
	return api.Backend{
		Address: b.name, Weight: b.effWeight(), ConfigWeight: b.conf.Weight,
		// Weight 0 drains as a drain does (SPEC: no new flows, established
		// ones continue), so it reads the same; the undrain and weight
		// calls still keep the two apart.
		Healthy: b.up, Draining: b.drained() || b.weight() == 0, Source: string(b.src),
		Persisted: b.persisted(), LastCheck: b.lastCheck,
	}
}

// l4Status reports an L4 service. With the L4 data plane off (or before
// the service has a kernel id) it comes from the model alone: health and
// weights, no counters, nothing active.
func (c *controller) l4Status(s *service, flows map[uint32]int) api.Service {
	as := api.Service{
		Name: s.cfg.Name, Layer: 4,
		Address:   netip.AddrPortFrom(s.cfg.VIP, uint16(s.cfg.Port)).String(),
		Protocol:  s.cfg.Protocol,
		Scheduler: s.cfg.Scheduler,
		Forward:   s.cfg.Forwarding,
		FailOpen:  c.r.l4.failingOpen(s.cfg.Name),
		// Nodes given the same config and health build the same table.
		MaglevFingerprint: c.r.l4.fingerprint(s.cfg.Name),
	}
	id, inKernel := c.r.l4.serviceID(s.cfg.Name)
	inKernel = inKernel && c.maps != nil
	if inKernel {
		if k, err := c.maps.ServiceCounters(id); err == nil {
			as.Counters = api.Counters{Packets: k.Packets, Bytes: k.Bytes, NewFlows: k.NewFlows}
		}
	}
	for _, b := range s.backends {
		ab := modelBackend(b)
		if bid := c.r.l4.backendID(s.cfg.Name, b.addr); inKernel && bid != 0 {
			ab.Active = int64(flows[bid])
			if k, err := c.maps.BackendCounters(bid); err == nil {
				ab.Counters = api.Counters{Packets: k.Packets, Bytes: k.Bytes, NewFlows: k.NewFlows}
			}
		}
		as.Backends = append(as.Backends, ab)
	}
	return as
}

// l7Status reports a layer 7 service: its own backends, then those only its
// routes name.
func (c *controller) l7Status(s *service) api.Service {
	proto := "http"
	if s.cfg.TLS != nil {
		proto = "https"
	}
	as := api.Service{Name: s.cfg.Name, Layer: 7, Address: s.cfg.Listen, Protocol: proto, Scheduler: s.cfg.Scheduler}
	live := c.r.l7.status(s.cfg.Name)
	for _, b := range s.reported() {
		ab := modelBackend(b)
		if u, ok := live[b.name]; ok {
			ab.Active = u.Inflight
			ab.Counters = api.Counters{Requests: u.Requests, Errors: u.Failures}
			// Microseconds kept: loopback backends answer in well under 1ms.
			ab.ResponseTimeMs = math.Round(float64(u.Latency)/1e3) / 1e3
			if u.Ejected {
				ab.Healthy, ab.LastCheck = false, "ejected by passive health"
			}
		}
		as.Counters.Requests += ab.Counters.Requests
		as.Counters.Errors += ab.Counters.Errors
		as.Backends = append(as.Backends, ab)
	}
	return as
}

func checkWeight(w int) error {
	if w < 0 || w > 1000 {
		return fmt.Errorf("weight %d: must be between 0 and 1000: %w", w, api.ErrInvalid)
	}
	return nil
}

// parseBackend checks an API-given backend address for a service as the
// config file checks it (with the config package's rules for addresses and
// names): an IP of the VIP's family (layer 4), or host:port (layer 7)
// whose host is an IP address or a DNS name. An add must not accept what a
// reload of the same address would reject, nor keep two entries for one
// backend.
func parseBackend(s *service, address string) (config.Backend, error) {
	if s.cfg.IsL4() {
		a, err := netip.ParseAddr(address)
		if err != nil {
			return config.Backend{}, fmt.Errorf("backend address %s: L4 backends are IP addresses (they serve on the VIP's port): %w", quoteShort(address), api.ErrInvalid)
		}
		a = a.Unmap()
		if msg := config.AddrProblem(a, "a backend"); msg != "" {
			return config.Backend{}, fmt.Errorf("backend address %s: %s: %w", quoteShort(address), msg, api.ErrInvalid)
		}
		if a.Is4() != s.cfg.VIP.Is4() {
			return config.Backend{}, fmt.Errorf("backend %s: address family differs from VIP %s: %w", a, s.cfg.VIP, api.ErrInvalid)
		}
		return config.Backend{Address: a.String(), Addr: a}, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("backend address %s: %s: %w", quoteShort(address), why, api.ErrInvalid)
	}
	if i := strings.Index(address, "://"); i >= 0 {
		return config.Backend{}, bad("write host:port without a scheme")
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return config.Backend{}, bad("layer 7 backends are host:port, e.g. 10.0.2.1:8080")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
		return config.Backend{}, bad("the port must be between 1 and 65535")
	}
	b := config.Backend{Address: address}
	if a, err := netip.ParseAddr(host); err == nil {
		if msg := config.AddrProblem(a, "a backend"); msg != "" {
			return config.Backend{}, bad(msg)
		}
		b.AddrPort = netip.AddrPortFrom(a, uint16(n))
		return b, nil
	}
	if msg := config.HostProblem(host); msg != "" {
		return config.Backend{}, bad(msg)
	}
	return b, nil
}

// quoteShort quotes an address for an error message, cut short: the body
// of a request may carry a name of any length.
func quoteShort(s string) string {
	const max = 80
	if len(s) > max {
		return strconv.Quote(s[:max]) + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return strconv.Quote(s)
}

// target finds the backend an API call names in the service's own pool.
func target(s *service, address string) (*backend, error) {
	if s.cfg.IsL4() {
		cb, err := parseBackend(s, address)
		if err != nil {
			return nil, err
		}
		address = cb.Address
	}
	if b := s.find(address); b != nil {
		return b, nil
	}
	if s.findRouteBackend(address) != nil {
		return nil, fmt.Errorf("backend %s serves only routes of service %s, and routes keep their configured backends: change it in the config file: %w", address, s.cfg.Name, api.ErrInvalid)
	}
	return nil, fmt.Errorf("service %s has no backend %s: %w", s.cfg.Name, address, api.ErrNotFound)
}

// AddBackend adds a backend at runtime (autoscalers). With health checks it
// takes traffic once its first check passes.
func (c *controller) AddBackend(name string, req api.AddBackend) (api.Change, error) {
	var ch api.Change
	err := c.r.change(name, func(m *model, s *service) error {
		w := 1
		if req.Weight != nil {
			w = *req.Weight
		}
		if err := checkWeight(w); err != nil {
			return err
		}
		cb, err := parseBackend(s, req.Address)
		if err != nil {
			return err
		}
		cb.Weight = w
		b := &backend{name: cb.Address, addr: cb.Addr, conf: cb, src: fromAPI, up: !s.checked()}
		if fc := s.cfg.Backend(cb.Address); fc != nil {
			// Back through the API after its removal: the file lists it,
			// so it is the file's backend, with the weight asked for.
			b.conf, b.src = *fc, fromConfig
			if s.cfg.IsL4() {
				b.name = fc.Addr.String()
			}
			setWeight(b, w)
		}
		if b.up {
			b.lastUp = time.Now()
		}
		revived, err := m.add(s, b, req.Weight)
		if err != nil {
			return err
		}
		ch = api.Change{Service: name, Backend: b.name, Result: "added", Note: notPersisted}
		if revived {
			ch.Result = "removal cancelled"
		}
		c.log.Info("backend added through the API", "service", name, "backend", b.name, "weight", w, "result", ch.Result)
		return nil
	})
	return ch, err
}

// RemoveBackend drains a backend, then removes it once nothing uses it (no
// in-flight requests; no flow-table entries for L4) or when the drain
// period (l7.drain_timeout) is over, whichever comes first. A backend the
// file lists stays removed until the next reload or restart.
func (c *controller) RemoveBackend(name, address string) (api.Change, error) {
	var ch api.Change
	err := c.r.change(name, func(m *model, s *service) error {
		b, err := target(s, address)
		if err != nil {
			return err
		}
		m.remove(b, time.Now())
		ch = api.Change{Service: name, Backend: b.name, Result: fmt.Sprintf("draining; removed once idle, at %s at the latest", b.removeAt.Format(time.RFC3339)), Note: notPersisted}
		if b.src == fromConfig {
			ch.Note = removedNote
		}
		c.log.Info("backend draining before removal", "service", name, "backend", b.name, "remove_at", b.removeAt)
		return nil
	})
	return ch, err
}

// PatchBackend changes a backend's weight or drain state at runtime.
func (c *controller) PatchBackend(name, address string, p api.PatchBackend) (api.Change, error) {
	if p.Weight == nil && p.Drain == nil {
		return api.Change{}, fmt.Errorf(`nothing to change: give "weight" or "drain": %w`, api.ErrInvalid)
	}
	var ch api.Change
	err := c.r.change(name, func(m *model, s *service) error {
		b, err := target(s, address)
		if err != nil {
			return err
		}
		if b.removing() {
			// A drain or weight would not stop the removal, and an answer
			// of "not draining" would say it had.
			return fmt.Errorf("backend %s of service %s is being removed (draining); POST it again to keep it: %w", b.name, name, api.ErrConflict)
		}
		if p.Weight != nil {
			if err := checkWeight(*p.Weight); err != nil {
				return err
			}
		}
		var result []string
		if p.Weight != nil {
			setWeight(b, *p.Weight)
			result = append(result, fmt.Sprintf("weight %d", *p.Weight))
		}
		if p.Drain != nil {
			b.drain = *p.Drain
			switch {
			case b.drain:
				result = append(result, "draining")
			case b.weight() == 0:
				// Weight 0 drains too (GET says draining): an undrain
				// that left it so must not read as one that worked.
				result = append(result, "still draining: weight is 0; set a weight to bring it back")
			default:
				result = append(result, "not draining")
			}
		}
		ch = api.Change{Service: name, Backend: b.name, Result: strings.Join(result, ", "), Persisted: b.persisted()}
		if !ch.Persisted {
			ch.Note = notPersisted
		}
		c.log.Info("backend changed through the API", "service", name, "backend", b.name, "change", result)
		return nil
	})
	return ch, err
}

// Reload is the admin API's reload: the same as SIGHUP. A config error
// carries every validation error as details.
func (c *controller) Reload() (api.Reload, error) {
	if err := c.reload(); err != nil {
		return api.Reload{}, err
	}
	out := api.Reload{Result: "ok", Services: len(c.r.config().Services), At: time.Now(), RestartNeeded: []string{}}
	if c.restartNeeded != nil {
		if r := c.restartNeeded(); r != nil {
			out.RestartNeeded = r
		}
	}
	return out, nil
}

// Stats reports the data plane's verdict and event counters. With the L4
// data plane off every counter is there at 0, so that a script reading one
// by name works on every node.
func (c *controller) Stats() (api.Stats, error) {
	if c.maps == nil {
		out := api.Stats{L4: make([]api.Stat, 0, len(maps.StatNames))}
		for _, name := range maps.StatNames {
			out.L4 = append(out.L4, api.Stat{Name: name})
		}
		return out, nil
	}
	st, err := c.maps.ReadStats()
	if err != nil {
		return api.Stats{}, err
	}
	var out api.Stats
	for _, s := range st {
		out.L4 = append(out.L4, api.Stat{Name: s.Name, Packets: s.Packets, Bytes: s.Bytes})
	}
	return out, nil
}
