package balance

import "time"

// LeastConn sends a request to the backend with the fewest requests in
// flight per unit of effective weight. Ties, which is every pick of an
// idle pool, go to one of the tied backends at random in proportion to
// weight, so that a lightly loaded pool still follows the weights and a
// burst does not herd onto the first backend in the list.
type LeastConn struct {
	rng rng
}

var _ Selector = (*LeastConn)(nil)

// Select implements Selector.
func (s *LeastConn) Select(ups []*Upstream, p *Pick, now time.Time) *Upstream {
	ns := now.UnixNano()
	var best *Upstream
	var bestLoad, tieWeight float64
	for _, u := range ups {
		if !eligible(u, p, ns) {
			continue
		}
		ew := u.effectiveWeight(ns)
		l := load(u, ew)
		switch {
		case best == nil || l < bestLoad:
			best, bestLoad, tieWeight = u, l, ew
		case l == bestLoad:
			// Weighted reservoir sampling: after the pass, each tied
			// backend has won with probability ew / sum of tied ew.
			tieWeight += ew
			if s.rng.float64()*tieWeight < ew {
				best = u
			}
		}
	}
	return best
}
