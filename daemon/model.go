//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/discovery"
	"github.com/xlbproject/xlb/maps"
)

// source says where a backend came from.
type source string

const (
	fromConfig source = "config"
	fromAPI    source = "api"
	fromDNS    source = "dns" // the service's discover name
)

// origin is the source as the kernel's backend record keeps it.
func (s source) origin() maps.Origin {
	switch s {
	case fromAPI:
		return maps.OriginAPI
	case fromDNS:
		return maps.OriginDNS
	}
	return maps.OriginConfig
}

// backend is one backend of a service with everything the daemon knows of
// it: what the file (or the API add) said, what the API changed since, and
// what the health checks found. The kernel maps and the L7 pools are
// projections of it.
type backend struct {
	// name is how the API, the health checker and the l7 server name it:
	// the IP (layer 4) or host:port as written (layer 7).
	name string
	addr netip.Addr     // layer 4
	conf config.Backend // weight, max_conns, slow start as configured or added
	src  source

	// Runtime changes; a reload drops them.
	apiWeight  *int
	drain      bool
	removeFrom time.Time // when the drain before removal began
	removeAt   time.Time // removal pending: gone once idle, at the latest then
	apiRemoved bool      // the removal is the API's (DELETE), not the file's or the name's

	up        bool
	lastUp    time.Time // when last known healthy: the fail-open set
	lastCheck string
	// judged: a check of this xlbd has a verdict on it; proven: one passed,
	// or it was up in a running service without checks. A backend up only
	// by a start's assumption (configured, recovered, first answer) is
	// neither, and BGP does not announce for it. Both carry across reloads
	// and renames, as its health does.
	judged, proven bool
}

func (b *backend) removing() bool { return !b.removeAt.IsZero() }

// startRemoval drains the backend before it goes: for d at the most.
func (b *backend) startRemoval(now time.Time, d time.Duration) {
	b.removeFrom, b.removeAt = now, now.Add(d)
}

func (b *backend) drained() bool { return b.drain || b.removing() }

// weight is the share the backend has when it is not drained.
func (b *backend) weight() int {
	if b.apiWeight != nil {
		return *b.apiWeight
	}
	return b.conf.Weight
}

// effWeight is the share it gets now: 0 while drained or being removed.
func (b *backend) effWeight() int {
	if b.drained() {
		return 0
	}
	return b.weight()
}

// persisted: nothing the API did to this backend needs the file to say it
// (a discovered one comes back from its name after a reload).
func (b *backend) persisted() bool {
	return b.src != fromAPI && b.apiWeight == nil && !b.drain && !(b.removing() && b.apiRemoved)
}

// standIns are the backends a reload dropped from the file that still
// take new requests and flows: those that are up, while no backend that
// stays is (the new ones wait for their first check). Without them a
// reload that replaces a service's backends answers 503 (layer 7), or
// fails open to backends never checked (layer 4), until a new one passes;
// SPEC: nothing is dropped by a reload. A backend the API removed, or
// that left its DNS answer, is no stand-in: it gets nothing new.
func (s *service) standIns() map[*backend]bool {
	var out map[*backend]bool
	for _, b := range s.backends {
		if b.up && b.effWeight() > 0 {
			return nil
		}
		if b.up && b.removing() && !b.apiRemoved && b.src == fromConfig && !b.drain && b.weight() > 0 {
			if out == nil {
				out = map[*backend]bool{}
			}
			out[b] = true
		}
	}
	return out
}

// share is b's weight in new selections now: its effWeight, or its weight
// while it stands in (standIns).
func (b *backend) share(stand map[*backend]bool) int {
	if stand[b] {
		return b.weight()
	}
	return b.effWeight()
}

// service is one service of the running config and its backends: its own
// pool (config order, then API additions, then those draining before they
// go) and, for layer 7, the backends its routes name as their own. Those
// are checked but not changed at runtime, and the l7 server gives them
// live state apart from the pool's, so that an address in both keeps
// serving its routes whatever the API does to the pool's. They are
// reported where the pool does not have their address.
type service struct {
	cfg           config.Service
	backends      []*backend
	routeBackends []*backend
	// firstAnswerUp: xlbd started and the service's name has not answered
	// yet. That answer's backends start up, as configured ones do at start,
	// so that a service that only discovers does not refuse traffic until
	// their first checks; later ones wait for theirs.
	firstAnswerUp bool
}

func (s *service) checked() bool {
	hc := s.cfg.HealthCheck
	return hc != nil && hc.Type != "" && hc.Type != "none"
}

// find returns the backend of the service's own pool the API names.
func (s *service) find(name string) *backend {
	k := canonical(name)
	for _, b := range s.backends {
		if canonical(b.name) == k {
			return b
		}
	}
	return nil
}

// findRouteBackend returns the backend the service's routes name as
// their own.
func (s *service) findRouteBackend(name string) *backend {
	k := canonical(name)
	for _, b := range s.routeBackends {
		if canonical(b.name) == k {
			return b
		}
	}
	return nil
}

// canonical compares addresses as config.Service.Backend does: IPs in
// canonical form, names without case.
func canonical(a string) string {
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(a)
}

// model holds every service's backends: the one place runtime changes,
// health results and reloads meet.
type model struct {
	order    []string
	services map[string]*service
	drain    time.Duration // how long a removed backend drains
}

func newModel() *model { return &model{services: map[string]*service{}} }

func (m *model) service(name string) (*service, error) {
	s := m.services[name]
	if s == nil {
		return nil, fmt.Errorf("service %q: %w", name, api.ErrNotFound)
	}
	return s, nil
}

// prior is what a previous daemon left in the pinned maps.
type prior interface {
	// recoveredUp is what its checks found for an L4 backend, so a restart
	// keeps it.
	recoveredUp(c *config.Service, addr netip.Addr) (up, known bool)
	// recoveredFailOpen: it served the backend only because its service
	// failed open (its checks said down).
	recoveredFailOpen(c *config.Service, addr netip.Addr) bool
	// recoveredBackends are the L4 backends it had for a service, among
	// them those the API had added, which established flows still use.
	recoveredBackends(c *config.Service) []netip.Addr
	// recoveredSource is where it had such a backend from.
	recoveredSource(c *config.Service, addr netip.Addr) source
}

// reloaded returns the model for cfg, leaving m as it is (the caller commits
// it only once the projections accept it). The file decides: API additions,
// weights and drains are dropped; backends the file no longer lists (API
// additions among them) drain and go; health carries over. startUp marks
// new configured backends up until their checks say otherwise, so a start
// does not refuse traffic until the first checks pass; and L4 backends a
// previous daemon had that the file does not list drain and go, as on a
// reload.
func (m *model) reloaded(cfg *config.Config, startUp bool, pre prior, now time.Time) *model {
	next := &model{services: map[string]*service{}, drain: cfg.L7.DrainTimeout}
	if next.drain <= 0 {
		next.drain = config.DefaultDrainTimeout
	}
	for i := range cfg.Services {
		c := &cfg.Services[i]
		prev := m.previous(c)
		s := &service{cfg: *c}
		s.firstAnswerUp = c.Discover != nil && (startUp || prev != nil && prev.firstAnswerUp)
		seen := map[string]bool{} // in the pool
		fresh := func(cb config.Backend, old *backend) *backend {
			b := &backend{name: cb.Address, conf: cb, src: fromConfig}
			if c.IsL4() {
				b.addr, b.name = cb.Addr, cb.Addr.String()
			}
			switch {
			case old != nil:
				b.up, b.lastUp, b.lastCheck = old.up, old.lastUp, old.lastCheck
				// A backend that served unchecked counts as proven when
				// checks start: its service is served by it already, and
				// withdrawing the VIP on every node until a first probe
				// would cut what the data plane keeps serving.
				b.judged, b.proven = old.judged, old.proven || (old.up && !prev.checked())
			default:
				b.up = startUp || !s.checked()
				if up, ok := pre.recoveredUp(c, b.addr); ok && startUp && s.checked() && c.IsL4() {
					b.up = up
				}
				// One the previous xlbd failed open to went down with the
				// others until then: the fail-open goes on, instead of
				// flows cut while the checks mark it down again.
				if b.up || (startUp && c.IsL4() && pre.recoveredFailOpen(c, b.addr)) {
					b.lastUp = now
				}
			}
			return b
		}
		// Health carries over from the same list, else from the other
		// (an address that moved between the pool and a route).
		lookup := func(name string, route bool) *backend {
			if prev == nil {
				return nil
			}
			same, other := prev.find(name), prev.findRouteBackend(name)
			if route {
				same, other = other, same
			}
			if same != nil {
				return same
			}
			return other
		}
		for _, cb := range c.Backends {
			b := fresh(cb, lookup(cb.Address, false))
			s.backends = append(s.backends, b)
			seen[canonical(b.name)] = true
		}
		routed := map[string]bool{}
		for _, r := range c.Routes {
			for _, cb := range r.Backends {
				if k := canonical(cb.Address); !routed[k] {
					routed[k] = true
					s.routeBackends = append(s.routeBackends, fresh(cb, lookup(cb.Address, true)))
				}
			}
		}
		if startUp && c.IsL4() {
			for _, a := range pre.recoveredBackends(c) {
				if seen[canonical(a.String())] {
					continue
				}
				up, _ := pre.recoveredUp(c, a)
				b := &backend{name: a.String(), addr: a, src: pre.recoveredSource(c, a), conf: config.Backend{Address: a.String(), Addr: a}, up: up}
				if b.src == fromDNS && c.Discover != nil {
					// The name's last good set, until it answers: a restart
					// while DNS does not answer serves on with it (SPEC: a
					// failed lookup keeps the last good set), and the first
					// answer drains what it no longer lists.
					b.conf.Weight = c.Discover.Weight
				} else {
					b.startRemoval(now, next.drain)
				}
				s.backends = append(s.backends, b)
			}
		}
		if prev != nil {
			for _, old := range prev.backends {
				if seen[canonical(old.name)] {
					continue
				}
				b := *old
				b.apiWeight, b.drain = nil, false
				// Discovered backends stay while the service follows a
				// name: its next answer decides. Others drain and go.
				if !b.removing() && !(b.src == fromDNS && c.Discover != nil) {
					b.startRemoval(now, next.drain)
				}
				s.backends = append(s.backends, &b)
			}
		}
		next.order = append(next.order, c.Name)
		next.services[c.Name] = s
	}
	return next
}

// previous returns the running service that c continues, whose backends'
// health and runtime state carry over. A layer 4 service is its VIP, port
// and protocol, whatever its name, as its kernel state is
// (l4Projector.reconcile): a rename must not cut established flows, also
// when the old name goes to another service in the same reload or two
// services swap names, and a name that moved to another VIP, port or
// protocol takes nothing of the service it named. A layer 7 service is its
// name.
func (m *model) previous(c *config.Service) *service {
	if c.IsL4() {
		for _, name := range m.order {
			if s := m.services[name]; s.cfg.IsL4() && serviceKey(&s.cfg) == serviceKey(c) {
				return s
			}
		}
		return nil
	}
	if s := m.services[c.Name]; s != nil && sameIdentity(&s.cfg, c) {
		return s
	}
	return nil
}

// movedNames are the names next gives to another service than the one
// they named in m: an L4 name given to another service in a rename, a swap
// of names, or a name moved to another VIP, port or protocol. What is kept
// by name alone (the health checker's state) belongs to the other service.
func (m *model) movedNames(next *model) []string {
	var out []string
	for _, name := range next.order {
		if old := m.services[name]; old != nil && m.previous(&next.services[name].cfg) != old {
			out = append(out, name)
		}
	}
	return out
}

// sameIdentity: a service whose layer, or (layer 4) VIP, port or protocol,
// changed is a different service.
func sameIdentity(a, b *config.Service) bool {
	if a.Layer != b.Layer {
		return false
	}
	if a.IsL4() {
		return serviceKey(a) == serviceKey(b)
	}
	return true
}

// add puts a backend into a service's pool. One being removed is revived
// instead, keeping its weight unless the add gives one.
func (m *model) add(s *service, b *backend, weight *int) (revived bool, err error) {
	if old := s.find(b.name); old != nil {
		if !old.removing() {
			return false, fmt.Errorf("service %s already has backend %s: %w", s.cfg.Name, old.name, api.ErrConflict)
		}
		old.removeAt, old.apiRemoved = time.Time{}, false
		if s.cfg.Backend(old.conf.Address) == nil {
			// Draining because a reload dropped it from the file: it
			// stays now only because the API asked.
			old.src = fromAPI
		}
		if weight != nil {
			setWeight(old, *weight)
		}
		return true, nil
	}
	s.backends = append(s.backends, b)
	return false, nil
}

// discovered makes the service's source-dns backends the set a lookup of
// its name gave, and reports whether anything changed. New addresses join
// down when the service has checks (up after the first passing one);
// addresses that left the answer drain, then go; one the file or the API
// already has stays theirs.
func (m *model) discovered(s *service, set []discovery.Backend, now time.Time) (changed bool, err error) {
	in := map[string]bool{}
	var errs []error
	for _, db := range set {
		cb, err := parseBackend(s, db.Address)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cb.Weight = db.Weight
		name := cb.Address
		if s.cfg.IsL4() {
			name = cb.Addr.String()
		}
		in[canonical(name)] = true
		if b := s.find(name); b != nil {
			if b.src != fromDNS {
				if b.removing() && s.cfg.Backend(b.conf.Address) == nil && (b.src == fromConfig || !b.apiRemoved) {
					// Left by a reload from the file, or recovered from the
					// pinned maps at a restart (its flows still go to it),
					// but the name has it: it is the name's now, with its
					// health. One the API removed stays removed.
					b.src, b.conf, b.removeAt, b.apiRemoved, changed = fromDNS, cb, time.Time{}, false, true
				}
				continue
			}
			if b.removing() || b.conf.Weight != cb.Weight {
				b.removeAt, b.apiRemoved, b.conf.Weight, changed = time.Time{}, false, cb.Weight, true
			}
			continue
		}
		b := &backend{name: name, addr: cb.Addr, conf: cb, src: fromDNS, up: !s.checked() || s.firstAnswerUp}
		if b.up {
			b.lastUp = now
		}
		s.backends = append(s.backends, b)
		changed = true
	}
	for _, b := range s.backends {
		if b.src == fromDNS && !b.removing() && !in[canonical(b.name)] {
			b.startRemoval(now, m.drain)
			changed = true
		}
	}
	s.firstAnswerUp = false
	return changed, errors.Join(errs...)
}

// setWeight records an API weight; the configured weight given back
// through the API is no override.
func setWeight(b *backend, w int) {
	b.apiWeight = &w
	if b.src == fromConfig && w == b.conf.Weight {
		b.apiWeight = nil
	}
}

// remove starts a backend's drain before removal; its API weight and drain
// stay, should an add revive it.
func (m *model) remove(b *backend, now time.Time) {
	if !b.removing() {
		b.startRemoval(now, m.drain)
		b.apiRemoved = true
	}
}

// removalGrace is how long a backend drains before removal even when it
// looks idle: a flow or request that picked it just before its drain began
// (a packet between the table swap and its flow-table insert, a request
// between its selection and its acquire) shows in the counts by then.
const removalGrace = time.Second

// expire removes the backends whose removal is due and returns the
// services that lost one, with what they lost. A backend being removed
// goes once idle reports nothing of it in use (after removalGrace), and at
// the end of its drain whatever it still has; idle may be nil.
func (m *model) expire(now time.Time, idle func(*service, *backend) bool) map[string][]*backend {
	gone := map[string][]*backend{}
	for _, name := range m.order {
		s := m.services[name]
		stand := s.standIns()
		kept := s.backends[:0]
		for _, b := range s.backends {
			if stand[b] {
				// A stand-in serves until a new backend is up, however
				// long that takes (a removal on time would leave nothing
				// to serve, and BGP would withdraw the VIP on every node);
				// its drain before removal begins then.
				b.startRemoval(now, m.drain)
				kept = append(kept, b)
				continue
			}
			due := b.removing() && (!now.Before(b.removeAt) ||
				!now.Before(b.removeFrom.Add(removalGrace)) && idle != nil && idle(s, b))
			if due {
				gone[name] = append(gone[name], b)
				continue
			}
			kept = append(kept, b)
		}
		clear(s.backends[len(kept):])
		s.backends = kept
	}
	return gone
}

// health finds the backends a health-check key ("service/backend") names:
// one, or two when the pool and a route both have the address.
func (m *model) health(key string) (*service, []*backend) {
	name, addr, ok := strings.Cut(key, "/")
	if !ok {
		return nil, nil
	}
	s := m.services[name]
	if s == nil {
		return nil, nil
	}
	var found []*backend
	for _, list := range [][]*backend{s.backends, s.routeBackends} {
		for _, b := range list {
			if b.name == addr {
				found = append(found, b)
			}
		}
	}
	return s, found
}

// checkedBackends are the backends of a service to probe (checkTargets
// leaves out those draining before removal) and whose check series to
// keep: its own, then its routes' whose address the pool has not, or has
// only on its way out. An address in both is one health-check key, whose
// results reach both.
func (s *service) checkedBackends() []*backend {
	out := append([]*backend(nil), s.backends...)
	for _, b := range s.routeBackends {
		if own := s.find(b.name); own == nil || own.removing() {
			out = append(out, b)
		}
	}
	return out
}

// reported are the backends of a service the API lists: its own, then its
// routes' whose address the pool does not have (where it does, the API
// reports and changes the pool's).
func (s *service) reported() []*backend {
	out := append([]*backend(nil), s.backends...)
	for _, b := range s.routeBackends {
		if s.find(b.name) == nil {
			out = append(out, b)
		}
	}
	return out
}

func checkKey(service, backend string) string { return service + "/" + backend }

func (s *service) hasRemoving() bool {
	for _, b := range s.backends {
		if b.removing() {
			return true
		}
	}
	return false
}
