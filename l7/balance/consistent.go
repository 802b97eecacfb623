package balance

import (
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// ConsistentHash maps a request key (header, cookie, path or source address,
// extracted by the proxy into Pick.Key) to a backend on a hash ring, so the
// same key keeps reaching the same backend, whose caches it warms, and a
// change of backends moves as few keys as possible: removing or losing a
// backend moves only the keys that were on it, adding one takes only the
// keys it now owns.
//
// Each backend has ringReplicas points per unit of configured weight. The
// ring is built once per backend set and weights, then shared by every
// request without a lock.
//
// Bounded load (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with
// Bounded Loads", as in Google's and Vimeo's load balancers): a backend
// already holding more than boundFactor times its weighted share of the
// in-flight requests (counting this one) is passed over, and the walk goes
// on clockwise. A hot key then spills over to the next backends instead of
// overloading one, and the others' keys stay where they are. The share uses
// effective weights, so a backend in slow start takes its keys back
// gradually.
//
// A request without a key goes to one of two random backends, the less
// loaded, rather than piling every keyless request on one backend.
type ConsistentHash struct {
	ring atomic.Pointer[ring]
	rng  rng
}

var _ Selector = (*ConsistentHash)(nil)

const (
	// ringReplicas is the points per unit of weight. A backend's share of
	// the ring is off by about 1/sqrt(its points): ketama's 160 leaves
	// some backends of a pool of ten 20-30% over or under their share;
	// 1024 keeps them within about 8%, for a ring of ten backends that
	// searches 40 KiB of hashes.
	ringReplicas = 1024
	// ringMaxPoints caps the ring when weights are large; they are first
	// divided by their greatest common divisor, so weights 100 and 300 make
	// the same ring as 1 and 3.
	ringMaxPoints = 1 << 16
	// boundFactor is the c of bounded load: the most a backend may hold
	// relative to its fair share. 1.25 is the paper's recommendation,
	// balancing spread against keys moving off their home backend.
	boundFactor = 1.25
)

// ring is immutable once built; a new backend set builds a new one.
type ring struct {
	members []*Upstream
	weights []int64
	// hashes are the points' positions, sorted; owners[k] is the index in
	// members of the backend that owns hashes[k]. Separate arrays, so the
	// binary search reads only the hashes.
	hashes []uint32
	owners []int32
}

// Select implements Selector.
func (s *ConsistentHash) Select(ups []*Upstream, p *Pick, now time.Time) *Upstream {
	ns := now.UnixNano()
	if p == nil || p.Key == "" {
		var w weighted
		w.scan(ups, p, ns)
		return w.lessLoaded(&s.rng)
	}

	// The bound needs the load and weight of the backends that can serve.
	// elig marks the eligible ones among the first 64, so the walk skips
	// the others cheaply and stops once it has passed over all of them.
	var inflight int64
	var total float64
	var elig uint64
	n := 0
	for i, u := range ups {
		if !u.available(ns) {
			continue
		}
		inflight += u.inflight.Load()
		total += u.effectiveWeight(ns)
		if !u.Full() && !p.tried(u) {
			n++
			if i < 64 {
				elig |= 1 << i
			}
		}
	}
	if n == 0 {
		return nil
	}
	r := s.ring.Load()
	if r == nil || !r.matches(ups) {
		// Built once per backend set: a reload or weight change. Racing
		// builders make identical rings; the last one stored stays.
		r = buildRing(ups)
		s.ring.Store(r)
	}
	share := boundFactor * float64(inflight+1) / total
	small := len(ups) <= 64

	start, _ := slices.BinarySearch(r.hashes, uint32(hashString(p.Key)>>32))
	for k := range len(r.hashes) {
		i := int(r.owners[(start+k)%len(r.hashes)])
		u := ups[i]
		if small {
			if elig&(1<<i) == 0 {
				continue
			}
		} else if !eligible(u, p, ns) {
			continue
		}
		// One request of slack: a backend's in-flight count drops only
		// once its answer has reached the client, so a client that sends
		// its next request at once still finds the last one there; without
		// it, a lone sequential client's key would move at low load.
		if float64(u.inflight.Load()) < math.Ceil(share*u.effectiveWeight(ns))+1 {
			return u
		}
		if small {
			if elig &^= 1 << i; elig == 0 {
				break
			}
		}
	}
	// Every eligible backend is over the bound, which only happens when
	// the ones under it are full or tried: take the least loaded.
	var best *Upstream
	var bestLoad float64
	for _, u := range ups {
		if eligible(u, p, ns) {
			if l := load(u, u.effectiveWeight(ns)); best == nil || l < bestLoad {
				best, bestLoad = u, l
			}
		}
	}
	return best
}

func (r *ring) matches(ups []*Upstream) bool {
	if !sameMembers(r.members, ups) {
		return false
	}
	for i, u := range ups {
		if u.weight.Load() != r.weights[i] {
			return false
		}
	}
	return true
}

// buildRing places each backend's points at hashes of its address, so a
// backend's points do not depend on the other backends: that is what keeps
// the other backends' keys in place when one is added or removed.
func buildRing(ups []*Upstream) *ring {
	r := &ring{members: slices.Clone(ups), weights: make([]int64, len(ups))}
	var g, units int64
	for i, u := range ups {
		w := u.weight.Load()
		r.weights[i] = w
		g = gcd(g, w)
	}
	if g == 0 {
		return r
	}
	for _, w := range r.weights {
		units += w / g
	}
	per := int64(ringReplicas)
	if units*per > ringMaxPoints {
		per = max(ringMaxPoints/units, 1)
	}
	// Sort hash and owner together; owner breaks ties between equal
	// hashes, in the same order whatever other backends exist.
	points := make([]uint64, 0, units*per)
	for i, u := range ups {
		base := hashString(u.Addr)
		for j := range r.weights[i] / g * per {
			h := mix64(base + uint64(j+1)*golden)
			points = append(points, h>>32<<32|uint64(i))
		}
	}
	slices.Sort(points)
	r.hashes = make([]uint32, len(points))
	r.owners = make([]int32, len(points))
	for k, pt := range points {
		r.hashes[k], r.owners[k] = uint32(pt>>32), int32(uint32(pt))
	}
	return r
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
