package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// check runs the checks that span services and sections, and collects the
// file-wide warnings.
func (p *parser) check(c *Config, g globals) {
	names := map[string]int{}
	type l4key struct {
		vip   netip.Addr
		port  uint16
		proto string
	}
	vips := map[l4key]int{}
	var listens []int // indexes of layer 7 services with a valid listen
	for i := range c.Services {
		s, m := &c.Services[i], p.svcs[i]
		if m.name != nil {
			if j, dup := names[s.Name]; dup {
				p.errorf(m.name, join(m.path, "name"), "service name %q is already used on line %d", s.Name, p.svcs[j].name.Line)
			} else {
				names[s.Name] = i
			}
		}
		if s.Layer == 4 && m.vip != nil && s.Port != 0 && s.Protocol != "" {
			k := l4key{s.VIP, s.Port, s.Protocol}
			if j, dup := vips[k]; dup {
				p.errorf(m.vip, join(m.path, "vip"), "%s/%s is already served by service %s (line %d)",
					netip.AddrPortFrom(s.VIP, s.Port), s.Protocol, c.Services[j].Name, c.Services[j].Line)
			} else {
				vips[k] = i
			}
		}
		if s.Layer == 7 && m.listen != nil {
			listens = append(listens, i)
		}
	}

	// Layer 7 listeners must not collide with each other, with the admin
	// API, or with a layer 4 VIP (XDP would take its packets first).
	for n, i := range listens {
		s, m := &c.Services[i], p.svcs[i]
		at, key := m.listen, join(m.path, "listen")
		collided := false
		for _, j := range listens[:n] {
			if listenOverlap(s.Listen, c.Services[j].Listen) {
				p.errorf(at, key, "%s overlaps the listen address %s of service %s (line %d)", s.Listen, c.Services[j].Listen, c.Services[j].Name, c.Services[j].Line)
				collided = true
				break
			}
		}
		if !collided && listenOverlap(s.Listen, c.Admin.Listen) {
			where := "the default admin.listen"
			if g.adminListen != nil {
				where = "admin.listen (line " + strconv.Itoa(g.adminListen.Line) + ")"
			}
			p.errorf(at, key, "%s overlaps %s, %s", s.Listen, where, c.Admin.Listen)
		}
		if ap, err := netip.ParseAddrPort(s.Listen); err == nil {
			if j, ok := vips[l4key{ap.Addr(), ap.Port(), "tcp"}]; ok {
				p.errorf(at, key, "%s is the vip:port of layer 4 service %s (line %d); the XDP program takes those packets before this listener sees them",
					s.Listen, c.Services[j].Name, c.Services[j].Line)
			}
		}
	}

	p.checkBGP(c, g)

	// Warnings.
	if len(c.Services) == 0 && len(p.errs) == 0 {
		key := "services"
		if g.services == nil {
			key = ""
		}
		p.warnf(g.services, key, "no services configured; xlb serves nothing")
	}
	if c.Admin.TokenFile == "" && !isLoopback(c.Admin.Listen) {
		p.warnf(g.adminListen, "admin.listen", "%s is reachable beyond this host and admin.token_file is empty: anyone who reaches it can change backends; set a token_file or listen on 127.0.0.1", c.Admin.Listen)
	}
	for i := range c.Services {
		if s := &c.Services[i]; s.Layer == 4 && s.VIP.IsLoopback() {
			m := p.svcs[i]
			p.warnf(m.vip, join(m.path, "vip"), "%s is a loopback address: packets to it never cross an XDP interface, so the balancer sees none", s.VIP)
		}
	}
	if len(c.XDP.Interfaces) == 0 {
		for i := range c.Services {
			if c.Services[i].Layer == 4 {
				m := p.svcs[i]
				p.warnf(m.node, m.path, "layer 4 service %s has no data plane: xdp.interfaces is empty", c.Services[i].Name)
			}
		}
	}
}

// listenHost normalizes the host of a listen address for comparisons: ""
// (every address), an IP address in canonical form, or a lower-case name
// (localhost counts as 127.0.0.1).
func listenHost(addr string) (host string, port int, ok bool) {
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	port, err = strconv.Atoi(ps)
	if err != nil {
		return "", 0, false
	}
	h = strings.ToLower(h)
	if h == "localhost" {
		h = "127.0.0.1"
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.IsUnspecified() && a.Is6() {
			return "", port, true // [::] also takes IPv4 (dual stack)
		}
		h = a.Unmap().String()
	}
	return h, port, true
}

// listenOverlap reports whether two listen addresses cannot both be bound:
// same port, and the same host or a wildcard covering the other.
func listenOverlap(a, b string) bool {
	ha, pa, ok1 := listenHost(a)
	hb, pb, ok2 := listenHost(b)
	if !ok1 || !ok2 || pa != pb {
		return false
	}
	if ha == hb || ha == "" || hb == "" {
		return true
	}
	is4 := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return err == nil && ip.Is4()
	}
	return ha == "0.0.0.0" && is4(hb) || hb == "0.0.0.0" && is4(ha)
}

// isLoopback reports whether a listen address is reachable from this host
// only.
func isLoopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
