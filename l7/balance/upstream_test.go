package balance

import (
	"math"
	"testing"
	"time"
)

func TestNewUpstreamStartsUsable(t *testing.T) {
	u := NewUpstream("10.0.0.1:80", 3, 10, 0)
	if !u.Healthy() || u.Drained() || u.Ejected(t0) || !u.Available(t0) || u.Full() {
		t.Fatal("a new backend is not usable")
	}
	if u.Weight() != 3 || u.MaxConns() != 10 || u.EffectiveWeight(t0) != 3 {
		t.Fatalf("weight %d, max_conns %d, effective %v", u.Weight(), u.MaxConns(), u.EffectiveWeight(t0))
	}
	if u := NewUpstream("x", -2, -1, -time.Second); u.Weight() != 0 || u.MaxConns() != 0 || u.SlowStart() != 0 || u.Available(t0) {
		t.Fatal("negative settings were not clamped to 0 (and weight 0 to unavailable)")
	}
}

func TestSlowStartRampsFromTenPercentToFullWeight(t *testing.T) {
	u := NewUpstream("10.0.0.1:80", 4, 0, 30*time.Second)
	u.SetHealthy(false, t0)
	if u.Available(t0) {
		t.Fatal("unhealthy backend is available")
	}
	u.SetHealthy(true, t0)
	for _, c := range []struct {
		after time.Duration
		want  float64
	}{
		{-time.Second, 0.4}, // a caller's clock behind the transition
		{0, 0.4},
		{15 * time.Second, 0.4 + 0.9*4*0.5},
		{30 * time.Second, 4},
		{time.Hour, 4},
	} {
		if got := u.EffectiveWeight(t0.Add(c.after)); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%v into the ramp: %v, want %v", c.after, got, c.want)
		}
	}
	// Staying healthy does not restart the ramp.
	u.SetHealthy(true, t0.Add(time.Hour))
	if got := u.EffectiveWeight(t0.Add(time.Hour)); got != 4 {
		t.Errorf("a repeated healthy verdict restarted the ramp: %v", got)
	}
}

func TestSlowStartRampsAfterAPassiveEjection(t *testing.T) {
	u := NewUpstream("10.0.0.1:80", 10, 0, 10*time.Second)
	u.SetHealthy(false, t0)
	u.SetHealthy(true, t0)
	at := t0.Add(time.Minute)
	u.Fail(at, 1, 5*time.Second)
	back := at.Add(5 * time.Second)
	for _, c := range []struct {
		at   time.Time
		want float64
	}{
		{back, 1}, {back.Add(5 * time.Second), 5.5}, {back.Add(10 * time.Second), 10},
	} {
		if got := u.EffectiveWeight(c.at); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%v after the ejection: %v, want %v", c.at.Sub(back), got, c.want)
		}
	}
}

func TestPassiveHealthEjectsAfterMaxFailsWithinFailTimeout(t *testing.T) {
	const maxFails, window = 3, 30 * time.Second
	u := NewUpstream("10.0.0.1:80", 1, 0, 0)

	// Failures further apart than fail_timeout do not add up.
	for i := range 5 {
		if u.Fail(t0.Add(time.Duration(i)*20*time.Second), maxFails, window) {
			t.Fatalf("failure %d, 20s apart, ejected", i)
		}
	}
	// A success between failures starts the count again.
	at := t0.Add(10 * time.Minute)
	u.Fail(at, maxFails, window)
	u.Fail(at, maxFails, window)
	u.Succeed(time.Now())
	if u.Fail(at, maxFails, window) {
		t.Fatal("ejected although a success came between the failures")
	}
	// max_fails within fail_timeout ejects, once.
	at = t0.Add(20 * time.Minute)
	u.Succeed(time.Now())
	u.Fail(at, maxFails, window)
	u.Fail(at.Add(10*time.Second), maxFails, window)
	ejectedAt := at.Add(20 * time.Second)
	if !u.Fail(ejectedAt, maxFails, window) {
		t.Fatal("third failure within 30s did not eject")
	}
	if !u.Ejected(ejectedAt) || u.Available(ejectedAt) {
		t.Fatal("ejected backend is still available")
	}
	// Requests that were in flight fail too; they neither report a second
	// ejection nor extend it.
	for range 5 {
		if u.Fail(ejectedAt.Add(time.Second), maxFails, window) {
			t.Fatal("an ejected backend was ejected again")
		}
	}
	if !u.Available(ejectedAt.Add(window)) || u.Ejected(ejectedAt.Add(window)) {
		t.Fatal("backend did not return after fail_timeout")
	}
	if u.Failures() != 5+3+3+5 {
		t.Fatalf("Failures() = %d, want every call counted", u.Failures())
	}
	// Disabled passive health only counts.
	if u.Fail(at, 0, window) || u.Fail(at, 1, 0) {
		t.Fatal("max_fails 0 or fail_timeout 0 ejected")
	}
}

func TestFailSparingKeepsTheLastBackend(t *testing.T) {
	const window = 10 * time.Second
	u := NewUpstream("10.0.0.1:80", 1, 0, 0)
	last := true
	spare := func() bool { return last }
	// The last one: never ejected, reported once per fail_timeout.
	reports := 0
	for i := range 20 {
		ejected, spared := u.FailSparing(t0.Add(time.Duration(i)*time.Second), 1, window, spare)
		if ejected {
			t.Fatalf("failure %d ejected the last backend", i)
		}
		if spared {
			reports++
		}
	}
	if reports != 2 || !u.Available(t0.Add(20*time.Second)) {
		t.Errorf("%d reports in 20s of failures (want 2), available %t", reports, u.Available(t0.Add(20*time.Second)))
	}
	// Once another backend can serve, the next failure ejects it.
	last = false
	at := t0.Add(time.Minute)
	if ejected, _ := u.FailSparing(at, 1, window, spare); !ejected || u.Available(at) {
		t.Errorf("with another backend available the failure did not eject")
	}
}

func TestTryAcquireStopsAtMaxConns(t *testing.T) {
	u := NewUpstream("10.0.0.1:80", 1, 2, 0)
	if !u.TryAcquire() || !u.TryAcquire() {
		t.Fatal("could not take the two slots")
	}
	if !u.Full() || u.TryAcquire() {
		t.Fatal("took a third slot of max_conns 2")
	}
	u.Release()
	if u.Full() || !u.TryAcquire() {
		t.Fatal("a released slot is not free")
	}
	u.Acquire() // Acquire ignores the limit
	if u.Inflight() != 3 || u.Requests() != 4 {
		t.Fatalf("inflight %d, requests %d; want 3, 4", u.Inflight(), u.Requests())
	}
}

func TestLatencyIsATimeDecayingAverage(t *testing.T) {
	u := NewUpstream("10.0.0.1:80", 1, 0, 0)
	if _, ok := u.Latency(t0); ok {
		t.Fatal("a backend without samples reports a latency")
	}
	// The warm-up samples are averaged plainly.
	for _, ms := range []time.Duration{10, 30} {
		u.ObserveLatency(ms*time.Millisecond, t0)
	}
	if got, ok := u.Latency(t0); !ok || got != 20*time.Millisecond {
		t.Fatalf("after 10ms and 30ms: %v, %v; want 20ms", got, ok)
	}
	for range latencyWarmup {
		u.ObserveLatency(20*time.Millisecond, t0)
	}
	// Past warm-up a sample's weight is the time since the last one: a
	// quarter of a half-life later it weighs 1 - 2^-1/4 of the average.
	gap := latencyHalfLife / 4
	u.ObserveLatency(60*time.Millisecond, t0.Add(gap))
	want := time.Duration(20e6 + (1-math.Exp2(-0.25))*40e6)
	if got, _ := u.Latency(t0.Add(gap)); got < want-time.Microsecond || got > want+time.Microsecond {
		t.Fatalf("a quarter half-life later: %v, want %v", got, want)
	}
	// Samples close together move it little.
	u.ObserveLatency(1040*time.Millisecond, t0.Add(gap+time.Millisecond))
	if got, _ := u.Latency(t0.Add(gap)); got > want+time.Millisecond {
		t.Fatalf("a sample 1ms later moved the average to %v", got)
	}
	// After latencyRecent without a sample the average is stale, and the
	// next sample starts afresh.
	last := t0.Add(gap + time.Millisecond)
	if _, ok := u.Latency(last.Add(latencyRecent + time.Nanosecond)); ok {
		t.Fatalf("a %v old average is still recent", latencyRecent)
	}
	u.ObserveLatency(5*time.Millisecond, last.Add(time.Minute))
	if got, ok := u.Latency(last.Add(time.Minute)); !ok || got != 5*time.Millisecond {
		t.Fatalf("after a stale period: %v, %v; want 5ms", got, ok)
	}
}

// An ejection ends when the backend is known to serve again: an active
// check's recovery, or a request sent after the ejection began (a panic
// pick) that succeeds; not a request that was in flight when it began.
func TestEjectionEndsOnRecovery(t *testing.T) {
	const window = time.Hour
	eject := func() (*Upstream, time.Time) {
		u := NewUpstream("10.0.0.1:80", 1, 0, 0)
		before := time.Now()
		at := before.Add(time.Millisecond)
		if !u.Fail(at, 1, window) {
			t.Fatal("max_fails 1 did not eject")
		}
		return u, before
	}

	u, before := eject()
	u.Succeed(before) // in flight when the ejection began
	if !u.Ejected(time.Now()) {
		t.Error("a request sent before the ejection ended it")
	}
	u.Succeed(time.Now().Add(time.Second)) // sent after it: a panic pick
	if now := time.Now(); u.Ejected(now) || !u.Available(now) {
		t.Error("a success sent after the ejection did not end it")
	}

	u, _ = eject()
	u.SetHealthy(false, time.Now())
	u.SetHealthy(true, time.Now())
	if u.Ejected(time.Now()) {
		t.Error("an active check's recovery left the ejection running")
	}
	// Still healthy: a passing check that is no transition changes nothing.
	u, _ = eject()
	u.SetHealthy(true, time.Now())
	if !u.Ejected(time.Now()) {
		t.Error("a check that was no recovery ended the ejection")
	}
}

func TestPanicSelect(t *testing.T) {
	now := time.Now()
	mk := func(addr string, ejectFor time.Duration) *Upstream {
		u := NewUpstream(addr, 1, 0, 0)
		if ejectFor > 0 && !u.Fail(now, 1, ejectFor) {
			t.Fatal("not ejected")
		}
		return u
	}
	soon, late, down, drained := mk("a:1", time.Minute), mk("b:1", time.Hour), mk("c:1", time.Second), mk("d:1", time.Second)
	down.SetHealthy(false, now)
	drained.SetDrained(true)
	ups := []*Upstream{late, down, drained, soon}
	if got := PanicSelect(ups, &Pick{}, now); got != soon {
		t.Errorf("panic pick %v, want the ejection that ends first (a:1)", got)
	}
	if got := PanicSelect(ups, &Pick{Tried: []*Upstream{soon}}, now); got != late {
		t.Errorf("panic pick after a:1 was tried: %v, want b:1", got)
	}
	if got := PanicSelect([]*Upstream{down, drained, NewUpstream("e:1", 0, 0, 0)}, &Pick{}, now); got != nil {
		t.Errorf("panic pick among down, drained and weight 0: %v, want none", got.Addr)
	}
}
