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
