//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/l7"
)

// reconciler keeps the model and its projections (kernel maps, l7 pools,
// health-check targets) in step: every change to the model happens under
// its lock and is projected before the lock is released, so two changes
// never interleave their writes.
type reconciler struct {
	log *slog.Logger

	mu    sync.Mutex
	cfg   *config.Config
	model *model
	l4    *l4Projector
	l7    *l7Projector
	// retarget gives the health checker the model's targets.
	retarget func(*model)
	// changed wakes the housekeeper after a change.
	changed func()
}

// load makes cfg the running config. The l7 server goes first: it can fail
// (a listen address in use), and then nothing has changed.
func (r *reconciler) load(cfg *config.Config, startUp bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.model.reloaded(cfg, startUp, r.l4, time.Now())
	if err := r.l7.apply(cfg, next); err != nil {
		return err
	}
	moved := r.model.movedNames(next)
	r.cfg, r.model = cfg, next
	err := r.l4.reconcile(next)
	if len(moved) > 0 {
		// The checker keeps a target's state by key (service/backend), and
		// a key whose name now belongs to another service would keep the
		// old service's verdicts, which the model then takes
		// (healthObserved): dropped first, the targets start from the
		// health the model carried over, as a rename's do.
		r.retarget(next.without(moved))
	}
	r.retarget(next)
	r.changed()
	return err
}

// without is m less the named services, for retarget only.
func (m *model) without(names []string) *model {
	out := &model{services: map[string]*service{}, drain: m.drain}
	for _, name := range m.order {
		if !slices.Contains(names, name) {
			out.order = append(out.order, name)
			out.services[name] = m.services[name]
		}
	}
	return out
}

// project writes one service's state after a change to its backends.
func (r *reconciler) project(s *service) error {
	if s.cfg.IsL4() {
		return r.l4.sync(s)
	}
	return r.l7.sync(s)
}

// change runs fn on a service of the model and projects that service only;
// fn's error leaves the projections alone.
func (r *reconciler) change(name string, fn func(m *model, s *service) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.model.service(name)
	if err != nil {
		return err
	}
	if s.cfg.IsL4() && r.l4.maps == nil {
		// The service exists (GET lists it), so not 404: the daemon's
		// state keeps it from changing.
		return fmt.Errorf("service %q is layer 4 and the L4 data plane is off (no xdp.interfaces): its backends cannot change at runtime: %w", name, api.ErrConflict)
	}
	if err := fn(r.model, s); err != nil {
		return err
	}
	err = r.project(s)
	r.retarget(r.model)
	r.changed()
	return err
}

// healthObserved keeps the model in step with every probe, not only with
// transitions: last_check is the latest probe's verdict (README), so a
// backend that starts down and keeps failing (never a transition) shows its
// latest reason, as SPEC asks, and one that passes from the start shows
// that it does, not nothing; and a
// model that disagrees with the checker (a reload made a backend anew, down,
// while the checker kept the key's state) takes the checker's verdict,
// which no transition would otherwise bring.
func (r *reconciler) healthObserved(key string, st health.State, err error) {
	r.mu.Lock()
	s, bs := r.model.health(key)
	differs, proof := false, false
	for _, b := range bs {
		if err != nil {
			b.lastCheck = fmt.Sprintf("%d consecutive failures: %v", st.Failures, err)
		} else {
			b.lastCheck = fmt.Sprintf("%d consecutive successes", st.Successes)
		}
		differs = differs || b.up != st.Up
		b.judged = true
		if err == nil && !b.proven {
			b.proven, proof = true, true
		}
	}
	if proof && s.cfg.IsL4() && r.l4.synced != nil {
		// A first pass may make the service's VIP announceable.
		r.l4.synced(s, r.l4.failingOpen(s.cfg.Name))
	}
	r.mu.Unlock()
	if differs {
		reason := "passed its checks"
		if !st.Up {
			reason = fmt.Sprintf("%d consecutive failures: %s", st.Failures, st.LastError)
		}
		r.healthChanged(key, st.Up, reason)
	}
}

// healthChanged records a check's verdict and projects it: L4 rebuilds the
// service's table, L7 flips the upstream's health.
func (r *reconciler) healthChanged(key string, up bool, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, bs := r.model.health(key)
	if len(bs) == 0 {
		return
	}
	changed := false
	now := time.Now()
	for _, b := range bs {
		b.lastCheck = reason
		if b.up != up {
			b.up, changed = up, true
			// Healthy until this very moment, for the fail-open set.
			b.lastUp = now
		}
	}
	if !changed {
		return
	}
	if s.cfg.IsL4() {
		if err := r.l4.sync(s); err != nil {
			r.log.Error("apply health change", "service", s.cfg.Name, "backend", bs[0].name, "err", err)
		}
		return
	}
	if s.hasRemoving() {
		// Whether backends on their way out stand in changes with it.
		if err := r.l7.sync(s); err != nil {
			r.log.Error("apply health change", "service", s.cfg.Name, "backend", bs[0].name, "err", err)
		}
		return
	}
	r.l7.setHealth(s, bs[0], now)
}

// expire removes the backends whose drain before removal ended or that
// have nothing left to drain: no in-flight requests (L7), no flow-table
// entries (L4; what api.Backend.Active counts). Reading the flow table
// walks all of it, so L4 backends are looked at only when scanFlows is
// set; scanned says whether the table was read.
func (r *reconciler) expire(now time.Time, scanFlows bool) (scanned bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var (
		flows map[uint32]int
		live  = map[string]map[string]l7.BackendStatus{}
	)
	idle := func(s *service, b *backend) bool {
		// SPEC has a backend that left its DNS answer drain for the whole
		// drain_timeout: the name may bring it back meanwhile.
		if b.src == fromDNS {
			return false
		}
		name := s.cfg.Name
		if !s.cfg.IsL4() {
			st, ok := live[name]
			if !ok {
				st = r.l7.status(name)
				live[name] = st
			}
			return st[b.name].Inflight == 0
		}
		id := r.l4.backendID(name, b.addr)
		if r.l4.maps == nil || id == 0 {
			return true // not in the kernel: no flow can use it
		}
		if flows == nil {
			if !scanFlows {
				return false
			}
			scanFlows, scanned = false, true // once a pass, even when it fails
			f, err := r.l4.maps.CountFlows()
			if err != nil {
				r.log.Warn("count flows of draining backends; they stay until their drain ends", "err", err)
				return false
			}
			flows = f
		}
		return flows[id] == 0
	}
	gone := r.model.expire(now, idle)
	if len(gone) == 0 {
		return scanned, nil
	}
	var errs []error
	for name, bs := range gone {
		for _, b := range bs {
			r.log.Info("backend removed after draining", "service", name, "backend", b.name,
				"drained_for", now.Sub(b.removeFrom).Round(time.Millisecond), "timed_out", !now.Before(b.removeAt))
		}
		errs = append(errs, r.project(r.model.services[name]))
	}
	r.retarget(r.model)
	return scanned, errors.Join(errs...)
}

// nextRemoval is the end of the earliest drain before removal, if any:
// when the housekeeper must look again at the latest.
func (r *reconciler) nextRemoval() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var next time.Time
	for _, s := range r.model.services {
		for _, b := range s.backends {
			if b.removing() && (next.IsZero() || b.removeAt.Before(next)) {
				next = b.removeAt
			}
		}
	}
	return next, !next.IsZero()
}

// read runs fn with the running config and model, which it must not change.
// resyncAnnouncements tells the BGP speaker again what every L4 service
// wants announced, after something outside the model changed it (the data
// plane lost or got back an interface).
func (r *reconciler) resyncAnnouncements() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l4.synced == nil {
		return
	}
	for _, name := range r.model.order {
		if s := r.model.services[name]; s.cfg.IsL4() {
			r.l4.synced(s, r.l4.failingOpen(name))
		}
	}
}

// retargetAll hands the health checker its targets again, made anew.
func (r *reconciler) retargetAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retarget(r.model)
}

func (r *reconciler) read(fn func(cfg *config.Config, m *model)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r.cfg, r.model)
}

func (r *reconciler) config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}
