package l7

import (
	"net"
	"net/textproto"
	"strings"

	"github.com/xlbproject/xlb/config"
)

// route is one configured route: a match and the pool it sends to.
type route struct {
	m       config.Match
	headers []headerMatch
	pool    *pool
}

// headerMatch is a header a route requires, its name in both spellings the
// two HTTP engines look fields up by.
type headerMatch struct{ lower, canon, value string }

func newRoute(m config.Match, p *pool) route {
	rt := route{m: m, pool: p}
	for k, v := range m.Headers {
		rt.headers = append(rt.headers, headerMatch{strings.ToLower(k), textproto.CanonicalMIMEHeaderKey(k), v})
	}
	return rt
}

// matches applies a route's match to a request's Host, decoded path,
// method and fields. An empty match takes every request.
func (rt *route) matches(x exchange) bool {
	m := &rt.m
	r := x.req()
	if m.Host != "" && !hostMatches(m.Host, r.host) {
		return false
	}
	if m.PathPrefix != "" && !strings.HasPrefix(x.path(), m.PathPrefix) {
		return false
	}
	method := r.method
	if len(m.Methods) > 0 {
		ok := false
		for _, meth := range m.Methods {
			if meth == method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, h := range rt.headers {
		if x.header(h.lower, h.canon) != h.value {
			return false
		}
	}
	return true
}

// hostMatches compares a route's host (exact, or *.domain for any
// subdomain) with a request's Host header, without port or case.
func hostMatches(pattern, host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return len(host) > len(suffix)+1 && strings.EqualFold(host[len(host)-len(suffix)-1:], "."+suffix)
	}
	return strings.EqualFold(pattern, host)
}
