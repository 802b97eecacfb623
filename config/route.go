package config

import (
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

// routeMeta remembers where a route's keys are.
type routeMeta struct {
	path            string
	node            *yaml.Node
	scheduler       *yaml.Node // nil: the service's
	backendsWritten bool
}

// routes decodes the routes of s; items is the length of the list.
func (p *parser) routes(n *yaml.Node, path string, s *Service) (metas []routeMeta, items int) {
	list, _ := p.seq(n, path, "[{match: {path_prefix: /api/}, backends: [...]}]")
	catchAll := -1
	for i, it := range list {
		rpath := index(path, i)
		r := p.resolve(it)
		f, ok := p.fields(r, rpath, "a mapping like {match: {path_prefix: /api/}, backends: [...]}", routeKeys)
		if !ok {
			if isNull(r) {
				p.errorf(it, rpath, "empty route; give it a match and backends or a scheduler")
			}
			continue
		}
		rt := Route{Line: r.Line}
		rm := routeMeta{path: rpath, node: r}
		if e := f.get("match"); e != nil {
			p.match(e.v, join(rpath, "match"), &rt.Match)
		}
		if e := f.get("scheduler"); e != nil {
			if v, ok := p.scheduler(e.v, join(rpath, "scheduler"), 7); ok {
				rt.Scheduler, rm.scheduler = v, p.resolve(e.v)
			}
		}
		if e := f.get("backends"); e != nil {
			rt.Backends, rm.backendsWritten = p.backends(e.v, join(rpath, "backends"), s)
		}
		if catchAll >= 0 {
			p.warnf(r, rpath, "unreachable: routes[%d] matches every request", catchAll)
		} else if rt.Match.empty() {
			catchAll = i
		}
		s.Routes = append(s.Routes, rt)
		metas = append(metas, rm)
	}
	return metas, len(list)
}

func (m *Match) empty() bool {
	return m.Host == "" && m.PathPrefix == "" && len(m.Methods) == 0 && len(m.Headers) == 0
}

func (p *parser) match(n *yaml.Node, path string, m *Match) {
	f, _ := p.fields(n, path, "a mapping like {host: api.example.com, path_prefix: /v1/}", matchKeys)
	if e := f.get("host"); e != nil {
		if v, ok := p.str(e.v, join(path, "host")); ok {
			if h := strings.TrimPrefix(v, "*."); validHostname(h) {
				m.Host = v
			} else if _, err := netip.ParseAddr(v); err == nil {
				m.Host = v
			} else {
				p.errorf(e.v, join(path, "host"), "expected a host name like api.example.com or *.example.com (no port), got %q", v)
			}
		}
	}
	if e := f.get("path_prefix"); e != nil {
		if v, ok := p.str(e.v, join(path, "path_prefix")); ok {
			if strings.HasPrefix(v, "/") {
				m.PathPrefix = v
			} else {
				p.errorf(e.v, join(path, "path_prefix"), "must start with \"/\", got %q", v)
			}
		}
	}
	if e := f.get("methods"); e != nil {
		items, _ := p.seq(e.v, join(path, "methods"), "[GET, HEAD]")
		for i, it := range items {
			ipath := index(join(path, "methods"), i)
			v, ok := p.str(it, ipath)
			if !ok {
				continue
			}
			switch {
			case !tokenRE.MatchString(v):
				p.errorf(it, ipath, "%q is not an HTTP method", v)
			case v != strings.ToUpper(v):
				p.errorf(it, ipath, "methods are upper case: write %s", strings.ToUpper(v))
			case !contains(m.Methods, v):
				m.Methods = append(m.Methods, v)
			}
		}
	}
	if e := f.get("headers"); e != nil {
		list, _ := p.mapping(e.v, join(path, "headers"), "a mapping of header names to values, like {X-Canary: \"1\"}")
		for _, h := range list {
			hpath := join(join(path, "headers"), h.key)
			if !tokenRE.MatchString(h.key) {
				p.errorf(h.k, hpath, "%q is not a valid header name", h.key)
				continue
			}
			v, ok := p.scalar(h.v, hpath, "a header value")
			if !ok && isNull(h.v) {
				p.errorf(h.k, hpath, "give the value the header must have")
				continue
			}
			if ok {
				if m.Headers == nil {
					m.Headers = map[string]string{}
				}
				m.Headers[h.key] = v.Value
			}
		}
	}
}
