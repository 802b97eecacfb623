//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/maps"
)

// l4Projector writes the model's layer 4 services into the kernel maps:
// backend records, Maglev tables and service records. It owns the kernel
// ids and what it last wrote, so a sync writes only what changed.
type l4Projector struct {
	log      *slog.Logger
	maps     *maps.Maps // nil: L4 data plane off
	ids      *ids
	services map[string]*l4State
	// synced and removed, when set, hear of every sync and removal (the
	// BGP announcer).
	synced  func(s *service, failOpen bool)
	removed func(service string)
	// batch, when set, runs a whole reconcile's synced and removed calls
	// as one change (bgp.Speaker.Batch).
	batch func(func())
	// listedOff are the services told to synced while the data plane is
	// off (maps nil), so that a reload that drops one tells removed.
	listedOff map[string]bool
}

// listOff tells synced of every L4 service while the data plane is off:
// the speaker lists them, with why none is announced.
func (p *l4Projector) listOff(m *model) {
	if p.synced == nil {
		return
	}
	seen := map[string]bool{}
	for _, name := range m.order {
		if s := m.services[name]; s.cfg.IsL4() {
			p.synced(s, false)
			seen[name] = true
		}
	}
	for name := range p.listedOff {
		if !seen[name] && p.removed != nil {
			p.removed(name)
		}
	}
	p.listedOff = seen
}

// l4State is what the kernel holds for one service.
type l4State struct {
	key      maps.ServiceKey
	id       uint32
	backends map[netip.Addr]uint32 // backend records written, by address
	// allDown: every weighted backend is down. lastHealthy, chosen when it
	// began, is the set xlb fails open to; failOpen says the service still
	// has one of them to serve.
	allDown     bool
	failOpen    bool
	lastHealthy map[netip.Addr]bool
	table       []uint32
	ringSize    uint32
}

func newL4Projector(log *slog.Logger, m *maps.Maps, x *ids) *l4Projector {
	return &l4Projector{log: log, maps: m, ids: x, services: map[string]*l4State{}}
}

func serviceKey(c *config.Service) maps.ServiceKey {
	proto := maps.ProtoTCP
	if c.Protocol == "udp" {
		proto = maps.ProtoUDP
	}
	return maps.ServiceKey{VIP: c.VIP, Port: uint16(c.Port), Proto: proto}
}

// recoveredUp is the health a previous daemon left in the backends map.
func (p *l4Projector) recoveredUp(c *config.Service, addr netip.Addr) (bool, bool) {
	id, ok := p.ids.services[serviceKey(c).String()]
	if !ok {
		return false, false
	}
	up, ok := p.ids.wasUp[backendRef{id, addr}]
	return up, ok
}

// recoveredFailOpen says whether a previous daemon served the backend only
// because its service failed open.
func (p *l4Projector) recoveredFailOpen(c *config.Service, addr netip.Addr) bool {
	id, ok := p.ids.services[serviceKey(c).String()]
	return ok && p.ids.failedOpen[backendRef{id, addr}]
}

// recoveredSource is where a previous daemon had a backend from, as its
// record in the backends map says (a record without one, from an xlbd
// that wrote none, is taken for the file's).
func (p *l4Projector) recoveredSource(c *config.Service, addr netip.Addr) source {
	id, ok := p.ids.services[serviceKey(c).String()]
	if !ok {
		return fromConfig
	}
	switch p.ids.origins[backendRef{id, addr}] {
	case maps.OriginAPI:
		return fromAPI
	case maps.OriginDNS:
		return fromDNS
	}
	return fromConfig
}

// recoveredBackends lists the backends the pinned maps hold for a service.
func (p *l4Projector) recoveredBackends(c *config.Service) []netip.Addr {
	id, ok := p.ids.services[serviceKey(c).String()]
	if !ok {
		return nil
	}
	var out []netip.Addr
	for ref := range p.ids.wasUp {
		if ref.svc == id {
			out = append(out, ref.addr)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// reconcile makes the kernel hold exactly m's L4 services: those gone or
// changed into another VIP/port/protocol are removed first, then every
// service is synced.
func (p *l4Projector) reconcile(m *model) (err error) {
	if p.batch == nil {
		return p.reconcileEach(m)
	}
	// Told of each service as it is written, the speaker would withdraw a
	// VIP that one service leaves before the next takes it.
	p.batch(func() { err = p.reconcileEach(m) })
	return err
}

// reconcileEach is reconcile, one service after the other.
func (p *l4Projector) reconcileEach(m *model) error {
	if p.maps == nil {
		p.listOff(m)
		return nil
	}
	var errs []error
	// A service is its VIP, port and protocol, whatever its name (as in
	// model.previous): a rename keeps its kernel state, id and backend
	// records, also when its old name goes to another service in the same
	// reload or two services swap names. Removing and adding it would
	// change its backends' generations, and every established flow would
	// re-select.
	byKey := make(map[maps.ServiceKey]string, len(p.services))
	for name, st := range p.services {
		byKey[st.key] = name
	}
	was := p.services
	p.services = make(map[string]*l4State, len(was))
	var moved, stayed []string
	for _, name := range m.order {
		s := m.services[name]
		if !s.cfg.IsL4() {
			continue
		}
		old, ok := byKey[serviceKey(&s.cfg)]
		switch {
		case !ok:
			stayed = append(stayed, name) // new: sync adds it
			continue
		case old != name:
			p.log.Info("service renamed; its flows and kernel state stay", "service", name, "was", old)
			moved = append(moved, name)
		default:
			stayed = append(stayed, name)
		}
		p.services[name] = was[old]
		delete(was, old)
	}
	for name, st := range was {
		if s := m.services[name]; s == nil || !s.cfg.IsL4() {
			p.log.Info("service removed", "service", name)
		}
		errs = append(errs, p.remove(st))
	}
	// Renamed ones first: a VIP whose service's name went to another
	// service is then wanted under its new name before that other service
	// says what it wants under the old one, so BGP does not withdraw it
	// for a moment.
	for _, name := range append(moved, stayed...) {
		errs = append(errs, p.sync(m.services[name]))
	}
	// Forgetting a name only now, once its VIP's new names want it:
	// forgetting first could withdraw it for a moment. A name still in
	// use has just said what it wants (sync).
	if p.removed != nil {
		for _, name := range byKey {
			if s := m.services[name]; s == nil || !s.cfg.IsL4() {
				p.removed(name)
			}
		}
	}
	return errors.Join(errs...)
}

// sync writes one service's state to the kernel: backend records first, then
// its table (swapped whole), then the service record, so a new service becomes
// visible only once it can be served. Backends the model no longer has are
// deleted last, once the table no longer names them.
func (p *l4Projector) sync(s *service) error {
	if p.maps == nil {
		return nil
	}
	c := &s.cfg
	st := p.services[c.Name]
	if st == nil {
		key := serviceKey(c)
		id, err := p.ids.service(key.String())
		if err != nil {
			return err
		}
		st = &l4State{key: key, id: id, backends: map[netip.Addr]uint32{}}
		p.services[c.Name] = st
	}
	var errs []error
	ids := map[netip.Addr]uint32{}
	for _, b := range s.backends {
		id, err := p.ids.backend(st.id, b.addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids[b.addr] = id
	}

	var (
		mb      []maps.MaglevBackend
		weighed int
	)
	stand := s.standIns()
	for _, b := range s.backends {
		if w := b.share(stand); w > 0 && ids[b.addr] != 0 {
			weighed++
			if b.up {
				mb = append(mb, maps.MaglevBackend{Key: b.name, ID: ids[b.addr], Weight: uint32(w)})
			}
		}
	}
	wasAllDown, wasFailOpen := st.allDown, st.failOpen
	st.allDown, st.failOpen = false, false
	if len(mb) == 0 && weighed > 0 {
		// Every backend is down. Dropping the service would turn a health
		// checker that lost its own path to the backends into an outage, so
		// xlb fails open to the backends that were healthy recently: those
		// that went down together, not one that has been dead for long (and
		// not just the one that happened to fail last).
		st.allDown = true
		if !wasAllDown {
			st.lastHealthy = recentlyHealthy(s, time.Now().Add(-failOpenWindow(s)))
		}
		// The set may hold none of the service's backends (none ever passed
		// a check: a new service, or backends that all came by the API, a
		// reload or DNS; or those that had are gone): then nothing is
		// served, and status, the API and the gauge must not say the
		// service fails open. A drained member still serves its flows.
		for _, b := range s.backends {
			if !st.lastHealthy[b.addr] || ids[b.addr] == 0 {
				continue
			}
			st.failOpen = true
			if b.effWeight() > 0 {
				mb = append(mb, maps.MaglevBackend{Key: b.name, ID: ids[b.addr], Weight: uint32(b.effWeight())})
			}
		}
	}
	switch {
	case st.allDown == wasAllDown && st.failOpen == wasFailOpen:
	case st.failOpen:
		p.log.Warn("every backend is down: failing open to the last healthy set", "service", c.Name, "backends", len(mb))
	case st.allDown:
		p.log.Warn("every backend is down and none of them was healthy before: nothing to fail open to, the service drops its traffic", "service", c.Name)
	default:
		p.log.Info("service has healthy backends again", "service", c.Name)
	}

	for _, b := range s.backends {
		if ids[b.addr] == 0 {
			continue
		}
		failOpen := !b.up && st.failOpen && st.lastHealthy[b.addr]
		if err := p.maps.PutBackend(maps.Backend{ID: ids[b.addr], ServiceID: st.id, Addr: b.addr, Up: b.up || failOpen, FailOpen: failOpen, Origin: b.src.origin()}); err != nil {
			errs = append(errs, err)
		}
	}
	size := maps.RingSizeFor(len(s.backends))
	if len(mb) == 0 {
		if st.table != nil || st.ringSize != size {
			if err := p.maps.DeleteRing(st.id); err != nil {
				errs = append(errs, err)
			}
		}
		st.table = nil
	} else {
		table, err := maps.BuildMaglev(mb, size)
		if err != nil {
			return fmt.Errorf("service %s: %w", c.Name, err)
		}
		if !slices.Equal(table, st.table) {
			if err := p.maps.PutRing(st.id, table); err != nil {
				errs = append(errs, err)
			} else {
				st.table = table
			}
		}
	}
	st.ringSize = size
	if err := p.maps.PutService(p.record(c, st)); err != nil {
		errs = append(errs, err)
	}
	for addr, id := range st.backends {
		if _, ok := ids[addr]; ok {
			continue
		}
		if err := p.maps.DeleteBackend(id); err != nil {
			errs = append(errs, err)
		}
		p.ids.releaseBackend(st.id, addr)
	}
	st.backends = ids
	if p.synced != nil {
		p.synced(s, st.failOpen)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sync service %s: %w", c.Name, err)
	}
	return nil
}

func (p *l4Projector) record(c *config.Service, st *l4State) maps.Service {
	r := maps.Service{
		ServiceKey: st.key,
		ID:         st.id,
		RingSize:   st.ringSize,
		IPHash:     c.Scheduler == "ip_hash",
		DSR:        c.Forwarding == "dsr",
	}
	if rl := c.RateLimit; rl != nil {
		r.Rate, r.Per, r.Burst = rl.Rate, rl.Per, rl.Burst
	}
	return r
}

// remove takes a service out of the kernel: the record first, so packets
// stop matching, then its table and backends.
func (p *l4Projector) remove(st *l4State) error {
	errs := []error{p.maps.DeleteService(st.key), p.maps.DeleteRing(st.id)}
	for addr, id := range st.backends {
		errs = append(errs, p.maps.DeleteBackend(id))
		p.ids.releaseBackend(st.id, addr)
	}
	p.ids.releaseService(st.key.String())
	return errors.Join(errs...)
}

// backendID is the kernel id of a backend, 0 when it has none.
func (p *l4Projector) backendID(service string, addr netip.Addr) uint32 {
	if st := p.services[service]; st != nil {
		return st.backends[addr]
	}
	return 0
}

func (p *l4Projector) serviceID(service string) (uint32, bool) {
	if st := p.services[service]; st != nil {
		return st.id, true
	}
	return 0, false
}

func (p *l4Projector) failingOpen(service string) bool {
	st := p.services[service]
	return st != nil && st.failOpen
}

// failOpenWindow is how recently a backend must have been healthy to be
// failed open to: ten detection periods.
func failOpenWindow(s *service) time.Duration {
	if !s.checked() {
		return time.Hour
	}
	return 10 * s.cfg.HealthCheck.Interval * time.Duration(s.cfg.HealthCheck.UnhealthyThreshold)
}

// recentlyHealthy returns the weighted backends healthy since `since`, or
// every weighted backend that was ever healthy when none was. One that
// never passed a check (discovered, added by the API or by a reload, and
// waiting for its first) is never in it: SPEC has it take traffic only
// after that first pass.
func recentlyHealthy(s *service, since time.Time) map[netip.Addr]bool {
	set := map[netip.Addr]bool{}
	for _, b := range s.backends {
		if b.effWeight() > 0 && b.lastUp.After(since) {
			set[b.addr] = true
		}
	}
	if len(set) == 0 {
		for _, b := range s.backends {
			if b.effWeight() > 0 && !b.lastUp.IsZero() {
				set[b.addr] = true
			}
		}
	}
	return set
}
