package balance

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
)

func chMap(t *testing.T, s Selector, ups []*Upstream, keys int) []*Upstream {
	t.Helper()
	got := make([]*Upstream, keys)
	for k := range got {
		got[k] = s.Select(ups, &Pick{Key: "user-" + strconv.Itoa(k)}, t0)
	}
	return got
}

// Removing a backend moves only the keys that were on it; adding it back
// returns exactly those.
func TestConsistentHashMovesOnlyTheRemovedBackendsKeys(t *testing.T) {
	s := seeded(t, "consistent_hash", 1)
	ups := pool(1, 2, 1, 1, 3)
	before := chMap(t, s, ups, 10_000)
	for gone := range ups {
		fewer := slices.Delete(slices.Clone(ups), gone, gone+1)
		after := chMap(t, s, fewer, 10_000)
		moved := 0
		for k := range before {
			switch {
			case before[k] != ups[gone] && after[k] != before[k]:
				t.Fatalf("without %s: key %d moved from %s to %s", label(ups, ups[gone]), k,
					label(ups, before[k]), label(ups, after[k]))
			case before[k] == ups[gone]:
				moved++
			}
		}
		if moved == 0 {
			t.Fatalf("%s had no keys", label(ups, ups[gone]))
		}
		if back := chMap(t, s, ups, 10_000); !slices.Equal(back, before) {
			t.Fatalf("after adding %s back the keys did not return", label(ups, ups[gone]))
		}
	}
}

// A backend going down is the same: only its keys move, and they return.
func TestConsistentHashMovesOnlyAnUnhealthyBackendsKeys(t *testing.T) {
	s := seeded(t, "consistent_hash", 1)
	ups := pool(1, 1, 1, 1)
	before := chMap(t, s, ups, 10_000)
	ups[2].SetHealthy(false, t0)
	after := chMap(t, s, ups, 10_000)
	for k := range before {
		if before[k] != ups[2] && after[k] != before[k] {
			t.Fatalf("key %d moved from %s to %s", k, label(ups, before[k]), label(ups, after[k]))
		}
		if after[k] == ups[2] {
			t.Fatalf("key %d still on the unhealthy c", k)
		}
	}
	ups[2].SetHealthy(true, t0)
	if back := chMap(t, s, ups, 10_000); !slices.Equal(back, before) {
		t.Fatal("keys did not return when c recovered")
	}
}

// Bounded load: a hot key whose backend holds far more than its share
// spills over to the next backend on the ring, the same one every time,
// and returns once the load drops.
func TestConsistentHashSpreadsAHotKeyOffASaturatedBackend(t *testing.T) {
	s := seeded(t, "consistent_hash", 1)
	ups := pool(1, 1, 1)
	hot := &Pick{Key: "celebrity"}
	home := s.Select(ups, hot, t0)
	for range 4 {
		// 4 in flight of 5 with this one: the share is ceil(1.25×5/3) = 3,
		// plus one request of slack.
		home.Acquire()
	}
	spill := s.Select(ups, hot, t0)
	if spill == home || spill == nil {
		t.Fatalf("with %s saturated the hot key still went to %s", label(ups, home), label(ups, spill))
	}
	for range 100 {
		if got := s.Select(ups, hot, t0); got != spill {
			t.Fatalf("spill-over went to %s, then %s", label(ups, spill), label(ups, got))
		}
	}
	// Holding the hot key's requests spreads them; none goes over the bound.
	for range 60 {
		u := s.Select(ups, hot, t0)
		u.Acquire()
		var total int64
		for _, v := range ups {
			total += v.Inflight()
		}
		for _, v := range ups {
			if limit := (125*total+299)/300 + 1; v.Inflight() > max(limit, 4) {
				t.Fatalf("%s holds %d of %d in flight, over the bound", label(ups, v), v.Inflight(), total)
			}
		}
	}
	for _, u := range ups {
		for u.Inflight() > 0 {
			u.Release()
		}
	}
	if got := s.Select(ups, hot, t0); got != home {
		t.Fatalf("when idle again the hot key went to %s, want its home %s", label(ups, got), label(ups, home))
	}
}

func TestConsistentHashRebuildsItsRingOnlyOnChange(t *testing.T) {
	s := new(ConsistentHash)
	ups := pool(1, 1, 1)
	s.Select(ups, &Pick{Key: "a"}, t0)
	r := s.ring.Load()
	s.Select(slices.Clone(ups), &Pick{Key: "b"}, t0) // another slice, same backends
	if s.ring.Load() != r {
		t.Fatal("same backends rebuilt the ring")
	}
	ups[1].SetWeight(2)
	s.Select(ups, &Pick{Key: "c"}, t0)
	if s.ring.Load() == r {
		t.Fatal("a weight change kept the old ring")
	}
}

func TestConsistentHashSpreadsRequestsWithoutAKey(t *testing.T) {
	s := seeded(t, "consistent_hash", 1)
	ups := pool(1, 1, 1)
	counts := make([]int, len(ups))
	for range 30_000 {
		counts[index(ups, s.Select(ups, &Pick{}, t0))]++
	}
	checkShares(t, counts, []int{1, 1, 1}, 0.05)
}

// A lone client that sends its next request as soon as its answer came
// keeps its backend: the request that just finished may still count as in
// flight there (it is released once its answer reached the client), and
// one request of slack keeps that from moving the key.
func TestConsistentHashKeepsASequentialClientsKey(t *testing.T) {
	s := seeded(t, "consistent_hash", 1)
	ups := pool(1, 1, 1, 1)
	for i := range 200 {
		p := &Pick{Key: fmt.Sprint("key-", i)}
		home := s.Select(ups, p, t0)
		home.Acquire() // the last request, not released yet
		if again := s.Select(ups, p, t0); again != home {
			t.Fatalf("key %d: %s, then %s while its last request finished", i, label(ups, home), label(ups, again))
		}
		home.Release()
	}
}
