// Package bgp is xlbd's BGP speaker: it announces the VIPs this node should
// receive to the configured routers, and nothing else.
//
// It embeds GoBGP as a library, as Cilium's BGP control plane does: one
// BgpServer, a global import policy that rejects every route (a balancer
// learns nothing from its routers), and AddPath/DeletePath driven by the
// services' state, which the daemon reports through SetWanted. A VIP is
// announced as a host route (/32 or /128) while announcing is enabled and at
// least one service that wants it wants it.
//
// GoBGP v4 rather than v3: v4's StopBgp takes AllowGracefulRestart, which
// closes the sessions without a NOTIFICATION so that peers with graceful
// restart (RFC 4724) keep the routes while xlbd restarts (v3 always sends a
// Cease, and the only way round it there is to kill the process); v4 logs
// through log/slog, as xlb does, where v3 needs an adapter to its own
// logger interface; and v4's native Go API (netip, apiutil.Path) needs no
// protobuf Any packing of path attributes. Its dependencies (netlink, netns,
// protobuf) are the versions xlb already uses.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	gobgpapi "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/xlbproject/xlb/api"
)

// Config is the speaker's part of the config file's bgp section.
type Config struct {
	ASN      uint32
	RouterID netip.Addr // IPv4, required
	// ListenPort is where the speaker accepts sessions (179); -1 only dials
	// out.
	ListenPort int32
	// GracefulRestart turns on RFC 4724 with RestartTime, the time peers keep
	// the routes after the session closed without a NOTIFICATION.
	GracefulRestart bool
	RestartTime     time.Duration
	// Restarting marks this speaker as restarting with its forwarding state
	// kept (the XDP program never stopped): the OPEN carries the restart
	// state bit and the forwarding-state bit of each family, and peers keep
	// the stale routes until this speaker's End-of-RIB.
	Restarting bool
	// NextHop of the announced routes; the zero Addr (or an address of the
	// other family) lets each session use its own local address.
	NextHop netip.Addr
	Peers   []Peer
}

// Peer is one router to keep a session with.
type Peer struct {
	Address  netip.Addr
	ASN      uint32
	Port     uint16        // 0: 179
	HoldTime time.Duration // 0: 90s (at least 3s)
	Password string        // TCP MD5 (RFC 2385); "" for none
	// LocalAddress, if set, is the address the session runs from.
	LocalAddress netip.Addr
}

// connectRetry is how soon a failed or closed session is tried again:
// GoBGP's default (120 s) would keep a restarted xlbd away from its routers
// for two minutes.
const connectRetry = 1

// Speaker is a running BGP speaker.
type Speaker struct {
	cfg Config
	log *slog.Logger
	srv *server.BgpServer

	mu        sync.Mutex
	started   bool // peers added
	stopped   bool
	enabled   bool                    // announcing is on (xlbctl announce on|off)
	wants     map[string]want         // by service
	announced map[netip.Addr]bool     // VIPs in GoBGP's RIB
	peers     map[netip.Addr]*peerRun // by address
	cancel    context.CancelFunc
	// held counts Batch calls under way: the RIB follows the wants only
	// once they end.
	held int
}

type want struct {
	vip    netip.Addr
	wanted bool
	reason string
}

type peerRun struct {
	cfg   Peer
	state bgp.FSMState
	since time.Time
	// lastError is the last disconnect reason GoBGP gave.
	lastError string
}

// New starts a BGP server with the global settings and the reject-all
// import policy, but no sessions: Start adds the peers, once the caller has
// told which VIPs are wanted (so that the first UPDATE, and after a graceful
// restart the End-of-RIB, carry the right set).
func New(cfg Config, log *slog.Logger) (*Speaker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !cfg.RouterID.Is4() {
		return nil, fmt.Errorf("bgp: router id %s: must be an IPv4 address", cfg.RouterID)
	}
	if cfg.ASN == 0 {
		return nil, errors.New("bgp: asn missing")
	}
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn) // GoBGP's own lines: its Info is per message
	srv := server.NewBgpServer(server.LoggerOption(log.With("component", "gobgp"), lvl))
	go srv.Serve()
	s := &Speaker{
		cfg: cfg, log: log, srv: srv,
		enabled:   true,
		wants:     map[string]want{},
		announced: map[netip.Addr]bool{},
		peers:     map[netip.Addr]*peerRun{},
	}
	ctx := context.Background()
	global := &gobgpapi.Global{Asn: cfg.ASN, RouterId: cfg.RouterID.String(), ListenPort: cfg.ListenPort}
	if err := srv.StartBgp(ctx, &gobgpapi.StartBgpRequest{Global: global}); err != nil {
		return nil, fmt.Errorf("bgp: start: %w", err)
	}
	// Import nothing: a balancer only announces. GoBGP runs the global
	// import policy on locally added paths too, so the policy lets those
	// (route type local) in and its default rejects every received one.
	policy := &gobgpapi.Policy{Name: "xlb-import-own-only", Statements: []*gobgpapi.Statement{{
		Name:       "xlb-accept-local",
		Conditions: &gobgpapi.Conditions{RouteType: gobgpapi.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &gobgpapi.Actions{RouteAction: gobgpapi.RouteAction_ROUTE_ACTION_ACCEPT},
	}}}
	if err := srv.AddPolicy(ctx, &gobgpapi.AddPolicyRequest{Policy: policy}); err != nil {
		s.stopServer(false)
		return nil, fmt.Errorf("bgp: import policy: %w", err)
	}
	if err := srv.SetPolicyAssignment(ctx, &gobgpapi.SetPolicyAssignmentRequest{Assignment: &gobgpapi.PolicyAssignment{
		Name: "global", Direction: gobgpapi.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies:      []*gobgpapi.Policy{{Name: policy.Name}},
		DefaultAction: gobgpapi.RouteAction_ROUTE_ACTION_REJECT,
	}}); err != nil {
		s.stopServer(false)
		return nil, fmt.Errorf("bgp: import policy: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: s.peerEvent}, server.WatchPeer()); err != nil {
		cancel()
		s.stopServer(false)
		return nil, fmt.Errorf("bgp: watch peers: %w", err)
	}
	for _, p := range cfg.Peers {
		s.peers[p.Address] = &peerRun{cfg: p, state: bgp.BGP_FSM_IDLE, since: time.Now()}
	}
	log.Info("bgp speaker ready", "asn", cfg.ASN, "router_id", cfg.RouterID, "listen_port", cfg.ListenPort,
		"graceful_restart", cfg.GracefulRestart, "restarting", cfg.Restarting, "peers", len(cfg.Peers))
	return s, nil
}

// Start opens the sessions to every peer. Call it once the wanted VIPs are
// known.
func (s *Speaker) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return nil
	}
	s.started = true
	var errs []error
	for _, p := range s.cfg.Peers {
		if err := s.srv.AddPeer(context.Background(), &gobgpapi.AddPeerRequest{Peer: s.peerConf(p)}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: add peer %s: %w", p.Address, err))
		}
	}
	s.log.Info("bgp sessions starting", "peers", len(s.cfg.Peers), "announced", s.prefixesLocked())
	return errors.Join(errs...)
}

func family(a netip.Addr) *gobgpapi.Family {
	if a.Is4() {
		return &gobgpapi.Family{Afi: gobgpapi.Family_AFI_IP, Safi: gobgpapi.Family_SAFI_UNICAST}
	}
	return &gobgpapi.Family{Afi: gobgpapi.Family_AFI_IP6, Safi: gobgpapi.Family_SAFI_UNICAST}
}

// peerConf is GoBGP's config of one session. A session carries the
// families it can give a next hop for: its own, and the one of next_hop.
func (s *Speaker) peerConf(p Peer) *gobgpapi.Peer {
	hold := uint64(p.HoldTime / time.Second)
	if hold == 0 {
		hold = 90
	}
	keepalive := max(hold/3, 1)
	port := uint32(p.Port)
	if port == 0 {
		port = 179
	}
	fams := []netip.Addr{p.Address}
	if s.cfg.NextHop.IsValid() && s.cfg.NextHop.Is4() != p.Address.Is4() {
		fams = append(fams, s.cfg.NextHop)
	}
	var afis []*gobgpapi.AfiSafi
	for _, f := range fams {
		a := &gobgpapi.AfiSafi{Config: &gobgpapi.AfiSafiConfig{Family: family(f), Enabled: true}}
		if s.cfg.GracefulRestart {
			a.MpGracefulRestart = &gobgpapi.MpGracefulRestart{Config: &gobgpapi.MpGracefulRestartConfig{Enabled: true}}
		}
		afis = append(afis, a)
	}
	c := &gobgpapi.Peer{
		Conf: &gobgpapi.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &gobgpapi.Timers{Config: &gobgpapi.TimersConfig{
			HoldTime: hold, KeepaliveInterval: keepalive, ConnectRetry: connectRetry, IdleHoldTimeAfterReset: connectRetry,
		}},
		Transport: &gobgpapi.Transport{RemotePort: port},
		AfiSafis:  afis,
	}
	if p.LocalAddress.IsValid() {
		c.Transport.LocalAddress = p.LocalAddress.String()
	}
	if s.cfg.GracefulRestart {
		c.GracefulRestart = &gobgpapi.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(s.cfg.RestartTime / time.Second),
			LocalRestarting: s.cfg.Restarting,
			// Without End-of-RIB from the routers (they send us nothing
			// we keep) a restarting speaker still announces after this.
			DeferralTime: 5,
		}
	}
	return c
}

// SetWanted records whether service wants vip announced, and why (for the
// API and the log), and updates the announcements. The daemon calls it
// whenever a service's healthy set, its announce mode or its VIP changes.
func (s *Speaker) SetWanted(service string, vip netip.Addr, wanted bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.wants[service]
	w := want{vip: vip.Unmap(), wanted: wanted, reason: reason}
	s.wants[service] = w
	if !had || old.wanted != wanted || old.vip != w.vip {
		s.log.Info("bgp: service announcement wanted", "service", service, "vip", w.vip, "wanted", wanted, "reason", reason)
	}
	s.reconcileLocked()
}

// Batch runs fn, which may call SetWanted and Forget any number of times,
// and brings the announced VIPs in line with the wants once, when it ends:
// a reload that moves services between VIPs (two names swapped) must not
// withdraw, even for a moment, a VIP that is wanted before and after it.
func (s *Speaker) Batch(fn func()) {
	s.mu.Lock()
	s.held++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.held--; s.held == 0 {
			s.reconcileLocked()
		}
	}()
	fn()
}

// Forget drops a removed service.
func (s *Speaker) Forget(service string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.wants[service]; !ok {
		return
	}
	delete(s.wants, service)
	s.reconcileLocked()
}

// SetEnabled turns announcing on or off (maintenance): off withdraws every
// VIP whatever the services want.
func (s *Speaker) SetEnabled(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled != on {
		s.log.Info("bgp: announcing turned "+map[bool]string{true: "on", false: "off"}[on], "announcing", on)
	}
	s.enabled = on
	s.reconcileLocked()
}

// Enabled reports whether announcing is on.
func (s *Speaker) Enabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enabled
}

// desiredLocked is the set of VIPs to announce now.
func (s *Speaker) desiredLocked() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	if !s.enabled || s.stopped {
		return out
	}
	for _, w := range s.wants {
		if w.wanted && w.vip.IsValid() {
			out[w.vip] = true
		}
	}
	return out
}

// reconcileLocked adds and deletes paths so that GoBGP's RIB holds exactly
// the desired VIPs.
func (s *Speaker) reconcileLocked() {
	if s.stopped || s.held > 0 {
		return
	}
	want := s.desiredLocked()
	for vip := range want {
		if s.announced[vip] {
			continue
		}
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{s.path(vip)}}); err != nil {
			s.log.Error("bgp: announce", "prefix", hostPrefix(vip), "err", err)
			continue
		}
		s.announced[vip] = true
		s.log.Info("bgp: announced", "prefix", hostPrefix(vip), "next_hop", s.nextHopText(vip))
	}
	for vip := range s.announced {
		if want[vip] {
			continue
		}
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{s.path(vip)}}); err != nil {
			s.log.Error("bgp: withdraw", "prefix", hostPrefix(vip), "err", err)
			continue
		}
		delete(s.announced, vip)
		s.log.Info("bgp: withdrawn", "prefix", hostPrefix(vip))
	}
}

func hostPrefix(vip netip.Addr) netip.Prefix { return netip.PrefixFrom(vip, vip.BitLen()) }

// nextHop is the next hop of vip's route: next_hop when it is of vip's
// family, else unspecified, which GoBGP replaces with each session's local
// address.
func (s *Speaker) nextHop(vip netip.Addr) netip.Addr {
	if nh := s.cfg.NextHop; nh.IsValid() && nh.Is4() == vip.Is4() {
		return nh
	}
	if vip.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func (s *Speaker) nextHopText(vip netip.Addr) string {
	if nh := s.nextHop(vip); !nh.IsUnspecified() {
		return nh.String()
	}
	return "session address"
}

func (s *Speaker) path(vip netip.Addr) *apiutil.Path {
	nlri, _ := bgp.NewIPAddrPrefix(hostPrefix(vip)) // a host prefix is always valid
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := bgp.RF_IPv4_UC
	if vip.Is4() {
		nh, _ := bgp.NewPathAttributeNextHop(s.nextHop(vip))
		attrs = append(attrs, nh)
	} else {
		fam = bgp.RF_IPv6_UC
		mp, _ := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, s.nextHop(vip))
		attrs = append(attrs, mp)
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}
}

// peerEvent follows the sessions' states for the log, the API and the
// metrics.
func (s *Speaker) peerEvent(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	s.mu.Lock()
	p := s.peers[st.NeighborAddress]
	if p == nil || p.state == st.SessionState {
		s.mu.Unlock()
		return
	}
	prev := p.state
	p.state, p.since = st.SessionState, time.Now()
	if prev == bgp.BGP_FSM_ESTABLISHED && st.DisconnectMessage != "" {
		p.lastError = st.DisconnectMessage
	}
	announced := s.prefixesLocked()
	s.mu.Unlock()
	args := []any{"peer", st.NeighborAddress, "asn", p.cfg.ASN, "state", stateName(st.SessionState), "previous", stateName(prev)}
	switch {
	case st.SessionState == bgp.BGP_FSM_ESTABLISHED:
		s.log.Info("bgp: session established", append(args, "announcing", announced)...)
	case prev == bgp.BGP_FSM_ESTABLISHED:
		s.log.Warn("bgp: session down", append(args, "reason", st.DisconnectMessage)...)
	default:
		s.log.Debug("bgp: session state", args...)
	}
}

// stateName is the FSM state as operators know it (RFC 4271 names).
func stateName(st bgp.FSMState) string {
	switch st {
	case bgp.BGP_FSM_IDLE:
		return "idle"
	case bgp.BGP_FSM_CONNECT:
		return "connect"
	case bgp.BGP_FSM_ACTIVE:
		return "active"
	case bgp.BGP_FSM_OPENSENT:
		return "opensent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return "unknown(" + strconv.Itoa(int(st)) + ")"
}

func (s *Speaker) prefixesLocked() []string {
	var out []string
	for vip := range s.announced {
		out = append(out, hostPrefix(vip).String())
	}
	slices.Sort(out)
	return out
}

// Status is the speaker's state for GET /api/v1/bgp.
func (s *Speaker) Status() api.BGP {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := api.BGP{
		Configured: true, Announcing: s.enabled, ASN: s.cfg.ASN, RouterID: s.cfg.RouterID.String(),
		GracefulRestart: s.cfg.GracefulRestart, Peers: []api.BGPPeer{}, Announced: []api.BGPPrefix{}, Services: []api.BGPService{},
	}
	if s.cfg.GracefulRestart {
		out.RestartTime = s.cfg.RestartTime.String()
	}
	for _, pc := range s.cfg.Peers {
		p := s.peers[pc.Address]
		ap := api.BGPPeer{Address: pc.Address.String(), ASN: pc.ASN, State: stateName(p.state), Since: p.since, LastError: p.lastError}
		if p.state == bgp.BGP_FSM_ESTABLISHED {
			ap.Uptime = time.Since(p.since).Round(time.Second).String()
		}
		out.Peers = append(out.Peers, ap)
	}
	for _, pfx := range s.prefixesLocked() {
		vip := netip.MustParsePrefix(pfx).Addr()
		bp := api.BGPPrefix{Prefix: pfx, NextHop: s.nextHopText(vip)}
		for name, w := range s.wants {
			if w.vip == vip && w.wanted {
				bp.Services = append(bp.Services, name)
			}
		}
		slices.Sort(bp.Services)
		out.Announced = append(out.Announced, bp)
	}
	names := make([]string, 0, len(s.wants))
	for name := range s.wants {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		w := s.wants[name]
		out.Services = append(out.Services, api.BGPService{
			Name: name, VIP: w.vip.String(), Wanted: w.wanted, Announced: s.announced[w.vip], Reason: w.reason,
		})
	}
	return out
}

// PeerUp reports, for the metrics, whether each peer's session is
// established, by peer address.
func (s *Speaker) PeerUp() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for addr, p := range s.peers {
		out[addr.String()] = p.state == bgp.BGP_FSM_ESTABLISHED
	}
	return out
}

// ServiceAnnounced reports, for the metrics, whether each known service's
// VIP is announced now.
func (s *Speaker) ServiceAnnounced() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for name, w := range s.wants {
		out[name] = s.announced[w.vip]
	}
	return out
}

// Stop ends every session. graceful (SIGTERM with graceful restart on)
// closes them without a NOTIFICATION, so peers keep the routes for the
// restart time while the next xlbd starts; otherwise peers get a Cease and
// drop the routes at once.
func (s *Speaker) Stop(graceful bool) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.cancel()
	err := s.stopServer(graceful && s.cfg.GracefulRestart)
	if graceful && s.cfg.GracefulRestart {
		s.log.Info("bgp: sessions closed without notification; peers keep the routes for the restart time", "restart_time", s.cfg.RestartTime)
	} else {
		s.log.Info("bgp: sessions closed; peers withdraw the routes")
	}
	return err
}

func (s *Speaker) stopServer(allowGR bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// StopBgp also ends Serve.
	if err := s.srv.StopBgp(ctx, &gobgpapi.StopBgpRequest{AllowGracefulRestart: allowGR}); err != nil {
		return fmt.Errorf("bgp: stop: %w", err)
	}
	return nil
}
