package balance

import "testing"

func TestLeastConnPrefersTheIdleBackend(t *testing.T) {
	s := seeded(t, "least_conn", 1)
	ups := pool(1, 1, 1)
	for range 5 {
		ups[0].Acquire()
	}
	for range 3 {
		ups[1].Acquire()
	}
	for i := range 1000 {
		if got := s.Select(ups, &Pick{}, t0); got != ups[2] {
			t.Fatalf("pick %d: %s, want the idle c", i, label(ups, got))
		}
	}
}

// Load counts per unit of weight: 4 in flight on weight 4 is lighter than
// 2 on weight 1.
func TestLeastConnWeighsInflightByWeight(t *testing.T) {
	s := seeded(t, "least_conn", 1)
	ups := pool(4, 1)
	for range 4 {
		ups[0].Acquire()
	}
	for range 2 {
		ups[1].Acquire()
	}
	if got := s.Select(ups, &Pick{}, t0); got != ups[0] {
		t.Fatalf("got %s, want a (load 1 against 2)", label(ups, got))
	}
}

// When requests are held, least_conn spreads them evenly instead of herding
// onto the first backend.
func TestLeastConnSpreadsHeldRequests(t *testing.T) {
	s := seeded(t, "least_conn", 1)
	ups := pool(1, 1, 1, 1)
	for range 400 {
		u := s.Select(ups, &Pick{}, t0)
		u.Acquire()
	}
	for _, u := range ups {
		if u.Inflight() != 100 {
			t.Errorf("%s holds %d, want 100", label(ups, u), u.Inflight())
		}
	}
}
