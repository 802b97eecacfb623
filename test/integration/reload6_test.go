//go:build linux

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestDaemonReloadRenamingAServiceKeepsItsFlows: a reload that renames an
// L4 service (same VIP, port and protocol) keeps its kernel state and its
// backends' health: every established connection stays on its backend.
// It was a removal and an addition: new backend generations, backends down
// until their first checks, and the connections of all but the first one
// up were reset.
func TestDaemonReloadRenamingAServiceKeepsItsFlows(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	waitFor(t, "every backend up", 10*time.Second, func() bool { return len(l.shares(t, 30)) == 3 })
	var conns []*longConn
	for range 12 {
		conns = append(conns, l.openLong(t))
	}
	reselected := func() uint64 { return l.flowReselects(t) }
	before := reselected()
	writeFile(t, l.cfgPath, strings.Replace(readFile(t, l.cfgPath), "  - name: api\n", "  - name: api-renamed\n", 1))
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	for i, lc := range conns {
		lc.echo(t, fmt.Sprintf("after the rename %d", i))
	}
	// The entries still name their backends' generations: not one of the
	// connections' packets had to choose again.
	if n := reselected() - before; n != 0 {
		t.Errorf("flow_reselect rose by %d across the rename, want 0", n)
	}
	var got api.Service
	l.call(t, "GET", api.PathServices+"/api-renamed", nil, 200, &got)
	for _, b := range got.Backends {
		if !b.Healthy {
			t.Errorf("backend %s of the renamed service is down, want up (its health carried over)", b.Address)
		}
	}
}

// TestDaemonReloadThatCannotAttachKeepsServing: a reload whose new
// xdp.interfaces cannot be attached (native XDP on lo) is rejected with the
// old interface still attached and forwarding: the old one is detached only
// once the new ones are in place. It was detached first.
func TestDaemonReloadThatCannotAttachKeepsServing(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	waitFor(t, "every backend up", 10*time.Second, func() bool { return len(l.shares(t, 30)) == 3 })
	good := readFile(t, l.cfgPath)
	writeFile(t, l.cfgPath, strings.Replace(good, "interfaces: [eth0]", "interfaces: [lo]", 1))
	// The file asks what this host cannot do: the caller's to fix (400).
	body := l.call(t, "POST", api.PathReload, nil, 400, nil)
	if !strings.Contains(string(body), "lo") {
		t.Errorf("the rejected reload does not name the interface: %s", body)
	}
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); !strings.Contains(out, "xdp") {
		t.Fatalf("eth0 lost its program to a rejected reload:\n%s", out)
	}
	if got := l.shares(t, 30); len(got) != 3 {
		t.Errorf("after the rejected reload, connections by backend %v, want all three", got)
	}
}

// TestDaemonReloadChangesTheXDPMode: a reload from native to generic
// re-attaches the interface in the new mode, and traffic goes on.
func TestDaemonReloadChangesTheXDPMode(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	waitFor(t, "every backend up", 10*time.Second, func() bool { return len(l.shares(t, 30)) == 3 })
	writeFile(t, l.cfgPath, strings.Replace(readFile(t, l.cfgPath), "mode: native", "mode: generic", 1))
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); !strings.Contains(out, "xdpgeneric") {
		t.Fatalf("eth0 after a reload to generic mode:\n%s", out)
	}
	if got := l.shares(t, 30); len(got) != 3 {
		t.Errorf("in generic mode, connections by backend %v, want all three", got)
	}
}
