package l7

import (
	"net"
	"net/http"
	"strings"

	"github.com/xlbproject/xlb/config"
)

// route is one configured route: a match and the pool it sends to.
type route struct {
	m    config.Match
	pool *pool
}

// matches applies a route's match; an empty match takes every request.
func (rt *route) matches(r *http.Request) bool {
	m := &rt.m
	if m.Host != "" && !hostMatches(m.Host, r.Host) {
		return false
	}
	if m.PathPrefix != "" && !strings.HasPrefix(r.URL.Path, m.PathPrefix) {
		return false
	}
	if len(m.Methods) > 0 {
		ok := false
		for _, meth := range m.Methods {
			if meth == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for k, v := range m.Headers {
		if r.Header.Get(k) != v {
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
