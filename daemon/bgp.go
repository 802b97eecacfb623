//go:build linux

package daemon

// The daemon's side of the BGP speaker (package bgp): what each L4 service
// wants announced, and when the sessions may start.
//
// The speaker's only health input is Speaker.SetWanted(service, vip, wanted,
// reason). The daemon calls it from one place, announcer.synced, which the
// L4 projection runs at the end of every sync (every change of a service's
// backends, health, weights, drains or config passes through there), and
// when a backend passes its first check (reconciler.healthObserved). A
// removed service is forgotten when the projection removes it. announce:
// healthy wants the VIP while at least one backend that takes new flows
// (weighted, or standing in for a reload's replacements) is up as this
// node's checks see it and is proven (backend.proven): passed a check of
// this xlbd, or served unchecked before its service got checks. A fresh
// xlbd marks configured backends up so as not to black-hole traffic, but
// must not attract traffic on that assumption.

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/internal/maintenance"
	"github.com/xlbproject/xlb/maps"
)

var _ admin.BGPController = (*controller)(nil)

// announcer is the speaker and what the health checks told it so far.
type announcer struct {
	log *slog.Logger
	sp  *bgp.Speaker
	r   *reconciler
	// pinPath names the node's maintenance mark (package maintenance).
	pinPath    string
	configPath string
	// unserved says why the data plane misses an interface ("": it
	// does not; Daemon.notServing); nil until the daemon sets it.
	unserved func() string
	// l4Off: no xdp.interfaces, nothing here forwards an L4 VIP.
	l4Off bool

	mu      sync.Mutex
	started bool
}

// newAnnouncer creates the speaker (no sessions yet) when the config has a
// bgp section; nil without one. adopted says the data plane was adopted
// from a previous xlbd: forwarding never stopped, which the graceful
// restart capability says.
func newAnnouncer(log *slog.Logger, cfg *config.Config, adopted bool, r *reconciler, reg prometheus.Registerer, configPath string) (*announcer, error) {
	c := cfg.BGP
	if c == nil {
		return nil, nil
	}
	routerID := c.RouterID
	if !routerID.IsValid() {
		if len(cfg.XDP.Interfaces) > 0 {
			routerID, _, _ = interfaceAddrs(cfg.XDP.Interfaces[0])
		}
		if !routerID.IsValid() {
			return nil, fmt.Errorf("bgp: router_id not set and no IPv4 address on the first xdp interface to take it from")
		}
	}
	bc := bgp.Config{
		ASN: c.ASN, RouterID: routerID, ListenPort: int32(c.ListenPort),
		GracefulRestart: c.GracefulRestart.Enabled, RestartTime: c.GracefulRestart.RestartTime,
		Restarting: c.GracefulRestart.Enabled && adopted,
		NextHop:    c.NextHop,
	}
	for _, p := range c.Peers {
		bp := bgp.Peer{Address: p.Address, ASN: p.ASN, Port: p.Port, HoldTime: p.HoldTime}
		if p.PasswordFile != "" {
			b, err := os.ReadFile(p.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("bgp: peer %s: password: %w", p.Address, err)
			}
			bp.Password = strings.TrimSpace(string(b))
		}
		bc.Peers = append(bc.Peers, bp)
	}
	sp, err := bgp.New(bc, log)
	if err != nil {
		return nil, err
	}
	a := &announcer{log: log, sp: sp, r: r, pinPath: cfg.XDP.PinPath, configPath: configPath}
	if maintenance.On(a.pinPath) {
		log.Warn("bgp: announcing stays off, as `xlbctl announce off` left it; `xlbctl announce on` announces again")
		sp.SetEnabled(false)
	}
	if err := reg.Register(bgpCollector{sp}); err != nil {
		return nil, err
	}
	return a, nil
}

// start opens the sessions once every checked backend has a first verdict:
// those come within about a second plus a probe timeout (health's first
// delay); a slower check does not hold the sessions back further.
func (a *announcer) start(cfg *config.Config) {
	wait := 2 * time.Second
	for _, s := range cfg.Services {
		if hc := s.HealthCheck; s.IsL4() && hc != nil && hc.Type != "" && hc.Type != "none" {
			wait = max(wait, time.Second+hc.Timeout+500*time.Millisecond)
		}
	}
	go func() {
		time.Sleep(wait)
		a.maybeStart(true)
	}()
}

// stop ends the sessions without a NOTIFICATION (graceful restart: the
// peers keep the routes while the next xlbd starts; XDP keeps forwarding).
func (a *announcer) stop() {
	if err := a.sp.Stop(true); err != nil {
		a.log.Warn("bgp stop", "err", err)
	}
}

// synced tells the speaker whether s wants its VIP announced, after the L4
// projection wrote it; under the reconciler's lock.
func (a *announcer) synced(s *service, failOpen bool) {
	wanted, reason := a.wanted(s, failOpen)
	a.sp.SetWanted(s.cfg.Name, s.cfg.VIP, wanted, reason)
}

func (a *announcer) forget(service string) { a.sp.Forget(service) }

// wanted applies the service's announce mode to its state.
func (a *announcer) wanted(s *service, failOpen bool) (bool, string) {
	if a.l4Off {
		return false, "the L4 data plane is off (no xdp.interfaces): this node does not forward the VIP"
	}
	switch s.cfg.Announce {
	case "never":
		return false, "announce: never"
	case "always":
		return true, "announce: always"
	}
	if a.unserved != nil {
		if why := a.unserved(); why != "" {
			// Traffic the routers send here would be dropped or passed
			// to the kernel, not balanced.
			return false, "the L4 data plane does not forward: " + why
		}
	}
	// up counts the weighted backends that are up and proven; drainedUp
	// the drained ones, which still serve established flows. Weighted is
	// what the data plane gives new flows: stand-ins of a reload that
	// replaced the backends count, as they serve until a new one is up.
	weighed, up, drainedUp, unproven := 0, 0, 0, 0
	stand := s.standIns()
	for _, b := range s.backends {
		proven := b.up && (!s.checked() || b.proven)
		switch {
		case b.share(stand) == 0:
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
	case up > 0 && !s.checked():
		return true, fmt.Sprintf("no health check: %d weighted backends count as up", up)
	case up > 0:
		return true, fmt.Sprintf("%d of %d weighted backends up", up, weighed)
	case unproven > 0:
		return false, "no backend has passed a check since xlbd started"
	case failOpen:
		return false, "every backend is down (the data plane fails open to what still arrives)"
	}
	return false, "no backend is up"
}

// observed is fed every health probe result, after the model recorded it
// (a first pass re-synced the service's announcement): once every checked
// backend has a first verdict the sessions start.
func (a *announcer) observed() { a.maybeStart(false) }

// maybeStart opens the sessions once every checked backend of every
// service announced by health has a first verdict, or when force (the
// deadline passed).
func (a *announcer) maybeStart(force bool) {
	a.mu.Lock()
	started := a.started
	a.mu.Unlock()
	if started {
		return
	}
	var pending []string
	a.r.read(func(_ *config.Config, m *model) {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, name := range m.order {
			s := m.services[name]
			if !s.cfg.IsL4() || s.cfg.Announce != "healthy" || !s.checked() {
				continue
			}
			for _, b := range s.backends {
				if !b.removing() && !b.judged {
					pending = append(pending, checkKey(name, b.name))
				}
			}
		}
		if a.started || (len(pending) > 0 && !force) {
			pending, started = nil, true
			return
		}
		a.started = true
	})
	if started {
		return
	}
	if len(pending) > 0 {
		a.log.Warn("bgp: starting the sessions before every backend had a first check", "unchecked", pending)
	}
	if err := a.sp.Start(); err != nil {
		a.log.Error("bgp start", "err", err)
	}
}

// keepBGP keeps the running bgp settings in a reloaded config: the speaker
// is set up at start.
func keepBGP(log *slog.Logger, cfg, running *config.Config) (changed bool) {
	changed = !reflect.DeepEqual(bgpSettings(cfg.BGP), bgpSettings(running.BGP))
	if changed {
		log.Warn("reload: a change of the bgp section needs a restart of xlbd to take effect (announce: takes effect now)")
	}
	cfg.BGP = running.BGP
	return changed
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
func (c *controller) BGPStatus() api.BGP {
	if c.bgp == nil {
		return api.BGP{Peers: []api.BGPPeer{}, Announced: []api.BGPPrefix{}, Services: []api.BGPService{}}
	}
	return c.bgp.sp.Status()
}

// SetAnnounce turns announcing on or off (xlbctl announce on|off): off
// withdraws every VIP, also announce: always ones; the data plane keeps
// forwarding what still arrives.
func (c *controller) SetAnnounce(on bool) (api.BGP, error) {
	a := c.bgp
	if a == nil {
		return api.BGP{}, fmt.Errorf("bgp is not configured (no bgp section in the config file): %w", api.ErrConflict)
	}
	// The maintenance state outlives an xlbd restart, not a reboot.
	if err := maintenance.Set(a.pinPath, !on); err != nil {
		a.log.Warn("bgp: the announce state will not survive a restart", "err", err)
	}
	a.sp.SetEnabled(on)
	return a.sp.Status(), nil
}

// announceAgainAfterDetach follows a reload that attached the program
// again after a detach (xlbctl detach, xlbd -detach). The detach asked
// this xlbd to stop announcing, so that routers moved away before
// forwarding stopped, and then cleared the maintenance mark unless the
// node was in maintenance already; without the mark, announcing comes
// back with the program, as it would on a restart. An operator's
// `xlbctl announce off` leaves the mark, and stays.
func (a *announcer) announceAgainAfterDetach() {
	if a.sp.Enabled() || maintenance.On(a.pinPath) {
		return
	}
	a.log.Info("bgp: announcing again: the program is back and no `xlbctl announce off` holds (the detach's withdrawal ends here)")
	a.sp.SetEnabled(true)
}

// bgpCollector serves xlb_bgp_peer_up and xlb_bgp_announced at scrape time.
type bgpCollector struct{ sp *bgp.Speaker }

var (
	bgpPeerUpDesc    = famPeerUp.Desc("peer")
	bgpAnnouncedDesc = famAnnounced.Desc("service")
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

// fingerprint digests a service's current table by backend address
// (maps.MaglevFingerprint), for comparing nodes.
func (p *l4Projector) fingerprint(service string) string {
	st := p.services[service]
	if st == nil {
		return ""
	}
	keys := make(map[uint32]string, len(st.backends))
	for addr, id := range st.backends {
		keys[id] = addr.String()
	}
	return maps.MaglevFingerprint(st.table, keys)
}
