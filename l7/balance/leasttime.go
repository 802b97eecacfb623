package balance

import (
	"math"
	"time"
)

// LeastTime is the power of two random choices on expected response time:
// draw two different backends in proportion to effective weight and take
// the one with the lower
//
//	average latency × (in-flight / effective weight + 1 / mean effective weight)
//
// which is latency × (in-flight + 1) / weight when the weights are equal.
// The "+1" is spread evenly instead of per backend so that equal backends
// tie (the first drawn wins) and shares follow the weights, while a faster
// backend still wins with nothing in flight. Scores within 20% tie.
//
// A backend without a recent latency sample (new, recovered, or avoided for
// 5 seconds) is scored with the lowest latency among the others: it ties
// with the fastest, so it is probed and cannot starve, but it cannot take
// more than the fastest backend's share while it has no samples either.
type LeastTime struct {
	rng rng
}

var _ Selector = (*LeastTime)(nil)

// Select implements Selector.
func (s *LeastTime) Select(ups []*Upstream, p *Pick, now time.Time) *Upstream {
	ns := now.UnixNano()
	var w weighted
	w.scan(ups, p, ns)
	a, b := w.two(&s.rng)
	if a < 0 {
		return nil
	}
	if b < 0 {
		return ups[a]
	}
	la, oka := ups[a].score(ns)
	lb, okb := ups[b].score(ns)
	if !oka || !okb {
		floor, ok := s.fastest(&w)
		if !ok {
			floor = 1 // nobody has samples: compare load alone
		}
		if !oka {
			la = floor
		}
		if !okb {
			lb = floor
		}
	}
	spread := float64(w.n) / w.total // 1 / mean effective weight
	ca := la * (load(ups[a], w.weight(a)) + spread)
	cb := lb * (load(ups[b], w.weight(b)) + spread)
	if cb < ca*(1-leastTimeTie) {
		return ups[b]
	}
	return ups[a]
}

// score is the latency least_time weighs: the average, lowered by half for
// every leastTimeAge since its newest sample, and whether there is a recent
// one. A backend that lost the draws for a while is tried again once its
// score has fallen near the others': at most a second or two for one that
// differs from them by noise (a pause, a cold cache), about log2(k)
// seconds, one request at a time, for one k times slower. A backend with
// requests every few milliseconds keeps its average as it is.
func (u *Upstream) score(ns int64) (float64, bool) {
	v, at, ok := u.latency(ns)
	if !ok {
		return 0, false
	}
	return v * math.Exp2(-float64(max(ns-at, 0))/float64(leastTimeAge)), true
}

// leastTimeAge is how long it takes for an unsampled backend's score to
// halve.
const leastTimeAge = time.Second

// leastTimeTie is how much lower the second draw's score must be to win:
// closer scores tie, and the first draw (random, by weight) wins. Without
// it, two equal backends with few requests in flight are told apart by
// noise: the one whose average came out lower takes every request, and
// the other, not chosen, keeps its sample until it is stale.
const leastTimeTie = 0.2

// fastest is the lowest recent average latency among the eligible
// backends; only needed when a drawn backend has no sample.
func (s *LeastTime) fastest(w *weighted) (float64, bool) {
	var low float64
	found := false
	for i, u := range w.ups {
		if w.weight(i) <= 0 {
			continue
		}
		if l, ok := u.score(w.ns); ok && (!found || l < low) {
			low, found = l, true
		}
	}
	return low, found
}
