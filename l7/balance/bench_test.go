package balance

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkSelect measures one pick, as the proxy makes for every request,
// over 3 and 10 loaded backends with latency samples. Every scheduler must
// report 0 allocs/op.
func BenchmarkSelect(b *testing.B) {
	for _, name := range names {
		for _, n := range []int{3, 10} {
			b.Run(name+"/"+strconv.Itoa(n), func(b *testing.B) {
				s, err := New(name)
				if err != nil {
					b.Fatal(err)
				}
				ups, picks := benchPool(n)
				now := time.Now()
				s.Select(ups, &picks[0], now) // builds the hash ring
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if s.Select(ups, &picks[i&(len(picks)-1)], now) == nil {
						b.Fatal("no backend")
					}
				}
			})
		}
	}
}

// BenchmarkSelectParallel is the same pick from every core at once, with
// the acquire and release around it: what contention on the shared state
// costs.
func BenchmarkSelectParallel(b *testing.B) {
	for _, name := range names {
		b.Run(name+"/10", func(b *testing.B) {
			s, err := New(name)
			if err != nil {
				b.Fatal(err)
			}
			ups, picks := benchPool(10)
			now := time.Now()
			s.Select(ups, &picks[0], now)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					u := s.Select(ups, &picks[i&(len(picks)-1)], now)
					u.Acquire()
					u.Release()
				}
			})
		})
	}
}

func benchPool(n int) ([]*Upstream, []Pick) {
	weights := make([]int, n)
	for i := range weights {
		weights[i] = 1 + i%3
	}
	ups := pool(weights...)
	now := time.Now()
	for i, u := range ups {
		u.SetMaxConns(1000)
		u.SetSlowStart(time.Minute)
		for range i % 4 {
			u.Acquire()
		}
		u.ObserveLatency(time.Duration(5+i)*time.Millisecond, now)
	}
	picks := make([]Pick, 1024)
	for i := range picks {
		picks[i] = Pick{ClientIP: clientIP(i), Key: "user-" + strconv.Itoa(i)}
	}
	return ups, picks
}
