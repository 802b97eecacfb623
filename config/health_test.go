package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// l7Check is a layer 7 service whose health_check (line 7) is the rest;
// h2c lets it take every check type.
const l7Check = "services:\n  - name: api\n    layer: 7\n    listen: 127.0.0.1:8080\n    backend_protocol: h2c\n    backends: [{address: 127.0.0.1:9001}]\n    health_check: "

// TestParseHealthCheckTimeout: an unwritten timeout is the default or the
// interval, whichever is shorter; a written one may equal the interval
// but not exceed it.
func TestParseHealthCheckTimeout(t *testing.T) {
	for _, tt := range []struct {
		name, check       string
		interval, timeout time.Duration
		err               string
	}{
		{"defaults", "{type: tcp}", 5 * time.Second, 2 * time.Second, ""},
		{"interval-below-default-timeout", "{type: tcp, interval: 1s}", time.Second, time.Second, ""},
		{"interval-above-default-timeout", "{type: tcp, interval: 10s}", 10 * time.Second, 2 * time.Second, ""},
		{"shortest-interval", "{interval: 100ms}", 100 * time.Millisecond, 100 * time.Millisecond, ""},
		{"timeout-equals-interval", "{interval: 2s, timeout: 2s}", 2 * time.Second, 2 * time.Second, ""},
		{"timeout-above-interval", "{interval: 1s, timeout: 3s}", 0, 0,
			"xlb.yaml:7: services[0].health_check.timeout: must not be longer than interval (1s), got 3s"},
		{"timeout-above-default-interval", "{timeout: 6s}", 0, 0,
			"xlb.yaml:7: services[0].health_check.timeout: must not be longer than interval (5s, the default), got 6s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("xlb.yaml", []byte(l7Check+tt.check+"\n"))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hc := c.Service("api").HealthCheck
			if hc.Interval != tt.interval || hc.Timeout != tt.timeout {
				t.Errorf("interval %s, timeout %s; want %s, %s", hc.Interval, hc.Timeout, tt.interval, tt.timeout)
			}
		})
	}
}

// TestParseHealthCheckHTTPKeys: without a type, keys only http checks read
// make the check http; with type tcp or grpc they are ignored, with a
// warning.
func TestParseHealthCheckHTTPKeys(t *testing.T) {
	warn := func(key, typ string) string {
		return fmt.Sprintf("xlb.yaml:7: services[0].health_check.%s: ignored with type %s: only http checks use it", key, typ)
	}
	for _, tt := range []struct {
		name, check, typ, path, expect string
		warnings                       []string
	}{
		{"no-keys-tcp", "{interval: 5s}", "tcp", "/", "200", nil},
		{"path-means-http", "{path: /health, interval: 5s}", "http", "/health", "200", nil},
		{"expect-status-means-http", "{expect_status: 200-399}", "http", "/", "200-399", nil},
		{"host-means-http", "{host: api.example.com}", "http", "/", "200", nil},
		{"null-path-is-absent", "{path: null}", "tcp", "/", "200", nil},
		{"tcp-ignores", "{type: tcp, path: /health, host: api.example.com}", "tcp", "/", "200",
			[]string{warn("path", "tcp"), warn("host", "tcp")}},
		{"grpc-ignores", "{type: grpc, expect_status: 204}", "grpc", "/", "200",
			[]string{warn("expect_status", "grpc")}},
		// none keeps every key, unused, as it always has: a check turned
		// off for a while is turned back on as it was.
		{"none-keeps", "{type: none, path: /health}", "none", "/health", "200", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("xlb.yaml", []byte(l7Check+tt.check+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			hc := c.Service("api").HealthCheck
			if hc.Type != tt.typ || hc.Path != tt.path || hc.ExpectStatus != tt.expect {
				t.Errorf("type %s, path %s, expect_status %s; want %s, %s, %s", hc.Type, hc.Path, hc.ExpectStatus, tt.typ, tt.path, tt.expect)
			}
			if !slices.Equal(c.Warnings, tt.warnings) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(tt.warnings, "\n"))
			}
		})
	}
}

// TestParseHealthCheckHTTPKeysAfterBadType: after an invalid type only
// the type is reported; the http keys are checked as written, not
// ignored as if the check were the tcp default.
func TestParseHealthCheckHTTPKeysAfterBadType(t *testing.T) {
	_, err := Parse("xlb.yaml", []byte(l7Check+"{type: icmp, path: health}\n"))
	want := []string{
		`xlb.yaml:7: services[0].health_check.type: must be http, tcp, grpc or none, got "icmp"`,
		`xlb.yaml:7: services[0].health_check.path: expected a URL path starting with "/", like /health, got "health"`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("err:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}
