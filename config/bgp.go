package config

import (
	"math"
	"net/netip"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults and limits of the bgp section.
const (
	DefaultBGPPort       = 179
	DefaultRestartTime   = 120 * time.Second
	DefaultHoldTime      = 90 * time.Second
	MinHoldTime          = 3 * time.Second // RFC 4271: 0 or at least 3 s
	MaxRestartTime       = 4095 * time.Second
	DefaultAnnounce      = "healthy"
	maxHoldTimeSeconds   = 65535
	restartTimeHintValue = "120s"
)

var (
	bgpKeys       = []string{"asn", "router_id", "listen_port", "graceful_restart", "peers", "next_hop"}
	bgpGRKeys     = []string{"enabled", "restart_time"}
	bgpPeerKeys   = []string{"address", "asn", "port", "hold_time", "password_file"}
	announceModes = []string{"healthy", "always", "never"}
)

// BGP configures the BGP speaker that announces the VIPs to the routers
// (scale-out behind ECMP). Nil in Config: no BGP.
type BGP struct {
	// ASN is this node's AS number, 1..4294967295. Required.
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address. Zero (the default):
	// the first IPv4 address of the first xdp interface.
	RouterID netip.Addr
	// ListenPort is where peers may connect, 1..65535 (default 179); -1
	// only dials out.
	ListenPort int
	// GracefulRestart (RFC 4724) lets peers keep the routes while xlbd
	// restarts. Default on, restart time 120s.
	GracefulRestart GracefulRestart
	// Peers are the routers to keep a session with. At least one.
	Peers []BGPPeer
	// NextHop of the announced routes. Zero (the default): the address each
	// session runs from.
	NextHop netip.Addr
	// Line is the section's line in the file.
	Line int
}

// GracefulRestart is the bgp.graceful_restart setting.
type GracefulRestart struct {
	Enabled bool
	// RestartTime is how long peers keep the routes of a session that
	// closed without a NOTIFICATION, 1s..4095s in whole seconds.
	RestartTime time.Duration
}

// BGPPeer is one router.
type BGPPeer struct {
	// Address of the router. Required.
	Address netip.Addr
	// ASN of the router. Required.
	ASN uint32
	// Port of the router's BGP listener. Default 179.
	Port uint16
	// HoldTime proposed for the session: 3s..65535s in whole seconds.
	// Default 90s. The peer is declared dead after it without a message.
	HoldTime time.Duration
	// PasswordFile holds the TCP MD5 (RFC 2385) password; empty: none. A
	// relative path is relative to the config file's folder; Parse stores
	// the resolved path.
	PasswordFile string
	// Line is the peer's line in the file.
	Line int
}

// maxMD5Key is the kernel's TCP_MD5SIG_MAXKEYLEN: a longer key fails
// when the session opens, not when the file is read.
const maxMD5Key = 80

func (p *parser) bgp(n *yaml.Node) *BGP {
	const path = "bgp"
	f, ok := p.fields(n, path, "a mapping with keys asn, router_id, listen_port, graceful_restart, peers and next_hop", bgpKeys)
	if !ok {
		return nil
	}
	b := &BGP{ListenPort: DefaultBGPPort, GracefulRestart: GracefulRestart{Enabled: true, RestartTime: DefaultRestartTime}, Line: p.resolve(n).Line}
	if e := f.get("asn"); e != nil {
		if v, ok := p.integer(e.v, "bgp.asn", 1, math.MaxUint32); ok {
			b.ASN = uint32(v)
		}
	} else {
		p.errorf(f.at("asn", p.resolve(n)), "bgp.asn", "missing; give this node's AS number, like 65001")
	}
	e := f.get("router_id")
	p.noRouterID = e == nil
	if e != nil {
		if a, ok := p.ipAddr(e.v, "bgp.router_id", "the router id"); ok {
			if a.Is4() {
				b.RouterID = a
			} else {
				p.errorf(e.v, "bgp.router_id", "must be an IPv4 address (BGP identifiers are 32 bits), got %s", a)
			}
		}
	}
	if e := f.get("listen_port"); e != nil {
		if v, ok := p.integer(e.v, "bgp.listen_port", -1, 65535); ok {
			if v == 0 {
				p.errorf(e.v, "bgp.listen_port", "must be a port (1-65535), or -1 to only dial out, got 0")
			} else {
				b.ListenPort = int(v)
			}
		}
	}
	if e := f.get("graceful_restart"); e != nil {
		p.bgpGracefulRestart(e.v, &b.GracefulRestart)
	}
	if e := f.get("next_hop"); e != nil {
		if v, ok := p.str(e.v, "bgp.next_hop"); ok && v != "" {
			b.NextHop, _ = p.ipAddr(e.v, "bgp.next_hop", "the next hop")
		}
	}
	if e := f.get("peers"); e != nil {
		items, _ := p.seq(e.v, "bgp.peers", "[{address: 10.0.0.254, asn: 65000}]")
		seen := map[netip.Addr]int{}
		for i, it := range items {
			peer, at, ok := p.bgpPeer(it, index("bgp.peers", i))
			if !ok {
				continue
			}
			if line, dup := seen[peer.Address]; dup {
				p.errorf(at, index("bgp.peers", i)+".address", "peer %s is listed twice (first on line %d)", peer.Address, line)
				continue
			}
			if peer.Address == b.RouterID {
				// The router would refuse the session: an OPEN carrying
				// its own identifier (RFC 4271 6.2, Bad BGP Identifier).
				p.errorf(at, index("bgp.peers", i)+".address", "%s is this node's router_id; a peer is a router, another address", peer.Address)
				continue
			}
			seen[peer.Address] = peer.Line
			b.Peers = append(b.Peers, peer)
		}
		if len(items) == 0 {
			p.errorf(e.k, "bgp.peers", "empty; give at least one router, like [{address: 10.0.0.254, asn: 65000}]")
		}
	} else {
		p.errorf(f.at("peers", p.resolve(n)), "bgp.peers", "missing; give at least one router, like [{address: 10.0.0.254, asn: 65000}]")
	}
	return b
}

func (p *parser) bgpGracefulRestart(n *yaml.Node, gr *GracefulRestart) {
	const path = "bgp.graceful_restart"
	f, _ := p.fields(n, path, "a mapping like {enabled: true, restart_time: "+restartTimeHintValue+"}", bgpGRKeys)
	if e := f.get("enabled"); e != nil {
		if s, ok := p.scalar(e.v, path+".enabled", "true or false"); ok {
			var v bool
			if s.ShortTag() != "!!bool" || s.Decode(&v) != nil {
				p.errorf(s, path+".enabled", "expected true or false, got %s", describe(s))
			} else {
				gr.Enabled = v
			}
		}
	}
	if e := f.get("restart_time"); e != nil {
		if v, ok := p.duration(e.v, path+".restart_time", time.Second); ok {
			switch {
			case v > MaxRestartTime:
				p.errorf(e.v, path+".restart_time", "must be at most %s (the capability has 12 bits of seconds), got %s", MaxRestartTime, v)
			case v%time.Second != 0:
				p.errorf(e.v, path+".restart_time", "must be whole seconds, got %s", v)
			default:
				gr.RestartTime = v
			}
		}
	}
}

func (p *parser) bgpPeer(n *yaml.Node, path string) (BGPPeer, *yaml.Node, bool) {
	r := p.resolve(n)
	f, ok := p.fields(r, path, "a mapping like {address: 10.0.0.254, asn: 65000}", bgpPeerKeys)
	if !ok {
		if isNull(r) {
			p.errorf(n, path, "empty peer; give it an address and an asn")
		}
		return BGPPeer{}, nil, false
	}
	peer := BGPPeer{Port: DefaultBGPPort, HoldTime: DefaultHoldTime, Line: r.Line}
	valid := true
	at := r
	if e := f.get("address"); e != nil {
		at = e.v
		if a, ok := p.ipAddr(e.v, join(path, "address"), "a peer address"); ok {
			peer.Address = a
		} else {
			valid = false
		}
	} else {
		valid = false
		p.errorf(f.at("address", r), join(path, "address"), "missing; give the router's IP address")
	}
	if e := f.get("asn"); e != nil {
		if v, ok := p.integer(e.v, join(path, "asn"), 1, math.MaxUint32); ok {
			peer.ASN = uint32(v)
		}
	} else {
		p.errorf(f.at("asn", r), join(path, "asn"), "missing; give the router's AS number")
	}
	if e := f.get("port"); e != nil {
		if v, ok := p.integer(e.v, join(path, "port"), 1, 65535); ok {
			peer.Port = uint16(v)
		}
	}
	if e := f.get("hold_time"); e != nil {
		if v, ok := p.duration(e.v, join(path, "hold_time"), 0); ok {
			switch {
			case v == 0:
				// RFC 4271 allows 0 (no keepalives), but then a router never
				// notices a dead balancer and keeps sending it flows.
				p.errorf(e.v, join(path, "hold_time"), "must be at least %s: 0 turns keepalives off, and a router would keep sending flows to a balancer that died", MinHoldTime)
			case v < MinHoldTime:
				p.errorf(e.v, join(path, "hold_time"), "must be at least %s, got %s", MinHoldTime, v)
			case v > maxHoldTimeSeconds*time.Second:
				p.errorf(e.v, join(path, "hold_time"), "must be at most %ds, got %s", maxHoldTimeSeconds, v)
			case v%time.Second != 0:
				p.errorf(e.v, join(path, "hold_time"), "must be whole seconds, got %s", v)
			default:
				peer.HoldTime = v
			}
		}
	}
	if e := f.get("password_file"); e != nil {
		if v, ok := p.str(e.v, join(path, "password_file")); ok && v != "" {
			peer.PasswordFile, _ = p.secretFile(e.v, join(path, "password_file"), v, "the TCP MD5 key", maxMD5Key)
		}
	}
	return peer, at, valid
}

// announce decodes a service's announce mode.
func (p *parser) announce(n *yaml.Node, path string) string {
	v, _ := p.oneOf(n, path, announceModes...)
	return v
}

// checkBGP checks what spans the bgp section and the services.
func (p *parser) checkBGP(c *Config, g globals) {
	if c.BGP == nil {
		for _, m := range p.svcs {
			if m.announce != nil {
				p.warnf(m.announce, join(m.path, "announce"), "has no effect without a bgp section")
			}
		}
		return
	}
	if p.noRouterID && len(c.XDP.Interfaces) == 0 {
		p.errorf(g.bgp, "bgp.router_id", "missing; without xdp.interfaces there is no address to take it from: give an IPv4 address of this node, like 10.0.0.1")
	}
	l4 := false
	for i := range c.Services {
		l4 = l4 || c.Services[i].IsL4()
	}
	if !l4 {
		p.warnf(g.bgp, "bgp", "no layer 4 service: the speaker announces nothing")
	}
}
