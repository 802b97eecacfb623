package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// t0 is the tests' clock: every time is passed explicitly, nothing sleeps.
var t0 = time.Unix(1_700_000_000, 0)

var names = []string{"round_robin", "least_conn", "ip_hash", "consistent_hash", "least_time", "random_two"}

// pool makes backends a, b, c, ... with these weights and no limits.
func pool(weights ...int) []*Upstream {
	ups := make([]*Upstream, len(weights))
	for i, w := range weights {
		ups[i] = NewUpstream(fmt.Sprintf("10.0.0.%d:8080", i+1), w, 0, 0)
	}
	return ups
}

// seeded makes the named scheduler with a fixed random sequence, so a test
// sees the same picks on every run.
func seeded(t testing.TB, name string, seed uint64) Selector {
	t.Helper()
	s, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	src := rand.New(rand.NewPCG(seed, seed^0x5eed)).Uint64
	switch s := s.(type) {
	case *LeastConn:
		s.rng.src = src
	case *IPHash:
		s.rng.src = src
	case *ConsistentHash:
		s.rng.src = src
	case *LeastTime:
		s.rng.src = src
	case *RandomTwo:
		s.rng.src = src
	}
	return s
}

func index(ups []*Upstream, u *Upstream) int {
	for i, v := range ups {
		if v == u {
			return i
		}
	}
	return -1
}

// label names backends a, b, c, ... in failure messages.
func label(ups []*Upstream, u *Upstream) string {
	if i := index(ups, u); i >= 0 {
		return string(rune('a' + i))
	}
	return "nil"
}

// clientIP is the i-th of many distinct client addresses.
func clientIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
}

// checkShares fails unless counts follow weights within tol (relative).
func checkShares(t *testing.T, counts []int, weights []int, tol float64) {
	t.Helper()
	var total, wsum int
	for i := range counts {
		total += counts[i]
		wsum += weights[i]
	}
	for i, c := range counts {
		want := float64(total) * float64(weights[i]) / float64(wsum)
		if math.Abs(float64(c)-want) > tol*want {
			t.Errorf("backend %c: %d picks, want %.0f ±%.0f%% (weights %v, counts %v)",
				'a'+i, c, want, tol*100, weights, counts)
		}
	}
}
