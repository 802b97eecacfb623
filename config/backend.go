package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// backends decodes a list of backends of s (or of one of its routes);
// written is false when the list is absent or empty, so the caller can
// report a missing list without repeating errors about its items.
func (p *parser) backends(n *yaml.Node, path string, s *Service) (bs []Backend, written bool) {
	items, ok := p.seq(n, path, "[{address: ...}]")
	written = len(items) > 0 || (!ok && !isNull(p.resolve(n)))
	seen := map[string]int{}
	for i, it := range items {
		b, at, ok := p.backend(it, index(path, i), s)
		if !ok {
			continue
		}
		k := backendKey(b.Address)
		if line, dup := seen[k]; dup {
			p.errorf(at, index(path, i)+".address", "backend %s is listed twice (first on line %d)", b.Address, line)
			continue
		}
		seen[k] = at.Line
		bs = append(bs, b)
	}
	return bs, written
}

// backendKey is a backend address in canonical form, for comparisons.
func backendKey(addr string) string {
	if a, err := netip.ParseAddr(addr); err == nil {
		return a.String()
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.String()
	}
	return strings.ToLower(addr)
}

func (p *parser) backend(n *yaml.Node, path string, s *Service) (Backend, *yaml.Node, bool) {
	r := p.resolve(n)
	if r != nil && r.Kind == yaml.ScalarNode && !isNull(r) {
		p.errorf(r, path, "expected a mapping like {address: %s}, got %s", r.Value, describe(r))
		return Backend{}, nil, false
	}
	f, ok := p.fields(r, path, "a mapping like {address: ..., weight: 1}", backendKeys)
	if !ok {
		if isNull(r) {
			p.errorf(n, path, "empty backend; give it an address")
		}
		return Backend{}, nil, false
	}
	b := Backend{Weight: DefaultWeight, Line: r.Line}
	valid := true
	if s.Layer == 4 {
		for _, key := range l7BackendKeys {
			if e := f.m[key]; e != nil {
				p.errorf(e.k, join(path, key), "applies to layer 7 backends only; the XDP program forwards packets without counting or ramping connections")
				delete(f.m, key)
			}
		}
	}
	var at *yaml.Node
	if e := f.get("address"); e != nil {
		at = e.v
		valid = p.backendAddress(e.v, join(path, "address"), s, &b)
	} else {
		valid = false
		p.errorf(f.at("address", r), join(path, "address"), "missing; every backend needs an address")
	}
	if e := f.get("weight"); e != nil {
		if v, ok := p.integer(e.v, join(path, "weight"), 0, MaxWeight); ok {
			b.Weight = int(v)
		}
	}
	if e := f.get("max_conns"); e != nil {
		if v, ok := p.integer(e.v, join(path, "max_conns"), 0, 1_000_000); ok {
			b.MaxConns = int(v)
		}
	}
	if e := f.get("slow_start"); e != nil {
		b.SlowStart, _ = p.duration(e.v, join(path, "slow_start"), 0)
	}
	return b, at, valid
}

// backendAddress decodes a backend's address for the service's layer.
func (p *parser) backendAddress(n *yaml.Node, path string, s *Service, b *Backend) bool {
	v, ok := p.str(n, path)
	if !ok {
		return false
	}
	b.Address = strings.TrimSpace(v)
	switch s.Layer {
	case 4:
		a, err := netip.ParseAddr(b.Address)
		if err != nil {
			if ap, err := netip.ParseAddrPort(b.Address); err == nil {
				port := "the VIP's port"
				if s.Port != 0 {
					port = fmt.Sprintf("the VIP's port, %d", s.Port)
				}
				p.errorf(n, path, "a layer 4 backend is an IP address without a port: it serves on %s; write %s", port, ap.Addr())
			} else {
				p.errorf(n, path, "expected an IP address, got %q (layer 4 backends are addresses; host names are not resolved)", v)
			}
			return false
		}
		if msg := addrProblem(a, "a backend"); msg != "" {
			p.errorf(n, path, "%s", msg)
			return false
		}
		if s.VIP.IsValid() && a.Is4() != s.VIP.Is4() {
			p.errorf(n, path, "%s is %s but the VIP %s is %s; a layer 4 backend must be in the VIP's family", a, family(a), s.VIP, family(s.VIP))
			return false
		}
		b.Addr = a
	case 7:
		if i := strings.Index(b.Address, "://"); i >= 0 {
			p.errorf(n, path, "write host:port without a scheme, like %s", b.Address[i+3:])
			return false
		}
		host, port, err := net.SplitHostPort(b.Address)
		if err != nil {
			if a, err := netip.ParseAddr(b.Address); err == nil {
				p.errorf(n, path, "a layer 7 backend needs a port: write %s", netip.AddrPortFrom(a, 80))
			} else if validHostname(b.Address) {
				p.errorf(n, path, "a layer 7 backend needs a port: write %s:80", b.Address)
			} else {
				p.errorf(n, path, "expected host:port like 127.0.0.1:9001, got %q", v)
			}
			return false
		}
		if !validPort(port) {
			p.errorf(n, path, "port must be between 1 and 65535, got %q", port)
			return false
		}
		if a, err := netip.ParseAddr(host); err == nil {
			if msg := addrProblem(a, "a backend"); msg != "" {
				p.errorf(n, path, "%s", msg)
				return false
			}
			pn, _ := strconv.Atoi(port)
			b.AddrPort = netip.AddrPortFrom(a, uint16(pn))
		} else if !validHostname(host) {
			p.errorf(n, path, "%s", notHost(host))
			return false
		}
	}
	return true
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
