//go:build linux

package integration

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/bpf"
)

// settingsOf reads the data plane's global settings from the daemon's pins.
func (l *dlab) settingsOf(t *testing.T) bpf.LbGlobals {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(l.pinDir, "xlb", bpf.LbMapSettings), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var g bpf.LbGlobals
	if err := m.Lookup(uint32(0), &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestDaemonXDPSettings: xdp.flow_insert_limit (default 100000) and
// xdp.ipip_source_prefix reach the program, at start and on reload.
func TestDaemonXDPSettings(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	if g := l.settingsOf(t); g.MaxNewFlowsCpu != 100000 || g.Src4Mask != 0 {
		t.Fatalf("default settings: flow insert cap %d, source mask %#x; want 100000 and none", g.MaxNewFlowsCpu, g.Src4Mask)
	}
	raw, err := os.ReadFile(l.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), "  mode: native\n", "  mode: native\n  flow_insert_limit: 5000\n  ipip_source_prefix: 172.16.0.0/16\n", 1)
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	g := l.settingsOf(t)
	var src, mask [4]byte
	binary.NativeEndian.PutUint32(src[:], g.Src4Prefix)
	binary.NativeEndian.PutUint32(mask[:], g.Src4Mask)
	if g.MaxNewFlowsCpu != 5000 || src != [4]byte{172, 16, 0, 0} || mask != [4]byte{0, 0, 255, 255} {
		t.Errorf("after reload: flow insert cap %d, source %v mask %v; want 5000, 172.16.0.0 and 0.0.255.255", g.MaxNewFlowsCpu, src, mask)
	}
}

// TestDaemonReloadWithoutOuterSource: a reload whose first interface has
// no address for the IPIP outer source is rejected with the interfaces it
// attached taken off again, so the old config serves as it did.
func TestDaemonReloadWithoutOuterSource(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	l.lb.Run(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	l.lb.Run(t, "ip", "link", "set", "eth1", "up")
	l.lb.Run(t, "ip", "link", "set", "eth1p", "up")
	raw, err := os.ReadFile(l.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(raw), "  interfaces: [eth0]\n", "  interfaces: [eth1, eth0]\n", 1)
	if err := os.WriteFile(l.cfgPath, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	var answer api.Error
	l.call(t, "POST", api.PathReload, nil, 400, &answer)
	if !strings.Contains(answer.Error, "eth1 has no global address") {
		t.Errorf("reload answer %+v, want the reason", answer)
	}
	if out := l.lb.Run(t, "ip", "link", "show", "eth1"); strings.Contains(out, "prog/xdp") {
		t.Errorf("the rejected reload left its program on eth1:\n%s", out)
	}
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); !strings.Contains(out, "prog/xdp") {
		t.Errorf("the rejected reload took the program off eth0:\n%s", out)
	}
	if err := os.WriteFile(l.cfgPath, raw, 0o644); err != nil { // for the cleanup's -detach
		t.Fatal(err)
	}
	if counts := l.shares(t, 60); len(counts) < 2 {
		t.Errorf("after the rejected reload, connections went to %v", counts)
	}
}
