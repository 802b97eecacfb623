package balance

import (
	"testing"
)

func ipMap(s Selector, ups []*Upstream, clients int) []*Upstream {
	got := make([]*Upstream, clients)
	for i := range got {
		got[i] = s.Select(ups, &Pick{ClientIP: clientIP(i)}, t0)
	}
	return got
}

// A client keeps its backend while that backend is up; when it goes down,
// is drained or set to weight 0, only its clients move, spread over the
// others, and they come back.
func TestIPHashKeepsClientsUntilTheirBackendIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name      string
		out, back func(u *Upstream)
	}{
		{"drained", func(u *Upstream) { u.SetDrained(true) }, func(u *Upstream) { u.SetDrained(false) }},
		{"weight-0", func(u *Upstream) { u.SetWeight(0) }, func(u *Upstream) { u.SetWeight(1) }},
		{"down", func(u *Upstream) { u.SetHealthy(false, t0) }, func(u *Upstream) { u.SetHealthy(true, t0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := seeded(t, "ip_hash", 1)
			ups := pool(1, 1, 1, 1)
			before := ipMap(s, ups, 10_000)
			for i, u := range ipMap(s, ups, 10_000) {
				if u != before[i] {
					t.Fatalf("client %d went to %s, then %s", i, label(ups, before[i]), label(ups, u))
				}
			}
			tc.out(ups[1])
			moved := make([]int, len(ups))
			for i, u := range ipMap(s, ups, 10_000) {
				if before[i] != ups[1] && u != before[i] {
					t.Fatalf("client %d moved from %s to %s", i, label(ups, before[i]), label(ups, u))
				}
				if before[i] == ups[1] {
					moved[index(ups, u)]++
				}
			}
			if moved[1] != 0 {
				t.Fatalf("%d clients stayed on b", moved[1])
			}
			for _, i := range []int{0, 2, 3} {
				if moved[i] < 500 {
					t.Errorf("b's clients went %v: want them spread over a, c, d", moved)
				}
			}
			tc.back(ups[1])
			for i, u := range ipMap(s, ups, 10_000) {
				if u != before[i] {
					t.Fatalf("client %d did not return to %s", i, label(ups, before[i]))
				}
			}
		})
	}
}

// A retry of the same client goes elsewhere, deterministically.
func TestIPHashRetriesOnADeterministicOtherBackend(t *testing.T) {
	s := seeded(t, "ip_hash", 1)
	ups := pool(1, 1, 1)
	p := &Pick{ClientIP: clientIP(1)}
	first := s.Select(ups, p, t0)
	p.Tried = []*Upstream{first}
	retry := s.Select(ups, p, t0)
	if retry == first || retry == nil {
		t.Fatalf("retry went to %s after %s", label(ups, retry), label(ups, first))
	}
	for range 10 {
		if got := s.Select(ups, p, t0); got != retry {
			t.Fatalf("retry went to %s, then %s", label(ups, retry), label(ups, got))
		}
	}
}

func TestIPHashSpreadsClientsWithoutAnAddress(t *testing.T) {
	s := seeded(t, "ip_hash", 1)
	ups := pool(2, 1)
	counts := make([]int, len(ups))
	for range 30_000 {
		counts[index(ups, s.Select(ups, &Pick{}, t0))]++
	}
	checkShares(t, counts, []int{2, 1}, 0.05)
}
