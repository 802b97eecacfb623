package balance

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// latencyHalfLife is how long it takes for a sample's weight in the
	// average to halve. Long enough to smooth out single slow requests,
	// short enough that a backend that got slow is noticed within seconds;
	// the in-flight factor of least_time reacts faster still.
	latencyHalfLife = 10 * time.Second
	// latencyRecent is how old the newest sample may be for the average
	// to count. After that the backend is probed again as if new (scored
	// as the fastest, and its next sample starts a new average), so a
	// backend is avoided for at most this long after a slow answer: one
	// that is slow gets one request that often, one that was slow once
	// (a cold cache, a pause) is back within seconds.
	latencyRecent = 5 * time.Second
	// latencyWarmup is the number of first samples that are averaged
	// plainly, so that the first request after a (re)start, often slow
	// with cold caches, does not dominate the average for a half-life.
	latencyWarmup = 16
)

// latency is a time-decaying average of response times.
//
// A sample's weight depends on the wall time since the previous one, not
// on the sample count: the average means the same at 10 and at 10,000
// requests per second. Writers serialise on mu; readers (every least_time
// Select) take no lock but read avg and at under a sequence counter, so
// they never see an average from one sample and a time from another.
type latency struct {
	seq  atomic.Uint64 // odd while a write is in progress
	avg  atomic.Uint64 // float64 bits, nanoseconds
	at   atomic.Int64  // time of the newest sample, Unix ns; 0 = none
	mu   sync.Mutex
	seen int // samples since the average (re)started; under mu
}

// ObserveLatency feeds one response time, measured at now, into the
// backend's average.
func (u *Upstream) ObserveLatency(d time.Duration, now time.Time) {
	l := &u.lat
	ns := now.UnixNano()
	x := float64(max(d, 0))
	l.mu.Lock()
	prev, at := math.Float64frombits(l.avg.Load()), l.at.Load()
	var v float64
	if at == 0 || ns-at > int64(latencyRecent) {
		v, l.seen = x, 1
	} else {
		// alpha is the new sample's weight: the part of the old average's
		// weight that decayed since the previous sample, but at least a
		// plain mean's share during warm-up.
		alpha := 1 - math.Exp2(-float64(max(ns-at, 0))/float64(latencyHalfLife))
		if l.seen < latencyWarmup {
			l.seen++
			alpha = max(alpha, 1/float64(l.seen))
		}
		v = prev + alpha*(x-prev)
	}
	l.seq.Add(1)
	l.avg.Store(math.Float64bits(v))
	l.at.Store(max(ns, at)) // concurrent responses may report out of order
	l.seq.Add(1)
	l.mu.Unlock()
}

// Latency is the backend's average response time and whether it has a
// sample from the last 5 seconds; without one the average is stale and a
// scheduler should not trust it.
func (u *Upstream) Latency(now time.Time) (time.Duration, bool) {
	v, _, ok := u.latency(now.UnixNano())
	return time.Duration(v), ok
}

// latency is the average, the time of its newest sample, and whether that
// is recent.
func (u *Upstream) latency(ns int64) (float64, int64, bool) {
	l := &u.lat
	for {
		s := l.seq.Load()
		if s&1 != 0 {
			// A writer is between its two stores, a few ns unless it was
			// preempted there: let it run.
			runtime.Gosched()
			continue
		}
		bits, at := l.avg.Load(), l.at.Load()
		if l.seq.Load() == s {
			return math.Float64frombits(bits), at, at != 0 && ns-at <= int64(latencyRecent)
		}
	}
}
