package l7

import (
	"crypto/tls"
	"fmt"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/l7/balance"
	"github.com/xlbproject/xlb/l7/tlsconf"
)

// service is one layer 7 service: its routes, pools and protections. It is
// immutable once built; a reload builds a new one and swaps it in.
type service struct {
	srv      *Server
	name     string
	cfg      config.Service
	pool     *pool
	routes   []route
	limiter  *limiter
	budget   *retryBudget
	retryOn  map[string]bool
	hashKind string // consistent_hash key: header, cookie, path, source_ip
	hashName string
	// hashLower is hashName in lower case, for the HTTP/1.1 engine.
	hashLower string
	// limitHeader (lower case) and limitCanon are the header a rate limit
	// is keyed on; empty: the client address.
	limitHeader, limitCanon string
	noBackend               string // the 503 message
	// h1 and h2 say what clients may speak (protocols).
	h1, h2 bool
	active *atomic.Int64
	// conns is each backend's connection pool.
	conns map[*balance.Upstream]*connPool
	// backendTLS makes the backends' TLS configurations (nil: cleartext).
	backendTLS *tlsconf.Client

	// Metric children resolved once, not per request.
	mActive   prometheus.Gauge
	mDuration prometheus.Observer
	mRetries  prometheus.Counter
	codes     sync.Map // codeKey -> counter

	// ejectMu makes passive health's "is it the last one?" and the
	// ejection one step, so two backends failing at once do not both go.
	ejectMu sync.Mutex
	// panicLogged is when panicPick last logged (Unix ns).
	panicLogged atomic.Int64
}

// built is a service made by build and what committing it changes in the
// live state it shares with the running one.
type built struct {
	sv        *service
	upstreams map[string]*balance.Upstream
	// routeUps are the backends routes name as their own: apart from the
	// pool's of the same address, so that what the API does to the pool
	// (drain, weight, removal) leaves the routes as the file has them.
	routeUps map[string]*balance.Upstream
	// commit applies the config to upstreams that stay (weights, limits):
	// run only once the whole Apply can no longer fail.
	commit []func()
}

// build makes a service from its config, reusing the live state of the
// backends, connection pools, limiter and retry budget it had before. It
// changes nothing that runs. A runtime change of backends (keepTLS) keeps
// the TLS client the service has, files and session caches; an Apply reads
// the files again.
func (s *Server) build(c config.Service, first, keepTLS bool) (*built, error) {
	checked := c.HealthCheck != nil && c.HealthCheck.Type != "none"
	b := &built{upstreams: map[string]*balance.Upstream{}, routeUps: map[string]*balance.Upstream{}}
	upstream := func(ups, prev, other map[string]*balance.Upstream, cb config.Backend) *balance.Upstream {
		if u := ups[cb.Address]; u != nil {
			return u
		}
		u := prev[cb.Address]
		if u == nil {
			u = balance.NewUpstream(cb.Address, cb.Weight, cb.MaxConns, cb.SlowStart)
			// Configured backends start up when the server starts, so a
			// restart does not refuse traffic until the first checks;
			// later additions wait for their first passing check. A
			// reload's address that moved between the pool and a route,
			// or that a new route takes from the pool, is checked already:
			// it keeps that verdict, as the daemon's model does, instead of
			// refusing its route's requests until the daemon says so. An
			// API addition (keepTLS: a runtime change) waits for its own.
			up := !checked || first
			if o := other[cb.Address]; o != nil && !keepTLS {
				up = o.Healthy()
			}
			u.SetHealthy(up, time.Now())
		} else {
			// A reload may change any of these; the live state stays.
			b.commit = append(b.commit, func() {
				u.SetWeight(cb.Weight)
				u.SetMaxConns(cb.MaxConns)
				u.SetSlowStart(cb.SlowStart)
			})
		}
		ups[cb.Address] = u
		return u
	}
	connect := c.Timeouts.Connect
	if connect <= 0 {
		connect = config.DefaultConnectTimeout
	}
	conns := map[*balance.Upstream]*connPool{}
	// The pool's and the routes' upstreams of one address share its
	// connections.
	connsByAddr := map[string]*connPool{}
	// TLS to the backends: the files are read now, so that a broken CA or
	// client certificate fails the Apply before anything changes.
	var client *tlsconf.Client
	if old := s.services[c.Name]; keepTLS && old != nil {
		client = old.backendTLS
	} else if c.BackendProtocol == "https" || c.BackendProtocol == "h2" {
		var err error
		if client, err = tlsconf.Backend(c.BackendTLS); err != nil {
			return nil, err
		}
	}
	mkPool := func(name, sched string, bs []config.Backend, own, prev, other map[string]*balance.Upstream) (*pool, error) {
		ups := make([]*balance.Upstream, 0, len(bs))
		for _, cb := range bs {
			u := upstream(own, prev, other, cb)
			ups = append(ups, u)
			if conns[u] != nil {
				continue
			}
			if cp := connsByAddr[cb.Address]; cp != nil {
				conns[u] = cp
				continue
			}
			var tc *tls.Config
			if client != nil {
				tc = client.For(cb.Address)
			}
			// Kept connections survive a reload that leaves the backend,
			// whether it speaks TLS, and the connect timeout alone; a new
			// TLS configuration applies to the connections made after it.
			cp := s.conns[c.Name][cb.Address]
			// An HTTP/2 client holds its TLS configuration: a new one
			// needs a new client.
			h2 := c.BackendProtocol == "h2c" || c.BackendProtocol == "h2"
			if cp == nil || cp.connect != connect || (cp.tls.Load() == nil) != (tc == nil) || (cp.h2 != nil) != h2 || (h2 && cp.tls.Load() != tc) {
				cp = newConnPool(cb.Address, connect, tc, max(256, cb.MaxConns))
				if h2 {
					cp.h2 = newH2Backend(cp)
					cp.tcpAddr = h2Addr(cb.Address)
				}
			} else if cp.tls.Load() != tc {
				b.commit = append(b.commit, func() { cp.tls.Store(tc) })
			}
			conns[u], connsByAddr[cb.Address] = cp, cp
		}
		return newPool(name, sched, ups, c, s.secret)
	}
	sv := &service{
		srv: s, name: c.Name, cfg: c, budget: newRetryBudget(),
		retryOn: map[string]bool{}, active: new(atomic.Int64), conns: conns, backendTLS: client,
		noBackend: "no backend available for service " + c.Name,
		mActive:   s.met.active.WithLabelValues(c.Name),
		mDuration: s.met.duration.WithLabelValues(c.Name),
		mRetries:  s.met.retries.WithLabelValues(c.Name),
	}
	old := s.services[c.Name]
	if old != nil {
		sv.active = old.active
		sv.budget = old.budget
	}
	var err error
	if sv.pool, err = mkPool(c.Name, c.Scheduler, c.Backends, b.upstreams, s.upstreams[c.Name], s.routeUps[c.Name]); err != nil {
		return nil, err
	}
	for i, r := range c.Routes {
		sched := r.Scheduler
		if sched == "" {
			sched = c.Scheduler
		}
		bs, own, prev, other := r.Backends, b.routeUps, s.routeUps[c.Name], s.upstreams[c.Name]
		if len(bs) == 0 {
			bs, own, prev, other = c.Backends, b.upstreams, s.upstreams[c.Name], s.routeUps[c.Name]
		}
		p, err := mkPool(fmt.Sprintf("%s/routes[%d]", c.Name, i), sched, bs, own, prev, other)
		if err != nil {
			return nil, err
		}
		sv.routes = append(sv.routes, newRoute(r.Match, p))
	}
	sv.h1 = len(c.Protocols) == 0 || slices.Contains(c.Protocols, "http1")
	sv.h2 = len(c.Protocols) == 0 || slices.Contains(c.Protocols, "h2")
	for _, on := range c.Retries.On {
		sv.retryOn[on] = true
	}
	sv.hashKind, sv.hashName = c.HashKeyParts()
	sv.hashLower = strings.ToLower(sv.hashName)
	if rl := c.RateLimit; rl != nil {
		if name, ok := strings.CutPrefix(rl.Key, "header:"); ok {
			sv.limitHeader, sv.limitCanon = strings.ToLower(name), textproto.CanonicalMIMEHeaderKey(name)
		}
		sv.limiter = newLimiter(rl.Rate, rl.Per, rl.Burst)
		if old != nil && old.limiter != nil && old.cfg.RateLimit != nil && *old.cfg.RateLimit == *rl {
			sv.limiter = old.limiter
		}
	}
	b.sv = sv
	return b, nil
}
