package health

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// skipLogEvery spaces the warnings about skipped probes: under overload
// there is one skip per target and interval, far too many to log each.
const skipLogEvery = 10 * time.Second

// Run probes the targets until ctx is done, then cancels the probes in
// flight (their results are discarded) and returns. Set may be called
// before or while Run runs, and Run may be called again after it returned;
// the states are kept. A second, concurrent Run returns at once.
//
// Each target is probed every Interval ±10%, measured from the start of
// its previous probe (a probe longer than Interval is followed at once by
// the next). Probes run on Options.Workers workers shared by all targets.
// A probe that waits for a worker longer than its Interval is skipped, not
// counted as a failure: a saturated checker says nothing about the backend,
// and failing every backend at once because the checker is overloaded
// would empty the pools. Skips are counted (Skipped) and logged at Warn.
func (c *Checker) Run(ctx context.Context) {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		c.log.Error("health checker already running")
		return
	}
	c.running, c.stop = true, false
	// Targets overdue since a previous Run must not all fire at once.
	now := time.Now()
	for _, e := range c.sched {
		if e.due.Before(now) {
			e.due = now.Add(firstDelay(e.spec.Interval))
		}
	}
	heap.Init(&c.sched)
	c.mu.Unlock()

	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() { c.work(ctx) })
	}
	c.dispatch(ctx)

	c.mu.Lock()
	c.stop = true
	c.ready.Broadcast()
	c.mu.Unlock()
	wg.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.pending {
		if !e.removed {
			e.phase = phaseIdle
			heap.Push(&c.sched, e)
		}
	}
	clear(c.pending)
	c.pending = c.pending[:0]
	c.running = false
}

// dispatch moves due entries from the schedule to the pending queue until
// ctx is done.
func (c *Checker) dispatch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		now := time.Now()
		moved := false
		for len(c.sched) > 0 && !c.sched[0].due.After(now) {
			e := heap.Pop(&c.sched).(*entry)
			e.phase = phaseQueued
			c.pending = append(c.pending, e)
			moved = true
		}
		wait := time.Hour
		if len(c.sched) > 0 {
			wait = c.sched[0].due.Sub(now)
		}
		if moved {
			c.ready.Broadcast()
		}
		c.mu.Unlock()

		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.wake:
		}
	}
}

// work runs probes from the pending queue until the run stops.
func (c *Checker) work(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		e := c.take()
		if e == nil {
			return
		}
		// Copies: Set may update an unchanged target's Dial and TLS
		// while the probe runs.
		t, spec := e.t, e.spec
		pctx, cancel := context.WithTimeout(ctx, spec.Timeout)
		e.phase, e.cancel = phaseProbing, cancel
		c.mu.Unlock()

		start := time.Now()
		err := probe(pctx, t, spec)
		d := time.Since(start)
		if timedOut(pctx, err) {
			err = fmt.Errorf("timeout after %s: %w", spec.Timeout, err)
		}
		cancel()

		c.mu.Lock()
		e.cancel = nil
		if e.removed {
			continue
		}
		if ctx.Err() != nil {
			// Cut short by the end of Run: not the backend's fault.
			c.reschedule(e, start)
			continue
		}
		up, changed, reason := c.apply(e, d, err)
		st := e.st
		c.mu.Unlock()

		// The entry is neither scheduled nor queued until the callbacks
		// return, so a target's callbacks cannot overtake each other.
		c.obs.Observed(t, d, err)
		if changed {
			c.log.Info("backend health changed", "target", t.Key, "addr", t.Addr,
				"up", up, "reason", reason, "successes", st.Successes, "failures", st.Failures)
			c.obs.Changed(t, up, reason)
		} else if err != nil {
			c.log.Debug("health probe failed", "target", t.Key, "addr", t.Addr,
				"error", err, "failures", st.Failures, "up", up)
		}

		c.mu.Lock()
		if !e.removed {
			c.reschedule(e, start)
		}
	}
}

// timedOut says whether err ended a probe at its deadline: the context's,
// or the connection's, which is set to the same time and may fire first.
func timedOut(ctx context.Context, err error) bool {
	return err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded))
}

// take returns the next entry to probe, dropping removed entries and
// skipping those that waited longer than their interval, or nil when the
// run stops. c.mu is held.
func (c *Checker) take() *entry {
	for {
		for len(c.pending) == 0 && !c.stop {
			c.ready.Wait()
		}
		if c.stop {
			return nil
		}
		e := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		if e.removed {
			continue
		}
		now := time.Now()
		if now.Sub(e.due) <= e.spec.Interval {
			return e
		}
		c.skipped++
		c.log.Debug("health probe skipped: no worker available", "target", e.t.Key)
		if now.Sub(c.skipLogTime) >= skipLogEvery {
			c.log.Warn("health probes skipped: no worker available within the interval",
				"skipped", c.skipped-c.skipLogged, "workers", c.workers)
			c.skipLogged, c.skipLogTime = c.skipped, now
		}
		c.reschedule(e, e.due)
	}
}

// apply records a probe result in e's state and says whether Up changed.
// c.mu is held.
func (c *Checker) apply(e *entry, d time.Duration, err error) (up, changed bool, reason string) {
	st := &e.st
	first := !st.Checked
	st.Checked = true
	st.LastDuration = d
	if err == nil {
		st.Successes++
		st.Failures = 0
		st.LastError = ""
		if !st.Up {
			switch {
			case first:
				reason = "first check passed"
			case st.Successes >= e.spec.HealthyThreshold:
				reason = fmt.Sprintf("%d consecutive successes", st.Successes)
			}
		}
	} else {
		st.Failures++
		st.Successes = 0
		st.LastError = err.Error()
		if st.Up && st.Failures >= e.spec.UnhealthyThreshold {
			reason = fmt.Sprintf("%d consecutive failures: %s", st.Failures, st.LastError)
		}
	}
	if reason != "" {
		st.Up = !st.Up
		st.LastChange = time.Now()
		return st.Up, true, reason
	}
	return st.Up, false, ""
}

// reschedule puts e back in the schedule, one jittered interval after
// from, or at once if that is past or CheckNow asked for it. c.mu is held.
func (c *Checker) reschedule(e *entry, from time.Time) {
	now := time.Now()
	e.due = from.Add(jitter(e.spec.Interval))
	if e.again || e.due.Before(now) {
		e.due = now
	}
	e.again = false
	e.phase = phaseIdle
	heap.Push(&c.sched, e)
	c.kick()
}

// jitter returns d ±10%, so that targets set at the same moment drift apart.
func jitter(d time.Duration) time.Duration {
	spread := d / 5
	if spread <= 0 {
		return d
	}
	return d - d/10 + rand.N(spread)
}

// firstDelay is the wait before a new target's first probe: prompt, but
// spread over min(interval/10, 1s) so that thousands of targets set at once
// do not probe in lockstep.
func firstDelay(interval time.Duration) time.Duration {
	spread := min(interval/10, time.Second)
	if spread <= 0 {
		return 0
	}
	return rand.N(spread)
}

// schedule is a min-heap of entries by due time (container/heap).
type schedule []*entry

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].due.Before(s[j].due) }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index, s[j].index = i, j
}

func (s *schedule) Push(x any) {
	e := x.(*entry)
	e.index = len(*s)
	*s = append(*s, e)
}

func (s *schedule) Pop() any {
	old := *s
	n := len(old) - 1
	e := old[n]
	old[n] = nil
	e.index = -1
	*s = old[:n]
	return e
}
