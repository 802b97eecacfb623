package l7

import (
	"net"
	"net/textproto"
	"path"
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
	if m.PathPrefix != "" && !strings.HasPrefix(matchPath(x.path()), m.PathPrefix) {
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

// matchPath is the decoded path as the backend will resolve it: dot
// segments resolved and slashes merged, as NGINX does before it matches a
// location. Matched raw, /v1/../admin would take a /v1/ route to a backend
// that serves it /admin, and //v1/a would escape a /v1/ route. The path
// forwarded is not changed. Most paths need nothing and cost a scan.
func matchPath(p string) string {
	if !strings.HasPrefix(p, "/") || !needsCleaning(p) {
		return p
	}
	c := path.Clean(p)
	// A path that ends in a directory names it (RFC 3986 5.2.4: /v1/. is /v1/).
	if (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) && c != "/" {
		c += "/"
	}
	return c
}

// needsCleaning: p has an empty, "." or ".." segment.
func needsCleaning(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		rest := p[i+1:]
		if strings.HasPrefix(rest, "/") || rest == "." || rest == ".." ||
			strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") {
			return true
		}
	}
	return false
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
