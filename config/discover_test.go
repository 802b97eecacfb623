package config

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseDiscoverErrors checks the exact errors of invalid discover
// sections. Inputs lose their first newline, as in TestParseErrors.
func TestParseDiscoverErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"not-a-mapping", l7 + "    discover: api.internal\n", []string{
			`xlb.yaml:5: services[0].discover: expected a mapping like {dns: api.internal, type: a}, got "api.internal"`}},
		{"unknown-key-suggestion", l7 + "    discover: {dns: api.internal, port: 80, resolver: [10.0.0.2:53]}\n", []string{
			`xlb.yaml:5: services[0].discover.resolver: unknown key; did you mean "resolvers"?`}},
		{"unknown-key", l7 + "    discover: {dns: api.internal, port: 80, zone: internal}\n", []string{
			`xlb.yaml:5: services[0].discover.zone: unknown key; known keys here: dns, type, port, weight, refresh, resolvers, max_backends`}},
		{"dns-missing", l4 + "    discover: {type: a}\n", []string{
			`xlb.yaml:6: services[0].discover.dns: missing; discover needs the DNS name to follow, like api.internal`}},
		{"dns-invalid", l4 + "    discover: {dns: \"api internal\"}\n", []string{
			`xlb.yaml:6: services[0].discover.dns: "api internal" is not a valid DNS name`}},
		{"dns-is-an-address", l4 + "    discover: {dns: 10.0.1.1}\n", []string{
			`xlb.yaml:6: services[0].discover.dns: 10.0.1.1 is an address, not a name; list it under backends instead`}},
		{"type-unknown", l4 + "    discover: {dns: api.internal, type: cname}\n", []string{
			`xlb.yaml:6: services[0].discover.type: must be a, aaaa or srv, got "cname"`}},
		{"type-suggestion", l4 + "    discover: {dns: api.internal, type: aaa}\n", []string{
			`xlb.yaml:6: services[0].discover.type: must be a, aaaa or srv, got "aaa"; did you mean aaaa?`}},
		{"srv-layer-4", l4 + "    discover: {dns: _api._tcp.internal, type: srv}\n", []string{
			`xlb.yaml:6: services[0].discover.type: srv applies to layer 7 services only: layer 4 backends serve on the VIP's port, so the records' ports could not be used; use type a or aaaa`}},
		{"srv-name-form", l7 + "    discover: {dns: api.internal, type: srv}\n", []string{
			`xlb.yaml:5: services[0].discover.dns: an SRV name is _service._proto.name, like _http._tcp.api.internal, got "api.internal"`}},
		{"l4-family-mismatch", l4 + "    discover: {dns: api.internal, type: aaaa}\n", []string{
			`xlb.yaml:6: services[0].discover.type: type aaaa gives IPv6 backends but the VIP 10.0.0.10 is IPv4; a layer 4 backend must be in the VIP's family: use type a`}},
		{"port-missing-layer-7", l7 + "    discover:\n      dns: api.internal\n      type: aaaa\n", []string{
			`xlb.yaml:6: services[0].discover.port: missing; a layer 7 service needs the port its AAAA backends serve on, like port: 8080`}},
		{"port-out-of-range", l7 + "    discover: {dns: api.internal, port: 0}\n", []string{
			`xlb.yaml:5: services[0].discover.port: must be between 1 and 65535, got 0`}},
		{"weight-out-of-range", l4 + "    discover: {dns: api.internal, weight: 1001}\n", []string{
			`xlb.yaml:6: services[0].discover.weight: must be between 1 and 1000, got 1001`}},
		{"weight-zero", l4 + "    discover: {dns: api.internal, weight: 0}\n", []string{
			`xlb.yaml:6: services[0].discover.weight: must be between 1 and 1000, got 0`}},
		{"refresh-too-short", l4 + "    discover: {dns: api.internal, refresh: 500ms}\n", []string{
			`xlb.yaml:6: services[0].discover.refresh: must be at least 1s, got 500ms (or ttl)`}},
		{"refresh-without-unit", l4 + "    discover: {dns: api.internal, refresh: 30}\n", []string{
			`xlb.yaml:6: services[0].discover.refresh: expected ttl or a duration like 30s, got 30 (add a unit: 30s)`}},
		{"refresh-word", l4 + "    discover: {dns: api.internal, refresh: ttl2}\n", []string{
			`xlb.yaml:6: services[0].discover.refresh: expected ttl (honour the answer's TTL) or a duration like 30s, got "ttl2"`}},
		{"resolvers-not-a-list", l4 + "    discover: {dns: api.internal, resolvers: 10.0.0.2:53}\n", []string{
			`xlb.yaml:6: services[0].discover.resolvers: expected a list like [10.0.0.2:53], got "10.0.0.2:53"`}},
		{"resolver-without-port", l4 + "    discover: {dns: api.internal, resolvers: [10.0.0.2]}\n", []string{
			`xlb.yaml:6: services[0].discover.resolvers[0]: a resolver needs a port: write 10.0.0.2:53`}},
		{"resolver-name-without-port", l4 + "    discover: {dns: api.internal, resolvers: [ns1.internal]}\n", []string{
			`xlb.yaml:6: services[0].discover.resolvers[0]: a resolver needs a port: write ns1.internal:53`}},
		{"resolver-bad-name", l4 + "    discover: {dns: api.internal, resolvers: [\"ns 1.internal:53\"]}\n", []string{
			`xlb.yaml:6: services[0].discover.resolvers[0]: expected a resolver's host:port like 10.0.0.2:53 or ns1.internal:53, got "ns 1.internal:53": "ns 1.internal" is no IP address or host name`}},
		{"resolver-name-bad-port", l4 + "    discover: {dns: api.internal, resolvers: [\"ns1.internal:99999\"]}\n", []string{
			`xlb.yaml:6: services[0].discover.resolvers[0]: port must be between 1 and 65535, got "99999"`}},
		{"resolver-twice", `
services:
  - name: api
    layer: 4
    vip: 10.0.0.10
    port: 80
    discover:
      dns: api.internal
      resolvers:
        - 10.0.0.2:53
        - 10.0.0.2:53
`, []string{`xlb.yaml:10: services[0].discover.resolvers[1]: resolver 10.0.0.2:53 is listed twice (first on line 9)`}},
		{"max-backends-range", l4 + "    discover: {dns: api.internal, max_backends: 0}\n", []string{
			`xlb.yaml:6: services[0].discover.max_backends: must be between 1 and 4096, got 0`}},
		{"max-backends-too-many", l4 + "    discover: {dns: api.internal, max_backends: 5000}\n", []string{
			`xlb.yaml:6: services[0].discover.max_backends: must be between 1 and 4096, got 5000`}},
		// A null discover is no discover: the service still needs backends.
		{"null-discover-needs-backends", l4 + "    discover:\n", []string{
			`xlb.yaml:2: services[0].backends: a layer 4 service needs at least one backend`}},
		{"several-errors-at-once", `
services:
  - name: web
    layer: 7
    listen: :8080
    discover:
      type: aaaa
      weight: -1
      refresh: 0s
`, []string{
			`xlb.yaml:6: services[0].discover.dns: missing; discover needs the DNS name to follow, like api.internal`,
			`xlb.yaml:6: services[0].discover.port: missing; a layer 7 service needs the port its AAAA backends serve on, like port: 8080`,
			`xlb.yaml:7: services[0].discover.weight: must be between 1 and 1000, got -1`,
			`xlb.yaml:8: services[0].discover.refresh: must be at least 1s, got 0s (or ttl)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("xlb.yaml", []byte(strings.TrimPrefix(tt.in, "\n")))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", c.Services)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList: %v", err, err)
			}
			if got := list.Details(); !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestParseDiscover checks the decoded sections and their defaults, and that
// a service with discover may have no backends of its own.
// TestParseDiscoverIgnoredKeys: SPEC's discover example carries port and
// weight on a service of either layer; where they cannot apply they are
// warned about and ignored, and a layer 4 IPv6 VIP's type defaults to aaaa.
func TestParseDiscoverIgnoredKeys(t *testing.T) {
	l4 := "services:\n  - name: api\n    layer: 4\n    vip: 10.0.0.10\n    port: 80\n"
	l7 := "services:\n  - name: web\n    layer: 7\n    listen: 0.0.0.0:8080\n"
	for _, tt := range []struct {
		name, in, warning string
	}{
		{"port-layer-4", l4 + "    discover: {dns: api.internal, port: 8080, weight: 1}\n",
			`xlb.yaml:6: services[0].discover.port: ignored: layer 4 backends serve on the VIP's port`},
		{"port-with-srv", l7 + "    discover: {dns: _http._tcp.api.internal, type: srv, port: 80}\n",
			`xlb.yaml:5: services[0].discover.port: ignored with type srv: the ports come from the SRV records`},
		{"weight-with-srv", l7 + "    discover: {dns: _http._tcp.api.internal, type: srv, weight: 2}\n",
			`xlb.yaml:5: services[0].discover.weight: ignored with type srv: each SRV record carries its own weight`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("xlb.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(c.Warnings, tt.warning) {
				t.Errorf("warnings %q lack %q", c.Warnings, tt.warning)
			}
			if d := c.Services[0].Discover; d.Port != 0 || (d.Type == "srv" && d.Weight != 0) {
				t.Errorf("ignored key kept: %+v", d)
			}
		})
	}
	c, err := Parse("xlb.yaml", []byte("services:\n  - name: api\n    layer: 4\n    vip: 2001:db8::10\n    port: 80\n    discover: {dns: api.internal}\n"))
	if err != nil {
		t.Fatalf("IPv6 VIP, no type: %v", err)
	}
	if got := c.Services[0].Discover.Type; got != "aaaa" {
		t.Errorf("IPv6 VIP: discover type %q, want aaaa", got)
	}
}

func TestParseDiscover(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Discover
	}{
		{"l4-defaults", l4 + "    discover: {dns: api.internal}\n",
			Discover{DNS: "api.internal", Type: "a", Weight: 1, MaxBackends: 256, Line: 6}},
		{"l4-aaaa-every-key", `
services:
  - name: api
    layer: 4
    vip: 2001:db8::10
    port: 80
    discover:
      dns: api.internal.
      type: aaaa
      weight: 5
      refresh: 10s
      resolvers: ["[2001:db8::53]:53", 10.0.0.2:5353, NS1.Internal.:53]
      max_backends: 16
`, Discover{DNS: "api.internal.", Type: "aaaa", Weight: 5, Refresh: 10 * time.Second,
			Resolvers: []string{"[2001:db8::53]:53", "10.0.0.2:5353", "ns1.internal:53"}, MaxBackends: 16, Line: 7}},
		{"l7-a-with-port", l7 + "    discover: {dns: web.internal, port: 8080, refresh: ttl}\n",
			Discover{DNS: "web.internal", Type: "a", Port: 8080, Weight: 1, MaxBackends: 256, Line: 5}},
		{"l7-srv", l7 + "    discover: {dns: _http._tcp.web.internal, type: srv, max_backends: 4096}\n",
			Discover{DNS: "_http._tcp.web.internal", Type: "srv", MaxBackends: 4096, Line: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("xlb.yaml", []byte(strings.TrimPrefix(tt.in, "\n")))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			s := c.Services[0]
			if s.Discover == nil {
				t.Fatal("no Discover")
			}
			if !reflect.DeepEqual(*s.Discover, tt.want) {
				t.Errorf("Discover\n got %+v\nwant %+v", *s.Discover, tt.want)
			}
			if len(s.Backends) != 0 {
				t.Errorf("backends %v, want none", s.Backends)
			}
		})
	}
}

// TestParseDiscoverWithBackends checks that both sources may be used
// together, and that a change of the section shows in Diff.
func TestParseDiscoverWithBackends(t *testing.T) {
	old, err := Parse("xlb.yaml", []byte(l4+"    backends: [{address: 10.0.1.1}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("xlb.yaml", []byte(l4+"    backends: [{address: 10.0.1.1}]\n    discover: {dns: api.internal, refresh: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(c.Services[0].Backends); got != 1 {
		t.Errorf("%d backends, want 1", got)
	}
	want := []string{"service api: discover none -> {dns: api.internal, type: a, port: 0, weight: 1, refresh: 30s, resolvers: [], max_backends: 256}"}
	if got := Diff(old, c); !slices.Equal(got, want) {
		t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := Diff(c, c); len(got) != 0 {
		t.Errorf("Diff of a config with itself: %v", got)
	}
}
