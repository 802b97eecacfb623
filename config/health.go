package config

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

func (p *parser) healthCheck(n *yaml.Node, path string, layer int) *HealthCheck {
	f, ok := p.fields(n, path, "a mapping like {type: http, path: /health}", checkKeys)
	if !ok {
		return nil
	}
	hc := &HealthCheck{
		Type:               DefaultCheckType,
		Path:               DefaultCheckPath,
		ExpectStatus:       DefaultExpectStatus,
		ExpectMin:          200,
		ExpectMax:          200,
		Interval:           DefaultCheckInterval,
		Timeout:            DefaultCheckTimeout,
		HealthyThreshold:   DefaultHealthyThreshold,
		UnhealthyThreshold: DefaultUnhealthyThreshold,
	}
	if layer == 4 {
		hc.Via = DefaultCheckVia
	}
	if e := f.get("via"); e != nil {
		if v, ok := p.oneOf(e.v, join(path, "via"), "vip", "address"); ok {
			switch {
			case layer == 4:
				hc.Via = v
			case v == "vip" && layer == 7: // layer 0: a bad or missing layer, already reported
				p.errorf(e.v, join(path, "via"), "vip applies to layer 4 services only (layer 7 checks go to the backend's address: via: address, or leave it out)")
			}
			// via: address at layer 7 says what layer 7 checks do anyway.
		}
	}
	typeOK := true
	if e := f.get("type"); e != nil {
		var v string
		if v, typeOK = p.oneOf(e.v, join(path, "type"), "http", "tcp", "grpc", "none"); typeOK {
			hc.Type = v
			if v == "grpc" && layer != 7 {
				p.errorf(e.v, join(path, "type"), "grpc checks are for layer 7 services (gRPC backends); use tcp or http at layer 4")
			}
		}
	} else if slices.ContainsFunc(httpCheckKeys, func(key string) bool { return f.get(key) != nil }) {
		// Keys only an http check reads say what the user meant, more
		// than the tcp default does.
		hc.Type = "http"
	}
	// Ignored rather than refused, so that switching a check's type does
	// not also mean deleting its http keys. After an invalid type, already
	// reported, they are decoded as written.
	if typeOK && (hc.Type == "tcp" || hc.Type == "grpc") {
		for _, key := range httpCheckKeys {
			if e := f.get(key); e != nil {
				p.warnf(e.k, join(path, key), "ignored with type %s: only http checks use it", hc.Type)
				delete(f.m, key)
			}
		}
	}
	if e := f.get("service"); e != nil {
		if hc.Type != "grpc" {
			p.errorf(e.k, join(path, "service"), "applies to grpc checks only (the service name asked of grpc.health.v1); set type: grpc, or remove it")
		} else if v, ok := p.str(e.v, join(path, "service")); ok {
			if len(v) > 255 || strings.ContainsAny(v, " \t\r\n") {
				p.errorf(e.v, join(path, "service"), "expected a gRPC service name like my.package.Service, got %q", v)
			} else {
				hc.Service = v
			}
		}
	}
	if e := f.get("port"); e != nil {
		if v, ok := p.integer(e.v, join(path, "port"), 1, 65535); ok {
			hc.Port = uint16(v)
		}
	}
	if e := f.get("path"); e != nil {
		if v, ok := p.str(e.v, join(path, "path")); ok {
			if strings.HasPrefix(v, "/") && !strings.ContainsAny(v, " \t\r\n") {
				hc.Path = v
			} else {
				p.errorf(e.v, join(path, "path"), "expected a URL path starting with \"/\", like /health, got %q", v)
			}
		}
	}
	if e := f.get("host"); e != nil {
		if v, ok := p.str(e.v, join(path, "host")); ok {
			h := v
			if hh, port, err := net.SplitHostPort(v); err == nil && validPort(port) {
				h = hh
			}
			if _, err := netip.ParseAddr(h); err != nil && !validHostname(h) {
				p.errorf(e.v, join(path, "host"), "expected a host name like api.example.com, got %q", v)
			} else {
				hc.Host = v
			}
		}
	}
	if e := f.get("expect_status"); e != nil {
		p.expectStatus(e.v, join(path, "expect_status"), hc)
	}
	intervalOK, intervalNote := true, ", the default"
	if e := f.get("interval"); e != nil {
		hc.Interval, intervalOK = p.duration(e.v, join(path, "interval"), 100*time.Millisecond)
		intervalNote = ""
	}
	// A probe may last its whole interval but no longer: by then the next
	// one is due.
	if e := f.get("timeout"); e != nil {
		var ok bool
		hc.Timeout, ok = p.duration(e.v, join(path, "timeout"), 1)
		if ok && intervalOK && hc.Timeout > hc.Interval {
			p.errorf(e.v, join(path, "timeout"), "must not be longer than interval (%s%s), got %s", hc.Interval, intervalNote, hc.Timeout)
		}
	} else if intervalOK {
		// A short interval is how one asks for fast checks; it should not
		// also need a timeout written out.
		hc.Timeout = min(hc.Timeout, hc.Interval)
	}
	if e := f.get("healthy_threshold"); e != nil {
		if v, ok := p.integer(e.v, join(path, "healthy_threshold"), 1, 10); ok {
			hc.HealthyThreshold = int(v)
		}
	}
	if e := f.get("unhealthy_threshold"); e != nil {
		if v, ok := p.integer(e.v, join(path, "unhealthy_threshold"), 1, 10); ok {
			hc.UnhealthyThreshold = int(v)
		}
	}
	return hc
}

// expectStatus decodes "200" or "200-399".
func (p *parser) expectStatus(n *yaml.Node, path string, hc *HealthCheck) {
	s, ok := p.scalar(n, path, "a status like 200 or a range like 200-399")
	if !ok {
		return
	}
	v := strings.TrimSpace(s.Value)
	lo, hi, isRange := strings.Cut(v, "-")
	min, err1 := strconv.Atoi(strings.TrimSpace(lo))
	max, err2 := min, error(nil)
	if isRange {
		max, err2 = strconv.Atoi(strings.TrimSpace(hi))
	}
	switch {
	case err1 != nil || err2 != nil || s.ShortTag() == "!!float":
		p.errorf(s, path, "expected a status like 200 or a range like 200-399, got %s", describe(s))
	case min < 100 || min > 599:
		p.errorf(s, path, "status %d is not between 100 and 599", min)
	case max < 100 || max > 599:
		p.errorf(s, path, "status %d is not between 100 and 599", max)
	case min > max:
		p.errorf(s, path, "range %d-%d is backwards; write %d-%d", min, max, max, min)
	default:
		hc.ExpectStatus, hc.ExpectMin, hc.ExpectMax = v, min, max
	}
}

// checkGRPCBackend refuses a grpc check of a service that speaks HTTP/1.1
// to its backends: the check goes over the backend protocol, and gRPC
// needs HTTP/2. checkService calls it, where the backend protocol has its
// default; healthCheck is given only the layer.
func (p *parser) checkGRPCBackend(s *Service, sp *svcParse) {
	hc := s.HealthCheck
	if s.Layer != 7 || hc == nil || hc.Type != "grpc" || sp.backendProtocolBad || s.BackendProtocol == "h2c" || s.BackendProtocol == "h2" {
		return
	}
	e := sp.f.get("health_check")
	if e == nil {
		return
	}
	proto := s.BackendProtocol
	if sp.f.get("backend_protocol") == nil {
		proto += " (the default)"
	}
	p.errorf(valueOf(p.resolve(e.v), "type"), join(sp.path, "health_check.type"),
		"grpc checks need HTTP/2 to the backends, and this service's backend_protocol is %s; set backend_protocol: h2c (cleartext) or h2 (over TLS)", proto)
}

// valueOf returns the value of key in mapping m, or m itself when the key
// is not written there (it may come from a merged mapping).
func valueOf(m *yaml.Node, key string) *yaml.Node {
	for i := 0; m != nil && i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return m
}
