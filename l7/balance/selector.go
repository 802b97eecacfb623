package balance

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Pick is what a scheduler may know of a request. The proxy fills it once
// per request and reuses it across retries, so Select needs no allocation.
type Pick struct {
	// ClientIP is the client's address, for ip_hash.
	ClientIP netip.Addr
	// Key is the consistent_hash key, already extracted by the proxy from
	// the configured header, cookie, path or source address. Empty when the
	// request does not carry it.
	Key string
	// Tried lists the backends this request already tried: a retry goes
	// elsewhere.
	Tried []*Upstream
}

func (p *Pick) tried(u *Upstream) bool {
	if p == nil {
		return false
	}
	for _, t := range p.Tried {
		if t == u {
			return true
		}
	}
	return false
}

// Selector chooses one backend for a request: one that is Available, not
// Full and not in p.Tried, or nil if there is none. Select is called for
// every request from many goroutines at once; it must not block for long
// nor allocate. It does not acquire the backend: the caller's TryAcquire
// does, and picks again if it lost the last slot to another request.
type Selector interface {
	Select(ups []*Upstream, p *Pick, now time.Time) *Upstream
}

// New makes the scheduler of that name. Each call returns a new one, so
// every pool has its own round-robin position and hash ring.
func New(name string) (Selector, error) {
	switch name {
	case "round_robin":
		return new(RoundRobin), nil
	case "least_conn":
		return new(LeastConn), nil
	case "ip_hash":
		return new(IPHash), nil
	case "consistent_hash":
		return new(ConsistentHash), nil
	case "least_time":
		return new(LeastTime), nil
	case "random_two":
		return new(RandomTwo), nil
	}
	return nil, fmt.Errorf("unknown l7 scheduler %q: want round_robin, least_conn, ip_hash, consistent_hash, least_time or random_two", name)
}

// PanicSelect is the choice when no backend is eligible: among those that
// only passive health took out (healthy, not drained, weight above zero,
// not full, not tried), the one whose ejection ends first; nil if none. An
// ejection that outlives a backend's recovery while its peers fail would
// otherwise answer 503 to everyone until fail_timeout; a success there ends
// the ejection (Succeed). Envoy's panic mode and NGINX's "all peers
// failed" reset make the same bet: an ejected backend may serve, and none
// surely does not.
func PanicSelect(ups []*Upstream, p *Pick, now time.Time) *Upstream {
	ns := now.UnixNano()
	var best *Upstream
	var until int64
	for _, u := range ups {
		e := u.ejectedUntil.Load()
		if ns >= e || !u.healthy.Load() || u.drained.Load() || u.weight.Load() <= 0 || u.Full() || p.tried(u) {
			continue
		}
		if best == nil || e < until {
			best, until = u, e
		}
	}
	return best
}

// eligible is the rule every scheduler applies before its own: the backend
// is Available, not Full, and not already tried by this request.
func eligible(u *Upstream, p *Pick, ns int64) bool {
	return u.available(ns) && !u.Full() && !p.tried(u)
}

// load is a backend's in-flight requests per unit of effective weight: the
// quantity least_conn and random_two equalise. Without the "+1" of a
// request about to be added, idle backends tie, and ties are broken in
// proportion to weight, so that at low concurrency shares still follow
// weights instead of all going to the heaviest backend.
func load(u *Upstream, ew float64) float64 { return float64(u.inflight.Load()) / ew }

// rng is the randomness of the randomised schedulers: the runtime's
// per-thread generator (math/rand/v2's top-level functions; no lock, no
// allocation), or a seeded one that tests install.
type rng struct {
	src func() uint64
}

func (r *rng) uint64() uint64 {
	if r.src != nil {
		return r.src()
	}
	return rand.Uint64()
}

// float64 is uniform in [0, 1).
func (r *rng) float64() float64 { return float64(r.uint64()>>11) / (1 << 53) }

// fastN is how many backends a scheduler's per-call scratch space holds on
// the stack; larger pools recompute weights instead of allocating.
const fastN = 16

// weighted is a snapshot of the eligible backends' effective weights for
// one Select, kept on the caller's stack.
type weighted struct {
	ups   []*Upstream
	p     *Pick
	ns    int64
	ew    [fastN]float64 // effective weight if eligible, else 0; unused when big
	big   bool
	n     int     // eligible backends
	last  int     // index of the last eligible backend
	total float64 // sum of eligible effective weights
}

func (w *weighted) scan(ups []*Upstream, p *Pick, ns int64) {
	w.ups, w.p, w.ns, w.big, w.last = ups, p, ns, len(ups) > fastN, -1
	for i, u := range ups {
		var e float64
		if eligible(u, p, ns) {
			e = u.effectiveWeight(ns)
		}
		if !w.big {
			w.ew[i] = e
		}
		if e > 0 {
			w.n++
			w.last = i
			w.total += e
		}
	}
}

// weight is ups[i]'s effective weight if it was eligible, else 0.
func (w *weighted) weight(i int) float64 {
	if !w.big {
		return w.ew[i]
	}
	if eligible(w.ups[i], w.p, w.ns) {
		return w.ups[i].effectiveWeight(w.ns)
	}
	return 0
}

// find returns the eligible backend at position r in [0, total) of the
// cumulative weights, skipping index skip (whose weight r excludes).
func (w *weighted) find(r float64, skip int) int {
	found := -1
	for i := range w.ups {
		if i == skip {
			continue
		}
		e := w.weight(i)
		if e <= 0 {
			continue
		}
		found = i
		if r < e {
			return i
		}
		r -= e
	}
	return found // r ran past the end by rounding, or weights moved (big pools)
}

// two draws two distinct eligible backends, each with probability
// proportional to its effective weight (the second among the rest). b is
// -1 when only one backend is eligible; both are -1 when none is.
func (w *weighted) two(r *rng) (a, b int) {
	if w.n == 0 {
		return -1, -1
	}
	if w.n == 1 {
		return w.last, -1
	}
	a = w.find(r.float64()*w.total, -1)
	if a < 0 { // only in big pools, when eligibility changed since scan
		return w.last, -1
	}
	b = w.find(r.float64()*(w.total-w.weight(a)), a)
	if b == a {
		b = -1
	}
	return a, b
}

// Hashing is deterministic, not seeded per process: every xlb instance and
// every restart must send a key to the same backend.

// mix64 is MurmurHash3's 64-bit finaliser: every input bit affects every
// output bit, which FNV alone does not give for short keys.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// hashString is FNV-1a followed by mix64; written out because hash/fnv
// would allocate its hasher on every call.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

func hashAddr(a netip.Addr) uint64 {
	b := a.As16() // an IPv4 address hashes as its IPv4-mapped form
	return mix64(binary.BigEndian.Uint64(b[:8]) ^ mix64(binary.BigEndian.Uint64(b[8:])))
}

// golden is 2^64 divided by the golden ratio: adding it walks a sequence
// that mix64 turns into independent-looking hashes.
const golden = 0x9e3779b97f4a7c15
