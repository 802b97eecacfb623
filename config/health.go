package config

import (
	"net"
	"net/netip"
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
			case v == "vip":
				p.errorf(e.v, join(path, "via"), "vip applies to layer 4 services only (layer 7 checks go to the backend's address: via: address, or leave it out)")
			}
			// via: address at layer 7 says what layer 7 checks do anyway.
		}
	}
	if e := f.get("type"); e != nil {
		if v, ok := p.oneOf(e.v, join(path, "type"), "http", "tcp", "grpc", "none"); ok {
			hc.Type = v
			if v == "grpc" && layer != 7 {
				p.errorf(e.v, join(path, "type"), "grpc checks are for layer 7 services (gRPC backends); use tcp or http at layer 4")
			}
		}
	}
	if hc.Type == "tcp" || hc.Type == "grpc" {
		for _, key := range httpCheckKeys {
			if e := f.m[key]; e != nil {
				p.errorf(e.k, join(path, key), "applies to http checks only; set type: http, or remove it")
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
	var interval, timeout *yaml.Node
	intervalOK, timeoutOK := true, true
	if e := f.get("interval"); e != nil {
		interval = e.v
		hc.Interval, intervalOK = p.duration(e.v, join(path, "interval"), 100*time.Millisecond)
	}
	if e := f.get("timeout"); e != nil {
		timeout = e.v
		hc.Timeout, timeoutOK = p.duration(e.v, join(path, "timeout"), 1)
	}
	if intervalOK && timeoutOK && hc.Timeout >= hc.Interval {
		if timeout != nil {
			p.errorf(timeout, join(path, "timeout"), "must be shorter than interval (%s), got %s", hc.Interval, hc.Timeout)
		} else {
			p.errorf(interval, join(path, "interval"), "must be longer than timeout (%s, the default), got %s; lower timeout too", hc.Timeout, hc.Interval)
		}
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
