// Package discovery follows DNS names: it asks them again in the background
// and delivers each service's current set of discovered backends.
//
// One loop asks each distinct (name, type, resolvers), however many services
// follow it; each service turns the answer into its own backends (its port,
// weight and max_backends). Lookups run on their own jittered schedule and
// never on a request path. The semantics are the contract's (SPEC.md,
// "Discovery"): a failed lookup keeps the last good set and is retried
// within 5 s; NXDOMAIN or an empty answer empties the set only when the
// answer before it said so too.
package discovery

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Backend is one discovered backend of a service.
type Backend struct {
	// Address is an IP address for a layer 4 service, IP:port for layer 7
	// (the same forms as config.Backend.Address).
	Address string
	// Weight is the service's discover weight for A/AAAA answers, the
	// record's weight (scaled into 0..1000) for SRV.
	Weight int
}

// Result says how one lookup ended: the result label of
// xlb_discovery_lookups_total.
type Result string

// The results of a lookup.
const (
	ResultOK       Result = "ok"       // records: the set follows them
	ResultNXDomain Result = "nxdomain" // the name does not exist
	ResultEmpty    Result = "empty"    // the name exists without records of the type
	ResultError    Result = "error"    // SERVFAIL, REFUSED, a network error or a bad answer from every resolver
	ResultTimeout  Result = "timeout"  // the last resolver tried did not answer in time
)

// Failed reports whether r is a failed lookup (the set is kept as it was).
func (r Result) Failed() bool { return r == ResultError || r == ResultTimeout }

// Target is what one service follows.
type Target struct {
	// Service names the service in updates and logs.
	Service string
	// Layer is 4 (Address is the IP) or 7 (Address is IP:port).
	Layer int
	// Name is the DNS name asked: for Type srv the full
	// _service._proto.name. It is asked as a fully qualified name (no
	// search list).
	Name string
	// Type is a, aaaa or srv.
	Type string
	// Port of each backend for layer 7 with a or aaaa.
	Port uint16
	// Weight of each backend for a and aaaa; 0 counts as 1.
	Weight int
	// Refresh is the interval between lookups; 0 honours the answer's TTL
	// (at least MinRefresh).
	Refresh time.Duration
	// Resolvers are the DNS servers asked in order, IP:port; empty: the
	// nameservers of resolv.conf, read again before each lookup.
	Resolvers []string
	// MaxBackends caps the set (the lowest addresses are kept, so the set
	// does not churn when a server rotates its answer); 0: no cap.
	MaxBackends int
}

// Update is the outcome of one lookup for one service that follows the
// name: one per lookup per service, so the caller can count lookups.
type Update struct {
	Service string
	Name    string
	Result  Result
	// Backends is the service's discovered set after this lookup, sorted
	// by address; a failed lookup gives the set as it was. The slice is the
	// callee's to keep.
	Backends []Backend
	// Err says why a lookup failed (Result error or timeout), or why it
	// gave no records.
	Err error
	// Settled: the name has answered for itself since it was first asked
	// here, with records or with no backends twice in a row. Before, the
	// set is no verdict of the name's (the loop's empty start, or the set
	// the service had under its previous target).
	Settled bool
}

// Defaults of Options.
const (
	DefaultQueryTimeout = 2 * time.Second
	DefaultRetry        = 5 * time.Second
	DefaultResolvConf   = "/etc/resolv.conf"
	// MinRefresh is the shortest interval between lookups of a name when
	// the refresh honours the TTL: a TTL of 0 must not turn into a query
	// loop.
	MinRefresh = time.Second
)

// Options configure a Discoverer.
type Options struct {
	// Logger receives state changes (Info), failed lookups and truncated
	// sets (Warn). Nil: discard.
	Logger *slog.Logger
	// OnUpdate receives every lookup's outcome for every service that
	// follows the name. It is called from the loops' goroutines, one call
	// at a time per service; it must not call Set or Close (they wait for a
	// call in progress, so that no update of an old target arrives after
	// Set returns).
	OnUpdate func(Update)
	// QueryTimeout bounds one query to one resolver. Default 2s.
	QueryTimeout time.Duration
	// Retry is the longest wait before asking again after a failed lookup,
	// an NXDOMAIN or an empty answer (shorter when the refresh interval
	// is). Default 5s.
	Retry time.Duration
	// ResolvConf is read for the resolvers of targets that name none.
	// Default /etc/resolv.conf.
	ResolvConf string
}

// Discoverer runs the lookup loops of the targets it is given.
type Discoverer struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	loops  map[loopKey]*loop
	subs   map[string]*sub // by service
	closed bool
}

// New returns a Discoverer following no name yet.
func New(opts Options) *Discoverer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.OnUpdate == nil {
		opts.OnUpdate = func(Update) {}
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.Retry <= 0 {
		opts.Retry = DefaultRetry
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = DefaultResolvConf
	}
	return &Discoverer{opts: opts, log: opts.Logger, loops: map[loopKey]*loop{}, subs: map[string]*sub{}}
}

// loopKey identifies what one loop asks.
type loopKey struct {
	name      string // fully qualified, lower case
	qtype     string
	resolvers string // comma-separated; "" for resolv.conf
}

func keyOf(t Target) loopKey {
	return loopKey{
		name:      strings.ToLower(fqdn(t.Name)),
		qtype:     strings.ToLower(t.Type),
		resolvers: strings.Join(t.Resolvers, ","),
	}
}

func fqdn(s string) string {
	if strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}

// Set makes the Discoverer follow exactly targets (one per service):
// loops of names no longer followed stop, new names get a loop, and a
// service whose target changed moves to its new loop. A service that joins
// a loop gets an update after that loop's next lookup, which is started at
// once. A service whose target changed keeps its set until the new
// target's name has answered for itself (records, or no backends twice in
// a row), as a refresh would. Targets are checked for what the loops need;
// the config package validates the rest.
func (d *Discoverer) Set(targets []Target) error {
	want := map[string]Target{}
	for _, t := range targets {
		t.Type = strings.ToLower(t.Type)
		t.Resolvers = slices.Clone(t.Resolvers)
		if err := check(t); err != nil {
			return err
		}
		if _, dup := want[t.Service]; dup {
			return fmt.Errorf("discovery: service %s given twice", t.Service)
		}
		want[t.Service] = t
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("discovery: closed")
	}
	// A service whose target changed leaves its old sub only after the new
	// one is attached, so that a loop they share (the same name asked, a
	// weight or port changed) keeps running with its last good set.
	replaced := map[string]*sub{}
	for name, s := range d.subs {
		if t, ok := want[name]; ok && sameTarget(t, s.target) {
			continue
		}
		s.stop()
		if _, ok := want[name]; ok {
			replaced[name] = s
		} else {
			d.detach(s)
		}
		delete(d.subs, name)
	}
	var started []*loop
	for name, t := range want {
		if d.subs[name] != nil {
			continue
		}
		var inherit []Backend
		if old := replaced[name]; old != nil {
			old.mu.Lock()
			inherit = slices.Clone(old.last)
			old.mu.Unlock()
		}
		k := keyOf(t)
		l := d.loops[k]
		if l == nil {
			l = newLoop(k, t.Resolvers, d.opts)
			d.loops[k] = l
			started = append(started, l)
			d.log.Info("discovery: following a name", "name", k.name, "type", k.qtype, "resolvers", resolversText(t.Resolvers))
		}
		s := &sub{target: t, loop: l, log: d.log.With("service", name), last: inherit}
		if len(inherit) > 0 {
			s.inherit = inherit
		}
		d.subs[name] = s
		l.attach(s)
	}
	for _, s := range replaced {
		d.detach(s)
	}
	// Started once their followers are attached: one first lookup for all.
	for _, l := range started {
		l.start()
	}
	return nil
}

// detach takes s off its loop and stops the loop when s was its last
// follower. d.mu is held.
func (d *Discoverer) detach(s *sub) {
	s.stop()
	l := s.loop
	if l.detach(s) == 0 {
		delete(d.loops, l.key)
		l.close()
		d.log.Info("discovery: no longer following a name", "name", l.key.name, "type", l.key.qtype)
	}
}

// Close stops every loop and waits for them.
func (d *Discoverer) Close() {
	d.mu.Lock()
	d.closed = true
	loops := make([]*loop, 0, len(d.loops))
	for _, l := range d.loops {
		loops = append(loops, l)
	}
	for name, s := range d.subs {
		d.detach(s)
		delete(d.subs, name)
	}
	d.mu.Unlock()
	for _, l := range loops {
		<-l.done
	}
}

func check(t Target) error {
	switch {
	case t.Service == "":
		return fmt.Errorf("discovery: a target without a service")
	case t.Name == "":
		return fmt.Errorf("discovery: service %s: no name", t.Service)
	case t.Layer != 4 && t.Layer != 7:
		return fmt.Errorf("discovery: service %s: layer %d", t.Service, t.Layer)
	}
	switch strings.ToLower(t.Type) {
	case "a", "aaaa":
		if t.Layer == 7 && t.Port == 0 {
			return fmt.Errorf("discovery: service %s: layer 7 %s discovery needs a port", t.Service, t.Type)
		}
	case "srv":
		if t.Layer != 7 {
			return fmt.Errorf("discovery: service %s: srv discovery is layer 7 only", t.Service)
		}
	default:
		return fmt.Errorf("discovery: service %s: unknown type %q", t.Service, t.Type)
	}
	return nil
}

func sameTarget(a, b Target) bool {
	return a.Service == b.Service && a.Layer == b.Layer && keyOf(a) == keyOf(b) && a.Port == b.Port &&
		a.Weight == b.Weight && a.Refresh == b.Refresh && a.MaxBackends == b.MaxBackends && slices.Equal(a.Resolvers, b.Resolvers)
}

func resolversText(rs []string) string {
	if len(rs) == 0 {
		return "resolv.conf"
	}
	return strings.Join(rs, ",")
}
