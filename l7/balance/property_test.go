package balance

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// least_conn sends new work to the backend with the fewest requests in
// flight per weight.
func TestLeastConnPrefersIdle(t *testing.T) {
	s := seeded(t, "least_conn", 3)
	ups := pool(1, 1, 1)
	for range 5 {
		ups[0].Acquire()
		ups[2].Acquire()
	}
	for i := range 200 {
		if got := s.Select(ups, &Pick{}, t0); got != ups[1] {
			t.Fatalf("pick %d: %s, want the idle b", i, label(ups, got))
		}
	}
}

// least_time prefers the fast backend, and still probes one it has no
// recent latency for, so no backend starves.
func TestLeastTimePrefersFastAndProbesUnknown(t *testing.T) {
	s := seeded(t, "least_time", 5)
	ups := pool(1, 1, 1)
	ups[0].ObserveLatency(100*time.Millisecond, t0)
	ups[1].ObserveLatency(5*time.Millisecond, t0)
	ups[2].ObserveLatency(100*time.Millisecond, t0)
	counts := make([]int, 3)
	for range 3000 {
		counts[index(ups, s.Select(ups, &Pick{}, t0))]++
	}
	if counts[1] < 1800 {
		t.Errorf("fast backend b got %v of 3000 picks; want most", counts)
	}
	fresh := pool(1, 1, 1)
	fresh[0].ObserveLatency(5*time.Millisecond, t0)
	fresh[1].ObserveLatency(5*time.Millisecond, t0)
	probed := 0
	for range 3000 {
		if s.Select(fresh, &Pick{}, t0) == fresh[2] {
			probed++
		}
	}
	if probed == 0 {
		t.Errorf("a backend with no latency sample was never probed")
	}
}

// Removing one backend from consistent_hash moves only the keys it had.
func TestConsistentHashMovesOnlyRemovedKeys(t *testing.T) {
	s := seeded(t, "consistent_hash", 7)
	ups := pool(1, 1, 1, 1, 1)
	before := map[string]*Upstream{}
	for i := range 10_000 {
		k := fmt.Sprintf("user-%d", i)
		before[k] = s.Select(ups, &Pick{Key: k}, t0)
	}
	gone := ups[2]
	rest := append(append([]*Upstream{}, ups[:2]...), ups[3:]...)
	moved, had := 0, 0
	for k, was := range before {
		now := s.Select(rest, &Pick{Key: k}, t0)
		if was == gone {
			had++
			continue
		}
		if now != was {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d keys of surviving backends moved when one backend left", moved)
	}
	if had < 1000 || had > 3000 {
		t.Errorf("removed backend had %d of 10000 keys, want about 2000", had)
	}
}

// Bounded load: a hot key spills to the next backend once its own carries
// more than its share of the requests in flight.
func TestConsistentHashBoundedLoad(t *testing.T) {
	s := seeded(t, "consistent_hash", 9)
	ups := pool(1, 1, 1, 1)
	home := s.Select(ups, &Pick{Key: "hot"}, t0)
	for range 20 {
		home.Acquire()
	}
	if got := s.Select(ups, &Pick{Key: "hot"}, t0); got == home {
		t.Errorf("hot key stayed on its saturated backend (%d in flight, others 0)", home.Inflight())
	}
}

// ip_hash keeps a client on its backend, and moves it only while that
// backend is unavailable.
func TestIPHashStableAndMovesOnlyWhenDown(t *testing.T) {
	s := seeded(t, "ip_hash", 11)
	ups := pool(1, 1, 1)
	for i := range 200 {
		ip := clientIP(i)
		first := s.Select(ups, &Pick{ClientIP: ip}, t0)
		for range 5 {
			if got := s.Select(ups, &Pick{ClientIP: ip}, t0); got != first {
				t.Fatalf("client %v moved from %s to %s", ip, label(ups, first), label(ups, got))
			}
		}
		first.SetHealthy(false, t0)
		if got := s.Select(ups, &Pick{ClientIP: ip}, t0); got == first || got == nil {
			t.Fatalf("client %v not moved off its down backend", ip)
		}
		first.SetHealthy(true, t0)
		if got := s.Select(ups, &Pick{ClientIP: ip}, t0); got != first {
			t.Fatalf("client %v did not return to its backend", ip)
		}
	}
}

func TestSlowStartRamp(t *testing.T) {
	u := NewUpstream("10.0.0.1:80", 10, 0, 10*time.Second)
	u.SetHealthy(false, t0)
	u.SetHealthy(true, t0)
	at := func(d time.Duration) float64 { return u.EffectiveWeight(t0.Add(d)) }
	if w := at(0); w < 0.9 || w > 1.1 {
		t.Errorf("weight at the start of slow start %.2f, want 10%% of 10", w)
	}
	if w := at(5 * time.Second); w < 5 || w > 6 {
		t.Errorf("weight half way %.2f, want about 5.5", w)
	}
	if w := at(11 * time.Second); w != 10 {
		t.Errorf("weight after slow start %.2f, want 10", w)
	}
}

func TestPassiveEjection(t *testing.T) {
	u := NewUpstream("10.0.0.1:80", 1, 0, 0)
	if u.Fail(t0, 3, 10*time.Second) || u.Fail(t0.Add(time.Second), 3, 10*time.Second) {
		t.Fatal("ejected before max_fails")
	}
	if !u.Fail(t0.Add(2*time.Second), 3, 10*time.Second) {
		t.Fatal("third failure within fail_timeout did not eject")
	}
	if u.Available(t0.Add(5 * time.Second)) {
		t.Error("available while ejected")
	}
	if !u.Available(t0.Add(13 * time.Second)) {
		t.Error("still out after fail_timeout")
	}
	// Failures spread wider than fail_timeout never eject.
	v := NewUpstream("10.0.0.2:80", 1, 0, 0)
	for i := range 10 {
		if v.Fail(t0.Add(time.Duration(i)*11*time.Second), 3, 10*time.Second) {
			t.Fatalf("failure %d, 11 s apart, ejected", i)
		}
	}
}

// Many goroutines choosing and releasing at once: no race, no over-commit
// of max_conns.
func TestConcurrentSelectRespectsMaxConns(t *testing.T) {
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			s, _ := New(name)
			ups := pool(1, 2, 3)
			for _, u := range ups {
				u.SetMaxConns(4)
			}
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 2000 {
						p := &Pick{ClientIP: clientIP(g*2000 + i), Key: fmt.Sprint(i)}
						u := s.Select(ups, p, time.Now())
						if u == nil || !u.TryAcquire() {
							continue
						}
						if n := u.Inflight(); n > 4 {
							t.Errorf("%d in flight with max_conns 4", n)
						}
						u.Release()
					}
				}()
			}
			wg.Wait()
		})
	}
}

func BenchmarkSelect(b *testing.B) {
	for _, n := range []int{3, 10} {
		for _, name := range names {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				s, _ := New(name)
				ws := make([]int, n)
				for i := range ws {
					ws[i] = i%3 + 1
				}
				ups := pool(ws...)
				p := &Pick{ClientIP: clientIP(1), Key: "user-1"}
				now := time.Now()
				b.ReportAllocs()
				for b.Loop() {
					s.Select(ups, p, now)
				}
			})
		}
	}
}
