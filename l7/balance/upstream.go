// Package balance holds the L7 tier's per-backend live state and the
// schedulers that choose among backends.
package balance

import (
	"sync"
	"sync/atomic"
	"time"
)

// Upstream is one backend's shared live state. Safe for concurrent use.
//
// Every pool, route and reload that names the same backend shares one
// Upstream, so in-flight counts, health and passive-health ejections are
// seen by every scheduler at once. Fields are atomics rather than a mutex
// because every Select reads several of them for every backend; the only
// locks are on the failure and latency-sample paths, which are written once
// per response and never read under the lock by a scheduler.
type Upstream struct {
	// Addr is the backend's host:port, as configured. Immutable.
	Addr string

	// Read-mostly state: written by health checks, the admin API and
	// reloads, read by every Select.
	weight atomic.Int64
	// slotWeight is the last weight above zero: ip_hash places clients by
	// it, so that weight 0 (a drain) moves only the backend's own clients.
	slotWeight atomic.Int64
	maxConns   atomic.Int64
	slowStart  atomic.Int64 // nanoseconds; 0 = no ramp
	healthy    atomic.Bool
	drained    atomic.Bool
	// leaving: on its way out (an API removal, a reload that dropped it,
	// a DNS answer that no longer names it): not even its sticky sessions
	// go to it, while a drained one keeps them.
	leaving atomic.Bool
	// upSince is when the backend last became healthy or was created, in
	// Unix nanoseconds: the start of its slow-start ramp.
	upSince atomic.Int64
	// ejectedUntil is the end of a passive-health ejection, in Unix
	// nanoseconds; 0 = never ejected. A past value also starts a ramp.
	ejectedUntil atomic.Int64
	// ejectedAt is when the current ejection began (Unix ns; 0: none, or
	// ended): a request sent after it that succeeds ends it early.
	ejectedAt atomic.Int64

	// Written on every request; kept off the read-mostly cache line so that
	// Acquire/Release on one core do not evict the health fields that every
	// other core's Select reads.
	_        [64]byte
	inflight atomic.Int64
	requests atomic.Uint64

	_        [64]byte
	failures atomic.Uint64 // every Fail, for metrics
	// pendingFails mirrors failN so that Succeed, called on every good
	// response, can skip the lock when there is nothing to reset.
	pendingFails atomic.Int64
	failMu       sync.Mutex
	failN        int   // failures in the current window; under failMu
	failStart    int64 // start of the current window, Unix ns; under failMu
	sparedAt     int64 // when FailSparing last reported a spared backend; under failMu

	lat latency
}

// NewUpstream makes a backend's live state. It starts healthy, not drained,
// and with its slow-start ramp beginning now: a backend added to a running
// service ramps up like a recovered one. weight < 0 counts as 0 (no new
// requests); maxConns <= 0 means unlimited; slowStart <= 0 means no ramp.
func NewUpstream(addr string, weight int, maxConns int, slowStart time.Duration) *Upstream {
	u := &Upstream{Addr: addr}
	u.SetWeight(weight)
	u.SetMaxConns(maxConns)
	u.SetSlowStart(slowStart)
	u.healthy.Store(true)
	u.upSince.Store(time.Now().UnixNano())
	return u
}

// Weight is the configured weight; 0 takes the backend out of selection
// while its in-flight requests finish.
func (u *Upstream) Weight() int { return int(u.weight.Load()) }

// SetWeight changes the weight at run time (admin API, reload). Negative
// weights count as 0.
func (u *Upstream) SetWeight(w int) {
	u.weight.Store(int64(max(w, 0)))
	if w > 0 {
		u.slotWeight.Store(int64(w))
	} else if u.slotWeight.Load() == 0 {
		u.slotWeight.Store(1) // created at weight 0: a place of its own
	}
}

// MaxConns is the in-flight limit; 0 = unlimited.
func (u *Upstream) MaxConns() int { return int(u.maxConns.Load()) }

// SetMaxConns changes the in-flight limit, so that a reload can apply a new
// max_conns without losing the backend's counters. n <= 0 = unlimited.
func (u *Upstream) SetMaxConns(n int) { u.maxConns.Store(int64(max(n, 0))) }

// SlowStart is the length of the ramp after the backend becomes available.
func (u *Upstream) SlowStart() time.Duration { return time.Duration(u.slowStart.Load()) }

// SetSlowStart changes the ramp length; d <= 0 disables it.
func (u *Upstream) SetSlowStart(d time.Duration) { u.slowStart.Store(int64(max(d, 0))) }

// Healthy reports the active health check's verdict.
func (u *Upstream) Healthy() bool { return u.healthy.Load() }

// SetHealthy records the active health check's verdict. A transition from
// unhealthy to healthy restarts slow start at now and forgets earlier
// passive-health failures and ejection, since they described the backend
// before it was repaired: an ejection kept past its recovery would leave
// the service without it when its peers fail next.
func (u *Upstream) SetHealthy(up bool, now time.Time) {
	if u.healthy.Swap(up) || !up {
		return
	}
	ns := now.UnixNano()
	u.upSince.Store(ns)
	u.failMu.Lock()
	u.failN = 0
	u.pendingFails.Store(0)
	u.endEjection(ns)
	u.failMu.Unlock()
}

// endEjection ends an ejection that still runs at ns; under failMu.
func (u *Upstream) endEjection(ns int64) {
	if ns < u.ejectedUntil.Load() {
		u.ejectedUntil.Store(ns) // a past value: the ramp starts at ns
	}
	u.ejectedAt.Store(0)
}

// Drained reports whether the operator drained the backend.
func (u *Upstream) Drained() bool { return u.drained.Load() }

// SetDrained drains (no new requests; in-flight ones finish) or undrains
// the backend. Undraining does not restart slow start: a drain is an
// operator's decision, not a sign that the backend lost its warm state.
func (u *Upstream) SetDrained(d bool) { u.drained.Store(d) }

// SetLeaving marks the backend as on its way out (or back).
func (u *Upstream) SetLeaving(l bool) { u.leaving.Store(l) }

// Bound reports whether a request bound to the backend (its sticky cookie
// names it) may go to it: healthy, not ejected and not leaving. A drain or
// weight 0 stops new sessions only, as HAProxy's drain state and NGINX
// Plus' drain do, and as an L4 drain keeps established flows; the sessions
// end as their clients do, or when the backend leaves.
func (u *Upstream) Bound(now time.Time) bool {
	return u.healthy.Load() && !u.leaving.Load() && now.UnixNano() >= u.ejectedUntil.Load()
}

// Fail records a failed request (connect error, timeout, 5xx) for passive
// health. Failures are counted in a window that opens at the first failure
// and lasts failTimeout; the maxFails-th failure within it ejects the
// backend for failTimeout, and Fail returns true for that one call only, so
// the caller logs the ejection once. Failures of requests that were already
// in flight when the backend was ejected neither extend the ejection nor
// count toward the next one. maxFails <= 0 or failTimeout <= 0 disables
// ejection; the failure still counts in Failures.
func (u *Upstream) Fail(now time.Time, maxFails int, failTimeout time.Duration) (ejected bool) {
	ejected, _ = u.FailSparing(now, maxFails, failTimeout, nil)
	return ejected
}

// FailSparing is Fail, except that the failure that would eject the
// backend does not when spare (if not nil) says it must stay: the last
// backend its service can use. That one keeps serving and counting, and
// each further failure asks again; spared reports such a failure, once per
// failTimeout (for the caller's log).
func (u *Upstream) FailSparing(now time.Time, maxFails int, failTimeout time.Duration, spare func() bool) (ejected, spared bool) {
	u.failures.Add(1)
	if maxFails <= 0 || failTimeout <= 0 {
		return false, false
	}
	ns := now.UnixNano()
	u.failMu.Lock()
	defer u.failMu.Unlock()
	if ns < u.ejectedUntil.Load() {
		return false, false
	}
	if u.failN == 0 || ns-u.failStart >= int64(failTimeout) {
		u.failN, u.failStart = 0, ns
	}
	u.failN++
	if u.failN < maxFails {
		u.pendingFails.Store(int64(u.failN))
		return false, false
	}
	if spare != nil && spare() {
		u.failN = maxFails - 1
		u.pendingFails.Store(int64(u.failN))
		report := u.sparedAt == 0 || ns-u.sparedAt >= int64(failTimeout)
		if report {
			u.sparedAt = ns
		}
		return false, report
	}
	u.failN = 0
	u.pendingFails.Store(0)
	u.ejectedUntil.Store(ns + int64(failTimeout))
	u.ejectedAt.Store(ns)
	return true, false
}

// Succeed records a successful request: it resets the failure window, so
// max_fails counts failures with no success between them. A backend that
// is down fails every request and is still ejected; a busy, healthy backend
// with a small error rate is not, which would otherwise push its load onto
// its peers every fail_timeout. Active health checks and the error metrics
// are the tools for partial degradation.
//
// sent is when the request went to the backend: one sent after an ejection
// began reached it only because nothing else could serve (PanicSelect), and
// its success ends the ejection; those in flight when it began do not.
func (u *Upstream) Succeed(sent time.Time) {
	if u.pendingFails.Load() == 0 && u.ejectedAt.Load() == 0 {
		return // the common case: no lock on the success path
	}
	u.failMu.Lock()
	u.failN = 0
	u.pendingFails.Store(0)
	if at := u.ejectedAt.Load(); at != 0 {
		if now := time.Now().UnixNano(); now >= u.ejectedUntil.Load() {
			u.ejectedAt.Store(0) // over by itself
		} else if sent.UnixNano() >= at {
			u.endEjection(now)
		}
	}
	u.failMu.Unlock()
}

// Ejected reports whether passive health has taken the backend out until
// some time after now.
func (u *Upstream) Ejected(now time.Time) bool { return now.UnixNano() < u.ejectedUntil.Load() }

// Available reports whether the backend may take new requests: healthy, not
// drained, not ejected and with a weight above zero. Every scheduler uses
// it, so the rule lives in one place; Full is separate because a full
// backend is worth waiting for and an unavailable one is not.
func (u *Upstream) Available(now time.Time) bool { return u.available(now.UnixNano()) }

func (u *Upstream) available(ns int64) bool {
	return u.healthy.Load() && !u.drained.Load() && u.weight.Load() > 0 && ns >= u.ejectedUntil.Load()
}

// Full reports whether the backend has max_conns requests in flight.
func (u *Upstream) Full() bool {
	m := u.maxConns.Load()
	return m > 0 && u.inflight.Load() >= m
}

// EffectiveWeight is the weight scaled by slow start: it ramps linearly from
// 10% to 100% of the weight over the slow-start period after the backend
// became available (created, healthy again, or back from an ejection), so a
// cold backend is not handed a full share before its caches and pools are
// warm. The 10% floor keeps a recovering backend in rotation so that its
// ramp is visible in its own latency and error counts.
func (u *Upstream) EffectiveWeight(now time.Time) float64 { return u.effectiveWeight(now.UnixNano()) }

func (u *Upstream) effectiveWeight(ns int64) float64 {
	w := float64(u.weight.Load())
	ramp := u.slowStart.Load()
	if ramp <= 0 || w <= 0 {
		return w
	}
	start := u.upSince.Load()
	if e := u.ejectedUntil.Load(); e > start && e <= ns {
		start = e
	}
	elapsed := ns - start
	if elapsed >= ramp {
		return w
	}
	if elapsed <= 0 {
		return w * minRamp
	}
	return w * (minRamp + (1-minRamp)*float64(elapsed)/float64(ramp))
}

// minRamp is the share of its weight a backend gets when slow start begins.
const minRamp = 0.1

// Acquire counts a request in flight regardless of max_conns.
func (u *Upstream) Acquire() {
	u.inflight.Add(1)
	u.requests.Add(1)
}

// TryAcquire counts a request in flight if the backend is below max_conns.
// Select only reports that a backend was not full when it looked; between
// Select and TryAcquire other requests may take the last slot, and the
// compare-and-swap makes the limit exact.
func (u *Upstream) TryAcquire() bool {
	limit := u.maxConns.Load()
	for {
		n := u.inflight.Load()
		if limit > 0 && n >= limit {
			return false
		}
		if u.inflight.CompareAndSwap(n, n+1) {
			u.requests.Add(1)
			return true
		}
	}
}

// Release ends a request counted by Acquire or TryAcquire.
func (u *Upstream) Release() { u.inflight.Add(-1) }

// Inflight is the number of requests in flight.
func (u *Upstream) Inflight() int64 { return u.inflight.Load() }

// Requests is the number of requests ever acquired.
func (u *Upstream) Requests() uint64 { return u.requests.Load() }

// Failures is the number of failures ever recorded by Fail.
func (u *Upstream) Failures() uint64 { return u.failures.Load() }
