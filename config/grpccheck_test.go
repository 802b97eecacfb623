package config

import (
	"strings"
	"testing"
)

// TestParseGRPCCheckService: health_check.service names the gRPC service
// a grpc check asks about, and is refused on other check types.
func TestParseGRPCCheckService(t *testing.T) {
	base := "services:\n  - name: api\n    layer: 7\n    listen: 127.0.0.1:8080\n    backend_protocol: h2c\n    backends: [{address: 127.0.0.1:9001}]\n"
	c, err := Parse("xlb.yaml", []byte(base+"    health_check: {type: grpc, service: shop.Cart}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Service("api").HealthCheck.Service; got != "shop.Cart" {
		t.Errorf("service = %q, want shop.Cart", got)
	}
	_, err = Parse("xlb.yaml", []byte(base+"    health_check: {type: http, service: shop.Cart}\n"))
	if err == nil || !strings.Contains(err.Error(), "xlb.yaml:7: services[0].health_check.service: applies to grpc checks only") {
		t.Errorf("service on an http check: %v", err)
	}
}

// TestParseGRPCCheckNeedsHTTP2: a grpc check goes over the backend
// protocol, so it needs h2c or h2; http1 (the default) and https are
// refused at the check's type, naming the fix.
func TestParseGRPCCheckNeedsHTTP2(t *testing.T) {
	const fix = "; set backend_protocol: h2c (cleartext) or h2 (over TLS)"
	for _, tt := range []struct {
		name, protocol, err string
	}{
		{"h2c", "h2c", ""},
		{"h2", "h2", ""},
		{"http1", "http1", "xlb.yaml:8: services[0].health_check.type: grpc checks need HTTP/2 to the backends, and this service's backend_protocol is http1" + fix},
		{"https", "https", "xlb.yaml:8: services[0].health_check.type: grpc checks need HTTP/2 to the backends, and this service's backend_protocol is https" + fix},
		{"default", "", "xlb.yaml:7: services[0].health_check.type: grpc checks need HTTP/2 to the backends, and this service's backend_protocol is http1 (the default)" + fix},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := "services:\n  - name: api\n    layer: 7\n    listen: 127.0.0.1:8080\n    backends: [{address: 127.0.0.1:9001}]\n"
			if tt.protocol != "" {
				in += "    backend_protocol: " + tt.protocol + "\n"
			}
			in += "    health_check:\n      type: grpc\n"
			_, err := Parse("xlb.yaml", []byte(in))
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("Parse: %v", err)
			case tt.err != "" && (err == nil || err.Error() != tt.err):
				t.Errorf("err = %v, want %s", err, tt.err)
			}
		})
	}
}
