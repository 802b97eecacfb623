// Package l7 is xlb's HTTP tier: listeners, routing, backend choice,
// retries, rate limits, sticky sessions and graceful drain, for every
// layer 7 service of the config.
package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/l7/balance"
	"github.com/xlbproject/xlb/l7/tlsconf"
)

// Options configure a Server.
type Options struct {
	Logger       *slog.Logger
	AccessLog    *slog.Logger // nil: no access log
	Registry     prometheus.Registerer
	StickySecret []byte // nil: kept in /var/lib/xlb/sticky.key
	// Listen opens a service's listener (nil: net.Listen): an upgraded
	// xlbd takes the ones its previous image handed on.
	Listen func(addr string) (net.Listener, error)
}

// Server runs the listeners of every layer 7 service.
type Server struct {
	log    *slog.Logger
	access *slog.Logger
	met    *metrics
	secret []byte
	listen func(addr string) (net.Listener, error)

	// cutAt is when a shutdown's drain ends and cuts what is still in
	// flight (unix ns; 0: no shutdown yet), so that a request cut then is
	// logged as xlbd's doing, not its client's.
	cutAt atomic.Int64

	mu        sync.Mutex
	l7        config.L7
	services  map[string]*service
	listeners map[string]*listener                    // by listen address
	upstreams map[string]map[string]*balance.Upstream // service -> address -> live state of its own pool's backends
	routeUps  map[string]map[string]*balance.Upstream // service -> address -> live state of its routes' own backends
	conns     map[string]map[string]*connPool         // service -> address -> the backend's connection pool
	// tickets are each TLS service's session ticket keys, kept across
	// reloads so that clients resume across them.
	tickets map[string]*tlsconf.TicketKeys
	started bool
	// closed: Shutdown began; Apply would listen again on what it closed.
	closed  bool
	sweeper chan struct{}

	hijacked sync.Map // net.Conn -> struct{}: upgraded connections, closed at the end of a drain
}

// New makes a Server; Apply gives it services.
func New(o Options) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	met, err := newMetrics(o.Registry)
	if err != nil {
		return nil, err
	}
	secret := o.StickySecret
	if secret == nil {
		secret = loadStickySecret(stickySecretFile)
	}
	if o.Listen == nil {
		o.Listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	s := &Server{
		log: log, access: o.AccessLog, met: met, secret: secret, listen: o.Listen,
		services: map[string]*service{}, listeners: map[string]*listener{},
		upstreams: map[string]map[string]*balance.Upstream{}, routeUps: map[string]map[string]*balance.Upstream{},
		conns:   map[string]map[string]*connPool{},
		tickets: map[string]*tlsconf.TicketKeys{},
		sweeper: make(chan struct{}),
	}
	met.srv.Store(s)
	panicLog.Store(log)
	go s.sweep()
	return s, nil
}

// sweep forgets idle rate-limit keys now and then.
func (s *Server) sweep() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.sweeper:
			return
		case now := <-t.C:
			s.mu.Lock()
			svcs := make([]*service, 0, len(s.services))
			for _, sv := range s.services {
				svcs = append(svcs, sv)
			}
			s.mu.Unlock()
			for _, sv := range svcs {
				if sv.limiter != nil {
					sv.limiter.sweep(now)
				}
				for _, cp := range sv.conns {
					cp.sweep(now)
				}
			}
		}
	}
}

// Apply makes cfg's layer 7 services the running ones, all or nothing:
// every service, certificate and new listener is prepared first, and if
// one fails nothing changes. Services on a listen address that stays are
// swapped in place (no socket is closed, in-flight requests finish on the
// old service); listeners no longer configured drain and close. Backends
// keep their live state (health, counters, connections) across Apply; a
// backend new to a running server starts unhealthy when its service has
// checks.
func (s *Server) Apply(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("l7: the server is shutting down: no new config")
	}
	first := !s.started

	// Prepare: nothing here changes what runs.
	builds := map[string]*built{}
	tlsConfs := map[string]*tls.Config{}
	tickets := map[string]*tlsconf.TicketKeys{}
	opened := map[string]*listener{}
	fail := func(err error) error {
		for _, l := range opened {
			l.ln.Close()
		}
		for name, k := range tickets {
			if s.tickets[name] != k {
				k.Stop()
			}
		}
		return err
	}
	// What fails here is the file's to fix (an address in use, a
	// certificate that does not load): named by file, line and key, as
	// a validation error is.
	fileErr := func(i int, key string, err error) error {
		c := &cfg.Services[i]
		return config.ErrorList{{File: cfg.File, Line: c.Line, Key: fmt.Sprintf("services[%d].%s", i, key), Msg: fmt.Sprintf("service %s: %v", c.Name, err)}}
	}
	for i, c := range cfg.Services {
		if c.IsL4() {
			continue
		}
		b, err := s.build(c, first, false)
		if err != nil {
			return fail(fmt.Errorf("service %s: %w", c.Name, err))
		}
		builds[c.Name] = b
		if c.TLS != nil {
			keys := s.tickets[c.Name]
			if keys == nil {
				keys = tlsconf.NewTicketKeys(0, 0)
			}
			tickets[c.Name] = keys
			// Every certificate is read again: a reload is how a renewed
			// one takes effect, and a broken one fails it.
			tc, err := tlsconf.Server(c.TLS, c.Protocols, keys)
			if err != nil {
				return fail(fileErr(i, "tls", err))
			}
			tlsConfs[c.Name] = tc
		}
		if s.listeners[c.Listen] != nil {
			continue
		}
		ln, err := s.listen(c.Listen)
		if err != nil {
			return fail(fileErr(i, "listen", fmt.Errorf("listen on %s: %w", c.Listen, err)))
		}
		opened[c.Listen] = s.newListener(c, ln)
	}

	// Commit.
	s.started = true
	lim := newLimits(cfg.L7)
	upstreams, routeUps := map[string]map[string]*balance.Upstream{}, map[string]map[string]*balance.Upstream{}
	services := map[string]*service{}
	keep := map[string]bool{}
	for _, c := range cfg.Services {
		if c.IsL4() {
			continue
		}
		b := builds[c.Name]
		for _, f := range b.commit {
			f()
		}
		upstreams[c.Name], routeUps[c.Name], services[c.Name] = b.upstreams, b.routeUps, b.sv
		l := opened[c.Listen]
		if l == nil {
			l = s.listeners[c.Listen]
		}
		// The TLS configuration first: a connection accepted between the
		// two stores meets the old service with the new certificate,
		// never a cleartext service on a TLS socket's bytes.
		l.tlsConf.Store(tlsConfs[c.Name])
		l.handler.Store(b.sv)
		l.setLimits(lim)
		if !b.sv.h2 {
			// HTTP/2 is off on this listener now: its open connections
			// finish their streams and close.
			l.goAwayH2()
		}
		keep[c.Listen] = true
	}
	for addr, l := range s.listeners {
		if !keep[addr] {
			go s.drainListener(l, cfg.L7.DrainTimeout)
			delete(s.listeners, addr)
		}
	}
	for addr, l := range opened {
		s.listeners[addr] = l
		go l.serveFast(s)
		s.log.Info("l7 listening", "addr", addr, "tls", l.tlsConf.Load() != nil)
	}
	// Connection pools no service uses any more are closed.
	inUse := map[*connPool]bool{}
	conns := map[string]map[string]*connPool{}
	for name, sv := range services {
		conns[name] = map[string]*connPool{}
		for u, cp := range sv.conns {
			inUse[cp] = true
			conns[name][u.Addr] = cp
		}
	}
	for _, byAddr := range s.conns {
		for _, cp := range byAddr {
			if !inUse[cp] {
				cp.close()
			}
		}
	}
	for name, k := range s.tickets {
		if tickets[name] != k {
			k.Stop()
		}
	}
	s.conns, s.upstreams, s.routeUps, s.services, s.tickets = conns, upstreams, routeUps, services, tickets
	s.l7 = cfg.L7
	return nil
}

func (s *Server) newListener(c config.Service, ln net.Listener) *listener {
	return &listener{owner: s, addr: c.Listen, ln: ln, acceptDone: make(chan struct{}),
		fconns: map[*fastConn]struct{}{}, h2conns: map[*h2Conn]struct{}{}, stds: map[*stdServer]struct{}{}}
}

// drainListener stops accepting and lets in-flight requests finish.
func (s *Server) drainListener(l *listener, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l.shutdown(ctx)
	s.log.Info("l7 listener closed", "addr", l.addr)
}

// track remembers an upgraded connection so Shutdown can close it: the HTTP
// server forgets connections once they are hijacked.
func (s *Server) track(c net.Conn) func() {
	s.hijacked.Store(c, struct{}{})
	return func() { s.hijacked.Delete(c) }
}

// ListenerFiles returns a duplicate of every listening socket, by the
// listen address the config gave: what an upgrade hands to the next image
// (the sockets stay open, and connections queue, after Shutdown closes
// the listeners).
func (s *Server) ListenerFiles() (map[string]*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files := map[string]*os.File{}
	for addr, l := range s.listeners {
		tl, ok := l.ln.(interface{ File() (*os.File, error) })
		if !ok {
			return nil, fmt.Errorf("listener %s cannot be handed on (%T)", addr, l.ln)
		}
		f, err := tl.File()
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("listener %s: %w", addr, err)
		}
		files[addr] = f
	}
	return files, nil
}

// Shutdown stops accepting on every listener and waits for in-flight
// requests up to l7.drain_timeout (or ctx); upgraded connections are closed
// at the end. It returns once the requests it cut are logged, or after
// cutGrace.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ls := make([]*listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	timeout := s.l7.DrainTimeout
	s.listeners = map[string]*listener{}
	s.closed = true
	s.mu.Unlock()
	select {
	case <-s.sweeper:
	default:
		close(s.sweeper)
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if d, ok := ctx.Deadline(); ok {
		s.cutAt.Store(d.UnixNano())
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ls))
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.shutdown(ctx); err != nil {
				errs <- fmt.Errorf("drain %s: %w", l.addr, err)
			}
		}()
	}
	wg.Wait()
	s.hijacked.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
	// The backend pools last: a request cut above that met its backend
	// connection closed before it saw its client gone would be logged as
	// the backend's failure, not 499.
	settle(ls, cutGrace)
	s.mu.Lock()
	for _, byAddr := range s.conns {
		for _, cp := range byAddr {
			cp.close()
		}
	}
	s.mu.Unlock()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// cutGrace bounds how long Shutdown waits, once the drain's time is up,
// for the requests it cut to be logged and counted: each sees its client
// gone within clientCheck, and the caller may exit as soon as Shutdown
// returns.
const cutGrace = time.Second

// settle waits until no listener of ls has work left, or for d.
func settle(ls []*listener, d time.Duration) {
	deadline := time.Now().Add(d)
	for _, l := range ls {
		for l.busy() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// Upstream returns a backend's live state, for health checks and the API:
// the service's own pool's, else (an address only routes name) the routes'.
func (s *Server) Upstream(service, addr string) *balance.Upstream {
	pool, route := s.Upstreams(service, addr)
	if pool != nil {
		return pool
	}
	return route
}

// Upstreams returns both live states an address may have in a service: the
// service's own pool's, and the one its routes that name the address as
// their own backend share. Either may be nil. Health follows the checks on
// both; SetBackends changes only the pool's.
func (s *Server) Upstreams(service, addr string) (pool, route *balance.Upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upstreams[service][addr], s.routeUps[service][addr]
}

// BackendStatus is one L7 backend's live state.
type BackendStatus struct {
	Address  string
	Weight   int
	Healthy  bool
	Drained  bool
	Ejected  bool
	Inflight int64
	Requests uint64
	Failures uint64
	// Latency is the average least_time weighs (from the request on an
	// open connection to the answer's head); zero without a recent sample.
	Latency time.Duration
}

// Status reports a service's backends (sorted by address), and whether it
// exists: its own pool's, and those of its routes whose address the pool
// does not have (an address in both reads as the pool's, which the API
// changes).
func (s *Server) Status(service string) ([]BackendStatus, bool) {
	s.mu.Lock()
	ups, ok := s.upstreams[service]
	all := make([]*balance.Upstream, 0, len(ups)+len(s.routeUps[service]))
	for _, u := range ups {
		all = append(all, u)
	}
	for addr, u := range s.routeUps[service] {
		if ups[addr] == nil {
			all = append(all, u)
		}
	}
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	now := time.Now()
	out := make([]BackendStatus, 0, len(all))
	for _, u := range all {
		lat, recent := u.Latency(now)
		if !recent {
			lat = 0
		}
		out = append(out, BackendStatus{
			Address: u.Addr, Weight: u.Weight(), Healthy: u.Healthy(), Drained: u.Drained(), Ejected: u.Ejected(now),
			Inflight: u.Inflight(), Requests: u.Requests(), Failures: u.Failures(), Latency: lat,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, true
}

// Addr returns the bound address of a listen address (tests listen on :0).
func (s *Server) Addr(listen string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.listeners[listen]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// BackendTLS is the TLS configuration the proxy uses to reach a backend,
// or nil for cleartext: health checks use the same one, so that they test
// what requests meet and share its session cache.
func (s *Server) BackendTLS(service, addr string) *tls.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cp := s.conns[service][addr]; cp != nil {
		return cp.tls.Load()
	}
	return nil
}
