//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/loader"
)

// healthz is GET /healthz: its status and error field.
func (l *dlab) healthz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := l.http.Get("http://" + adminAddr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var body struct{ Error string }
	json.Unmarshal(data, &body)
	return resp.StatusCode, body.Error
}

// TestDaemonFollowsLostAttachments: the XDP program leaving its interface
// while xlbd runs is noticed. Detached by `xlbctl detach`, /healthz answers
// 503 saying so until a reload attaches it again (pins included); the
// interface deleted, 503 saying it is gone; back under the same name, xlbd
// attaches to it by itself and the VIP is balanced again.
func TestDaemonFollowsLostAttachments(t *testing.T) {
	l := newDaemonLab(t, "dsr", "")
	if code, why := l.healthz(t); code != 200 {
		t.Fatalf("healthz at the start: %d %s", code, why)
	}
	wantHealthz := func(what string, code int, reason string) {
		t.Helper()
		var got int
		var why string
		waitFor(t, what, 5*time.Second, func() bool {
			got, why = l.healthz(t)
			return got == code && strings.Contains(why, reason)
		})
	}
	balanced := func(what string) {
		t.Helper()
		counts := l.shares(t, 60)
		if len(counts) < 2 {
			t.Errorf("%s: connections went to %v, want several backends", what, counts)
		}
	}

	attached := func() string {
		t.Helper()
		for _, line := range strings.Split(string(l.call(t, "GET", api.PathMetrics, nil, 200, nil)), "\n") {
			if strings.HasPrefix(line, `xlb_xdp_attached{interface="eth0"}`) {
				return line
			}
		}
		return "no xlb_xdp_attached series for eth0"
	}
	if got := attached(); got != `xlb_xdp_attached{interface="eth0"} 1` {
		t.Errorf("attached: %s", got)
	}
	l.lb.Run(t, bins.xlbctl, "detach", "-withdraw-wait", "0s")
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); strings.Contains(out, "prog/xdp") {
		t.Fatalf("xlbctl detach left the program:\n%s", out)
	}
	wantHealthz("healthz after xlbctl detach", 503, "detached from eth0")
	if got := attached(); got != `xlb_xdp_attached{interface="eth0"} 0` {
		t.Errorf("detached: %s", got)
	}
	if out := l.lb.Run(t, "ip", "neigh", "show", vip4.String()); strings.Contains(out, "PERMANENT") {
		t.Errorf("the VIP's probe neighbour entry outlived the detach: %s", out)
	}
	if out := l.lb.Run(t, bins.xlbctl, "status"); !strings.HasPrefix(out, "WARNING: xlbd is not serving: the XDP program was detached from eth0") {
		t.Errorf("xlbctl status with the program detached:\n%s", out)
	}

	l.call(t, "POST", "/api/v1/reload", nil, 200, nil)
	wantHealthz("healthz after the reload", 200, "")
	if got := attached(); got != `xlb_xdp_attached{interface="eth0"} 1` {
		t.Errorf("attached again: %s", got)
	}
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); !strings.Contains(out, "prog/xdp") {
		t.Fatalf("no program after the reload:\n%s", out)
	}
	for _, pin := range []string{"flows", "links/eth0"} {
		if _, err := os.Stat(filepath.Join(l.pinDir, "xlb", pin)); err != nil {
			t.Errorf("after the reload: %v", err)
		}
	}
	allHealthy := func(what string) {
		t.Helper()
		waitFor(t, what, 5*time.Second, func() bool {
			for _, s := range l.services(t).Services {
				for _, b := range s.Backends {
					if !b.Healthy {
						return false
					}
				}
			}
			return true
		})
	}
	// Checked through the forwarding path again: the reload made the
	// VIP's probe neighbour entry anew.
	allHealthy("backends healthy after the reload")
	balanced("after the reload")

	l.lb.Run(t, "ip", "link", "del", "eth0")
	wantHealthz("healthz with eth0 deleted", 503, "interface eth0 is gone")
	// The same interface again: a new veth to the bridge, a new ifindex
	// and MAC, the neighbours that knew the old one told.
	l.lbLink = l.tp.Connect(l.lb, "eth0", lb4.String()+"/24", lb6.String()+"/64")
	l.lb.Run(t, "ethtool", "-K", "eth0", "tx", "off")
	if err := l.tp.AddBridge().Do(func() error { return loader.AttachPass(l.lbLink.PeerName) }); err != nil {
		t.Fatal(err)
	}
	for _, h := range append(l.backends, l.client) {
		h.Run(t, "ip", "neigh", "flush", "all")
	}
	wantHealthz("healthz with eth0 back", 200, "")
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); !strings.Contains(out, "prog/xdp") {
		t.Fatalf("no program on the re-created eth0:\n%s", out)
	}
	allHealthy("backends healthy again on the new eth0")
	balanced("on the re-created eth0")
}

// TestBGPListsL4ServicesWithL4Off: with no xdp.interfaces nothing here
// forwards an L4 VIP: GET /api/v1/bgp lists the L4 services, unwanted and
// saying why, rather than leaving them out; a reload that drops one drops
// it from the list.
func TestBGPListsL4ServicesWithL4Off(t *testing.T) {
	buildBinaries(t)
	admin := freeAddr(t)
	dir := t.TempDir()
	cfg := func(services string) string {
		return fmt.Sprintf(`admin: {listen: %q}
xdp: {pin_path: %q}
bgp:
  asn: 65001
  router_id: 10.9.9.9
  listen_port: -1
  peers: [{address: 127.0.0.1, asn: 65000, port: 9}]
services:
%s`, admin, filepath.Join(dir, "pins"), services)
	}
	const api1 = "  - {name: api, layer: 4, vip: 10.0.0.100, port: 80, protocol: tcp, forwarding: dsr, backends: [{address: 10.0.0.11}]}\n"
	const api2 = "  - {name: api2, layer: 4, vip: 10.0.0.101, port: 80, protocol: tcp, forwarding: dsr, backends: [{address: 10.0.0.11}]}\n"
	path := filepath.Join(dir, "xlb.yaml")
	writeFile(t, path, cfg(api1+api2))
	startXlbd(t, path, admin)
	hc := &http.Client{Timeout: 5 * time.Second}
	listed := func() map[string]api.BGPService {
		t.Helper()
		resp, err := hc.Get("http://" + admin + api.PathBGP)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b api.BGP
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
		out := map[string]api.BGPService{}
		for _, s := range b.Services {
			out[s.Name] = s
		}
		return out
	}
	got := listed()
	for _, name := range []string{"api", "api2"} {
		if s, ok := got[name]; !ok || s.Wanted || !strings.Contains(s.Reason, "no xdp.interfaces") {
			t.Errorf("GET /api/v1/bgp with L4 off: %s is %+v (listed %t), want unwanted, saying why", name, s, ok)
		}
	}
	writeFile(t, path, cfg(api1))
	resp, err := hc.Post("http://"+admin+"/api/v1/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %d", resp.StatusCode)
	}
	if got := listed(); len(got) != 1 || got["api"].Name != "api" {
		t.Errorf("after a reload that dropped api2: listed %v, want api alone", got)
	}
}
