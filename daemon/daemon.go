//go:build linux

// Package daemon is xlbd's core: it keeps every service's backends in one
// model fed by the config, the health checks and the admin API, projects
// that model into the kernel maps and the L7 pools, and runs the daemon's
// lifecycle (reload, restart with adoption, shutdown).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/l7"
)

// Options configure a Daemon.
type Options struct {
	ConfigPath string
	Logger     *slog.Logger
	Registry   *prometheus.Registry // nil: a private one
	Version    string
	AccessLog  *slog.Logger // L7 access log; nil: off
	// StickySecret keys L7 sticky cookies; nil: kept in /var/lib/xlb/sticky.key.
	StickySecret []byte
	// Listen opens L7 listeners (nil: net.Listen); see l7.Options.Listen.
	Listen func(addr string) (net.Listener, error)
}

// Daemon wires the parts: the data plane's lifecycle, the reconciler (the
// model and its projections), the health checker and its sink, the
// housekeeper and the admin controller.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	met     *metrics
	dp      *dataplane
	web     *l7.Server
	r       *reconciler
	checker *health.Checker
	hk      *housekeeper
	ctl     *controller
	follow  *follower
	bgp     *announcer // nil: no bgp section
	ready   atomic.Bool
	// reloading keeps a SIGHUP and an API reload from interleaving.
	reloading sync.Mutex
	// stopping (under reloading) refuses reloads once Shutdown began: a
	// reload would listen again on the L7 addresses the drain closed, and
	// the exit would cut what they accepted.
	stopping bool
	// setToken applies a reload's admin.token_file to the admin API.
	setToken func(path string) error
	// reloadStarts and reloadEnds tell systemd of every reload (the API's
	// too, not only SIGHUP's); nil: nobody listens.
	reloadStarts func()
	reloadEnds   func(err error)
	// restartNeeded is what the last good reload left for a restart.
	restartNeeded atomic.Pointer[[]string]
	// unserved says why the XDP program is missing from a configured
	// interface ("" or nil: it is on all of them); checkAttachments.
	unserved atomic.Pointer[string]
	lostIfs  atomic.Pointer[map[string]bool]
}

// OnTokenFile registers what applies a reloaded admin.token_file (the admin
// server's SetTokenFile); without it a change of the file's path would be
// reported as applied while the API kept checking the old token.
func (d *Daemon) OnTokenFile(set func(path string) error) {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	d.setToken = set
}

// OnReload registers what hears of each reload, from SIGHUP or the API:
// starts before it is applied, ends with its result.
func (d *Daemon) OnReload(starts func(), ends func(err error)) {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	d.reloadStarts, d.reloadEnds = starts, ends
}

// New loads the config and the data plane (adopting pinned maps left by a
// previous daemon), attaches to the configured interfaces and installs every
// service. Nothing is attached when the config is invalid.
func New(opts Options) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		log.Warn("config", "warning", w)
	}
	d := &Daemon{opts: opts, log: log}
	d.r = &reconciler{log: log, model: newModel()}
	d.met = newMetrics(opts.Version, d.r)
	d.met.lost = d.lostInterfaces
	if err := d.met.register(reg); err != nil {
		return nil, err
	}
	sink := &healthSink{met: d.met, r: d.r}
	d.checker = health.NewChecker(health.Options{Logger: log, Observer: sink})
	sink.checker = d.checker
	if d.web, err = l7.New(l7.Options{Logger: log, AccessLog: opts.AccessLog, Registry: reg, StickySecret: opts.StickySecret, Listen: opts.Listen}); err != nil {
		return nil, err
	}
	if d.dp, err = startDataplane(log, cfg); err != nil {
		d.dp.close()
		return nil, err
	}
	d.hk = newHousekeeper(log, d.r, d.dp.maps != nil)
	d.hk.checkAttachments = d.checkAttachments
	d.r.l4 = newL4Projector(log, d.dp.maps, d.dp.ids)
	d.r.l7 = &l7Projector{web: d.web}
	paths := checkPaths{backendTLS: d.web.BackendTLS}
	if d.dp.dp != nil {
		pp := &probePath{log: log, dp: d.dp.dp, l4: d.r.l4}
		paths.viaVIP = pp.viaVIP
	}
	d.r.retarget = func(m *model) {
		d.checker.Set(checkTargets(m, paths))
		d.met.trackChecked(m)
	}
	d.r.changed = d.hk.poke
	d.ctl = &controller{log: log, r: d.r, maps: d.dp.maps, reload: d.ReloadConfig, restartNeeded: func() []string {
		if p := d.restartNeeded.Load(); p != nil {
			return *p
		}
		return nil
	}}
	if d.follow, err = newFollower(log, d.r, reg); err != nil {
		d.dp.close()
		return nil, err
	}
	adopted := d.dp.dp != nil && d.dp.dp.Adopted
	if d.bgp, err = newAnnouncer(log, cfg, adopted, d.r, reg, opts.ConfigPath); err != nil {
		d.follow.close()
		d.dp.close()
		return nil, err
	}
	if d.bgp != nil {
		d.r.l4.synced, d.r.l4.removed, d.r.l4.batch = d.bgp.synced, d.bgp.forget, d.bgp.sp.Batch
		sink.bgp, d.ctl.bgp = d.bgp, d.bgp
		d.bgp.unserved, d.bgp.l4Off = d.notServing, d.dp.maps == nil
	}
	if d.dp.maps != nil {
		warmNeighbours(log, cfg)
	}
	if err := d.r.load(cfg, true); err != nil {
		d.follow.close()
		d.dp.close()
		return nil, err
	}
	d.follow.follow(cfg, d.dp.maps != nil)
	if d.bgp != nil {
		d.bgp.start(cfg)
	}
	d.ready.Store(true)
	return d, nil
}

// warmNeighbours resolves the L4 backends' next hops before the first
// packet needs them.
func warmNeighbours(log *slog.Logger, cfg *config.Config) {
	var addrs []netip.Addr
	for _, s := range cfg.Services {
		if s.IsL4() {
			for _, b := range s.Backends {
				addrs = append(addrs, b.Addr)
			}
		}
	}
	if missing := awaitNeighbours(addrs, time.Second); len(missing) > 0 {
		log.Warn("no neighbour entry yet for some backends; their first packets go to the kernel until one exists", "backends", missing)
	}
}

// Controller is what the admin API drives.
func (d *Daemon) Controller() admin.Controller { return d.ctl }

// ReloadConfig re-reads the config file (SIGHUP). An invalid file changes
// nothing and the error (a config.ErrorList) says why. Runtime changes made
// through the API are dropped: the file decides.
func (d *Daemon) ReloadConfig() error {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	if d.stopping {
		d.met.reloads.WithLabelValues("error").Inc()
		d.log.Warn("reload refused: xlbd is shutting down")
		return fmt.Errorf("xlbd is shutting down (draining its L7 listeners): a reload would listen on them again: %w", api.ErrUnavailable)
	}
	if d.reloadStarts != nil {
		d.reloadStarts()
	}
	err := d.reload()
	if d.reloadEnds != nil {
		d.reloadEnds(err)
	}
	return err
}

// reload is ReloadConfig under d.reloading, once it may go ahead.
func (d *Daemon) reload() error {
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		d.met.reloads.WithLabelValues("error").Inc()
		d.log.Error("reload rejected; the running config keeps serving", "err", err)
		if _, ok := err.(config.ErrorList); !ok {
			// A file gone or unreadable is the caller's to fix too (400).
			msg := err.Error()
			if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
				msg = "cannot read it: " + pe.Err.Error()
			}
			err = config.ErrorList{{File: d.opts.ConfigPath, Msg: msg}}
		}
		return err
	}
	running := d.r.config()
	d.restartNeeded.Store(nil)
	if cfg.Blank && len(running.Services) > 0 {
		// An editor or a config manager caught mid-write leaves an empty
		// file; loading it would stop every service at once.
		err := config.ErrorList{{File: cfg.File, Line: 1, Msg: fmt.Sprintf("the file is empty (a write cut short?) and would stop all %d services; the running config keeps serving. To serve nothing, write services: []", len(running.Services))}}
		d.met.reloads.WithLabelValues("error").Inc()
		d.log.Error("reload rejected; the running config keeps serving", "err", err)
		return err
	}
	restart := cfg.RestartNeeded(running)
	for _, line := range restart {
		d.log.Warn("reload: change needs a restart of xlbd to take effect", "change", line)
	}
	for _, line := range config.Diff(running, cfg) {
		d.log.Info("reload", "change", line)
	}
	// The token first: a reload that sets or rotates it must not leave the
	// API open to the old token, or to none, when the rest applies. A
	// reload rejected after it puts the running one back.
	tokenSwitched := false
	reject := func(err error) error {
		if tokenSwitched {
			if terr := d.setToken(running.Admin.TokenFile); terr != nil {
				d.log.Error("reload rejected, and the running admin token could not be read again: the new one stays", "err", terr)
			}
		}
		d.met.reloads.WithLabelValues("error").Inc()
		d.log.Error("reload rejected; the running config keeps serving", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	if cfg.Admin.TokenFile != running.Admin.TokenFile && d.setToken != nil {
		if err := d.setToken(cfg.Admin.TokenFile); err != nil {
			return reject(err)
		}
		tokenSwitched = true
	}
	lost := d.dp.dp != nil && len(d.dp.dp.Lost()) > 0
	if lost {
		// A detach took the probes' neighbour entries with the program
		// (loader.Unpin); the targets this reload hands the checker make
		// them again. Looked at now: the housekeeper may not have seen
		// the detach yet.
		probeNeighbours.Clear()
	}
	if err := d.dp.reattach(cfg); err != nil {
		// What the file asks of this host's interfaces: the caller's to
		// fix, as a listen address another process holds is (400).
		return reject(config.ErrorList{{File: cfg.File, Key: "xdp.interfaces", Msg: err.Error()}})
	}
	// Restart-only settings keep their running values.
	cfg.XDP.PinPath, cfg.XDP.FlowTableSize, cfg.Admin.Listen = running.XDP.PinPath, running.XDP.FlowTableSize, running.Admin.Listen
	if keepBGP(d.log, cfg, running) {
		restart = append(restart, "bgp (the section; a service's announce takes effect now)")
	}
	if err := d.r.load(cfg, false); err != nil {
		return reject(err)
	}
	d.follow.follow(cfg, d.dp.maps != nil)
	if lost && d.bgp != nil {
		d.bgp.announceAgainAfterDetach()
	}
	d.restartNeeded.Store(&restart)
	d.met.reloads.WithLabelValues("ok").Inc()
	d.log.Info("config reloaded", "services", len(cfg.Services))
	return nil
}

// Run serves until ctx ends: health checks and housekeeping. The data plane
// stays attached after Run returns; Close releases the daemon's handles.
func (d *Daemon) Run(ctx context.Context) error {
	go d.checker.Run(ctx)
	go d.follow.run(ctx)
	d.hk.run(ctx)
	return nil
}

// Ready reports whether the daemon serves (for /healthz): nil, or why not.
func (d *Daemon) Ready() error {
	if !d.ready.Load() {
		return errors.New("not ready")
	}
	if why := d.notServing(); why != "" {
		return errors.New(why)
	}
	return nil
}

// Config returns the running config.
func (d *Daemon) Config() *config.Config { return d.r.config() }

// Close releases file descriptors and the pin-path lock. The XDP program and
// its pinned maps stay, so L4 traffic keeps flowing until the next daemon
// adopts them (or `xlbctl detach`).
func (d *Daemon) Close() error {
	d.ready.Store(false)
	if d.bgp != nil {
		d.bgp.stop() // without a NOTIFICATION: graceful restart keeps the routes
	}
	d.follow.close()
	return d.dp.close()
}

// ListenerFiles duplicates the L7 listening sockets, for an upgrade.
func (d *Daemon) ListenerFiles() (map[string]*os.File, error) { return d.web.ListenerFiles() }

// Shutdown stops the L7 listeners and lets in-flight requests finish for up
// to l7.drain_timeout (or until ctx ends).
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.ready.Store(false)
	d.reloading.Lock() // a reload under way ends first; none starts after
	d.stopping = true
	d.reloading.Unlock()
	return d.web.Shutdown(ctx)
}
