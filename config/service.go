package config

import (
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

func (p *parser) services(n *yaml.Node) []Service {
	items, _ := p.seq(n, "services", "[{name: web, layer: 7, ...}]")
	var out []Service
	for i, it := range items {
		if s, m, ok := p.service(it, index("services", i)); ok {
			out = append(out, s)
			p.svcs = append(p.svcs, m)
		}
	}
	return out
}

func (p *parser) service(n *yaml.Node, path string) (Service, svcMeta, bool) {
	m := svcMeta{path: path}
	r := p.resolve(n)
	f, ok := p.fields(r, path, "a mapping like {name: web, layer: 7, ...}", serviceKeys, "discover")
	if !ok {
		if isNull(r) {
			p.errorf(n, path, "empty service; give it at least name and layer")
		}
		return Service{}, m, false
	}
	s := Service{Line: r.Line}
	m.node = r
	sp := svcParse{path: path, node: r, f: f}

	if e := f.get("name"); e != nil {
		if v, ok := p.str(e.v, join(path, "name")); ok {
			if nameRE.MatchString(v) {
				s.Name, m.name = v, e.v
			} else {
				p.errorf(e.v, join(path, "name"), "%q is not a valid name: 1 to 63 lower-case letters, digits, '-' and '_', starting with a letter or digit", v)
			}
		}
	} else {
		p.errorf(f.at("name", r), join(path, "name"), "missing; every service needs a unique name")
	}

	if e := f.get("layer"); e != nil {
		if v, ok := p.integer(e.v, join(path, "layer"), math.MinInt64, math.MaxInt64); ok {
			if v == 4 || v == 7 {
				s.Layer = int(v)
			} else {
				p.errorf(e.v, join(path, "layer"), "must be 4 (XDP, packets) or 7 (HTTP proxy), got %d", v)
			}
		}
	} else {
		p.errorf(f.at("layer", r), join(path, "layer"), "missing; set layer: 4 (XDP, packets) or layer: 7 (HTTP proxy)")
	}

	// Keys of the other layer: report them once, then ignore them.
	skip := map[string]bool{}
	other := map[int][]string{4: l7OnlyKeys, 7: l4OnlyKeys}[s.Layer]
	for _, e := range f.list {
		if contains(other, e.key) {
			skip[e.key] = true
			p.errorf(e.k, join(path, e.key), "applies to layer %d services only, and this one is layer %d; %s", map[int]int{4: 7, 7: 4}[s.Layer], s.Layer, otherLayerHint[e.key])
		}
	}
	get := func(key string) *entry {
		if skip[key] {
			return nil
		}
		return f.get(key)
	}

	// Layer 4 keys.
	if e := get("vip"); e != nil {
		if a, ok := p.ipAddr(e.v, join(path, "vip"), "the VIP"); ok {
			s.VIP, m.vip = a, e.v
		}
	} else if s.Layer == 4 {
		p.errorf(f.at("vip", r), join(path, "vip"), "missing; a layer 4 service needs the virtual IP address it serves")
	}
	if e := get("port"); e != nil {
		if v, ok := p.integer(e.v, join(path, "port"), 1, 65535); ok {
			s.Port = uint16(v)
		}
	} else if s.Layer == 4 {
		p.errorf(f.at("port", r), join(path, "port"), "missing; a layer 4 service needs its port (1-65535)")
	}
	if e := get("protocol"); e != nil {
		s.Protocol, _ = p.oneOf(e.v, join(path, "protocol"), "tcp", "udp")
	}
	if e := get("forwarding"); e != nil {
		s.Forwarding, _ = p.oneOf(e.v, join(path, "forwarding"), "ipip", "dsr")
	}
	if e := get("announce"); e != nil {
		s.Announce, m.announce = p.announce(e.v, join(path, "announce")), e.v
	}

	// Layer 7 keys.
	if e := get("listen"); e != nil {
		if v, ok := p.listenAddr(e.v, join(path, "listen")); ok {
			s.Listen, m.listen = v, e.v
		}
	} else if s.Layer == 7 {
		p.errorf(f.at("listen", r), join(path, "listen"), "missing; a layer 7 service needs the host:port it listens on, like 0.0.0.0:8080")
	}
	if e := get("tls"); e != nil {
		s.TLS = p.tls(e.v, join(path, "tls"))
	}
	if e := get("protocols"); e != nil {
		s.Protocols = p.protocols(e.v, join(path, "protocols"))
	}
	if e := get("backend_protocol"); e != nil {
		var ok bool
		s.BackendProtocol, ok = p.backendProtocol(e.v, join(path, "backend_protocol"))
		sp.backendProtocolBad = !ok
	}
	if e := get("backend_tls"); e != nil {
		if s.BackendTLS = p.backendTLS(e.v, join(path, "backend_tls")); s.BackendTLS != nil {
			sp.backendTLS = e.k
		}
	}
	if e := get("hash_key"); e != nil {
		sp.hashKeyWritten = true
		if v, ok := p.hashKey(e.v, join(path, "hash_key")); ok {
			s.HashKey, sp.hashKey = v, e.k
		}
	}
	if e := get("sticky"); e != nil {
		s.Sticky = p.sticky(e.v, join(path, "sticky"))
	}
	s.Retries = Retries{Attempts: DefaultRetryAttempts, On: []string{"connect_error"}}
	if e := get("retries"); e != nil {
		p.retries(e.v, join(path, "retries"), &s.Retries)
	}
	s.Timeouts = Timeouts{Connect: DefaultConnectTimeout, ResponseHeader: DefaultResponseTimeout}
	if e := get("timeouts"); e != nil {
		p.timeouts(e.v, join(path, "timeouts"), &s.Timeouts)
	}
	s.PassiveHealth = PassiveHealth{MaxFails: DefaultMaxFails, FailTimeout: DefaultFailTimeout}
	if e := get("passive_health"); e != nil {
		p.passiveHealth(e.v, join(path, "passive_health"), &s.PassiveHealth)
	}

	// Keys of both layers.
	if e := get("scheduler"); e != nil {
		if v, ok := p.scheduler(e.v, join(path, "scheduler"), s.Layer); ok {
			s.Scheduler, sp.scheduler = v, e.v
		}
	}
	if e := get("rate_limit"); e != nil {
		s.RateLimit = p.rateLimit(e.v, join(path, "rate_limit"), s.Layer)
	}
	if e := get("backends"); e != nil {
		s.Backends, sp.backendsWritten = p.backends(e.v, join(path, "backends"), &s)
	}
	if e := get("health_check"); e != nil {
		s.HealthCheck = p.healthCheck(e.v, join(path, "health_check"), s.Layer)
	}
	if e := get("routes"); e != nil {
		sp.routes, sp.routeItems = p.routes(e.v, join(path, "routes"), &s)
	}
	if e := get("discover"); e != nil {
		s.Discover = p.discover(e.v, join(path, "discover"), &s)
	}

	// Defaults that depend on the layer.
	switch s.Layer {
	case 4:
		s.Protocol = cmpOr(s.Protocol, DefaultProtocol)
		s.Forwarding = cmpOr(s.Forwarding, DefaultForwarding)
		s.Scheduler = cmpOr(s.Scheduler, DefaultL4Scheduler)
		s.Announce = cmpOr(s.Announce, DefaultAnnounce)
		if s.HealthCheck != nil && s.HealthCheck.Port == 0 {
			s.HealthCheck.Port = s.Port
			sp.checkPortDefault = true
		}
		// Layer 7 settings mean nothing here; zero them so that they are
		// not mistaken for configuration.
		s.Retries, s.Timeouts, s.PassiveHealth = Retries{}, Timeouts{}, PassiveHealth{}
	case 7:
		s.Scheduler = cmpOr(s.Scheduler, DefaultL7Scheduler)
		if s.Protocols == nil {
			s.Protocols = DefaultProtocols()
		}
		s.BackendProtocol = cmpOr(s.BackendProtocol, DefaultBackendProtocol)
	}
	for i := range s.Routes {
		s.Routes[i].Scheduler = cmpOr(s.Routes[i].Scheduler, s.Scheduler)
	}

	p.checkService(&s, &sp)
	return s, m, true
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// svcParse is where a service's keys are, for checkService.
type svcParse struct {
	path               string
	node               *yaml.Node // the service's mapping
	f                  fields
	scheduler          *yaml.Node // nil: absent or invalid
	hashKey            *yaml.Node // nil: absent or invalid
	hashKeyWritten     bool       // even if invalid
	backendsWritten    bool       // the list has items (valid or not)
	routes             []routeMeta
	routeItems         int        // items of the routes list, valid or not
	checkPortDefault   bool       // the health check probes the service port by default
	backendTLS         *yaml.Node // the backend_tls key; nil: absent, empty or invalid
	backendProtocolBad bool       // backend_protocol is written but invalid or not supported yet
}

// checkService checks what needs several keys of one service.
func (p *parser) checkService(s *Service, sp *svcParse) {
	path, f := sp.path, sp.f
	// Backends: a layer 7 service may leave them to its routes, and any
	// service to its discover section (even an invalid one, already reported).
	if len(s.Backends) == 0 && !sp.backendsWritten && f.get("discover") == nil {
		at, key := f.at("backends", sp.node), join(path, "backends")
		switch {
		case s.Layer == 4:
			p.errorf(at, key, "a layer 4 service needs at least one backend")
		case s.Layer == 7 && sp.routeItems == 0:
			p.errorf(at, key, "a layer 7 service needs at least one backend, or routes that have their own")
		case s.Layer == 7:
			for _, rm := range sp.routes {
				if !rm.backendsWritten {
					p.errorf(rm.node, rm.path+".backends",
						"this route has no backends and the service has none to fall back on")
				}
			}
		}
	}
	if len(s.Backends) > 0 {
		drained := true
		for _, b := range s.Backends {
			drained = drained && b.Weight == 0
		}
		if drained {
			p.warnf(f.at("backends", sp.node), join(path, "backends"), "every backend has weight 0 (drained): the service takes no new connections")
		}
	}

	// consistent_hash needs a hash_key, and a hash_key needs consistent_hash.
	usesHash := false
	if s.Scheduler == "consistent_hash" {
		usesHash = true
		if !sp.hashKeyWritten {
			p.errorf(sp.scheduler, join(path, "scheduler"), "consistent_hash needs hash_key: header:NAME, cookie:NAME, path or source_ip")
		}
	}
	for _, rm := range sp.routes {
		if rm.scheduler != nil && rm.scheduler.Value == "consistent_hash" {
			usesHash = true
			if !sp.hashKeyWritten {
				p.errorf(rm.scheduler, rm.path+".scheduler",
					"consistent_hash needs the service's hash_key: header:NAME, cookie:NAME, path or source_ip")
			}
		}
	}
	if sp.hashKey != nil && !usesHash {
		p.warnf(sp.hashKey, join(path, "hash_key"), "unused: only scheduler consistent_hash reads hash_key")
	}

	if sp.backendTLS != nil && !sp.backendProtocolBad && !contains(tlsBackendProtocols, s.BackendProtocol) {
		p.errorf(sp.backendTLS, join(path, "backend_tls"), "applies to backends spoken to over TLS only, and this service's backend_protocol is %s; set backend_protocol: https", s.BackendProtocol)
	}
	p.checkGRPCBackend(s, sp)

	// A udp service's backends may not accept TCP on the service port.
	if s.Protocol == "udp" && sp.checkPortDefault && s.HealthCheck.Type != "none" {
		p.warnf(f.at("health_check", sp.node), join(path, "health_check.port"), "a %s health check of a udp service probes TCP port %d; set port to one the backends answer on", s.HealthCheck.Type, s.Port)
	}
}

func (p *parser) scheduler(n *yaml.Node, path string, layer int) (string, bool) {
	v, ok := p.str(n, path)
	if !ok {
		return "", false
	}
	var allowed []string
	switch layer {
	case 4:
		allowed = l4Schedulers
	case 7:
		allowed = l7Schedulers
	default:
		allowed = l7Schedulers // ip_hash is in both
		if v == "maglev" {
			return v, true
		}
	}
	if contains(allowed, v) {
		return v, true
	}
	if layer == 4 && contains(l7Schedulers, v) {
		p.errorf(n, path, "%s is a layer 7 scheduler; a layer 4 service uses maglev or ip_hash", v)
	} else if layer == 7 && contains(l4Schedulers, v) {
		p.errorf(n, path, "%s is a layer 4 scheduler; a layer 7 service uses %s", v, orList(l7Schedulers))
	} else {
		p.errorf(n, path, "must be %s, got %q%s", orList(allowed), v, didYouMean(v, allowed))
	}
	return "", false
}

func (p *parser) hashKey(n *yaml.Node, path string) (string, bool) {
	v, ok := p.str(n, path)
	if !ok {
		return "", false
	}
	kind, name, hasName := strings.Cut(v, ":")
	switch {
	case (kind == "path" || kind == "source_ip") && !hasName:
		return v, true
	case (kind == "header" || kind == "cookie") && tokenRE.MatchString(name):
		return v, true
	case (kind == "header" || kind == "cookie") && hasName:
		p.errorf(n, path, "%q is not a valid %s name", name, kind)
		return "", false
	}
	p.errorf(n, path, "must be header:NAME, cookie:NAME, path or source_ip, got %q", v)
	return "", false
}

func (p *parser) sticky(n *yaml.Node, path string) *Sticky {
	f, ok := p.fields(n, path, "a mapping like {cookie: srv_id, ttl: 1h}", stickyKeys)
	if !ok {
		return nil
	}
	st := &Sticky{}
	if e := f.get("cookie"); e != nil {
		if v, ok := p.str(e.v, join(path, "cookie")); ok {
			if !tokenRE.MatchString(v) {
				p.errorf(e.v, join(path, "cookie"), "%q is not a valid cookie name", v)
			}
			st.Cookie = v
		}
	} else {
		p.errorf(f.at("cookie", p.resolve(n)), join(path, "cookie"), "missing; sticky needs the cookie's name, like {cookie: srv_id}")
	}
	if e := f.get("ttl"); e != nil {
		st.TTL, _ = p.duration(e.v, join(path, "ttl"), 0)
	}
	return st
}

func (p *parser) retries(n *yaml.Node, path string, r *Retries) {
	f, _ := p.fields(n, path, "a mapping like {attempts: 2, on: [connect_error, 502]}", retriesKeys)
	if e := f.get("attempts"); e != nil {
		if v, ok := p.integer(e.v, join(path, "attempts"), 0, 10); ok {
			r.Attempts = int(v)
		}
	}
	if e := f.m["on"]; e != nil {
		items, _ := p.seq(e.v, join(path, "on"), "[connect_error, timeout, 502, 503]")
		r.On = []string{}
		for i, it := range items {
			ipath := index(join(path, "on"), i)
			s, ok := p.scalar(it, ipath, "connect_error, timeout or a 5xx status")
			if !ok {
				continue
			}
			v := strings.TrimSpace(s.Value)
			if code, err := strconv.Atoi(v); err == nil {
				if code < 500 || code > 599 {
					p.errorf(s, ipath, "only 5xx statuses (500-599) are retried, got %d", code)
					continue
				}
				v = strconv.Itoa(code)
			} else if !contains(retryOnNames, v) {
				p.errorf(s, ipath, "must be connect_error, timeout, grpc_unavailable, grpc_resource_exhausted or a 5xx status such as 502, got %s%s", describe(s), didYouMean(v, retryOnNames))
				continue
			}
			if !contains(r.On, v) {
				r.On = append(r.On, v)
			}
		}
	}
}

func (p *parser) timeouts(n *yaml.Node, path string, t *Timeouts) {
	f, _ := p.fields(n, path, "a mapping like {connect: 2s, response_header: 30s}", timeoutsKeys)
	if e := f.get("connect"); e != nil {
		if v, ok := p.duration(e.v, join(path, "connect"), 1); ok {
			t.Connect = v
		}
	}
	if e := f.get("response_header"); e != nil {
		if v, ok := p.duration(e.v, join(path, "response_header"), 1); ok {
			t.ResponseHeader = v
		}
	}
}

func (p *parser) passiveHealth(n *yaml.Node, path string, ph *PassiveHealth) {
	f, _ := p.fields(n, path, "a mapping like {max_fails: 3, fail_timeout: 30s}", passiveKeys)
	if e := f.get("max_fails"); e != nil {
		if v, ok := p.integer(e.v, join(path, "max_fails"), 0, 100); ok {
			ph.MaxFails = int(v)
		}
	}
	if e := f.get("fail_timeout"); e != nil {
		if v, ok := p.duration(e.v, join(path, "fail_timeout"), 1); ok {
			ph.FailTimeout = v
		}
	}
}

func (p *parser) rateLimit(n *yaml.Node, path string, layer int) *RateLimit {
	f, ok := p.fields(n, path, "a mapping like {rate: 100/s, burst: 50}", rateLimitKeys)
	if !ok {
		return nil
	}
	rl := &RateLimit{Burst: DefaultBurst, Key: DefaultRateLimitKey}
	valid := true
	if e := f.get("rate"); e != nil {
		if rate, per, ok := p.rate(e.v, join(path, "rate")); ok {
			rl.Rate, rl.Per = rate, per
		} else {
			valid = false
		}
	} else {
		valid = false
		p.errorf(f.at("rate", p.resolve(n)), join(path, "rate"), "missing; give a rate like 100/s (units s, m, h)")
	}
	if e := f.get("burst"); e != nil {
		if v, ok := p.integer(e.v, join(path, "burst"), math.MinInt64, math.MaxInt64); ok {
			if v < 1 {
				p.errorf(e.v, join(path, "burst"), "must be at least 1, got %d", v)
				valid = false
			} else {
				rl.Burst = uint64(v)
			}
		}
	}
	if e := f.get("key"); e != nil {
		if v, ok := p.str(e.v, join(path, "key")); ok {
			kind, name, hasName := strings.Cut(v, ":")
			switch {
			case v == "source_ip":
				rl.Key = v
			case layer == 4:
				p.errorf(e.v, join(path, "key"), "a layer 4 rate limit counts new connections per source address; key can only be source_ip, got %q", v)
			case kind == "header" && hasName && tokenRE.MatchString(name):
				rl.Key = v
			default:
				p.errorf(e.v, join(path, "key"), "must be source_ip or header:NAME, got %q", v)
			}
		}
	}
	if !valid {
		return nil
	}
	return rl
}

// rate decodes "N/unit": N events per second, minute or hour.
func (p *parser) rate(n *yaml.Node, path string) (uint64, time.Duration, bool) {
	s, ok := p.scalar(n, path, "a rate like 100/s")
	if !ok {
		return 0, 0, false
	}
	v := strings.TrimSpace(s.Value)
	count, unit, found := strings.Cut(v, "/")
	c, err := strconv.ParseUint(strings.TrimSpace(count), 10, 64)
	if !found || err != nil {
		p.errorf(s, path, "expected a rate like 100/s (per s, m or h), got %s", describe(s))
		return 0, 0, false
	}
	per, ok := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[strings.TrimSpace(unit)]
	if !ok {
		p.errorf(s, path, "unknown unit %q in %q; use s, m or h", unit, v)
		return 0, 0, false
	}
	if c == 0 {
		p.errorf(s, path, "must be at least 1 per period, got %s", v)
		return 0, 0, false
	}
	return c, per, true
}
