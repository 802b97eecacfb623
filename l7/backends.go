package l7

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/xlbproject/xlb/config"
)

// BackendSpec is one backend of a service's own pool as the daemon's
// backend model wants it now: the config's backend with the runtime changes
// (an API weight, a drain, a pending removal) already folded in.
type BackendSpec struct {
	Address   string // host:port
	Weight    int    // the share when not drained; 0 takes it out of selection too
	MaxConns  int
	SlowStart time.Duration
	// Drained: no new requests, in-flight ones finish. Kept apart from
	// Weight so that an undrain restores the weight and the consistent-hash
	// ring does not move keys while a backend drains. A drained backend
	// keeps its sticky sessions unless it is Leaving too.
	Drained bool
	// Leaving: on its way out (removed by the API or a reload, or gone from
	// its DNS answer): no request at all, sticky ones included.
	Leaving bool
}

// ErrNoService is SetBackends' error for a service the server does not run.
var ErrNoService = errors.New("no such layer 7 service")

// SetBackends replaces the backends of a service's own pool, and of its
// routes that name no backends of their own (those use the service's);
// routes with their own backends keep them as configured, with live state
// of their own even where the pool has the same address, so a drain, a
// weight or a removal here does not reach them. It is the incremental path
// for runtime changes: a backend that stays keeps its live state (health,
// counters, in-flight requests, passive-health ejection, kept-alive
// connections) and takes the spec's weight, max_conns, slow start and drain;
// a new one starts unhealthy when the service has health checks, so it waits
// for its first passing check; a removed one gets no new requests (its
// in-flight ones finish on the service value they started on). The rest of
// the service (listener, certificates, rate limiter, retry budget,
// schedulers, metric children) is untouched. A later Apply replaces the set
// again with the config's.
func (s *Server) SetBackends(service string, bs []BackendSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.services[service]
	if old == nil {
		return fmt.Errorf("set backends of %q: %w", service, ErrNoService)
	}
	c := old.cfg
	c.Backends = make([]config.Backend, 0, len(bs))
	seen := map[string]bool{}
	for _, b := range bs {
		if b.Address == "" {
			return fmt.Errorf("set backends of %s: empty address", service)
		}
		if seen[b.Address] {
			return fmt.Errorf("set backends of %s: backend %s given twice", service, b.Address)
		}
		seen[b.Address] = true
		cb := config.Backend{Address: b.Address, Weight: b.Weight, MaxConns: b.MaxConns, SlowStart: b.SlowStart}
		if ap, err := netip.ParseAddrPort(b.Address); err == nil {
			cb.AddrPort = ap
		}
		c.Backends = append(c.Backends, cb)
	}
	// build reuses every live piece it finds by address or by service
	// (upstreams, connection pools, limiter, budget); it is not the first
	// build, so a new backend of a checked service starts down. Nothing
	// runs differently until the commit below.
	b, err := s.build(c, false, true)
	if err != nil {
		return fmt.Errorf("set backends of %s: %w", service, err)
	}
	sv := b.sv
	// Schedulers keep their state (round-robin scores, hash rings); each
	// one notices a change of its backend set by itself.
	sv.pool.sel = old.pool.sel
	if len(sv.routes) == len(old.routes) {
		for i := range sv.routes {
			sv.routes[i].pool.sel = old.routes[i].pool.sel
		}
	}
	for _, f := range b.commit {
		f()
	}
	for _, spec := range bs {
		if u := b.upstreams[spec.Address]; u != nil {
			u.SetDrained(spec.Drained)
			u.SetLeaving(spec.Leaving)
		}
	}
	conns := map[string]*connPool{}
	for u, cp := range sv.conns {
		conns[u.Addr] = cp
	}
	for addr, cp := range s.conns[service] {
		if conns[addr] != cp {
			cp.close()
		}
	}
	s.conns[service], s.upstreams[service], s.routeUps[service] = conns, b.upstreams, b.routeUps
	for _, l := range s.listeners {
		if l.handler.Load() == old {
			l.handler.Store(sv)
		}
	}
	s.services[service] = sv
	return nil
}
