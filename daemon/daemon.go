//go:build linux

// Package daemon is xlbd's core: it turns the config, the health checks and
// runtime changes from the admin API into kernel map contents, and runs the
// daemon's lifecycle (reload, restart with adoption, shutdown).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/l7"
	"github.com/xlbproject/xlb/loader"
	"github.com/xlbproject/xlb/maps"
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
}

// Daemon owns the data plane and everything that feeds it.
type Daemon struct {
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry
	met  *metrics

	mu      sync.Mutex
	cfg     *config.Config
	dp      *loader.Dataplane
	maps    *maps.Maps
	ids     *ids
	l4      map[string]*l4Service // by service name
	l4Order []string
	checker *health.Checker
	web     *l7.Server
	// l7Checks is the last health result of each L7 backend, for the API.
	l7Checks map[string]string
	// l7Extra and l7Gone are runtime API changes to L7 services: backends
	// added, and backends draining before removal (address -> removal time).
	l7Extra map[string][]config.Backend
	l7Gone  map[string]map[string]time.Time
	unlock  func()
	ready   bool
	// changed wakes the housekeeping loop (pending removals, neighbours).
	changed chan struct{}
	bgp     *bgpState // nil: no bgp section (daemon/bgp.go)
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
	d := &Daemon{
		opts:    opts,
		log:     log,
		reg:     reg,
		cfg:     cfg,
		ids:     newIDs(),
		l4:      map[string]*l4Service{},
		changed: make(chan struct{}, 1),
	}
	d.met = newMetrics(d)
	if err := d.met.register(reg); err != nil {
		return nil, err
	}
	d.checker = health.NewChecker(health.Options{Logger: log, Observer: d.met})
	d.l7Extra, d.l7Gone, d.l7Checks = map[string][]config.Backend{}, map[string]map[string]time.Time{}, map[string]string{}
	if d.web, err = l7.New(l7.Options{Logger: log, AccessLog: opts.AccessLog, Registry: reg, StickySecret: opts.StickySecret}); err != nil {
		return nil, err
	}
	if err := d.startDataplane(); err != nil {
		d.closeDataplane()
		return nil, err
	}
	if d.maps != nil {
		var addrs []netip.Addr
		for _, s := range cfg.Services {
			if s.IsL4() {
				for _, b := range s.Backends {
					addrs = append(addrs, b.Addr)
				}
			}
		}
		if missing := warmNeighbours(addrs, time.Second); len(missing) > 0 {
			log.Warn("no neighbour entry yet for some backends; their first packets go to the kernel until one exists", "backends", missing)
		}
	}
	if err := d.startBGP(); err != nil {
		d.closeDataplane()
		return nil, err
	}
	d.mu.Lock()
	err = d.applyLocked(cfg, true)
	d.mu.Unlock()
	if err != nil {
		d.closeDataplane()
		return nil, err
	}
	d.ready = true
	return d, nil
}

func (d *Daemon) drainTimeout() time.Duration {
	if d.cfg != nil && d.cfg.L7.DrainTimeout > 0 {
		return d.cfg.L7.DrainTimeout
	}
	return 30 * time.Second
}

// startDataplane loads or adopts the XDP program and maps and attaches it,
// unless no interface is configured (L4 off).
func (d *Daemon) startDataplane() error {
	x := d.cfg.XDP
	if len(x.Interfaces) == 0 {
		d.log.Info("no xdp.interfaces: L4 data plane off")
		return nil
	}
	unlock, err := lockPinPath(x.PinPath)
	if err != nil {
		return err
	}
	d.unlock = unlock
	dp, err := loader.Load(loader.Options{PinPath: x.PinPath, FlowTableSize: x.FlowTableSize, Logger: d.log})
	if err != nil {
		return err
	}
	d.dp = dp
	d.maps = maps.FromObjects(&dp.Objs.LbMaps)
	if dp.Adopted {
		if err := d.ids.recover(d.maps); err != nil {
			return err
		}
		d.log.Info("adopted the pinned data plane; flow table kept", "pin_path", x.PinPath)
	}
	if err := d.putSettings(); err != nil {
		return err
	}
	mode, err := loader.ParseMode(x.Mode)
	if err != nil {
		return err
	}
	for _, ifname := range x.Interfaces {
		if err := enableForwarding(ifname, d.hasIPv6()); err != nil {
			return err
		}
		a, err := dp.Attach(ifname, mode)
		if err != nil {
			return err
		}
		d.log.Info("xdp attached", "interface", ifname, "mode", a.Mode, "program_id", a.ProgramID, "replaced", a.Replaced)
	}
	return nil
}

func (d *Daemon) hasIPv6() bool {
	for _, s := range d.cfg.Services {
		if s.IsL4() && s.VIP.Is6() {
			return true
		}
	}
	return false
}

// putSettings sets the outer source addresses from the first interface.
func (d *Daemon) putSettings() error {
	src4, src6, err := interfaceAddrs(d.cfg.XDP.Interfaces[0])
	if err != nil {
		return err
	}
	if !src4.IsValid() && !src6.IsValid() {
		return fmt.Errorf("interface %s has no global address to use as the IPIP outer source", d.cfg.XDP.Interfaces[0])
	}
	d.log.Info("outer source addresses", "ipv4", src4, "ipv6", src6)
	return d.maps.PutSettings(maps.Settings{Src4: src4, Src6: src6})
}

// applyLocked makes cfg the running config: services added, changed and
// removed, health checks retargeted. startUp marks configured backends up
// until their checks say otherwise (a restart must not black-hole traffic).
func (d *Daemon) applyLocked(cfg *config.Config, startUp bool) error {
	// L7 first: it can fail (a listen address in use) and then nothing
	// may have changed.
	if err := d.web.Apply(d.withRuntimeL7(cfg)); err != nil {
		return err
	}
	if d.maps == nil {
		d.cfg = cfg
		d.l4Order = nil
		d.retargetChecksLocked(startUp)
		return nil
	}
	var errs []error
	next := map[string]*l4Service{}
	var order []string
	for _, c := range cfg.Services {
		if !c.IsL4() {
			continue
		}
		prev := d.l4[c.Name]
		if prev != nil && prev.key != serviceKey(c) {
			// Same name, another VIP/port/protocol: a different service.
			if err := d.removeL4(prev); err != nil {
				errs = append(errs, err)
			}
			prev = nil
		}
		s, err := d.newL4(c, prev, startUp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		next[c.Name] = s
		order = append(order, c.Name)
	}
	for name, prev := range d.l4 {
		if _, ok := next[name]; !ok {
			d.log.Info("service removed", "service", name)
			if err := d.removeL4(prev); err != nil {
				errs = append(errs, err)
			}
		}
	}
	d.cfg, d.l4, d.l4Order = cfg, next, order
	for _, name := range order {
		if err := d.syncL4(next[name]); err != nil {
			errs = append(errs, err)
		}
	}
	d.retargetChecksLocked(startUp)
	d.poke()
	return errors.Join(errs...)
}

// retargetChecksLocked gives the health checker the current set of targets.
func (d *Daemon) retargetChecksLocked(startUp bool) {
	var targets []health.Target
	initial := map[string]bool{}
	for _, name := range d.l4Order {
		s := d.l4[name]
		if !hasChecks(s.cfg) {
			continue
		}
		hc := s.cfg.HealthCheck
		port := hc.Port
		if port == 0 {
			port = s.cfg.Port
		}
		for _, b := range s.backends {
			if !b.removeAt.IsZero() {
				continue
			}
			key := checkKey(name, b.addr)
			targets = append(targets, health.Target{
				Key:  key,
				Addr: netip.AddrPortFrom(b.addr, uint16(port)).String(),
				Spec: health.Spec{
					Type: hc.Type, Path: hc.Path, Host: hc.Host,
					ExpectMin: hc.ExpectMin, ExpectMax: hc.ExpectMax,
					Interval: hc.Interval, Timeout: hc.Timeout,
					HealthyThreshold: hc.HealthyThreshold, UnhealthyThreshold: hc.UnhealthyThreshold,
				},
			})
			initial[key] = b.up
		}
	}
	for _, c := range d.cfg.Services {
		if c.IsL4() || c.HealthCheck == nil || c.HealthCheck.Type == "none" {
			continue
		}
		hc := c.HealthCheck
		seen := map[string]bool{}
		for _, b := range d.l7Backends(c) {
			if seen[b.Address] {
				continue
			}
			seen[b.Address] = true
			key := c.Name + "/" + b.Address
			targets = append(targets, health.Target{
				Key:  key,
				Addr: c.CheckAddress(&b),
				Spec: health.Spec{
					Type: hc.Type, Path: hc.Path, Host: hc.Host,
					ExpectMin: hc.ExpectMin, ExpectMax: hc.ExpectMax,
					Interval: hc.Interval, Timeout: hc.Timeout,
					HealthyThreshold: hc.HealthyThreshold, UnhealthyThreshold: hc.UnhealthyThreshold,
				},
			})
			if u := d.web.Upstream(c.Name, b.Address); u != nil {
				initial[key] = u.Healthy()
			}
		}
	}
	d.checker.Set(targets, initial)
}

func checkKey(service string, addr netip.Addr) string { return service + "/" + addr.String() }

// healthChanged is the checker's callback: one backend went up or down, so
// only its service's table is rebuilt.
func (d *Daemon) healthChanged(key string, up bool, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name, addr, ok := strings.Cut(key, "/"); ok {
		if c := d.cfg.Service(name); c != nil && !c.IsL4() {
			if u := d.web.Upstream(name, addr); u != nil {
				u.SetHealthy(up, time.Now())
				d.l7Checks[key] = reason
			}
			return
		}
	}
	for _, name := range d.l4Order {
		s := d.l4[name]
		for _, b := range s.backends {
			if checkKey(name, b.addr) != key {
				continue
			}
			b.lastCheck = reason
			if b.up == up {
				return
			}
			b.up = up
			// Healthy until this very moment, for the fail-open set.
			b.lastUp = time.Now()
			if err := d.syncL4(s); err != nil {
				d.log.Error("apply health change", "service", name, "backend", b.addr, "err", err)
			}
			return
		}
	}
}

// ReloadConfig re-reads the config file (SIGHUP). An invalid file changes
// nothing and the error (a config.ErrorList) says why.
func (d *Daemon) ReloadConfig() error {
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		d.met.reloads.WithLabelValues("error").Inc()
		d.log.Error("reload rejected; the running config keeps serving", "err", err)
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, line := range cfg.RestartNeeded(d.cfg) {
		d.log.Warn("reload: change needs a restart of xlbd to take effect", "change", line)
	}
	for _, line := range config.Diff(d.cfg, cfg) {
		d.log.Info("reload", "change", line)
	}
	d.bgpReloadLocked(cfg)
	if err := d.reattachLocked(cfg); err != nil {
		d.met.reloads.WithLabelValues("error").Inc()
		return err
	}
	// Restart-only settings keep their running values.
	cfg.XDP.PinPath, cfg.XDP.FlowTableSize, cfg.Admin = d.cfg.XDP.PinPath, d.cfg.XDP.FlowTableSize, d.cfg.Admin
	if err := d.applyLocked(cfg, false); err != nil {
		d.met.reloads.WithLabelValues("error").Inc()
		return err
	}
	d.met.reloads.WithLabelValues("ok").Inc()
	d.log.Info("config reloaded", "services", len(cfg.Services))
	return nil
}

// reattachLocked follows a change of xdp.interfaces or xdp.mode.
func (d *Daemon) reattachLocked(cfg *config.Config) error {
	if d.dp == nil {
		if len(cfg.XDP.Interfaces) > 0 {
			return errors.New("xdp.interfaces set on a daemon started without them: restart xlbd")
		}
		return nil
	}
	if len(cfg.XDP.Interfaces) == 0 {
		return errors.New("xdp.interfaces emptied: run `xlbctl detach` or restart xlbd to turn L4 off")
	}
	mode, err := loader.ParseMode(cfg.XDP.Mode)
	if err != nil {
		return err
	}
	for _, a := range d.dp.Attachments() {
		if !slices.Contains(cfg.XDP.Interfaces, a.Interface) || (mode != loader.ModeAuto && a.Mode != mode) {
			if err := d.dp.Detach(a.Interface); err != nil {
				return err
			}
			d.log.Info("xdp detached", "interface", a.Interface)
		}
	}
	for _, ifname := range cfg.XDP.Interfaces {
		if _, err := d.dp.Attach(ifname, mode); err != nil {
			return err
		}
	}
	return nil
}

// Run serves until ctx ends: health checks and housekeeping. The data plane
// stays attached after Run returns; Close releases the daemon's handles.
func (d *Daemon) Run(ctx context.Context) error {
	go d.checker.Run(ctx)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.changed:
		}
		d.housekeep()
	}
}

func (d *Daemon) poke() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// housekeep removes backends whose drain period ended and keeps neighbour
// entries of unchecked backends warm.
func (d *Daemon) housekeep() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.housekeepL7(now)
	for _, name := range d.l4Order {
		s := d.l4[name]
		kept := s.backends[:0]
		removed := false
		for _, b := range s.backends {
			if !b.removeAt.IsZero() && now.After(b.removeAt) {
				if err := d.maps.DeleteBackend(b.id); err != nil {
					d.log.Error("remove backend", "service", name, "backend", b.addr, "err", err)
				}
				d.ids.releaseBackend(s.id, b.addr)
				d.log.Info("backend removed after draining", "service", name, "backend", b.addr)
				removed = true
				continue
			}
			kept = append(kept, b)
		}
		s.backends = kept
		if removed {
			if err := d.syncL4(s); err != nil {
				d.log.Error("sync", "service", name, "err", err)
			}
		}
		if !hasChecks(s.cfg) {
			for _, b := range s.backends {
				nudgeNeighbour(b.addr)
			}
		}
	}
}

// Ready reports whether the daemon serves (for /healthz).
func (d *Daemon) Ready() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ready
}

// Config returns the running config.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Close releases file descriptors and the pin-path lock. The XDP program and
// its pinned maps stay, so L4 traffic keeps flowing until the next daemon
// adopts them (or `xlbctl detach`).
func (d *Daemon) Close() error {
	d.mu.Lock()
	d.ready = false
	d.mu.Unlock()
	return d.closeDataplane()
}

// Shutdown stops the L7 listeners and lets in-flight requests finish for up
// to l7.drain_timeout (or until ctx ends).
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.ready = false
	d.mu.Unlock()
	return d.web.Shutdown(ctx)
}

func (d *Daemon) closeDataplane() error {
	d.stopBGP()
	var err error
	if d.dp != nil {
		err = d.dp.Close()
		d.dp = nil
	}
	if d.unlock != nil {
		d.unlock()
		d.unlock = nil
	}
	return err
}
