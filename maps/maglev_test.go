package maps

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// maglevTestBackends returns n backends with realistic address keys
// ("10.0.x.y"), IDs 1..n and the given weights (weights[i%len(weights)]).
func maglevTestBackends(n int, weights ...uint32) []MaglevBackend {
	if len(weights) == 0 {
		weights = []uint32{1}
	}
	bs := make([]MaglevBackend, n)
	for i := range bs {
		bs[i] = MaglevBackend{
			Key:    fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff),
			ID:     uint32(i + 1),
			Weight: weights[i%len(weights)],
		}
	}
	return bs
}

// maglevRandomWeights returns n backends with weights drawn uniformly from
// 1..10 by a fixed-seed generator, so failures are reproducible.
func maglevRandomWeights(n int, seed uint64) []MaglevBackend {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	bs := maglevTestBackends(n)
	for i := range bs {
		bs[i].Weight = uint32(r.IntN(10) + 1)
	}
	return bs
}

func mustBuildMaglev(tb testing.TB, bs []MaglevBackend, size uint32) []uint32 {
	tb.Helper()
	table, err := BuildMaglev(bs, size)
	if err != nil {
		tb.Fatalf("BuildMaglev(%d backends, size %d): %v", len(bs), size, err)
	}
	if len(table) != int(size) {
		tb.Fatalf("len(table) = %d, want %d", len(table), size)
	}
	return table
}

func maglevCounts(table []uint32) map[uint32]int {
	counts := make(map[uint32]int)
	for _, id := range table {
		counts[id]++
	}
	return counts
}

// maglevMoved counts slots whose owner differs between two tables.
func maglevMoved(before, after []uint32) int {
	moved := 0
	for i := range before {
		if before[i] != after[i] {
			moved++
		}
	}
	return moved
}

func TestIsPrime(t *testing.T) {
	tests := []struct {
		n    uint32
		want bool
	}{
		{0, false},
		{1, false},
		{2, true},
		{3, true},
		{4, false},
		{5, true},
		{9, false},
		{25, false},
		{49, false},
		{97, true},
		{65535, false},
		{65537, true}, // DefaultRingSize
		{65539, true},
		{100003, true},
		{100001, false}, // 11 * 9091
		{1000003, true},
		{4294967291, true},  // largest 32-bit prime
		{4294967295, false}, // 3 * 5 * 17 * 257 * 65537
		{4294836225, false}, // 65535^2: needs the d*d loop to reach sqrt
		{4294705159, false}, // 65521 * 65543, product of two primes near 2^16
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			if got := IsPrime(tt.n); got != tt.want {
				t.Errorf("IsPrime(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestIsPrimeMatchesSieve(t *testing.T) {
	const limit = 200000
	composite := make([]bool, limit)
	for i := 2; i < limit; i++ {
		if composite[i] {
			continue
		}
		for j := i * i; j < limit; j += i {
			composite[j] = true
		}
	}
	for n := 0; n < limit; n++ {
		want := n >= 2 && !composite[n]
		if got := IsPrime(uint32(n)); got != want {
			t.Fatalf("IsPrime(%d) = %v, sieve says %v", n, got, want)
		}
	}
}

func TestRingSizeFor(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want uint32 // 0: only check the invariants
	}{
		{"negative uses default", -5, DefaultRingSize},
		{"zero uses default", 0, DefaultRingSize},
		{"3 backends uses default", 3, 65537},
		{"655 backends still default", 655, 65537},
		{"656 backends needs more", 656, 65609},
		{"1000 backends", 1000, 100003},
		{"10000 backends", 10000, 1000003},
		{"huge saturates at largest 32-bit prime", math.MaxInt, 4294967291},
		{"just over 2^32/100 saturates", 42949673, 4294967291},
		{"12345 backends", 12345, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RingSizeFor(tt.n)
			if tt.want != 0 && got != tt.want {
				t.Errorf("RingSizeFor(%d) = %d, want %d", tt.n, got, tt.want)
			}
			if !IsPrime(got) {
				t.Errorf("RingSizeFor(%d) = %d is not prime", tt.n, got)
			}
			floor := uint64(DefaultRingSize)
			if tt.n > 0 {
				floor = max(floor, min(uint64(tt.n)*100, uint64(maxPrime32)))
			}
			if uint64(got) < floor {
				t.Errorf("RingSizeFor(%d) = %d, want >= %d", tt.n, got, floor)
			}
			// Smallest such prime: nothing prime in [floor, got).
			for c := floor; c < uint64(got); c++ {
				if IsPrime(uint32(c)) {
					t.Errorf("RingSizeFor(%d) = %d, but %d is a smaller prime >= %d", tt.n, got, c, floor)
					break
				}
			}
		})
	}
	if got := RingSizeFor(1000); got < 100000 {
		t.Errorf("RingSizeFor(1000) = %d, want >= 100000", got)
	}
}

// TestMaglevPermutationIsFull checks the property the lazy cursor relies on:
// for a prime size, each key's preference list visits every slot once.
func TestMaglevPermutationIsFull(t *testing.T) {
	for _, size := range []uint32{2, 3, 7, 251, 65537} {
		for _, key := range []string{"", "10.0.1.1", "10.0.1.2", "[2001:db8::1]:443"} {
			t.Run(fmt.Sprintf("size=%d/key=%q", size, key), func(t *testing.T) {
				offset, skip := maglevOffsetSkip(key, size)
				if offset >= size || skip < 1 || skip >= size {
					t.Fatalf("offset=%d skip=%d out of range for size %d", offset, skip, size)
				}
				seen := make([]bool, size)
				c := maglevCursor{pos: offset, skip: skip}
				for j := uint32(0); j < size; j++ {
					if seen[c.pos] {
						t.Fatalf("slot %d visited twice after %d steps", c.pos, j)
					}
					seen[c.pos] = true
					c.advance(size)
				}
			})
		}
	}
}

// TestMaglevCursorAdvanceNoOverflow covers the modular step for sizes above
// 2^31, where a naive pos+skip would wrap around in uint32.
func TestMaglevCursorAdvanceNoOverflow(t *testing.T) {
	const size = maxPrime32
	tests := []struct{ pos, skip, want uint32 }{
		{size - 1, size - 1, size - 2},
		{size - 1, 1, 0},
		{0, size - 1, size - 1},
		{size / 2, size/2 + 1, 0},
		{3_000_000_000, 3_000_000_000, uint32((uint64(6_000_000_000)) % uint64(size))},
	}
	for _, tt := range tests {
		c := maglevCursor{pos: tt.pos, skip: tt.skip}
		c.advance(size)
		if c.pos != tt.want {
			t.Errorf("advance(pos=%d, skip=%d) = %d, want %d", tt.pos, tt.skip, c.pos, tt.want)
		}
	}
}

// TestMaglevBalance checks that each backend's slot count matches its
// weighted share.
//
// Two bounds are checked:
//   - every backend is off from size*w/sum(w) by less than one slot (the
//     builder's quota guarantee);
//   - the relative error is <= 1% for every backend whose ideal share is at
//     least 100 slots.
//
// The second bound cannot be demanded unconditionally: a slot count is an
// integer, so a backend whose ideal share is e.g. 18.2 slots is at best 1%
// off only by luck. With equal weights and size = RingSizeFor(n) every share
// is >= 100 slots, so there the 1% bound applies to all backends. For mixed
// weights the "sized by weight" cases use RingSizeFor(sum(w)/min(w)), which
// gives the lightest backend >= 100 slots, and must then also meet 1% for
// every backend.
func TestMaglevBalance(t *testing.T) {
	type tc struct {
		name     string
		backends []MaglevBackend
		size     uint32
		all1pct  bool // every backend must be within 1%
	}
	var tests []tc
	for _, n := range []int{3, 10, 100, 1000} {
		tests = append(tests, tc{
			name:     fmt.Sprintf("equal weights n=%d", n),
			backends: maglevTestBackends(n, 1),
			size:     RingSizeFor(n),
			all1pct:  true,
		})
		tests = append(tests, tc{
			name:     fmt.Sprintf("equal weights 7 n=%d", n),
			backends: maglevTestBackends(n, 7),
			size:     RingSizeFor(n),
			all1pct:  true,
		})
		tests = append(tests, tc{
			name:     fmt.Sprintf("weights 1,1,2 n=%d", n),
			backends: maglevTestBackends(n, 1, 1, 2),
			size:     RingSizeFor(n),
			all1pct:  n < 1000, // n=1000: weight-1 share is 75 slots
		})
		rw := maglevRandomWeights(n, uint64(n))
		tests = append(tests, tc{
			name:     fmt.Sprintf("random weights 1..10 n=%d", n),
			backends: rw,
			size:     RingSizeFor(n),
			all1pct:  n <= 10,
		})
		var sum, minW uint64 = 0, math.MaxUint64
		for _, b := range rw {
			sum += uint64(b.Weight)
			minW = min(minW, uint64(b.Weight))
		}
		tests = append(tests, tc{
			name:     fmt.Sprintf("random weights 1..10 n=%d sized by weight", n),
			backends: rw,
			size:     RingSizeFor(int((sum + minW - 1) / minW)),
			all1pct:  true,
		})
	}
	tests = append(tests,
		tc{
			name: "extreme weight ratio",
			backends: []MaglevBackend{
				{Key: "heavy", ID: 1, Weight: math.MaxUint32},
				{Key: "light-a", ID: 2, Weight: 1},
				{Key: "light-b", ID: 3, Weight: 1},
			},
			size: DefaultRingSize,
		},
		tc{
			name:     "zero weights ignored in shares",
			backends: maglevTestBackends(10, 1, 0),
			size:     DefaultRingSize,
			all1pct:  true,
		},
	)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := mustBuildMaglev(t, tt.backends, tt.size)
			counts := maglevCounts(table)
			var sum uint64
			for _, b := range tt.backends {
				sum += uint64(b.Weight)
			}
			worstRel, worstAbs, worstRelAll := 0.0, 0.0, 0.0
			for _, b := range tt.backends {
				got := counts[b.ID]
				delete(counts, b.ID)
				if b.Weight == 0 {
					if got != 0 {
						t.Errorf("backend %s has weight 0 but %d slots", b.Key, got)
					}
					continue
				}
				ideal := float64(tt.size) * float64(b.Weight) / float64(sum)
				abs := math.Abs(float64(got) - ideal)
				if abs >= 1 {
					t.Errorf("backend %s (w=%d): %d slots, ideal %.2f: off by %.2f >= 1 slot", b.Key, b.Weight, got, ideal, abs)
				}
				rel := abs / ideal
				if (tt.all1pct || ideal >= 100) && rel > 0.01 {
					t.Errorf("backend %s (w=%d): %d slots, ideal %.2f: %.3f%% off, want <= 1%%", b.Key, b.Weight, got, ideal, 100*rel)
				}
				worstAbs, worstRelAll = max(worstAbs, abs), max(worstRelAll, rel)
				if ideal >= 100 {
					worstRel = max(worstRel, rel)
				}
			}
			if len(counts) != 0 {
				t.Errorf("table contains IDs of no backend: %v", counts)
			}
			t.Logf("size=%d: worst deviation %.3f slots; %.3f%% relative among shares >= 100 slots, %.3f%% over all backends",
				tt.size, worstAbs, 100*worstRel, 100*worstRelAll)
		})
	}
}

// maglevDisruptionLimit is the largest fraction of the table that may move
// between surviving backends on a single-backend change, for n >= 10.
const maglevDisruptionLimit = 0.01

func TestMaglevDisruptionRemoveBackend(t *testing.T) {
	tests := []struct {
		name     string
		backends []MaglevBackend
	}{
		{"equal weights n=3", maglevTestBackends(3)},
		{"equal weights n=10", maglevTestBackends(10)},
		{"equal weights n=100", maglevTestBackends(100)},
		{"equal weights n=1000", maglevTestBackends(1000)},
		{"random weights n=10", maglevRandomWeights(10, 10)},
		{"random weights n=100", maglevRandomWeights(100, 100)},
		{"random weights n=1000", maglevRandomWeights(1000, 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(tt.backends)
			// Keep the size fixed across the change, as the data plane does:
			// resizing would move nearly everything.
			size := RingSizeFor(n)
			before := mustBuildMaglev(t, tt.backends, size)
			// Try removing several backends (first, middle, last) so the
			// result does not hinge on one lucky choice.
			worst := 0
			for _, victim := range slices.Compact([]int{0, n / 2, n - 1}) {
				gone := tt.backends[victim]
				rest := slices.Delete(slices.Clone(tt.backends), victim, victim+1)
				after := mustBuildMaglev(t, rest, size)

				collateral, freed := 0, 0
				for i := range before {
					switch {
					case before[i] == gone.ID:
						freed++
						if after[i] == gone.ID {
							t.Fatalf("slot %d still points at removed backend %s", i, gone.Key)
						}
					case after[i] != before[i]:
						collateral++
					}
				}
				frac := float64(collateral) / float64(size)
				t.Logf("remove %s: %d slots freed (%.3f%%), %d surviving slots moved (%.3f%% of table)",
					gone.Key, freed, 100*float64(freed)/float64(size), collateral, 100*frac)
				if n >= 10 && frac > maglevDisruptionLimit {
					t.Errorf("remove %s: %.3f%% of the table moved between surviving backends, want <= %.1f%%",
						gone.Key, 100*frac, 100*maglevDisruptionLimit)
				}
				worst = max(worst, collateral)
			}
			if n < 10 {
				// With 3 backends each survivor's share grows from 1/3 to
				// 1/2, so some reshuffling is inherent; just keep it well
				// below the freed part.
				if limit := int(size) / 20; worst > limit {
					t.Errorf("n=%d: %d surviving slots moved, want <= %d (5%%)", n, worst, limit)
				}
			}
		})
	}
}

func TestMaglevDisruptionAddBackend(t *testing.T) {
	tests := []struct {
		name     string
		backends []MaglevBackend
	}{
		{"equal weights n=3", maglevTestBackends(3)},
		{"equal weights n=10", maglevTestBackends(10)},
		{"equal weights n=100", maglevTestBackends(100)},
		{"equal weights n=1000", maglevTestBackends(1000)},
		{"random weights n=100", maglevRandomWeights(100, 100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(tt.backends)
			size := RingSizeFor(n)
			before := mustBuildMaglev(t, tt.backends, size)

			var sum uint64
			for _, b := range tt.backends {
				sum += uint64(b.Weight)
			}
			added := MaglevBackend{Key: "192.168.77.77", ID: 1 << 20, Weight: 1}
			after := mustBuildMaglev(t, append(slices.Clone(tt.backends), added), size)

			moved := maglevMoved(before, after)
			taken := maglevCounts(after)[added.ID]
			collateral := moved - taken
			want := float64(size) * float64(added.Weight) / float64(sum+uint64(added.Weight))
			t.Logf("add to n=%d: %d slots moved (%.3f%%, ideal 1/(N+1)-share %.3f%%), %d to the new backend, %d between old backends (%.3f%%)",
				n, moved, 100*float64(moved)/float64(size), 100*want/float64(size),
				taken, collateral, 100*float64(collateral)/float64(size))

			if math.Abs(float64(taken)-want) >= 1 {
				t.Errorf("new backend got %d slots, want %.2f", taken, want)
			}
			limit := maglevDisruptionLimit
			if n < 10 {
				limit = 0.05
			}
			if frac := float64(collateral) / float64(size); frac > limit {
				t.Errorf("%.3f%% of the table moved between existing backends, want <= %.1f%%", 100*frac, 100*limit)
			}
		})
	}
}

func TestMaglevDisruptionChangeWeight(t *testing.T) {
	tests := []struct {
		name     string
		backends []MaglevBackend
		index    int
		weight   uint32
	}{
		{"n=3 double one", maglevTestBackends(3, 2), 1, 4},
		{"n=10 double one", maglevTestBackends(10, 2), 3, 4},
		{"n=10 halve one", maglevTestBackends(10, 2), 3, 1},
		{"n=100 double one", maglevTestBackends(100, 2), 42, 4},
		{"n=100 halve one", maglevTestBackends(100, 2), 42, 1},
		{"n=100 1.5x one", maglevTestBackends(100, 2), 42, 3},
		{"n=1000 double one", maglevTestBackends(1000, 2), 500, 4},
		{"n=1000 halve one", maglevTestBackends(1000, 2), 500, 1},
		{"n=100 random weights, one 5->10", func() []MaglevBackend {
			bs := maglevRandomWeights(100, 7)
			bs[9].Weight = 5
			return bs
		}(), 9, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(tt.backends)
			size := RingSizeFor(n)
			before := mustBuildMaglev(t, tt.backends, size)

			changed := slices.Clone(tt.backends)
			changed[tt.index].Weight = tt.weight
			after := mustBuildMaglev(t, changed, size)

			id := tt.backends[tt.index].ID
			delta := maglevCounts(after)[id] - maglevCounts(before)[id]
			if delta < 0 {
				delta = -delta
			}
			var sumBefore, sumAfter uint64
			for i := range tt.backends {
				sumBefore += uint64(tt.backends[i].Weight)
				sumAfter += uint64(changed[i].Weight)
			}
			shareDelta := math.Abs(float64(tt.weight)/float64(sumAfter) -
				float64(tt.backends[tt.index].Weight)/float64(sumBefore))

			moved := maglevMoved(before, after)
			collateral := moved - delta // slots moved beyond the unavoidable minimum
			t.Logf("n=%d weight %d->%d: share changes by %.3f%%, %d slots moved (%.3f%%), %d beyond the minimum (%.3f%%)",
				n, tt.backends[tt.index].Weight, tt.weight, 100*shareDelta, moved,
				100*float64(moved)/float64(size), collateral, 100*float64(collateral)/float64(size))

			if math.Abs(float64(delta)-shareDelta*float64(size)) > 2 {
				t.Errorf("backend's slot count changed by %d, want about %.1f", delta, shareDelta*float64(size))
			}
			limit := maglevDisruptionLimit
			if n < 10 {
				limit = 0.05
			}
			if frac := float64(collateral) / float64(size); frac > limit {
				t.Errorf("%.3f%% of the table moved beyond the weight change itself, want <= %.1f%%", 100*frac, 100*limit)
			}
		})
	}
}

func TestMaglevDeterministic(t *testing.T) {
	tests := []struct {
		name     string
		backends []MaglevBackend
		size     uint32
	}{
		{"n=3 weights 1,1,2", maglevTestBackends(3, 1, 1, 2), DefaultRingSize},
		{"n=100 random weights", maglevRandomWeights(100, 3), DefaultRingSize},
		{"n=1000 equal weights", maglevTestBackends(1000), RingSizeFor(1000)},
		{"n=50 with zero weights", maglevTestBackends(50, 3, 0, 1), 251},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := slices.Clone(tt.backends)
			want := mustBuildMaglev(t, tt.backends, tt.size)
			if !slices.Equal(orig, tt.backends) {
				t.Fatal("BuildMaglev modified its input slice")
			}
			r := rand.New(rand.NewPCG(1, 2))
			for i := range 5 {
				shuffled := slices.Clone(tt.backends)
				r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
				got := mustBuildMaglev(t, shuffled, tt.size)
				if !slices.Equal(got, want) {
					t.Fatalf("shuffle %d: table differs in %d slots", i, maglevMoved(want, got))
				}
			}
			slices.Reverse(tt.backends)
			if got := mustBuildMaglev(t, tt.backends, tt.size); !slices.Equal(got, want) {
				t.Fatalf("reversed input: table differs in %d slots", maglevMoved(want, got))
			}
		})
	}
}

// TestMaglevGolden pins the exact output. Every LB node must compute the
// same table for the same backends, including nodes running an older or
// newer build during a rolling upgrade. If this test fails, the hash or the
// schedule changed, which would remap most flows in production: only update
// the expected values deliberately.
func TestMaglevGolden(t *testing.T) {
	t.Run("hash", func(t *testing.T) {
		tests := []struct {
			key              string
			wantOff, wantSkp uint64
		}{
			{"", 0x7321da775beea0d, 0x97f0b110de8c2a8},
			{"10.0.1.1", 0x8e18192586b08f2e, 0x88f682a086c3e1c2},
		}
		for _, tt := range tests {
			off, skp := maglevHash(tt.key, maglevSeedOffset), maglevHash(tt.key, maglevSeedSkip)
			if off != tt.wantOff || skp != tt.wantSkp {
				t.Errorf("hash(%q) = %#x, %#x; want %#x, %#x", tt.key, off, skp, tt.wantOff, tt.wantSkp)
			}
		}
	})

	t.Run("small table weights 1,1,2", func(t *testing.T) {
		got := mustBuildMaglev(t, []MaglevBackend{
			{Key: "10.0.1.1", ID: 1, Weight: 1},
			{Key: "10.0.1.2", ID: 2, Weight: 1},
			{Key: "10.0.1.3", ID: 3, Weight: 2},
		}, 13)
		// Quotas 13*{1,1,2}/4 = 3.25, 3.25, 6.5 -> 3, 3, 7 (largest remainder).
		want := []uint32{1, 3, 3, 3, 2, 1, 2, 3, 3, 1, 3, 3, 2}
		if !slices.Equal(got, want) {
			t.Errorf("table = %v, want %v", got, want)
		}
	})

	tests := []struct {
		name     string
		backends []MaglevBackend
		size     uint32
		wantSum  uint64 // maglevTableSum of the table
	}{
		{"n=100 random weights", maglevRandomWeights(100, 42), DefaultRingSize, 0xd633f2d3995a89f3},
		{"n=1000 equal weights", maglevTestBackends(1000), RingSizeFor(1000), 0xd10c2e6085492e59},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := maglevTableSum(mustBuildMaglev(t, tt.backends, tt.size)); got != tt.wantSum {
				t.Errorf("table checksum = %#x, want %#x", got, tt.wantSum)
			}
		})
	}
}

// maglevTableSum is FNV-1a 64 over the table as little-endian uint32s, a
// compact fingerprint for golden tests.
func maglevTableSum(table []uint32) uint64 {
	h := fnv.New64a()
	var buf [4]byte
	for _, id := range table {
		buf[0], buf[1], buf[2], buf[3] = byte(id), byte(id>>8), byte(id>>16), byte(id>>24)
		h.Write(buf[:])
	}
	return h.Sum64()
}

func TestMaglevZeroWeightExcluded(t *testing.T) {
	bs := []MaglevBackend{
		{Key: "10.0.0.1", ID: 1, Weight: 1},
		{Key: "10.0.0.2", ID: 2, Weight: 0},
		{Key: "10.0.0.3", ID: 3, Weight: 1},
		{Key: "10.0.0.4", ID: 4, Weight: 0},
	}
	table := mustBuildMaglev(t, bs, DefaultRingSize)
	counts := maglevCounts(table)
	if counts[2] != 0 || counts[4] != 0 {
		t.Errorf("zero-weight backends present: %v", counts)
	}
	// A drained backend must not influence the others at all, so draining
	// does not move any flow that was not on the drained backend.
	without := mustBuildMaglev(t, []MaglevBackend{bs[0], bs[2]}, DefaultRingSize)
	if !slices.Equal(table, without) {
		t.Errorf("zero-weight backends changed the table in %d slots", maglevMoved(table, without))
	}
}

// TestMaglevAnyIDValue makes sure no ID value is treated as "empty slot".
func TestMaglevAnyIDValue(t *testing.T) {
	bs := []MaglevBackend{
		{Key: "a", ID: 0, Weight: 1},
		{Key: "b", ID: math.MaxUint32, Weight: 1},
	}
	counts := maglevCounts(mustBuildMaglev(t, bs, 101))
	if counts[0] != 50 && counts[0] != 51 || counts[0]+counts[math.MaxUint32] != 101 {
		t.Errorf("counts = %v, want 50/51 split of 101", counts)
	}
}

func TestMaglevSmallTables(t *testing.T) {
	tests := []struct {
		name string
		n    int
		size uint32
	}{
		{"one backend size 2", 1, 2},
		{"more backends than slots", 10, 7},
		{"as many backends as slots", 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := mustBuildMaglev(t, maglevTestBackends(tt.n), tt.size)
			counts := maglevCounts(table)
			for id, c := range counts {
				if id < 1 || int(id) > tt.n {
					t.Errorf("unknown id %d in table", id)
				}
				if c > int(tt.size)/tt.n+1 {
					t.Errorf("id %d has %d slots, more than its share", id, c)
				}
			}
		})
	}
}

func TestMaglevErrors(t *testing.T) {
	ok := maglevTestBackends(3)
	tests := []struct {
		name     string
		backends []MaglevBackend
		size     uint32
		want     error
	}{
		{"size not prime", ok, 65536, errSizeNotPrime},
		{"size zero", ok, 0, errSizeNotPrime},
		{"size one", ok, 1, errSizeNotPrime},
		{"duplicate key", append(slices.Clone(ok), MaglevBackend{Key: ok[1].Key, ID: 99, Weight: 1}), DefaultRingSize, errDuplicateKey},
		{"duplicate key of drained backend", append(slices.Clone(ok), MaglevBackend{Key: ok[0].Key, ID: 99, Weight: 0}), DefaultRingSize, errDuplicateKey},
		{"nil backends", nil, DefaultRingSize, ErrNoBackends},
		{"empty backends", []MaglevBackend{}, DefaultRingSize, ErrNoBackends},
		{"all weights zero", maglevTestBackends(5, 0), DefaultRingSize, ErrNoBackends},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table, err := BuildMaglev(tt.backends, tt.size)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if table != nil {
				t.Errorf("table = %d slots, want nil on error", len(table))
			}
		})
	}
}

func BenchmarkBuildMaglev1000(b *testing.B) {
	cases := []struct {
		name     string
		backends []MaglevBackend
		size     uint32
	}{
		{"size=65537", maglevTestBackends(1000), DefaultRingSize},
		{"size=100003", maglevTestBackends(1000), RingSizeFor(1000)},
		{"size=100003 weighted", maglevRandomWeights(1000, 1), RingSizeFor(1000)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildMaglev(c.backends, c.size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
