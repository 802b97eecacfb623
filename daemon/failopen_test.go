//go:build linux

package daemon

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
	"github.com/xlbproject/xlb/test/privileged"
)

const (
	xdpDrop = 1
	xdpTX   = 3
)

// failOpenYAML is a checked service at 10.0.0.100:80, and with both a
// second one at 10.0.0.101:80, each on backends the test environment has
// neighbour entries for.
func failOpenYAML(both bool) string {
	y := `services:
  - name: old
    layer: 4
    vip: 10.0.0.100
    port: 80
    backends: [{address: 10.0.0.11}, {address: 10.0.0.12}]
    health_check: {type: tcp}
`
	if both {
		y += `  - name: new
    layer: 4
    vip: 10.0.0.101
    port: 80
    backends: [{address: 10.0.0.13}, {address: 10.0.0.14}]
    health_check: {type: tcp}
`
	}
	return y
}

// TestFailOpenOnlyWhenSomethingIsServed: a service a reload adds, whose
// backends wait for their first check, has no last healthy set: it drops
// its traffic and must not be reported as failing open; a service whose
// healthy backends went down together fails open to them.
func TestFailOpenOnlyWhenSomethingIsServed(t *testing.T) {
	privileged.Require(t)
	env := lbtest.New(t)
	var logBuf bytes.Buffer
	p := newL4Projector(slog.New(slog.NewTextHandler(&logBuf, nil)), env.Maps, newIDs())
	parse := func(both bool) *config.Config {
		t.Helper()
		cfg, err := config.Parse("test.yaml", []byte(failOpenYAML(both)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	syn := func(vip string) (uint32, netip.Addr) {
		t.Helper()
		s := pkt.Spec{Src: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr(vip), SrcPort: 40000, DstPort: 80, Proto: "tcp", TCPFlags: "S"}
		act, out := env.Run(t, env.Objs.XlbLb, pkt.MustBuild(t, s))
		if act != xdpTX {
			return act, netip.Addr{}
		}
		d, err := pkt.Decode(out)
		if err != nil || d.Outer4 == nil {
			t.Fatalf("output to %s: %v", vip, err)
		}
		a, _ := netip.AddrFromSlice(d.Outer4.DstIP.To4())
		return act, a
	}

	// xlbd starts with "old" (its backends count as up until checked),
	// then a reload adds "new", whose backends start down.
	md := newModel().reloaded(parse(false), true, p, time.Now())
	if err := p.reconcile(md); err != nil {
		t.Fatal(err)
	}
	md = md.reloaded(parse(true), false, p, time.Now())
	if err := p.reconcile(md); err != nil {
		t.Fatal(err)
	}
	if p.failingOpen("new") {
		t.Error("a new service whose backends never passed a check is reported failing open")
	}
	if act, _ := syn("10.0.0.101"); act != xdpDrop {
		t.Errorf("a SYN to the new service: action %d, want XDP_DROP (nothing to serve)", act)
	}
	if got := env.Stat(t, "drop_no_backend"); got != 1 {
		t.Errorf("drop_no_backend = %d, want 1", got)
	}
	if strings.Contains(logBuf.String(), "failing open") {
		t.Errorf("the log says the new service fails open:\n%s", logBuf.String())
	}
	if !strings.Contains(logBuf.String(), "nothing to fail open to") {
		t.Errorf("the log does not say the new service drops its traffic:\n%s", logBuf.String())
	}

	// Both of old's backends fail together: it fails open to them.
	old := md.services["old"]
	now := time.Now()
	for _, b := range old.backends {
		b.up, b.lastUp = false, now
	}
	if err := p.sync(old); err != nil {
		t.Fatal(err)
	}
	if !p.failingOpen("old") {
		t.Error("a service whose healthy backends went down together is not failing open")
	}
	if act, to := syn("10.0.0.100"); act != xdpTX || (to != netip.MustParseAddr("10.0.0.11") && to != netip.MustParseAddr("10.0.0.12")) {
		t.Errorf("a SYN to the failing-open service: action %d to %s, want XDP_TX to one of its backends", act, to)
	}
	if !strings.Contains(logBuf.String(), `msg="every backend is down: failing open to the last healthy set" service=old backends=2`) {
		t.Errorf("no fail-open log line for old:\n%s", logBuf.String())
	}

	// A backend of "new" passes its first check: served, no fail-open.
	nw := md.services["new"]
	nw.backends[0].up, nw.backends[0].lastUp = true, time.Now()
	if err := p.sync(nw); err != nil {
		t.Fatal(err)
	}
	if p.failingOpen("new") {
		t.Error("new is reported failing open with a healthy backend")
	}
	if act, to := syn("10.0.0.101"); act != xdpTX || to != netip.MustParseAddr("10.0.0.13") {
		t.Errorf("a SYN to new after its first pass: action %d to %s, want XDP_TX to 10.0.0.13", act, to)
	}
}
