// Package admin serves xlb's admin HTTP API and Prometheus metrics.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/internal/promfamily"
)

// DefaultListen is where the admin API listens when Options.Listen is empty:
// loopback, as SPEC.md's admin.listen default.
const DefaultListen = "127.0.0.1:9100"

// maxBody bounds every request body; the largest legitimate one is a few
// dozen bytes.
const maxBody = 1 << 20

// Controller is what the daemon implements. Its errors tell the status:
// api.ErrNotFound 404, api.ErrInvalid 400, api.ErrConflict 409, an
// api.Detailed 400 with its details, anything else 500.
type Controller interface {
	// Services returns every service with its live state.
	Services() []api.Service
	// AddBackend adds a backend at runtime.
	AddBackend(service string, b api.AddBackend) (api.Change, error)
	// RemoveBackend drains a backend, then removes it.
	RemoveBackend(service, address string) (api.Change, error)
	// PatchBackend changes a backend's weight or drain state.
	PatchBackend(service, address string, p api.PatchBackend) (api.Change, error)
	// Reload re-reads the config file, like SIGHUP. A config that fails
	// validation is an error implementing api.Detailed.
	Reload() (api.Reload, error)
	// Stats returns the data plane's verdict and event counters.
	Stats() (api.Stats, error)
}

// Options configure a Server.
type Options struct {
	// Listen is the TCP address to listen on (default DefaultListen).
	Listen string
	// Listener, if set, is the socket to serve, already bound to Listen
	// (xlbd binds it before it attaches anything, so that a port in use
	// stops the start before the data plane is touched).
	Listener net.Listener
	// TokenFile, if set, holds the bearer token that mutating calls need
	// ("Authorization: Bearer <token>"). It is read by New, which fails when
	// it is unreadable or empty, and re-read before a mutating call whenever
	// the file changed, so a token can be rotated without a restart. GETs
	// never need the token.
	TokenFile string
	// Gatherer serves /metrics (default prometheus.DefaultGatherer).
	Gatherer prometheus.Gatherer
	// Families are declared on /metrics even before they have a series.
	Families []promfamily.Family
	// Logger receives one Info line per mutating call (default: discard).
	Logger *slog.Logger
	// Ready tells /healthz whether the daemon is serving: nil, or why not
	// (a nil Ready: always serving).
	Ready func() error
}

// Server is the admin HTTP server.
type Server struct {
	ctl     Controller
	log     *slog.Logger
	ready   func() error
	token   atomic.Pointer[tokenFile] // nil: mutating calls are open
	listen  string
	preLn   net.Listener
	handler http.Handler

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

// New checks the options and builds a Server; Start makes it listen.
func New(c Controller, o Options) (*Server, error) {
	if c == nil {
		return nil, errors.New("admin: nil controller")
	}
	s := &Server{
		ctl:    c,
		log:    o.Logger,
		ready:  o.Ready,
		listen: o.Listen,
		preLn:  o.Listener,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ready == nil {
		s.ready = func() error { return nil }
	}
	if s.listen == "" {
		s.listen = DefaultListen
	}
	if o.TokenFile != "" {
		t, err := loadTokenFile(o.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		s.token.Store(t)
	}
	g := o.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	metrics := promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      promLogger{s.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
	s.handler = s.routes(promfamily.Handler(metrics, o.Families))
	return s, nil
}

// SetTokenFile switches to the token in path ("": mutating calls need no
// token), for a reload that changed admin.token_file. On error the token
// in force stays.
func (s *Server) SetTokenFile(path string) error {
	if path == "" {
		if s.token.Swap(nil) != nil {
			s.log.Warn("admin API: admin.token_file removed; mutating calls need no token now")
		}
		return nil
	}
	t, err := loadTokenFile(path)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.token.Store(t)
	return nil
}

// Handler returns the server's handler (every route), for tests and for
// embedding in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on Options.Listen, returning a listen error at once, and
// serves in the background until Shutdown.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("admin: already started")
	}
	ln := s.preLn
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.listen); err != nil {
			return fmt.Errorf("admin: listen on %s: %w", s.listen, err)
		}
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.srv, s.ln = srv, ln
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin API stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "token", s.token.Load() != nil)
	return nil
}

// Addr is the address the server listens on, nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting and waits for in-flight calls until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

// promLogger routes promhttp's gathering errors to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Warn("metrics: " + fmt.Sprint(v...))
}
