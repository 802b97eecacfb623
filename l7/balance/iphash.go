package balance

import "time"

// IPHash maps a client address to a backend, so a client keeps its backend
// (session persistence without cookies) while that backend is up.
//
// The hash selects a position in the backends' configured weights; every
// configured backend keeps its place there whether it is up or not, or
// drained or at weight 0 (by its last weight above 0), so a backend going
// down or drained moves only its own clients. Those are rehashed, like
// NGINX's ip_hash does, which spreads them over the others in proportion
// to weight and brings them back when their backend returns. Configured
// weights, not slow-start weights, are used: a ramp would move clients
// back and forth. The full address is hashed (NGINX uses an IPv4 /24).
type IPHash struct {
	rng rng // for requests without a client address
}

var _ Selector = (*IPHash)(nil)

// ipRehashes is how many rehashes are tried before a linear probe, which
// is deterministic too but hands a dead backend's clients all to its
// neighbour.
const ipRehashes = 20

// Select implements Selector.
func (s *IPHash) Select(ups []*Upstream, p *Pick, now time.Time) *Upstream {
	ns := now.UnixNano()
	if p == nil || !p.ClientIP.IsValid() {
		// No address to hash (a Unix-socket client): spread by load.
		var w weighted
		w.scan(ups, p, ns)
		return w.lessLoaded(&s.rng)
	}
	var total uint64
	for _, u := range ups {
		total += uint64(u.slotWeight.Load())
	}
	if total == 0 {
		return nil
	}
	h := hashAddr(p.ClientIP)
	first := -1
	for range ipRehashes {
		i := weightedSlot(ups, h%total)
		if first < 0 {
			first = i
		}
		if eligible(ups[i], p, ns) {
			return ups[i]
		}
		h = mix64(h + golden)
	}
	for k := 1; k < len(ups); k++ {
		if u := ups[(first+k)%len(ups)]; eligible(u, p, ns) {
			return u
		}
	}
	return nil
}

// weightedSlot is the backend whose share of the configured weights holds
// position r.
func weightedSlot(ups []*Upstream, r uint64) int {
	last := 0
	for i, u := range ups {
		w := uint64(u.slotWeight.Load())
		if w == 0 {
			continue
		}
		if r < w {
			return i
		}
		r -= w
		last = i
	}
	return last // weights changed since the total was taken
}
