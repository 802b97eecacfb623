package balance

import (
	"strings"
	"testing"
	"time"
)

func TestRoundRobinMatchesNginxSmoothSequence(t *testing.T) {
	s := new(RoundRobin)
	ups := pool(5, 1, 1)
	var got strings.Builder
	for range 14 {
		got.WriteString(label(ups, s.Select(ups, &Pick{}, t0)))
	}
	if want := "aabacaa" + "aabacaa"; got.String() != want {
		t.Fatalf("sequence %q, want %q", got.String(), want)
	}
}

func TestRoundRobinSkipsAnUnusableBackendWithoutBursts(t *testing.T) {
	s := new(RoundRobin)
	ups := pool(1, 1, 1)
	ups[1].SetHealthy(false, t0)
	var got strings.Builder
	for range 6 {
		got.WriteString(label(ups, s.Select(ups, &Pick{}, t0)))
	}
	if want := "acacac"; got.String() != want {
		t.Fatalf("sequence %q, want %q", got.String(), want)
	}
}

func TestRoundRobinRestartsWhenTheBackendSetChanges(t *testing.T) {
	s := new(RoundRobin)
	ups := pool(1, 1, 1)
	s.Select(ups, &Pick{}, t0)
	fewer := ups[1:]
	counts := map[*Upstream]int{}
	for range 100 {
		counts[s.Select(fewer, &Pick{}, t0)]++
	}
	if counts[ups[1]] != 50 || counts[ups[2]] != 50 {
		t.Fatalf("after removing a: b %d, c %d picks, want 50 each", counts[ups[1]], counts[ups[2]])
	}
}

// A backend in slow start gets 10% of its share at first and all of it at
// the end of the ramp.
func TestRoundRobinHonoursSlowStart(t *testing.T) {
	s := new(RoundRobin)
	ups := pool(1, 1)
	ups[1].SetSlowStart(time.Minute)
	ups[1].SetHealthy(false, t0)
	ups[1].SetHealthy(true, t0)
	share := func(now time.Time) float64 {
		n := 0
		for range 1100 {
			if s.Select(ups, &Pick{}, now) == ups[1] {
				n++
			}
		}
		return float64(n) / 1100
	}
	if got := share(t0); got < 0.085 || got > 0.095 { // 0.1 / 1.1
		t.Errorf("share at the start of the ramp %.3f, want 0.091", got)
	}
	if got := share(t0.Add(time.Minute)); got < 0.49 || got > 0.51 {
		t.Errorf("share after the ramp %.3f, want 0.5", got)
	}
}
