package balance

import (
	"testing"
	"time"
)

func TestNewKnowsEverySchedulerAndRejectsOthers(t *testing.T) {
	for _, name := range names {
		s, err := New(name)
		if err != nil || s == nil {
			t.Errorf("New(%q) = %v, %v", name, s, err)
		}
	}
	for _, name := range []string{"", "maglev", "least_con", "Round_Robin"} {
		if _, err := New(name); err == nil {
			t.Errorf("New(%q) succeeded, want an error", name)
		}
	}
}

// Every scheduler skips each kind of unusable backend, for any key, and
// returns nil when none is left.
func TestNoSchedulerPicksAnUnusableBackend(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(u *Upstream, p *Pick) // makes backend u unusable for p; idempotent
	}{
		{"unhealthy", func(u *Upstream, _ *Pick) { u.SetHealthy(false, t0) }},
		{"drained", func(u *Upstream, _ *Pick) { u.SetDrained(true) }},
		{"weight-zero", func(u *Upstream, _ *Pick) { u.SetWeight(0) }},
		{"ejected", func(u *Upstream, _ *Pick) {
			if !u.Ejected(t0) && !u.Fail(t0, 1, time.Minute) {
				panic("one failure with max_fails 1 must eject")
			}
		}},
		{"full", func(u *Upstream, _ *Pick) { u.SetMaxConns(2); u.Acquire(); u.Acquire() }},
		{"tried", func(u *Upstream, p *Pick) { p.Tried = append(p.Tried, u) }},
	}
	for _, name := range names {
		for _, c := range cases {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				s := seeded(t, name, 1)
				ups := pool(3, 1, 2, 1)
				bad := []*Upstream{ups[0], ups[2]} // the heaviest, so a scheduler would like them
				for i := range 2000 {
					p := &Pick{ClientIP: clientIP(i), Key: "user-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))}
					for _, u := range bad {
						c.spoil(u, p)
					}
					got := s.Select(ups, p, t0)
					if got == nil || got == bad[0] || got == bad[1] {
						t.Fatalf("pick %d: got %s, want b or d", i, label(ups, got))
					}
				}
				p := &Pick{ClientIP: clientIP(7), Key: "k"}
				for _, u := range ups {
					c.spoil(u, p)
				}
				if got := s.Select(ups, p, t0); got != nil {
					t.Fatalf("every backend %s: got %s, want nil", c.name, label(ups, got))
				}
			})
		}
	}
}

func TestEverySchedulerHandlesEmptyPoolsAndNilPick(t *testing.T) {
	for _, name := range names {
		s := seeded(t, name, 1)
		if got := s.Select(nil, &Pick{Key: "k"}, t0); got != nil {
			t.Errorf("%s: empty pool gave %v", name, got.Addr)
		}
		ups := pool(1, 2)
		if got := s.Select(ups, nil, t0); got == nil {
			t.Errorf("%s: nil Pick gave nil", name)
		}
	}
}

// Shares follow weights when every backend is equally loaded and equally
// fast: exactly for round_robin, and within 2% over 100k picks for the
// randomised schedulers, whose ties go in proportion to weight.
func TestSharesFollowWeights(t *testing.T) {
	weights := []int{5, 3, 2}
	for _, name := range []string{"round_robin", "least_conn", "random_two", "least_time"} {
		t.Run(name, func(t *testing.T) {
			s := seeded(t, name, 42)
			ups := pool(weights...)
			for _, u := range ups {
				u.ObserveLatency(20*time.Millisecond, t0)
			}
			counts := make([]int, len(ups))
			p := &Pick{}
			for range 100_000 {
				counts[index(ups, s.Select(ups, p, t0))]++
			}
			tol := 0.02
			if name == "round_robin" {
				tol = 0.0002 // 100,000 is a multiple of 10: only rounding is left
			}
			checkShares(t, counts, weights, tol)
		})
	}
}

// The hashing schedulers follow weights over many keys, within 10%.
func TestHashSharesFollowWeights(t *testing.T) {
	for _, weights := range [][]int{{5, 3, 2}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}} {
		for _, name := range []string{"ip_hash", "consistent_hash"} {
			s := seeded(t, name, 1)
			ups := pool(weights...)
			counts := make([]int, len(ups))
			for i := range 100_000 {
				p := &Pick{ClientIP: clientIP(i), Key: clientIP(i).String()}
				counts[index(ups, s.Select(ups, p, t0))]++
			}
			t.Run(name, func(t *testing.T) { checkShares(t, counts, weights, 0.10) })
		}
	}
}
