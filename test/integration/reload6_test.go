//go:build linux

package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/api"
)

// TestDaemonReloadAddsAnIPv6Service: a daemon started with IPv4 services
// only that gets its first IPv6 one by a reload turns IPv6 forwarding on,
// as a start with it does (the FIB lookup from XDP answers only then), and
// the new service forwards. It was black-holed (pass_fib) while its health
// checks, which leave by tc, said it was up.
func TestDaemonReloadAddsAnIPv6Service(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	l.lb.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=0")
	cfg := readFile(t, l.cfgPath) + fmt.Sprintf(`  - name: api6
    layer: 4
    vip: %s
    port: 80
    forwarding: ipip
    backends: [{address: %s}, {address: %s}]
`, vip6, backendAddr6(0), backendAddr6(1))
	writeFile(t, l.cfgPath, cfg)
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	if got := strings.TrimSpace(l.lb.Run(t, "sysctl", "-n", "net.ipv6.conf.all.forwarding")); got != "1" {
		t.Fatalf("net.ipv6.conf.all.forwarding = %s after a reload added an IPv6 service, want 1", got)
	}
	counts := l.lab.connect(t, "["+vip6.String()+"]:80", 20, 2)
	if counts["b1"]+counts["b2"] != 20 {
		t.Errorf("IPv6 connections by backend %v, want 20 over b1 and b2", counts)
	}
}
