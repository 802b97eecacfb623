// Package health runs active health checks for L4 and L7 backends.
//
// The semantics follow AWS target groups: a backend is marked down after
// UnhealthyThreshold consecutive failed probes and up again after
// HealthyThreshold consecutive successful ones; the thresholds are the
// damping that keeps a flapping backend from thrashing the selection.
//
// A Checker owns a set of targets (replaced whole by Set), a scheduler that
// gives each target a due time, and a fixed set of workers that run the
// probes, so the number of concurrent probes is bounded whatever the number
// of targets.
package health

import (
	"container/heap"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Check types.
const (
	TypeHTTP = "http" // GET http://Addr+Path (https with Spec.TLS), success when the status is in [ExpectMin, ExpectMax]
	TypeTCP  = "tcp"  // success when a TCP connection to Addr opens
	TypeGRPC = "grpc" // grpc.health.v1.Health/Check over HTTP/2 (over TLS with Spec.TLS, else cleartext), success when SERVING
	TypeNone = "none" // never probed, always up
)

// Defaults for zero Spec fields. The config package fills its own defaults;
// these only keep a zero value from meaning "probe in a busy loop".
const (
	DefaultInterval           = 5 * time.Second
	DefaultTimeout            = 2 * time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
	DefaultExpectMin          = 200
	DefaultExpectMax          = 399
	DefaultWorkers            = 16
)

// Spec says how to probe a target.
type Spec struct {
	// Type is TypeHTTP, TypeTCP, TypeGRPC or TypeNone. The empty string
	// means TypeNone.
	Type string
	// Path is the HTTP request path (with an optional query); default "/".
	Path string
	// Host is the HTTP Host header; default Addr.
	Host string
	// Service is what a grpc check asks grpc.health.v1 about; empty: the
	// server's overall health.
	Service string
	// ExpectMin and ExpectMax bound the accepted HTTP status, inclusive.
	// Both zero: 200-399. ExpectMax zero alone: exactly ExpectMin.
	ExpectMin, ExpectMax int
	// Interval between probes (±10% jitter); default DefaultInterval.
	Interval time.Duration
	// Timeout of one probe, connection included; default DefaultTimeout.
	Timeout time.Duration
	// HealthyThreshold is the number of consecutive successes that mark a
	// down target up; UnhealthyThreshold the number of consecutive failures
	// that mark an up target down. Values below 1 take the defaults.
	HealthyThreshold, UnhealthyThreshold int
	// TLS, if set, makes an http check speak HTTPS and a grpc check HTTP/2
	// over TLS (ALPN h2) with this client configuration (a backend_protocol
	// https or h2 backend's); its ServerName defaults to Addr's host. A tcp
	// check only connects either way. Only whether TLS is set is part of a
	// target's identity: Set takes the latest configuration, as it does
	// Dial, since a reload rebuilds an equivalent one.
	TLS *tls.Config
}

// Target is one backend to check.
type Target struct {
	// Key identifies the target across Set calls, e.g. "web/127.0.0.1:9001".
	Key string
	// Addr is the host:port probed (tcp: connect; http: GET http://Addr+Path).
	Addr string
	Spec Spec
	// Dial, if set, opens the probe's connection (for example from inside a
	// network namespace, or from a given source address); nil uses a
	// net.Dialer. It must honour ctx, which carries the probe's deadline.
	// Dial is not part of a target's identity: Set takes the latest one.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// State is a target's health as the checker sees it.
type State struct {
	Up         bool
	Checked    bool      // at least one probe finished (since the target or its Spec was set)
	LastError  string    // "" after a success
	LastChange time.Time // when Up last changed (or the target was set)
	// Successes and Failures count consecutive results; one of them is 0.
	Successes, Failures int
	LastDuration        time.Duration // of the last finished probe
}

// Observer receives the checker's results, typically to feed metrics and
// the daemon's reconcile loop. Its methods are called from the checker's
// worker goroutines without any checker lock held (so they may call State
// or CheckNow), one probe at a time per target: for one target, Observed
// precedes the Changed of the same probe, and calls arrive in probe order.
// They should return quickly: a worker waits for them.
type Observer interface {
	// Changed reports a transition of t to up or down, with a readable reason.
	Changed(t Target, up bool, reason string)
	// Observed reports every finished probe: its duration and error (nil on
	// success). Probes cut short by Set or by the end of Run are not reported.
	Observed(t Target, d time.Duration, err error)
}

// Options configure a Checker.
type Options struct {
	// Workers bounds the number of probes running at once, over all
	// targets; default DefaultWorkers.
	Workers int
	// Logger receives state changes at Info; nil discards.
	Logger *slog.Logger
	// Observer, if set, receives every probe result and every transition.
	Observer Observer
}

// Checker probes a set of targets and keeps their State.
type Checker struct {
	workers int
	log     *slog.Logger
	obs     Observer

	// wake makes the scheduler look at the heap again (a target was added,
	// rescheduled or asked to probe now). Capacity 1: a pending wake-up is enough.
	wake chan struct{}

	mu      sync.Mutex
	ready   *sync.Cond        // on mu: signalled when pending grows or the run stops
	entries map[string]*entry // by Target.Key
	sched   schedule          // idle entries by due time
	pending []*entry          // due entries waiting for a worker, oldest first
	running bool              // Run is active
	stop    bool              // Run is ending: workers return

	skipped     uint64    // probes skipped for want of a worker
	skipLogged  uint64    // skipped at the last warning
	skipLogTime time.Time // time of the last warning
}

type phase uint8

const (
	phaseIdle    phase = iota // in sched, waiting for its due time
	phaseQueued               // in pending, waiting for a worker
	phaseProbing              // a worker holds it
	phaseOff                  // TypeNone: never scheduled
)

// entry is the checker's record of one target.
type entry struct {
	t    Target
	spec Spec // t.Spec with defaults applied
	st   State

	due     time.Time
	index   int // in sched; -1 when not there
	phase   phase
	removed bool               // dropped by Set: discard whatever is in flight
	again   bool               // CheckNow while probing: probe again right after
	cancel  context.CancelFunc // of the running probe
}

// NewChecker returns a Checker with no targets. Call Set to give it targets
// and Run to start probing.
func NewChecker(o Options) *Checker {
	c := &Checker{
		workers: o.Workers,
		log:     o.Logger,
		obs:     o.Observer,
		wake:    make(chan struct{}, 1),
		entries: map[string]*entry{},
	}
	if c.workers <= 0 {
		c.workers = DefaultWorkers
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	c.ready = sync.NewCond(&c.mu)
	return c
}

// Set replaces the set of targets; the first of several targets with the
// same Key wins.
//
//   - A target whose Key, Addr and Spec are unchanged keeps its state and
//     its schedule (it only picks up the new Dial).
//   - A new Key starts with Up = initialUp[Key] and is first probed within
//     min(Interval/10, 1s). A target that starts down and has never been
//     checked comes up on its first success ("fast first pass"): a fresh
//     backend, or one the daemon could not vouch for at start-up, should
//     not wait HealthyThreshold intervals. Going down always takes
//     UnhealthyThreshold failures, so a target that starts up (the daemon's
//     start-up default, so that a restart does not black-hole traffic)
//     keeps serving until the checks prove it sick.
//   - A known Key whose Addr or Spec changed keeps its Up (a reload that
//     tunes a check must not flip traffic) but restarts as a fresh target:
//     counters reset, Checked false, probed promptly.
//   - TypeNone targets are up and never probed.
//   - Targets not in the list stop being probed; a probe in flight is
//     cancelled and its result discarded.
//
// Set does not call the Observer: the states it assigns come from the
// caller's own input. It may be called before or while Run runs.
func (c *Checker) Set(targets []Target, initialUp map[string]bool) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		if seen[t.Key] {
			c.log.Warn("duplicate health check target ignored", "target", t.Key, "addr", t.Addr)
			continue
		}
		seen[t.Key] = true
		old := c.entries[t.Key]
		if old != nil && old.t.Addr == t.Addr && sameCheck(old.t.Spec, t.Spec) {
			old.t = t
			old.spec.TLS = t.Spec.TLS
			continue
		}
		e := &entry{t: t, spec: normalize(t.Spec), index: -1}
		if old != nil {
			e.st.Up, e.st.LastChange = old.st.Up, old.st.LastChange
			c.remove(old)
		} else {
			e.st.Up, e.st.LastChange = initialUp[t.Key], now
		}
		if e.spec.Type == TypeNone {
			if !e.st.Up {
				e.st.Up, e.st.LastChange = true, now
			}
			e.phase = phaseOff
		} else {
			e.due = now.Add(firstDelay(e.spec.Interval))
			heap.Push(&c.sched, e)
		}
		c.entries[t.Key] = e
	}
	for key, e := range c.entries {
		if !seen[key] {
			c.remove(e)
			delete(c.entries, key)
		}
	}
	c.kick()
}

// sameCheck reports whether two specs probe alike; a TLS configuration
// counts by its presence only (see Spec.TLS).
func sameCheck(a, b Spec) bool {
	tlsA, tlsB := a.TLS != nil, b.TLS != nil
	a.TLS, b.TLS = nil, nil
	return a == b && tlsA == tlsB
}

// remove detaches e from scheduling and cancels its probe. A queued entry
// stays in pending; the worker that takes it drops it. c.mu is held.
func (c *Checker) remove(e *entry) {
	e.removed = true
	if e.index >= 0 {
		heap.Remove(&c.sched, e.index)
	}
	if e.cancel != nil {
		e.cancel()
	}
}

// State returns the state of the target with the given key.
func (c *Checker) State(key string) (State, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return State{}, false
	}
	return e.st, true
}

// States returns the state of every target, by key.
func (c *Checker) States() map[string]State {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]State, len(c.entries))
	for k, e := range c.entries {
		m[k] = e.st
	}
	return m
}

// CheckNow probes the target as soon as a worker is free, then resumes its
// usual schedule. Unknown keys and TypeNone targets are ignored; before Run
// the probe happens when Run starts.
func (c *Checker) CheckNow(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return
	}
	switch e.phase {
	case phaseIdle:
		e.due = time.Now()
		heap.Fix(&c.sched, e.index)
		c.kick()
	case phaseProbing:
		e.again = true
	case phaseQueued, phaseOff:
	}
}

// Skipped returns how many probes were skipped because no worker became
// free within the target's interval.
func (c *Checker) Skipped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.skipped
}

func (c *Checker) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// normalize applies the defaults to s.
func normalize(s Spec) Spec {
	if s.Type == "" {
		s.Type = TypeNone
	}
	if s.Path == "" {
		s.Path = "/"
	} else if s.Path[0] != '/' {
		s.Path = "/" + s.Path
	}
	switch {
	case s.ExpectMin == 0 && s.ExpectMax == 0:
		s.ExpectMin, s.ExpectMax = DefaultExpectMin, DefaultExpectMax
	case s.ExpectMax == 0:
		s.ExpectMax = s.ExpectMin
	}
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.HealthyThreshold < 1 {
		s.HealthyThreshold = DefaultHealthyThreshold
	}
	if s.UnhealthyThreshold < 1 {
		s.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	return s
}

type nopObserver struct{}

func (nopObserver) Changed(Target, bool, string)          {}
func (nopObserver) Observed(Target, time.Duration, error) {}
