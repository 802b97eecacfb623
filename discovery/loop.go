package discovery

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// record is one address of an answer; port and weight are set for SRV.
type record struct {
	addr   netip.Addr
	port   uint16
	weight int
}

// answer is the outcome of one lookup.
type answer struct {
	result  Result
	records []record      // result ok: at least one
	ttl     time.Duration // the shortest TTL of the records used
	err     error
}

// loop asks one name again and again, for every service that follows it.
type loop struct {
	key       loopKey
	resolvers []string
	opts      Options
	log       *slog.Logger
	wake      chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}

	mu   sync.Mutex
	subs map[*sub]struct{}

	// Owned by the loop's goroutine.
	good      []record      // the last good set
	ttl       time.Duration // of the answer that gave good; 0: none yet
	negatives int           // NXDOMAIN or empty answers in a row
	failing   bool          // the last lookup failed (to log the first failure and the recovery only)
	// settled: the name has answered for itself, with records or with
	// no backends twice in a row. Until then a follower that came from
	// another target keeps the set it had (sub.inherit).
	settled bool
}

func newLoop(k loopKey, resolvers []string, opts Options) *loop {
	ctx, cancel := context.WithCancel(context.Background())
	return &loop{
		key:       k,
		resolvers: slices.Clone(resolvers),
		opts:      opts,
		log:       opts.Logger.With("name", k.name, "type", k.qtype),
		wake:      make(chan struct{}, 1),
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		subs:      map[*sub]struct{}{},
	}
}

func (l *loop) start() { go l.run() }

// close stops the loop without waiting: a lookup in progress ends when its
// connection is closed, and its followers are already stopped.
func (l *loop) close() { l.cancel() }

// attach adds a follower and asks the name at once, so that it gets its
// set without waiting for the loop's next turn.
func (l *loop) attach(s *sub) {
	l.mu.Lock()
	l.subs[s] = struct{}{}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// detach removes a follower and returns how many are left.
func (l *loop) detach(s *sub) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.subs, s)
	return len(l.subs)
}

func (l *loop) run() {
	defer close(l.done)
	// The first lookup comes from attach; until then the timer never fires.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-timer.C:
		case <-l.wake:
		}
		a := l.lookup(l.ctx)
		if l.ctx.Err() != nil {
			return
		}
		l.apply(a)
		l.deliver(a)
		timer.Reset(l.next(a))
	}
}

// apply updates the last good set by the contract: records replace it; a
// failure keeps it; NXDOMAIN or an empty answer empties it only when the
// answer before said so too (a failed lookup in between is no answer).
// NXDOMAIN and an empty answer both say "no backends" and count together.
func (l *loop) apply(a answer) {
	switch a.result {
	case ResultOK:
		if l.failing || l.negatives > 0 {
			l.log.Info("discovery: the name answers again", "records", len(a.records))
		}
		l.good, l.ttl, l.negatives, l.failing, l.settled = a.records, max(a.ttl, MinRefresh), 0, false, true
	case ResultNXDomain, ResultEmpty:
		l.failing = false
		l.negatives++
		if l.negatives >= 2 {
			l.settled = true
		}
		switch {
		case l.negatives == 2 && len(l.good) > 0:
			l.log.Warn("discovery: no backends in two answers in a row; removing the discovered backends", "result", a.result, "removed", len(l.good))
			l.good = nil
		case l.negatives == 1:
			// Also when there is nothing to keep: a name that never
			// resolved is worth one line.
			l.log.Warn("discovery: no backends in the answer; keeping the set until the next answer says so too", "result", a.result, "kept", len(l.good), "err", a.err)
		}
	default:
		if !l.failing {
			l.log.Warn("discovery: lookup failed; keeping the last good set", "result", a.result, "kept", len(l.good), "err", a.err)
		} else {
			l.log.Debug("discovery: lookup failed again", "result", a.result, "err", a.err)
		}
		l.failing = true
	}
}

// next is how long to wait before the next lookup: the shortest refresh of
// the followers (the answer's TTL for those that honour it), and no more
// than opts.Retry after anything but records. It is jittered down by up
// to a tenth, so that loops started together drift apart and a bound such
// as "within 5 s" holds.
func (l *loop) next(a answer) time.Duration {
	interval := time.Duration(0)
	l.mu.Lock()
	for s := range l.subs {
		r := s.target.Refresh
		if r <= 0 {
			r = l.ttl
			if r == 0 {
				r = l.opts.Retry
			}
		}
		if interval == 0 || r < interval {
			interval = r
		}
	}
	l.mu.Unlock()
	if interval == 0 {
		interval = l.opts.Retry
	}
	if a.result != ResultOK {
		interval = min(interval, l.opts.Retry)
	}
	// The jitter must not take a refresh under the floor it was held to.
	return max(jitter(interval), min(interval, MinRefresh))
}

func jitter(d time.Duration) time.Duration {
	return d - rand.N(d/10+1)
}

// deliver gives every follower its set after a lookup.
func (l *loop) deliver(a answer) {
	l.mu.Lock()
	subs := make([]*sub, 0, len(l.subs))
	for s := range l.subs {
		subs = append(subs, s)
	}
	l.mu.Unlock()
	for _, s := range subs {
		s.deliver(l.key.name, a, l.good, l.settled)
	}
}

// sub is one service following a loop's name.
type sub struct {
	target Target
	loop   *loop
	log    *slog.Logger

	mu      sync.Mutex // held while calling OnUpdate, so stop waits for it
	stopped bool
	last    []Backend
	dropped int // how many the last set left out (max_backends)
	// inherit is the set the service had under its previous target (a
	// reload changed its discover section), delivered until the new
	// target's loop has settled: a reload must not empty the service on
	// one failed lookup or one NXDOMAIN, any more than a refresh may.
	inherit []Backend
	kept    bool // inherit's warning was logged
}

func (s *sub) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

func (s *sub) deliver(name string, a answer, good []record, settled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	var bs []Backend
	dropped := s.dropped
	if !settled && s.inherit != nil {
		if !s.kept {
			s.kept = true
			s.log.Warn("discovery: the new name has not answered yet; keeping the service's previous set", "name", name, "result", a.result, "kept", len(s.inherit), "err", a.err)
		}
		bs = s.inherit
	} else {
		s.inherit = nil
		bs, dropped = s.backends(good)
	}
	if dropped != s.dropped && dropped > 0 {
		s.log.Warn("discovery: the answer has more backends than max_backends; keeping the lowest addresses", "name", name, "max_backends", s.target.MaxBackends, "left_out", dropped)
	}
	s.dropped = dropped
	if added, removed := diff(s.last, bs); len(added)+len(removed) > 0 {
		s.log.Info("discovery: discovered backends changed", "name", name, "added", added, "removed", removed, "now", len(bs))
	}
	s.last = bs
	u := Update{Service: s.target.Service, Name: name, Result: a.result, Backends: slices.Clone(bs), Err: a.err, Settled: settled}
	s.loop.opts.OnUpdate(u)
}

// backends turns the loop's set into this service's backends, sorted by
// address and capped at MaxBackends.
func (s *sub) backends(good []record) ([]Backend, int) {
	t := s.target
	rs := slices.Clone(good)
	slices.SortFunc(rs, func(a, b record) int {
		return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.port, b.port))
	})
	rs = slices.CompactFunc(rs, func(a, b record) bool { return a.addr == b.addr && a.port == b.port })
	dropped := 0
	if t.MaxBackends > 0 && len(rs) > t.MaxBackends {
		dropped = len(rs) - t.MaxBackends
		rs = rs[:t.MaxBackends]
	}
	weight := max(t.Weight, 1)
	bs := make([]Backend, 0, len(rs))
	for _, r := range rs {
		switch {
		case t.Type == "srv":
			bs = append(bs, Backend{Address: netip.AddrPortFrom(r.addr, r.port).String(), Weight: r.weight})
		case t.Layer == 4:
			bs = append(bs, Backend{Address: r.addr.String(), Weight: weight})
		default:
			bs = append(bs, Backend{Address: netip.AddrPortFrom(r.addr, t.Port).String(), Weight: weight})
		}
	}
	return bs, dropped
}

// diff lists the addresses added and removed from old to new.
func diff(old, new []Backend) (added, removed []string) {
	in := func(bs []Backend, addr string) bool {
		return slices.ContainsFunc(bs, func(b Backend) bool { return b.Address == addr })
	}
	for _, b := range new {
		if !in(old, b.Address) {
			added = append(added, b.Address)
		}
	}
	for _, b := range old {
		if !in(new, b.Address) {
			removed = append(removed, b.Address)
		}
	}
	return added, removed
}
