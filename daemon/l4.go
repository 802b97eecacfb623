//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/maps"
)

// l4Service is one L4 service's live state: its config plus what the API and
// the health checks changed.
type l4Service struct {
	cfg      config.Service
	key      maps.ServiceKey
	id       uint32
	backends []*l4Backend
	failOpen bool
	// lastHealthy is the set xlb fails open to when every backend is down.
	lastHealthy map[netip.Addr]bool
	table       []uint32
	ringSize    uint32
}

type l4Backend struct {
	addr      netip.Addr
	id        uint32
	cfgWeight int
	weight    *int // API override
	drain     bool // API drain
	fromAPI   bool
	removeAt  time.Time // removal pending: drained until then, then deleted
	up        bool
	lastUp    time.Time // when the backend was last known healthy
	lastCheck string
}

// effWeight is the weight the Maglev table gets when the backend is healthy.
func (b *l4Backend) effWeight() int {
	if b.drain || !b.removeAt.IsZero() {
		return 0
	}
	if b.weight != nil {
		return *b.weight
	}
	return b.cfgWeight
}

func (s *l4Service) backend(addr netip.Addr) *l4Backend {
	for _, b := range s.backends {
		if b.addr == addr {
			return b
		}
	}
	return nil
}

func serviceKey(c config.Service) maps.ServiceKey {
	proto := maps.ProtoTCP
	if c.Protocol == "udp" {
		proto = maps.ProtoUDP
	}
	return maps.ServiceKey{VIP: c.VIP, Port: uint16(c.Port), Proto: proto}
}

func (s *l4Service) record() maps.Service {
	r := maps.Service{
		ServiceKey: s.key,
		ID:         s.id,
		RingSize:   s.ringSize,
		IPHash:     s.cfg.Scheduler == "ip_hash",
		DSR:        s.cfg.Forwarding == "dsr",
	}
	if rl := s.cfg.RateLimit; rl != nil {
		r.Rate, r.Per, r.Burst = rl.Rate, rl.Per, rl.Burst
	}
	return r
}

// sync writes one service's state to the kernel: backend records first, then
// its table (swapped whole), then the service record, so a new service becomes
// visible only once it can be served. It reports what changed for the log.
func (d *Daemon) syncL4(s *l4Service) error {
	defer d.bgpSyncLocked(s)
	var (
		mb      []maps.MaglevBackend
		weighed int
	)
	for _, b := range s.backends {
		if b.effWeight() > 0 {
			weighed++
			if b.up {
				mb = append(mb, maps.MaglevBackend{Key: b.addr.String(), ID: b.id, Weight: uint32(b.effWeight())})
			}
		}
	}
	wasFailOpen := s.failOpen
	s.failOpen = false
	if len(mb) == 0 && weighed > 0 {
		// Every backend is down. Dropping the service would turn a health
		// checker that lost its own path to the backends into an outage, so
		// xlb fails open to the backends that were healthy recently: those
		// that went down together, not one that has been dead for long (and
		// not just the one that happened to fail last).
		s.failOpen = true
		if !wasFailOpen {
			s.lastHealthy = recentlyHealthy(s, time.Now().Add(-failOpenWindow(s.cfg)))
		}
		for _, b := range s.backends {
			if s.lastHealthy[b.addr] && b.effWeight() > 0 {
				mb = append(mb, maps.MaglevBackend{Key: b.addr.String(), ID: b.id, Weight: uint32(b.effWeight())})
			}
		}
	}
	if s.failOpen != wasFailOpen {
		if s.failOpen {
			d.log.Warn("every backend is down: failing open to the last healthy set", "service", s.cfg.Name, "backends", len(mb))
		} else {
			d.log.Info("service has healthy backends again", "service", s.cfg.Name)
		}
	}

	var errs []error
	for _, b := range s.backends {
		up := b.up || (s.failOpen && s.lastHealthy[b.addr])
		if err := d.maps.PutBackend(maps.Backend{ID: b.id, ServiceID: s.id, Addr: b.addr, Up: up}); err != nil {
			errs = append(errs, err)
		}
	}
	size := maps.RingSizeFor(len(s.backends))
	if len(mb) == 0 {
		if s.table != nil || s.ringSize != size {
			if err := d.maps.DeleteRing(s.id); err != nil {
				errs = append(errs, err)
			}
		}
		s.table = nil
	} else {
		table, err := maps.BuildMaglev(mb, size)
		if err != nil {
			return fmt.Errorf("service %s: %w", s.cfg.Name, err)
		}
		if !slices.Equal(table, s.table) {
			if err := d.maps.PutRing(s.id, table); err != nil {
				errs = append(errs, err)
			} else {
				s.table = table
			}
		}
	}
	s.ringSize = size
	if err := d.maps.PutService(s.record()); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sync service %s: %w", s.cfg.Name, err)
	}
	return nil
}

// removeL4 takes a service out of the kernel: the record first, so packets
// stop matching, then its table and backends.
func (d *Daemon) removeL4(s *l4Service) error {
	d.bgpForgetLocked(s)
	errs := []error{d.maps.DeleteService(s.key), d.maps.DeleteRing(s.id)}
	for _, b := range s.backends {
		errs = append(errs, d.maps.DeleteBackend(b.id))
		d.ids.releaseBackend(s.id, b.addr)
	}
	d.ids.releaseService(s.key.String())
	return errors.Join(errs...)
}

// newL4 builds the state of a configured service, keeping what the previous
// state knew (health, ids, pending removals) for backends that stay.
func (d *Daemon) newL4(c config.Service, prev *l4Service, startUp bool) (*l4Service, error) {
	key := serviceKey(c)
	id, err := d.ids.service(key.String())
	if err != nil {
		return nil, err
	}
	s := &l4Service{cfg: c, key: key, id: id}
	if prev != nil && prev.key == key {
		s.lastHealthy, s.table, s.ringSize, s.failOpen = prev.lastHealthy, prev.table, prev.ringSize, prev.failOpen
	}

	seen := map[netip.Addr]bool{}
	for _, cb := range c.Backends {
		bid, err := d.ids.backend(id, cb.Addr)
		if err != nil {
			return nil, err
		}
		b := &l4Backend{addr: cb.Addr, id: bid, cfgWeight: cb.Weight, up: startUp || !hasChecks(c)}
		if up, ok := d.ids.wasUp[backendRef{id, cb.Addr}]; ok && startUp && hasChecks(c) {
			b.up = up // a restart keeps what the previous daemon's checks found
		}
		if b.up {
			b.lastUp = time.Now()
		}
		if prev != nil {
			if old := prev.backend(cb.Addr); old != nil {
				b.up, b.lastCheck, b.lastUp = old.up, old.lastCheck, old.lastUp
			}
		}
		s.backends = append(s.backends, b)
		seen[cb.Addr] = true
	}
	if prev != nil {
		// Backends gone from the config drain before they go: established
		// flows keep them until removeAt.
		for _, old := range prev.backends {
			if seen[old.addr] {
				continue
			}
			if old.removeAt.IsZero() {
				old.removeAt = time.Now().Add(d.drainTimeout())
			}
			s.backends = append(s.backends, old)
		}
	}
	return s, nil
}

// failOpenWindow is how recently a backend must have been healthy to be
// failed open to: ten detection periods.
func failOpenWindow(c config.Service) time.Duration {
	if !hasChecks(c) {
		return time.Hour
	}
	return 10 * c.HealthCheck.Interval * time.Duration(c.HealthCheck.UnhealthyThreshold)
}

// recentlyHealthy returns the weighted backends healthy since `since`, or
// every weighted backend when none was.
func recentlyHealthy(s *l4Service, since time.Time) map[netip.Addr]bool {
	set := map[netip.Addr]bool{}
	for _, b := range s.backends {
		if b.effWeight() > 0 && b.lastUp.After(since) {
			set[b.addr] = true
		}
	}
	if len(set) == 0 {
		for _, b := range s.backends {
			if b.effWeight() > 0 {
				set[b.addr] = true
			}
		}
	}
	return set
}

func hasChecks(c config.Service) bool {
	return c.HealthCheck != nil && c.HealthCheck.Type != "" && c.HealthCheck.Type != "none"
}
