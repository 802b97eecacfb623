package balance

import "time"

// RandomTwo is the power of two random choices: draw two different
// backends at random in proportion to effective weight and take the one
// with fewer requests in flight per unit of weight (the first drawn on a
// tie). It needs no shared state, so it scales with cores, and it avoids
// both the herding of least_conn on stale counts across many balancers and
// the load blindness of plain random.
type RandomTwo struct {
	rng rng
}

var _ Selector = (*RandomTwo)(nil)

// Select implements Selector.
func (s *RandomTwo) Select(ups []*Upstream, p *Pick, now time.Time) *Upstream {
	var w weighted
	w.scan(ups, p, now.UnixNano())
	return w.lessLoaded(&s.rng)
}

// lessLoaded is random_two's choice among the scanned backends; nil if none
// is eligible.
func (w *weighted) lessLoaded(r *rng) *Upstream {
	a, b := w.two(r)
	if a < 0 {
		return nil
	}
	if b >= 0 && load(w.ups[b], w.weight(b)) < load(w.ups[a], w.weight(a)) {
		return w.ups[b]
	}
	return w.ups[a]
}
