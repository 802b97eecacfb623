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
	"log"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/l7/balance"
)

// Options configure a Server.
type Options struct {
	Logger       *slog.Logger
	AccessLog    *slog.Logger // nil: no access log
	Registry     prometheus.Registerer
	StickySecret []byte // nil: kept in /var/lib/xlb/sticky.key
}

// Server runs the listeners of every layer 7 service.
type Server struct {
	log    *slog.Logger
	access *slog.Logger
	met    *metrics
	secret []byte

	mu        sync.Mutex
	l7        config.L7
	services  map[string]*service
	listeners map[string]*listener                    // by listen address
	upstreams map[string]map[string]*balance.Upstream // service -> address -> live state
	conns     map[string]map[string]*connPool         // service -> address -> kept-alive connections
	started   bool
	sweeper   chan struct{}

	hijacked sync.Map // net.Conn -> struct{}: upgraded connections, closed at the end of a drain
}

// listener is one listen address and the service it serves; the service is
// swapped on reload without closing the socket.
type listener struct {
	addr    string
	ln      net.Listener
	srv     *http.Server
	handler atomic.Pointer[service]
	cert    atomic.Pointer[tls.Certificate]
	tls     bool

	// Plain HTTP: the HTTP/1.1 engine's connections, and the listener
	// through which it hands connections to srv.
	handoff    *handoffListener
	maxHeader  int
	readHeader time.Duration
	idle       time.Duration
	draining   atomic.Bool
	mu         sync.Mutex
	fconns     map[*fastConn]struct{}
}

// add registers a new client connection; false once draining.
func (l *listener) add(fc *fastConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.draining.Load() {
		return false
	}
	l.fconns[fc] = struct{}{}
	return true
}

func (l *listener) remove(fc *fastConn) {
	l.mu.Lock()
	delete(l.fconns, fc)
	l.mu.Unlock()
}

// drainFast stops the HTTP/1.1 engine: no new connections, idle ones
// closed now, busy ones after their current response (which says
// Connection: close), all of them closed when ctx ends.
func (l *listener) drainFast(ctx context.Context) error {
	l.ln.Close()
	l.mu.Lock()
	l.draining.Store(true)
	l.mu.Unlock()
	kicked := map[*fastConn]bool{}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := len(l.fconns)
		for fc := range l.fconns {
			// A connection waiting for a request is woken by a deadline
			// in the past; it sees the drain and closes.
			if !kicked[fc] && fc.state.Load() == connIdle {
				kicked[fc] = true
				fc.c.SetReadDeadline(time.Unix(1, 0))
			}
		}
		l.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			l.mu.Lock()
			for fc := range l.fconns {
				fc.c.Close()
			}
			l.mu.Unlock()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// shutdown drains the listener: the engine's connections and net/http's.
func (l *listener) shutdown(ctx context.Context) error {
	var ferr error
	if l.handoff != nil {
		ferr = l.drainFast(ctx)
	}
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
	}
	return errors.Join(ferr, err)
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
	s := &Server{
		log: log, access: o.AccessLog, met: met, secret: secret,
		services: map[string]*service{}, listeners: map[string]*listener{},
		upstreams: map[string]map[string]*balance.Upstream{}, conns: map[string]map[string]*connPool{},
		sweeper: make(chan struct{}),
	}
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

// Apply makes cfg's layer 7 services the running ones. New listeners are
// opened first; if one fails, nothing changes. Services on a listen address
// that stays are swapped in place (no socket is closed, in-flight requests
// finish on the old service); listeners no longer configured drain and close.
// Backends keep their live state (health, counters) across Apply; a backend
// new to a running server starts unhealthy when its service has checks.
func (s *Server) Apply(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := !s.started
	s.started = true

	built := map[string]*service{}
	for _, c := range cfg.Services {
		if c.IsL4() {
			continue
		}
		sv, err := s.build(c, first)
		if err != nil {
			return fmt.Errorf("service %s: %w", c.Name, err)
		}
		built[c.Name] = sv
	}

	// Open what is new before touching what runs.
	opened := map[string]*listener{}
	var certs = map[string]*tls.Certificate{}
	for _, c := range cfg.Services {
		if c.IsL4() {
			continue
		}
		if c.TLS != nil {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				closeAll(opened)
				return fmt.Errorf("service %s: load certificate: %w", c.Name, err)
			}
			certs[c.Name] = &cert
		}
		if old := s.listeners[c.Listen]; old != nil && old.tls == (c.TLS != nil) {
			continue
		}
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			closeAll(opened)
			return fmt.Errorf("service %s: listen on %s: %w", c.Name, c.Listen, err)
		}
		opened[c.Listen] = s.newListener(c, ln, cfg.L7)
	}

	// Swap.
	keep := map[string]bool{}
	for _, c := range cfg.Services {
		if c.IsL4() {
			continue
		}
		l := opened[c.Listen]
		if l == nil {
			l = s.listeners[c.Listen]
		}
		l.handler.Store(built[c.Name])
		if cert := certs[c.Name]; cert != nil {
			l.cert.Store(cert)
		}
		keep[c.Listen] = true
	}
	for addr, l := range s.listeners {
		if !keep[addr] || opened[addr] != nil {
			go s.drainListener(l, cfg.L7.DrainTimeout)
			delete(s.listeners, addr)
		}
	}
	for addr, l := range opened {
		s.listeners[addr] = l
		go func() {
			var err error
			if l.tls {
				err = l.srv.ServeTLS(l.ln, "", "")
			} else {
				go l.serveFast(s)
				err = l.srv.Serve(l.handoff)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("listener stopped", "addr", addr, "err", err)
			}
		}()
		s.log.Info("l7 listening", "addr", addr, "tls", l.tls)
	}
	for name := range s.upstreams {
		if built[name] == nil {
			delete(s.upstreams, name)
		}
	}
	// Connection pools no service uses any more are closed.
	inUse := map[*connPool]bool{}
	conns := map[string]map[string]*connPool{}
	for name, sv := range built {
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
	s.conns = conns
	s.services = built
	s.l7 = cfg.L7
	return nil
}

func closeAll(ls map[string]*listener) {
	for _, l := range ls {
		l.ln.Close()
	}
}

// build makes a service from its config, reusing the live state of backends
// it had before.
func (s *Server) build(c config.Service, first bool) (*service, error) {
	checked := c.HealthCheck != nil && c.HealthCheck.Type != "none"
	prev := s.upstreams[c.Name]
	next := map[string]*balance.Upstream{}
	upstream := func(b config.Backend) *balance.Upstream {
		if u := next[b.Address]; u != nil {
			return u
		}
		u := prev[b.Address]
		if u == nil {
			u = balance.NewUpstream(b.Address, b.Weight, b.MaxConns, b.SlowStart)
			// Configured backends start up when the server starts, so a
			// restart does not refuse traffic until the first checks;
			// later additions wait for their first passing check.
			u.SetHealthy(!checked || first, time.Now())
		} else {
			// A reload may change any of these; the live state stays.
			u.SetWeight(b.Weight)
			u.SetMaxConns(b.MaxConns)
			u.SetSlowStart(b.SlowStart)
		}
		next[b.Address] = u
		return u
	}
	connect := c.Timeouts.Connect
	if connect <= 0 {
		connect = config.DefaultConnectTimeout
	}
	conns := map[*balance.Upstream]*connPool{}
	mkPool := func(name, sched string, bs []config.Backend) (*pool, error) {
		ups := make([]*balance.Upstream, 0, len(bs))
		for _, b := range bs {
			u := upstream(b)
			ups = append(ups, u)
			if conns[u] == nil {
				// Kept connections survive a reload that leaves the
				// backend and the connect timeout alone.
				cp := s.conns[c.Name][b.Address]
				if cp == nil || cp.connect != connect {
					cp = newConnPool(b.Address, connect, max(256, b.MaxConns))
				}
				conns[u] = cp
			}
		}
		return newPool(name, sched, ups, c, s.secret)
	}
	sv := &service{
		srv: s, name: c.Name, cfg: c, transport: newTransport(c), budget: newRetryBudget(),
		retryOn: map[string]bool{}, active: new(atomic.Int64), conns: conns,
		mActive:   s.met.active.WithLabelValues(c.Name),
		mDuration: s.met.duration.WithLabelValues(c.Name),
		mRetries:  s.met.retries.WithLabelValues(c.Name),
	}
	if old := s.services[c.Name]; old != nil {
		sv.active = old.active
		sv.budget = old.budget
		if sameTimeouts(old.cfg, c) {
			sv.transport = old.transport // keep pooled connections
		}
	}
	var err error
	if sv.pool, err = mkPool(c.Name, c.Scheduler, c.Backends); err != nil {
		return nil, err
	}
	for i, r := range c.Routes {
		sched := r.Scheduler
		if sched == "" {
			sched = c.Scheduler
		}
		bs := r.Backends
		if len(bs) == 0 {
			bs = c.Backends
		}
		p, err := mkPool(fmt.Sprintf("%s/routes[%d]", c.Name, i), sched, bs)
		if err != nil {
			return nil, err
		}
		sv.routes = append(sv.routes, newRoute(r.Match, p))
	}
	for _, on := range c.Retries.On {
		sv.retryOn[on] = true
	}
	sv.hashKind, sv.hashName = c.HashKeyParts()
	sv.hashLower = strings.ToLower(sv.hashName)
	if rl := c.RateLimit; rl != nil {
		if name, ok := strings.CutPrefix(rl.Key, "header:"); ok {
			sv.limitHeader = strings.ToLower(name)
		}
		sv.limiter = newLimiter(rl.Rate, rl.Per, rl.Burst)
		if old := s.services[c.Name]; old != nil && old.limiter != nil && old.cfg.RateLimit != nil && *old.cfg.RateLimit == *rl {
			sv.limiter = old.limiter
		}
	}
	s.upstreams[c.Name] = next
	return sv, nil
}

func sameTimeouts(a, b config.Service) bool {
	return a.Timeouts == b.Timeouts
}

func (s *Server) newListener(c config.Service, ln net.Listener, l7 config.L7) *listener {
	l := &listener{addr: c.Listen, ln: ln, tls: c.TLS != nil,
		maxHeader: l7.MaxHeaderBytes, readHeader: l7.ReadHeaderTimeout, idle: l7.IdleTimeout}
	if l.maxHeader <= 0 {
		l.maxHeader = config.DefaultMaxHeaderBytes
	}
	if !l.tls {
		l.handoff = newHandoffListener(ln.Addr())
		l.fconns = map[*fastConn]struct{}{}
	}
	l.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			l.handler.Load().ServeHTTP(w, r)
		}),
		MaxHeaderBytes:    l7.MaxHeaderBytes,
		ReadHeaderTimeout: l7.ReadHeaderTimeout,
		IdleTimeout:       l7.IdleTimeout,
		ErrorLog:          log.New(io.Discard, "", 0), // client hiccups are not operator news
	}
	if l.tls {
		l.srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
			// The certificate is read per handshake, so a reload that
			// renews it takes effect without a restart.
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return l.cert.Load(), nil },
		}
	}
	return l
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

// Shutdown stops accepting on every listener and waits for in-flight
// requests up to l7.drain_timeout (or ctx); upgraded connections are closed
// at the end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ls := make([]*listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	timeout := s.l7.DrainTimeout
	s.listeners = map[string]*listener{}
	s.mu.Unlock()
	select {
	case <-s.sweeper:
	default:
		close(s.sweeper)
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
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
	s.mu.Lock()
	for _, byAddr := range s.conns {
		for _, cp := range byAddr {
			cp.close()
		}
	}
	s.mu.Unlock()
	s.hijacked.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Upstream returns a backend's live state, for health checks and the API.
func (s *Server) Upstream(service, addr string) *balance.Upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upstreams[service][addr]
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
}

// Status reports a service's backends (sorted by address), and whether it exists.
func (s *Server) Status(service string) ([]BackendStatus, bool) {
	s.mu.Lock()
	ups, ok := s.upstreams[service]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	now := time.Now()
	out := make([]BackendStatus, 0, len(ups))
	for _, u := range ups {
		out = append(out, BackendStatus{
			Address: u.Addr, Weight: u.Weight(), Healthy: u.Healthy(), Drained: u.Drained(), Ejected: u.Ejected(now),
			Inflight: u.Inflight(), Requests: u.Requests(), Failures: u.Failures(),
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
