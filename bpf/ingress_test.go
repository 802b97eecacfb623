//go:build linux

package bpf_test

import (
	"bytes"
	"testing"

	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/pkt"
)

// TestNexthopFollowsIngress: a backend's cached next hop names the
// interface it was looked up from, because the FIB's answer may depend on it
// (policy routing by incoming interface). A packet of an established flow
// (whose fast path reads that cache) that arrives on another interface has
// its next hop looked up again.
func TestNexthopFollowsIngress(t *testing.T) {
	w := newWorld(t)
	id, ack := establish(t, w, 42500)
	in := pkt.MustBuild(t, ack)
	act, out := w.run(t, in)
	wantAction(t, act, xdpTX)
	if !bytes.Equal(out[0:6], w.macOf[id]) {
		t.Fatalf("to %x, want %s", out[0:6], w.macOf[id])
	}

	// A second interface (a veth pair inside the namespace, which goes
	// with it).
	w.Host.Run(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	w.Host.Run(t, "ip", "link", "set", "eth1", "up")
	w.Host.Run(t, "ip", "link", "set", "eth1p", "up")
	w.Host.Sysctl(t, "net.ipv4.conf.eth1.forwarding", "1")
	// What comes in on eth1 reaches the backends through the gateway.
	w.Host.Run(t, "ip", "route", "add", "10.0.0.0/24", "via", lbtest.GWAddr4.String(), "dev", "eth0", "table", "100")
	w.Host.Run(t, "ip", "rule", "add", "iif", "eth1", "lookup", "100")
	eth1 := w.Host.LinkByName(t, "eth1")
	act, out = w.RunOn(t, w.Objs.XlbLb, in, eth1.Index)
	if act != xdpRedirect {
		t.Fatalf("from eth1: action %s, want %s (to the backend's interface)", actionNames[act], actionNames[xdpRedirect])
	}
	if !bytes.Equal(out[0:6], lbtest.GWMAC) {
		t.Errorf("from eth1: to %x, want the gateway %s (eth1's policy route)", out[0:6], lbtest.GWMAC)
	}
	// And back on eth0, the flow is sent out again where it came in.
	act, _ = w.run(t, in)
	wantAction(t, act, xdpTX)
}
