package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults and limits of a service's discover section.
const (
	DefaultDiscoverType        = "a"
	DefaultDiscoverMaxBackends = 256
	MaxDiscoverBackends        = 4096
	MinDiscoverRefresh         = time.Second
)

var (
	discoverKeys  = []string{"dns", "type", "port", "weight", "refresh", "resolvers", "max_backends"}
	discoverTypes = []string{"a", "aaaa", "srv"}
)

// Discover makes a service follow a DNS name: the backends in the answer
// join the service (source dns) and those that leave it are drained.
type Discover struct {
	// DNS is the name asked: an A/AAAA name, or for type srv the full
	// _service._proto.name. Required.
	DNS string
	// Type is a (the default), aaaa or srv (layer 7 only: ports and
	// weights come from the records).
	Type string
	// Port of every discovered backend, for layer 7 with type a or aaaa
	// (required there); 0 otherwise (layer 4 backends serve on the VIP's
	// port, SRV records carry theirs).
	Port uint16
	// Weight of every discovered backend for type a or aaaa, 1..1000.
	// Default 1; 0 for srv, whose records carry their own.
	Weight int
	// Refresh is how often the name is asked again: 0 (refresh: ttl, the
	// default) honours the answer's TTL, at least 1s; else a fixed
	// interval of at least 1s.
	Refresh time.Duration
	// Resolvers are the DNS servers asked, host:port (an IP address or a
	// host name), in order. Empty (the
	// default): the nameservers of /etc/resolv.conf.
	Resolvers []string
	// MaxBackends caps the discovered set, 1..4096; a larger answer is
	// truncated and logged. Default 256.
	MaxBackends int
	// Line is the discover key's line in the file.
	Line int
}

// discover decodes the discover section of s; nil when it is invalid
// (the errors are reported).
func (p *parser) discover(n *yaml.Node, path string, s *Service) *Discover {
	r := p.resolve(n)
	f, ok := p.fields(r, path, "a mapping like {dns: api.internal, type: a}", discoverKeys)
	if !ok {
		return nil
	}
	d := &Discover{Type: DefaultDiscoverType, MaxBackends: DefaultDiscoverMaxBackends, Line: r.Line}
	if s.Layer == 4 && s.VIP.Is6() {
		// A layer 4 backend is in its VIP's family: the type follows it.
		d.Type = "aaaa"
	}
	valid := true
	if e := f.get("type"); e != nil {
		if v, ok := p.oneOf(e.v, join(path, "type"), discoverTypes...); ok {
			d.Type = v
		} else {
			valid = false
		}
	}
	if d.Type == "srv" && s.Layer == 4 {
		p.errorf(f.at("type", r), join(path, "type"), "srv applies to layer 7 services only: layer 4 backends serve on the VIP's port, so the records' ports could not be used; use type a or aaaa")
		valid = false
		d.Type = DefaultDiscoverType // one error about it: the name and port are judged as for a
	} else if s.Layer == 4 && s.VIP.IsValid() {
		if want := map[bool]string{true: "a", false: "aaaa"}[s.VIP.Is4()]; d.Type != want {
			p.errorf(f.at("type", r), join(path, "type"), "type %s gives %s backends but the VIP %s is %s; a layer 4 backend must be in the VIP's family: use type %s",
				d.Type, map[string]string{"a": "IPv4", "aaaa": "IPv6"}[d.Type], s.VIP, family(s.VIP), want)
			valid = false
		}
	}

	if e := f.get("dns"); e != nil {
		if v, ok := p.str(e.v, join(path, "dns")); ok {
			v = strings.TrimSpace(v)
			if msg := discoverNameProblem(v, d.Type); msg != "" {
				p.errorf(e.v, join(path, "dns"), "%s", msg)
				valid = false
			} else {
				d.DNS = v
			}
		} else {
			valid = false
		}
	} else {
		p.errorf(f.at("dns", r), join(path, "dns"), "missing; discover needs the DNS name to follow, like api.internal")
		valid = false
	}

	if e := f.get("port"); e != nil {
		switch {
		// SPEC's example carries port and weight on a service that may be
		// either layer: where they cannot apply they are ignored, not errors.
		case s.Layer == 4:
			p.warnf(e.k, join(path, "port"), "ignored: layer 4 backends serve on the VIP's port")
		case d.Type == "srv":
			p.warnf(e.k, join(path, "port"), "ignored with type srv: the ports come from the SRV records")
		default:
			if v, ok := p.integer(e.v, join(path, "port"), 1, 65535); ok {
				d.Port = uint16(v)
			} else {
				valid = false
			}
		}
	} else if s.Layer == 7 && d.Type != "srv" {
		p.errorf(f.at("port", r), join(path, "port"), "missing; a layer 7 service needs the port its %s backends serve on, like port: 8080", strings.ToUpper(d.Type))
		valid = false
	}

	if d.Type != "srv" {
		d.Weight = DefaultWeight
	}
	if e := f.get("weight"); e != nil {
		if d.Type == "srv" {
			p.warnf(e.k, join(path, "weight"), "ignored with type srv: each SRV record carries its own weight")
		} else if v, ok := p.integer(e.v, join(path, "weight"), 1, MaxWeight); ok {
			d.Weight = int(v)
		} else {
			valid = false
		}
	}

	if e := f.get("refresh"); e != nil {
		if v, ok := p.refresh(e.v, join(path, "refresh")); ok {
			d.Refresh = v
		} else {
			valid = false
		}
	}

	if e := f.get("resolvers"); e != nil {
		items, _ := p.seq(e.v, join(path, "resolvers"), "[10.0.0.2:53]")
		seen := map[string]int{}
		for i, it := range items {
			ipath := index(join(path, "resolvers"), i)
			r, ok := p.resolver(it, ipath)
			if !ok {
				valid = false
				continue
			}
			if line, dup := seen[r]; dup {
				p.errorf(it, ipath, "resolver %s is listed twice (first on line %d)", r, line)
				valid = false
				continue
			}
			seen[r] = it.Line
			d.Resolvers = append(d.Resolvers, r)
		}
	}

	if e := f.get("max_backends"); e != nil {
		if v, ok := p.integer(e.v, join(path, "max_backends"), 1, MaxDiscoverBackends); ok {
			d.MaxBackends = int(v)
		} else {
			valid = false
		}
	}
	if !valid {
		return nil
	}
	return d
}

// discoverNameProblem says what is wrong with a name to follow, or "".
func discoverNameProblem(name, typ string) string {
	if a, err := netip.ParseAddr(name); err == nil {
		return fmt.Sprintf("%s is an address, not a name; list it under backends instead", a)
	}
	if !validHostname(name) {
		return fmt.Sprintf("%q is not a valid DNS name", name)
	}
	labels := strings.Split(name, ".")
	srvForm := len(labels) >= 3 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_")
	if typ == "srv" && !srvForm {
		return fmt.Sprintf("an SRV name is _service._proto.name, like _http._tcp.%s, got %q", name, name)
	}
	return ""
}

// refresh decodes "ttl" (0: honour the answer's TTL) or an interval of at
// least MinDiscoverRefresh.
func (p *parser) refresh(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := p.scalar(n, path, "ttl or a duration like 30s")
	if !ok {
		return 0, false
	}
	if strings.TrimSpace(s.Value) == "ttl" {
		return 0, true
	}
	switch s.ShortTag() {
	case "!!int", "!!float":
		p.errorf(s, path, "expected ttl or a duration like 30s, got %s (add a unit: %ss)", s.Value, s.Value)
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(s.Value))
	if err != nil {
		p.errorf(s, path, "expected ttl (honour the answer's TTL) or a duration like 30s, got %s", describe(s))
		return 0, false
	}
	if d < MinDiscoverRefresh {
		p.errorf(s, path, "must be at least %s, got %s (or ttl)", MinDiscoverRefresh, d)
		return 0, false
	}
	return d, true
}

// resolver reads one resolver, host:port: an IP address (IPv6 in brackets)
// or a host name, which the system's resolver (/etc/hosts, resolv.conf)
// turns into addresses each time the resolver is asked.
func (p *parser) resolver(n *yaml.Node, path string) (string, bool) {
	v, ok := p.str(n, path)
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	if a, err := netip.ParseAddr(v); err == nil {
		p.errorf(n, path, "a resolver needs a port: write %s", netip.AddrPortFrom(a, 53))
		return "", false
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		if ap.Port() == 0 {
			p.errorf(n, path, "port must be between 1 and 65535, got 0")
			return "", false
		}
		if a := ap.Addr(); a.IsUnspecified() || a.IsMulticast() {
			p.errorf(n, path, "%s cannot be a resolver's address", a)
			return "", false
		}
		return ap.String(), true
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		if validHostname(v) {
			p.errorf(n, path, "a resolver needs a port: write %s", net.JoinHostPort(v, "53"))
		} else {
			p.errorf(n, path, "expected a resolver's host:port like 10.0.0.2:53 or ns1.internal:53, got %q", v)
		}
		return "", false
	}
	if !validHostname(host) {
		p.errorf(n, path, "expected a resolver's host:port like 10.0.0.2:53 or ns1.internal:53, got %q: %q is no IP address or host name", v, host)
		return "", false
	}
	if pn, err := strconv.Atoi(port); err != nil || pn < 1 || pn > 65535 {
		p.errorf(n, path, "port must be between 1 and 65535, got %q", port)
		return "", false
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), port), true
}

// discover reports changes of a service's discover section.
func (d *differ) discover(p string, o, s *Discover) {
	show := func(x *Discover) string {
		if x == nil {
			return "none"
		}
		refresh := "ttl"
		if x.Refresh > 0 {
			refresh = x.Refresh.String()
		}
		return fmt.Sprintf("{dns: %s, type: %s, port: %d, weight: %d, refresh: %s, resolvers: [%s], max_backends: %d}",
			x.DNS, x.Type, x.Port, x.Weight, refresh, strings.Join(x.Resolvers, ", "), x.MaxBackends)
	}
	d.field(p, "discover", show(o), show(s))
}
