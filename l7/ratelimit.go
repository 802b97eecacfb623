package l7

import (
	"hash/maphash"
	"sync"
	"time"
)

// limiter allows rate events per period per key with bursts (GCRA: one
// timestamp per key). Keys live in shards so that concurrent requests of
// different clients rarely meet on a lock; idle keys are swept.
type limiter struct {
	interval time.Duration // one event per interval
	tau      time.Duration // burst tolerance: (burst - 1) * interval
	seed     maphash.Seed
	shards   [64]limiterShard
}

type limiterShard struct {
	mu   sync.Mutex
	tats map[string]time.Time
}

func newLimiter(rate uint64, per time.Duration, burst uint64) *limiter {
	interval := per / time.Duration(max(rate, 1))
	if interval <= 0 {
		interval = 1
	}
	l := &limiter{interval: interval, tau: time.Duration(max(burst, 1)-1) * interval, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].tats = map[string]time.Time{}
	}
	return l
}

// allow reports whether one more event for key fits; when it does not,
// retryAfter says when it will.
func (l *limiter) allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	sh := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tat := sh.tats[key]
	if tat.Before(now) {
		tat = now
	}
	if wait := tat.Sub(now) - l.tau; wait > 0 {
		return false, wait
	}
	sh.tats[key] = tat.Add(l.interval)
	return true, 0
}

// sweep forgets keys whose bucket is full again: they carry no state.
func (l *limiter) sweep(now time.Time) {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, tat := range sh.tats {
			if !tat.After(now) {
				delete(sh.tats, k)
			}
		}
		sh.mu.Unlock()
	}
}
