package balance

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many goroutines select, acquire and release while others flip health,
// drain, weights and feed latencies and failures; run with -race. No pick
// may break max_conns, and every counter ends at zero.
func TestSchedulersUnderConcurrentUse(t *testing.T) {
	const workers, picks, maxConns = 16, 2000, 4
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			s, err := New(name)
			if err != nil {
				t.Fatal(err)
			}
			ups := pool(3, 1, 2, 1, 1)
			for _, u := range ups {
				u.SetMaxConns(maxConns)
				u.SetSlowStart(time.Second)
			}
			var over, served atomic.Int64
			stop := make(chan struct{})
			var chaos sync.WaitGroup
			chaos.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					u := ups[i%len(ups)]
					now := time.Now()
					u.SetHealthy(i%7 != 0, now)
					u.SetDrained(i%11 == 0)
					u.SetWeight(1 + i%3)
					u.Fail(now, 3, time.Millisecond)
					u.Succeed(time.Now())
				}
			})
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range picks {
						p := &Pick{ClientIP: clientIP(w*picks + i), Key: strconv.Itoa(i % 50)}
						now := time.Now()
						u := s.Select(ups, p, now)
						if u == nil || !u.TryAcquire() {
							continue
						}
						if u.Inflight() > maxConns {
							over.Add(1)
						}
						served.Add(1)
						u.ObserveLatency(time.Duration(i%5)*time.Millisecond, now)
						u.Release()
					}
				})
			}
			wg.Wait()
			close(stop)
			chaos.Wait()
			if over.Load() != 0 {
				t.Errorf("%d picks saw more than max_conns in flight", over.Load())
			}
			if served.Load() == 0 {
				t.Error("no request was served")
			}
			for _, u := range ups {
				if u.Inflight() != 0 {
					t.Errorf("%s ends with %d in flight", u.Addr, u.Inflight())
				}
			}
		})
	}
}
