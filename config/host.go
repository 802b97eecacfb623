package config

import (
	"context"
	"net"
	"net/netip"
	"time"

	"go.yaml.in/yaml/v3"
)

// hostLookupTimeout bounds the resolution of one listen name, so that
// -check or a reload on a host whose resolver does not answer ends.
const hostLookupTimeout = 5 * time.Second

// checkHost checks the config against this host: what the start or a
// reload would find only when it attaches the XDP program (an interface
// that does not exist) or binds a listener (a host name that does not
// resolve) is an error (a warning for -check) here, with its line.
func (p *parser) checkHost(c *Config, g globals) {
	miss := p.errorf
	if p.host == hostWarnings {
		miss = func(n *yaml.Node, key, format string, args ...any) {
			p.warnf(n, key, format+" (checked on this host)", args...)
		}
	}
	for i, ifname := range c.XDP.Interfaces {
		path := index("xdp.interfaces", i)
		ok, err := interfaceExists(ifname)
		switch {
		case err != nil:
			miss(g.interfaces[i], path, "cannot look up interface %s: %v", ifname, err)
		case !ok:
			miss(g.interfaces[i], path, "no interface %s on this host (ip link lists them), so the XDP program cannot attach to it", ifname)
		}
	}

	resolved := map[string]error{} // by host: a name listed twice is asked once
	resolves := func(n *yaml.Node, path, addr string) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return
		}
		err, done := resolved[host]
		if !done {
			ctx, cancel := context.WithTimeout(context.Background(), hostLookupTimeout)
			_, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			cancel()
			resolved[host] = err
		}
		if err != nil {
			miss(n, path, "%s does not resolve on this host (%v), so xlbd cannot listen on it; give an IP address, or a name this host resolves", host, err)
		}
	}
	if g.adminListen != nil {
		resolves(g.adminListen, "admin.listen", c.Admin.Listen)
	}
	for i := range c.Services {
		if m := p.svcs[i]; c.Services[i].Layer == 7 && m.listen != nil {
			resolves(m.listen, join(m.path, "listen"), c.Services[i].Listen)
		}
	}
}
