package maps

// Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and
// Reliable Software Network Load Balancer", NSDI 2016).
//
// The data plane picks a backend with table[hash(flow) % len(table)], so the
// table must (a) give every backend a share of slots proportional to its
// weight, and (b) change as little as possible when the backend set changes,
// so that established flows keep landing on the same backend. It must also be
// (c) a pure function of the backend set: every load-balancer node in a
// cluster builds its own table, and a flow that is re-routed (ECMP change,
// node failure) to a different node must still reach the same backend.
//
// Algorithm
//
// Each backend owns a pseudo-random preference list over all slots,
// permutation[j] = (offset + j*skip) mod size, derived from a fixed hash of
// its Key. Because size is prime and 1 <= skip < size, that list visits
// every slot exactly once. Backends then take turns claiming their next
// still-free preferred slot until the table is full.
//
// Plain Maglev uses strict round-robin turns, which gives equal shares. To
// weight it, turns are handed out by a stride schedule: the k-th turn
// (k = 1, 2, ...) of a backend with weight w happens at virtual time
// (k - 1/2) / w, and turns are served in increasing virtual time (ties go to
// the smaller Key). This is the continuous form of "every round each backend
// gains credit += weight and takes a slot whenever credit >= maxWeight", but
// it needs no rounds, so a huge weight ratio (e.g. 1e9:1) cannot make the
// loop spin through millions of empty rounds. The 1/2 phase gives every
// backend its first pick early, so light backends still get some of their
// most preferred slots. With equal weights the schedule is exactly the
// round-robin order of the original paper.
//
// On top of that, each backend stops after its quota, the ideal share
// size*w/sum(w) rounded by the largest-remainder method. That makes the
// balance guarantee exact: every backend owns floor or ceil of its ideal
// share, i.e. it is off by less than one slot. (The stride schedule alone
// is already within about a slot; the quota only removes the corner cases.)
//
// The permutation is never materialised: each backend keeps a cursor into
// its preference list and advances it lazily. That costs O(size) memory
// instead of O(N*size) (1000 backends x 100003 slots would be 400 MB), and
// the total work is about size*ln(size) probes plus size heap operations.

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// DefaultRingSize is the Maglev table size used when a service has few
// backends. It is prime (as Maglev requires) and large enough that with up
// to 655 equal-weight backends every backend's share is within 1% of ideal,
// while a table of uint32 IDs still costs only 256 KiB.
const DefaultRingSize uint32 = 65537

// maxPrime32 is the largest prime that fits in a uint32; RingSizeFor
// saturates at it rather than wrapping around.
const maxPrime32 uint32 = 4294967291

// MaglevBackend is one entry in a Maglev table build.
//
// Key and ID are separate on purpose: the slot positions depend only on Key,
// so renumbering backends in the kernel maps (new ID) does not reshuffle
// the table, and the table does not depend on how IDs were allocated on a
// particular node.
type MaglevBackend struct {
	Key    string // stable identity, e.g. the backend address "10.0.1.1"; hashed to get offset/skip
	ID     uint32 // the value written into table slots (backend id in kernel maps)
	Weight uint32 // 0 = not in table (drained/down)
}

// ErrNoBackends is returned by BuildMaglev when no backend has a non-zero
// weight. It is exported so callers can tell "service has nothing to send
// to" (e.g. clear the service's table, drop traffic) apart from a
// programming error such as a duplicate key.
var ErrNoBackends = errors.New("maglev: no backend with non-zero weight")

// These are unexported because callers cannot recover from them at run time
// (they indicate a bug in the caller); they are sentinels only so tests can
// tell the failure modes apart with errors.Is.
var (
	errSizeNotPrime = errors.New("maglev: table size is not prime")
	errDuplicateKey = errors.New("maglev: duplicate backend key")
)

// RingSizeFor returns the smallest prime >= max(DefaultRingSize, 100*n).
//
// A backend's slot count can only be an integer, so its share is off by up
// to one slot; with at least 100 slots per backend that is < 1% imbalance.
// For weighted backends pass n = sum(weight)/min(weight) to keep the same
// guarantee for the lightest backend. Negative n is treated as 0. The result
// saturates at the largest 32-bit prime.
func RingSizeFor(n int) uint32 {
	target := uint64(DefaultRingSize)
	if n > 0 {
		if uint64(n) >= uint64(maxPrime32)/100 {
			return maxPrime32
		}
		target = max(target, uint64(n)*100)
	}
	if target >= uint64(maxPrime32) {
		return maxPrime32
	}
	// Terminates at the latest at maxPrime32, so c cannot overflow. Prime gaps
	// below 2^32 are at most a few hundred, so this loop is short.
	for c := uint32(target); ; c++ {
		if IsPrime(c) {
			return c
		}
	}
}

// IsPrime reports whether n is prime.
//
// Trial division by 6k±1 up to sqrt(n) is at most ~22k divisions for a
// uint32, which is cheap next to building a table and, unlike a
// probabilistic test, obviously correct.
func IsPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	if n%3 == 0 {
		return n == 3
	}
	// uint64 so that d*d cannot overflow for n close to 2^32.
	m := uint64(n)
	for d := uint64(5); d*d <= m; d += 6 {
		if m%d == 0 || m%(d+2) == 0 {
			return false
		}
	}
	return true
}

// Two fixed, arbitrary seeds so that offset and skip come from independent
// hashes of the key. They must never change: doing so would move almost every
// slot of every service during a rolling upgrade, and nodes running
// different versions would disagree about where a flow belongs.
const (
	maglevSeedOffset uint64 = 0x6d61676c65762d6f // "maglev-o"
	maglevSeedSkip   uint64 = 0x6d61676c65762d73 // "maglev-s"
)

// maglevHash is FNV-1a 64 over key, started from a seeded basis, followed by
// the splitmix64 finalizer. FNV-1a alone spreads short, similar keys such as
// "10.0.1.1" and "10.0.1.2" poorly in its low-order structure, which would
// show up as correlated offsets/skips after the "mod size"; the finalizer
// makes every output bit depend on every input bit. It is written out here
// (rather than using hash/maphash) because the result must be identical
// across processes, machines and Go versions.
func maglevHash(key string, seed uint64) uint64 {
	const (
		fnvOffset = 14695981039346656037
		fnvPrime  = 1099511628211
	)
	h := uint64(fnvOffset) ^ seed
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnvPrime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// maglevOffsetSkip returns where key's preference list starts and its stride.
// skip is in [1, size-1]; together with a prime size that makes the list a
// full permutation of the slots.
func maglevOffsetSkip(key string, size uint32) (offset, skip uint32) {
	offset = uint32(maglevHash(key, maglevSeedOffset) % uint64(size))
	skip = uint32(maglevHash(key, maglevSeedSkip)%uint64(size-1)) + 1
	return offset, skip
}

// maglevCursor is the build-time state of one backend with weight > 0.
type maglevCursor struct {
	id     uint32
	weight uint64
	pos    uint32 // next slot in this backend's preference list
	skip   uint32
	taken  uint32 // slots claimed so far
	quota  uint32 // slots this backend may claim in total
}

// BuildMaglev fills a table of size slots with backend IDs and returns it.
//
// size must be prime (so every preference list is a full permutation).
// Backends with weight 0 are skipped; if none is left, ErrNoBackends is
// returned. Duplicate Keys are an error because two entries with the same
// key would share one preference list and the result would depend on which
// one the caller meant.
//
// The result depends only on the set of (Key, ID, Weight): input order is
// irrelevant (backends are sorted by Key) and no random seed is involved.
// Each backend with weight w gets floor or ceil of size*w/sum(w) slots.
// IDs are written as given; BuildMaglev does not check that they are unique.
// The caller's slice is not modified.
func BuildMaglev(backends []MaglevBackend, size uint32) ([]uint32, error) {
	if !IsPrime(size) {
		return nil, fmt.Errorf("%w: %d", errSizeNotPrime, size)
	}

	// Sorting by Key is what makes the result independent of input order:
	// ties in the schedule are broken by position in this order.
	sorted := slices.Clone(backends)
	slices.SortFunc(sorted, func(a, b MaglevBackend) int {
		return strings.Compare(a.Key, b.Key)
	})
	for i := 1; i < len(sorted); i++ {
		// Checked before dropping zero weights: a duplicate is a caller bug
		// whether or not one copy is drained.
		if sorted[i].Key == sorted[i-1].Key {
			return nil, fmt.Errorf("%w: %q", errDuplicateKey, sorted[i].Key)
		}
	}

	cursors := make([]maglevCursor, 0, len(sorted))
	var sumWeight uint64 // at most len*2^32, no overflow for any real slice
	for _, b := range sorted {
		if b.Weight == 0 {
			continue
		}
		offset, skip := maglevOffsetSkip(b.Key, size)
		cursors = append(cursors, maglevCursor{
			id:     b.ID,
			weight: uint64(b.Weight),
			pos:    offset,
			skip:   skip,
		})
		sumWeight += uint64(b.Weight)
	}
	if len(cursors) == 0 {
		return nil, ErrNoBackends
	}

	maglevQuotas(cursors, size, sumWeight)

	table := make([]uint32, size)
	// A separate bitmap rather than a sentinel ID, because every uint32 is a
	// valid ID.
	used := make([]bool, size)

	h := maglevHeap{c: cursors, idx: make([]int32, 0, len(cursors))}
	for i := range cursors {
		if cursors[i].quota > 0 {
			h.idx = append(h.idx, int32(i))
		}
	}
	h.init()

	// Sum of quotas == size, so the heap runs empty exactly when the table
	// is full.
	for len(h.idx) > 0 {
		c := &cursors[h.idx[0]]
		// Advance lazily along the preference list. A slot skipped here is
		// already taken and stays taken, so the cursor never needs to look
		// back; the table is not full yet, so a free slot exists.
		for used[c.pos] {
			c.advance(size)
		}
		used[c.pos] = true
		table[c.pos] = c.id
		c.advance(size)
		c.taken++

		if c.taken < c.quota {
			h.fixRoot()
		} else {
			h.popRoot()
		}
	}
	return table, nil
}

// advance moves the cursor to the next entry of the preference list, i.e.
// pos = (pos + skip) mod size, written so that it cannot overflow for sizes
// above 2^31.
func (c *maglevCursor) advance(size uint32) {
	if c.pos >= size-c.skip {
		c.pos -= size - c.skip
	} else {
		c.pos += c.skip
	}
}

// maglevQuotas sets each cursor's quota to its ideal share
// size*weight/sumWeight, rounded with the largest-remainder method so the
// quotas add up to exactly size. Ties in the remainder go to the earlier
// (smaller) Key to keep the result deterministic.
func maglevQuotas(cursors []maglevCursor, size uint32, sumWeight uint64) {
	rem := make([]uint64, len(cursors))
	var assigned uint64
	for i := range cursors {
		// size < 2^32 and weight < 2^32, so the product fits in a uint64.
		p := uint64(size) * cursors[i].weight
		cursors[i].quota = uint32(p / sumWeight)
		rem[i] = p % sumWeight
		assigned += uint64(cursors[i].quota)
	}
	left := uint64(size) - assigned // < len(cursors)
	if left == 0 {
		return
	}
	order := make([]int, len(cursors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if rem[a] != rem[b] {
			if rem[a] > rem[b] {
				return -1
			}
			return 1
		}
		return a - b
	})
	for _, i := range order[:left] {
		cursors[i].quota++
	}
}

// maglevHeap is a binary min-heap of cursor indices ordered by the virtual
// time of each cursor's next turn. It is hand-rolled rather than
// container/heap to avoid interface calls in the hot loop.
type maglevHeap struct {
	c   []maglevCursor
	idx []int32
}

// before reports whether cursor a's next turn comes before cursor b's.
// Turn k = taken+1 of a backend with weight w is at (k - 1/2)/w =
// (2*taken+1)/(2w); comparing the fractions by cross-multiplying keeps it
// exact. 2*taken+1 < 2^33 and w < 2^32, so the products need up to 65 bits;
// bits.Mul64 gives the full 128-bit product.
func (h *maglevHeap) before(a, b int32) bool {
	ca, cb := &h.c[a], &h.c[b]
	ahi, alo := bits.Mul64(2*uint64(ca.taken)+1, cb.weight)
	bhi, blo := bits.Mul64(2*uint64(cb.taken)+1, ca.weight)
	if ahi != bhi {
		return ahi < bhi
	}
	if alo != blo {
		return alo < blo
	}
	return a < b // same time: smaller Key first
}

func (h *maglevHeap) init() {
	for i := len(h.idx)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// fixRoot restores heap order after the root's next turn moved later.
func (h *maglevHeap) fixRoot() { h.down(0) }

// popRoot removes the root (a backend that has reached its quota).
func (h *maglevHeap) popRoot() {
	last := len(h.idx) - 1
	h.idx[0] = h.idx[last]
	h.idx = h.idx[:last]
	if last > 0 {
		h.down(0)
	}
}

func (h *maglevHeap) down(i int) {
	n := len(h.idx)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.before(h.idx[r], h.idx[l]) {
			m = r
		}
		if !h.before(h.idx[m], h.idx[i]) {
			return
		}
		h.idx[i], h.idx[m] = h.idx[m], h.idx[i]
		i = m
	}
}
