package balance

import (
	"sync"
	"time"
)

// RoundRobin is NGINX's smooth weighted round robin: every eligible backend
// adds its effective weight to its running score, the highest score wins
// and gives back the total. Over any window of sum-of-weights picks each
// backend gets exactly its share, spread out rather than in bursts (weights
// 5,1,1 give a a b a c a a), and slow start shifts shares gradually.
//
// The scores are shared by every request of the pool, under a mutex held
// for one pass over the backends (NGINX keeps them per worker process for
// the same reason: the algorithm is inherently sequential).
type RoundRobin struct {
	mu      sync.Mutex
	members []*Upstream // the backend set cur belongs to
	cur     []int64     // running scores, in 1/rrScale weight units
}

var _ Selector = (*RoundRobin)(nil)

// rrScale turns fractional slow-start weights into integers, so the scores
// never drift by rounding however long the pool runs.
const rrScale = 1 << 10

// Select implements Selector.
func (s *RoundRobin) Select(ups []*Upstream, p *Pick, now time.Time) *Upstream {
	ns := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !sameMembers(s.members, ups) {
		// A new backend set (reload, or the selector used for another
		// pool): start from zero scores, as NGINX does on reload.
		s.members = append(s.members[:0], ups...)
		s.cur = append(s.cur[:0], make([]int64, len(ups))...)
	}
	best := -1
	var total int64
	for i, u := range ups {
		if !eligible(u, p, ns) {
			continue
		}
		w := int64(u.effectiveWeight(ns)*rrScale + 0.5)
		s.cur[i] += w
		total += w
		if best < 0 || s.cur[i] > s.cur[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	s.cur[best] -= total
	return ups[best]
}

func sameMembers(a, b []*Upstream) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
