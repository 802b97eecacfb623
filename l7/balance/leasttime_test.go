package balance

import (
	"testing"
	"time"
)

func leastTimeCounts(t *testing.T, ups []*Upstream, now time.Time, picks int) []int {
	t.Helper()
	s := seeded(t, "least_time", 7)
	counts := make([]int, len(ups))
	for range picks {
		counts[index(ups, s.Select(ups, &Pick{}, now))]++
	}
	return counts
}

func TestLeastTimePrefersTheFastBackend(t *testing.T) {
	ups := pool(1, 1, 1)
	for i, d := range []time.Duration{10, 50, 100} {
		ups[i].ObserveLatency(d*time.Millisecond, t0)
	}
	c := leastTimeCounts(t, ups, t0, 30_000)
	// Two of three draws include a, which then wins; b wins the rest.
	if c[0] < 19_000 || c[2] != 0 {
		t.Fatalf("picks %v, want a about 20000, c none", c)
	}
}

func TestLeastTimePrefersTheIdleBackendAtEqualLatency(t *testing.T) {
	ups := pool(1, 1, 1)
	for _, u := range ups {
		u.ObserveLatency(20*time.Millisecond, t0)
	}
	for range 4 {
		ups[0].Acquire()
		ups[1].Acquire()
	}
	c := leastTimeCounts(t, ups, t0, 30_000)
	if c[2] < 19_000 {
		t.Fatalf("picks %v, want the idle c to win every draw it is in", c)
	}
}

// A slower backend with nothing in flight beats a faster one whose queue
// would make the request wait longer.
func TestLeastTimeWeighsLatencyByInflight(t *testing.T) {
	ups := pool(1, 1)
	ups[0].ObserveLatency(10*time.Millisecond, t0)
	ups[1].ObserveLatency(30*time.Millisecond, t0)
	for range 5 {
		ups[0].Acquire()
	}
	c := leastTimeCounts(t, ups, t0, 100)
	if c[1] != 100 {
		t.Fatalf("picks %v, want b (30ms × 1) over a (10ms × 6)", c)
	}
}

// A backend with no sample is probed: it ties with the fastest, so it gets
// traffic, but no more than the fastest does.
func TestLeastTimeProbesABackendWithoutSamples(t *testing.T) {
	ups := pool(1, 1, 1)
	ups[0].ObserveLatency(10*time.Millisecond, t0)
	ups[1].ObserveLatency(100*time.Millisecond, t0)
	c := leastTimeCounts(t, ups, t0, 30_000)
	if c[2] < 12_000 || float64(c[2]) > 1.1*float64(c[0]) {
		t.Fatalf("picks %v, want c (no sample) probed about as often as a", c)
	}
}

// A slow backend that lost every draw has no recent sample 5s later and
// is probed again, so it is never starved for long.
func TestLeastTimeProbesAStaleBackendAgain(t *testing.T) {
	ups := pool(1, 1)
	ups[0].ObserveLatency(10*time.Millisecond, t0)
	ups[1].ObserveLatency(time.Second, t0)
	later := t0.Add(6 * time.Second)
	ups[0].ObserveLatency(10*time.Millisecond, later)
	if c := leastTimeCounts(t, ups, t0.Add(time.Second), 1000); c[1] != 0 {
		t.Fatalf("while its sample is recent: picks %v, want none for b", c)
	}
	if c := leastTimeCounts(t, ups, later, 1000); c[1] < 400 {
		t.Fatalf("once its sample is stale: picks %v, want b probed", c)
	}
}

// Averages within 20% of each other tie, and the random first draw wins:
// two backends that differ by noise share the requests, where the exact
// comparison gave every one to whichever average came out lower.
func TestLeastTimeTiesCloseAverages(t *testing.T) {
	ups := pool(1, 1)
	ups[0].ObserveLatency(10*time.Millisecond, t0)
	ups[1].ObserveLatency(11*time.Millisecond, t0)
	if c := leastTimeCounts(t, ups, t0, 10_000); c[1] < 4_000 {
		t.Fatalf("10ms against 11ms: picks %v, want about even", c)
	}
	ups[1].ObserveLatency(30*time.Millisecond, t0) // average 20ms: twice a's
	if c := leastTimeCounts(t, ups, t0, 10_000); c[1] != 0 {
		t.Fatalf("10ms against 20ms: picks %v, want none for b", c)
	}
}

// A backend whose only sample came out high (a pause, a cold cache) loses
// every draw at first, but its score falls while it is not chosen: it is
// tried again within a second, not once its sample is stale.
func TestLeastTimeRetriesABackendThatLostOnNoise(t *testing.T) {
	ups := pool(1, 1)
	ups[0].ObserveLatency(10*time.Millisecond, t0)
	ups[1].ObserveLatency(15*time.Millisecond, t0) // 50% over a's
	s := seeded(t, "least_time", 7)
	now := t0
	for range 1000 { // a request every 2ms, each answered by a in 10ms
		now = now.Add(2 * time.Millisecond)
		if u := s.Select(ups, &Pick{}, now); u == ups[1] {
			if d := now.Sub(t0); d < 200*time.Millisecond || d > time.Second {
				t.Fatalf("b tried again %v after its sample, want between 0.2s and 1s", d)
			}
			return
		}
		ups[0].ObserveLatency(10*time.Millisecond, now)
	}
	t.Fatal("b never tried again in 2s")
}
