//go:build linux

package daemon

// The daemon's side of the BGP speaker (package bgp): what each L4 service
// wants announced, and when the sessions may start.
//
// The speaker's only health input is Speaker.SetWanted(service, vip, wanted,
// reason). The daemon calls it from one place, bgpSyncLocked, which runs at
// the end of syncL4 (every change of a service's backends, health, weights,
// drains or config passes through there) and when a backend passes its first
// check (bgpObserved, fed by the health checker's Observer). A removed
// service is forgotten in removeL4. announce: healthy wants the VIP while at
// least one weighted backend is up as this node's checks see it and has
// passed a check since this xlbd started (a fresh xlbd marks configured
// backends up so as not to black-hole traffic, but must not attract traffic
// on that assumption).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/maps"
)

var _ admin.BGPController = (*Daemon)(nil)

// bgpState is the speaker and what the health checks told it so far.
type bgpState struct {
	sp *bgp.Speaker

	mu sync.Mutex
	// passed holds the check keys (service/address) that passed a check
	// since this xlbd started; checked those with any result.
	passed, checked map[string]bool
	started         bool
}

// startBGP creates the speaker (no sessions yet) when the config has a bgp
// section. Called by New after the data plane is up: a data plane adopted
// from a previous xlbd means forwarding never stopped, which the graceful
// restart capability says.
func (d *Daemon) startBGP() error {
	c := d.cfg.BGP
	if c == nil {
		return nil
	}
	routerID := c.RouterID
	if !routerID.IsValid() {
		if len(d.cfg.XDP.Interfaces) > 0 {
			routerID, _, _ = interfaceAddrs(d.cfg.XDP.Interfaces[0])
		}
		if !routerID.IsValid() {
			return fmt.Errorf("bgp: router_id not set and no IPv4 address on the first xdp interface to take it from")
		}
	}
	cfg := bgp.Config{
		ASN: c.ASN, RouterID: routerID, ListenPort: int32(c.ListenPort),
		GracefulRestart: c.GracefulRestart.Enabled, RestartTime: c.GracefulRestart.RestartTime,
		Restarting: c.GracefulRestart.Enabled && d.dp != nil && d.dp.Adopted,
		NextHop:    c.NextHop,
	}
	for _, p := range c.Peers {
		bp := bgp.Peer{Address: p.Address, ASN: p.ASN, Port: p.Port, HoldTime: p.HoldTime}
		if p.PasswordFile != "" {
			b, err := os.ReadFile(p.PasswordFile)
			if err != nil {
				return fmt.Errorf("bgp: peer %s: password: %w", p.Address, err)
			}
			bp.Password = strings.TrimSpace(string(b))
		}
		cfg.Peers = append(cfg.Peers, bp)
	}
	sp, err := bgp.New(cfg, d.log)
	if err != nil {
		return err
	}
	// The first verdicts of every check come within about a second plus a
	// probe timeout (health.firstDelay); a check that is slower than that
	// does not hold the sessions back further.
	wait := 2 * time.Second
	for _, s := range d.cfg.Services {
		if s.IsL4() && hasChecks(s) {
			wait = max(wait, time.Second+s.HealthCheck.Timeout+500*time.Millisecond)
		}
	}
	d.bgp = &bgpState{sp: sp, passed: map[string]bool{}, checked: map[string]bool{}}
	if _, err := os.Stat(announceOffPath(d.cfg.XDP.PinPath)); err == nil {
		d.log.Warn("bgp: announcing stays off, as `xlbctl announce off` left it; `xlbctl announce on` announces again")
		sp.SetEnabled(false)
	}
	if err := d.reg.Register(bgpCollector{d.bgp.sp}); err != nil {
		return err
	}
	go func() {
		time.Sleep(wait)
		d.bgpMaybeStart(true)
	}()
	return nil
}

// stopBGP ends the sessions without a NOTIFICATION (graceful restart: the
// peers keep the routes while the next xlbd starts; XDP keeps forwarding).
func (d *Daemon) stopBGP() {
	if d.bgp == nil {
		return
	}
	if err := d.bgp.sp.Stop(true); err != nil {
		d.log.Warn("bgp stop", "err", err)
	}
}

// bgpSyncLocked tells the speaker whether s wants its VIP announced. d.mu
// is held.
func (d *Daemon) bgpSyncLocked(s *l4Service) {
	if d.bgp == nil {
		return
	}
	wanted, reason := d.bgpWanted(s)
	d.bgp.sp.SetWanted(s.cfg.Name, s.cfg.VIP, wanted, reason)
}

func (d *Daemon) bgpForgetLocked(s *l4Service) {
	if d.bgp != nil {
		d.bgp.sp.Forget(s.cfg.Name)
	}
}

// bgpWanted applies the service's announce mode to its state.
func (d *Daemon) bgpWanted(s *l4Service) (bool, string) {
	switch s.cfg.Announce {
	case "never":
		return false, "announce: never"
	case "always":
		return true, "announce: always"
	}
	// up counts the weighted backends that are up and proven; drainedUp
	// the drained ones, which still serve established flows.
	weighed, up, drainedUp, unproven := 0, 0, 0, 0
	d.bgp.mu.Lock()
	defer d.bgp.mu.Unlock()
	for _, b := range s.backends {
		proven := b.up && (!hasChecks(s.cfg) || d.bgp.passed[checkKey(s.cfg.Name, b.addr)])
		switch {
		case b.effWeight() == 0:
			if proven {
				drainedUp++
			}
		case proven:
			weighed++
			up++
		case b.up:
			weighed++
			unproven++
		default:
			weighed++
		}
	}
	switch {
	case weighed == 0 && drainedUp > 0:
		// Every node has the same drains: withdrawing everywhere would cut
		// the established flows a drain promises to keep.
		return true, "every backend is drained: announced for the established flows"
	case weighed == 0:
		return false, "no backend"
	case up > 0 && !hasChecks(s.cfg):
		return true, fmt.Sprintf("no health check: %d weighted backends count as up", up)
	case up > 0:
		return true, fmt.Sprintf("%d of %d weighted backends up", up, weighed)
	case unproven > 0:
		return false, "no backend has passed a check since xlbd started"
	case s.failOpen:
		return false, "every backend is down (the data plane fails open to what still arrives)"
	}
	return false, "no backend is up"
}

// bgpObserved is fed every health probe result: a backend's first passing
// check may make its service announceable, and once every checked backend
// has a first verdict the sessions start.
func (d *Daemon) bgpObserved(key string, ok bool) {
	b := d.bgp
	if b == nil {
		return
	}
	b.mu.Lock()
	first := ok && !b.passed[key]
	if ok {
		b.passed[key] = true
	}
	b.checked[key] = true
	b.mu.Unlock()
	if first {
		name, _, _ := strings.Cut(key, "/")
		d.mu.Lock()
		if s := d.l4[name]; s != nil {
			d.bgpSyncLocked(s)
		}
		d.mu.Unlock()
	}
	d.bgpMaybeStart(false)
}

// bgpMaybeStart opens the sessions once every checked backend of every
// service announced by health has a first verdict, or when force (the
// deadline passed).
func (d *Daemon) bgpMaybeStart(force bool) {
	b := d.bgp
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	d.mu.Lock()
	var pending []string
	b.mu.Lock()
	for _, name := range d.l4Order {
		s := d.l4[name]
		if s.cfg.Announce != "healthy" || !hasChecks(s.cfg) {
			continue
		}
		for _, be := range s.backends {
			if k := checkKey(name, be.addr); be.removeAt.IsZero() && !b.checked[k] {
				pending = append(pending, k)
			}
		}
	}
	if b.started || (len(pending) > 0 && !force) {
		b.mu.Unlock()
		d.mu.Unlock()
		return
	}
	b.started = true
	b.mu.Unlock()
	d.mu.Unlock()
	if len(pending) > 0 {
		d.log.Warn("bgp: starting the sessions before every backend had a first check", "unchecked", pending)
	}
	if err := b.sp.Start(); err != nil {
		d.log.Error("bgp start", "err", err)
	}
}

// bgpReloadLocked keeps the running bgp settings: the speaker is set up at
// start.
func (d *Daemon) bgpReloadLocked(cfg *config.Config) {
	if !reflect.DeepEqual(bgpSettings(cfg.BGP), bgpSettings(d.cfg.BGP)) {
		d.log.Warn("reload: a change of the bgp section needs a restart of xlbd to take effect (announce: takes effect now)")
	}
	cfg.BGP = d.cfg.BGP
}

// bgpSettings is a bgp section without its line numbers, for comparisons.
func bgpSettings(b *config.BGP) *config.BGP {
	if b == nil {
		return nil
	}
	c := *b
	c.Line = 0
	c.Peers = append([]config.BGPPeer(nil), b.Peers...)
	for i := range c.Peers {
		c.Peers[i].Line = 0
	}
	return &c
}

// BGPStatus answers GET /api/v1/bgp.
func (d *Daemon) BGPStatus() api.BGP {
	if d.bgp == nil {
		return api.BGP{Peers: []api.BGPPeer{}, Announced: []api.BGPPrefix{}, Services: []api.BGPService{}}
	}
	return d.bgp.sp.Status()
}

// SetAnnounce turns announcing on or off (xlbctl announce on|off): off
// withdraws every VIP, also announce: always ones; the data plane keeps
// forwarding what still arrives.
func (d *Daemon) SetAnnounce(on bool) (api.BGP, error) {
	if d.bgp == nil {
		return api.BGP{}, fmt.Errorf("bgp is not configured (no bgp section in %s): %w", d.opts.ConfigPath, api.ErrConflict)
	}
	// The maintenance state outlives an xlbd restart (an upgrade during
	// maintenance must not announce again), not a reboot.
	marker := announceOffPath(d.cfg.XDP.PinPath)
	var err error
	if on {
		if err = os.Remove(marker); errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	} else if err = os.MkdirAll(lockDir, 0o755); err == nil {
		err = os.WriteFile(marker, []byte("xlbctl announce off\n"), 0o644)
	}
	if err != nil {
		d.log.Warn("bgp: the announce state will not survive a restart", "err", err)
	}
	d.bgp.sp.SetEnabled(on)
	return d.bgp.sp.Status(), nil
}

// announceOffPath marks a node in maintenance, beside its pin-path lock.
func announceOffPath(pinPath string) string {
	return filepath.Join(lockDir, strings.ReplaceAll(strings.Trim(filepath.Clean(pinPath), "/"), "/", "_")+".announce-off")
}

// bgpCollector serves xlb_bgp_peer_up and xlb_bgp_announced at scrape time.
type bgpCollector struct{ sp *bgp.Speaker }

var (
	bgpPeerUpDesc    = prometheus.NewDesc("xlb_bgp_peer_up", "1 while the BGP session to the peer is established.", []string{"peer"}, nil)
	bgpAnnouncedDesc = prometheus.NewDesc("xlb_bgp_announced", "1 while the service's VIP is announced to the BGP peers.", []string{"service"}, nil)
)

func (c bgpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bgpPeerUpDesc
	ch <- bgpAnnouncedDesc
}

func (c bgpCollector) Collect(ch chan<- prometheus.Metric) {
	for peer, up := range c.sp.PeerUp() {
		ch <- prometheus.MustNewConstMetric(bgpPeerUpDesc, prometheus.GaugeValue, b2f(up), peer)
	}
	for svc, on := range c.sp.ServiceAnnounced() {
		ch <- prometheus.MustNewConstMetric(bgpAnnouncedDesc, prometheus.GaugeValue, b2f(on), svc)
	}
}

// fingerprint digests the service's current table by backend address
// (maps.MaglevFingerprint), for comparing nodes.
func (s *l4Service) fingerprint() string {
	keys := make(map[uint32]string, len(s.backends))
	for _, b := range s.backends {
		keys[b.id] = b.addr.String()
	}
	return maps.MaglevFingerprint(s.table, keys)
}
