package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const bgpJSON = `{
  "configured": true, "announcing": true, "asn": 65001, "router_id": "10.0.0.2",
  "graceful_restart": true, "restart_time": "2m0s",
  "peers": [{"address": "10.0.0.254", "asn": 65000, "state": "established", "uptime": "42s", "since": "2025-01-01T00:00:00Z"},
            {"address": "10.0.0.253", "asn": 65000, "state": "active", "uptime": "0s", "since": "2025-01-01T00:00:00Z", "last_error": "hold timer expired"}],
  "announced": [{"prefix": "10.0.0.10/32", "next_hop": "session address", "services": ["api"]}],
  "services": [{"name": "api", "vip": "10.0.0.10", "wanted": true, "announced": true, "reason": "2 of 3 weighted backends up"},
               {"name": "dns", "vip": "10.0.0.53", "wanted": false, "announced": false, "reason": "no backend is up"}]
}
`

func TestBGPTable(t *testing.T) {
	c, url := newCanned(t)
	c.set("GET /api/v1/bgp", 200, bgpJSON)
	code, out, errOut := xlbctl(t, "-admin", url, "bgp")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	want := map[int][]string{
		0:  strings.Fields("AS 65001, router id 10.0.0.2, announcing on, graceful restart restart time 2m0s"),
		3:  {"10.0.0.254", "65000", "established", "42s"},
		4:  {"10.0.0.253", "65000", "active", "-", "hold", "timer", "expired"},
		7:  {"10.0.0.10/32", "session", "address", "api"},
		10: {"api", "10.0.0.10", "yes", "yes", "2", "of", "3", "weighted", "backends", "up"},
		11: {"dns", "10.0.0.53", "no", "no", "no", "backend", "is", "up"},
	}
	for i, w := range want {
		if i >= len(lines) || !slices.Equal(strings.Fields(lines[i]), w) {
			t.Errorf("line %d of:\n%s\nwant %q", i, out, w)
		}
	}
	code, out, _ = xlbctl(t, "-admin", url, "bgp", "-o", "json")
	if code != 0 || out != bgpJSON {
		t.Errorf("-o json: exit %d, want the raw answer, got %q", code, out)
	}
	c.set("GET /api/v1/bgp", 200, `{"configured": false, "announcing": false, "peers": [], "announced": [], "services": []}`)
	if code, out, _ := xlbctl(t, "-admin", url, "bgp"); code != 0 || !strings.Contains(out, "not configured") {
		t.Errorf("without bgp: exit %d, %q", code, out)
	}
}

func TestAnnounceOffOn(t *testing.T) {
	c, url := newCanned(t)
	c.set("POST /api/v1/bgp/announce", 200, strings.Replace(bgpJSON, `"announcing": true`, `"announcing": false`, 1))
	code, out, errOut := xlbctl(t, "-admin", url, "announce", "off")
	if code != 0 || !strings.Contains(out, "announcing off") {
		t.Fatalf("announce off: exit %d, %q %q", code, out, errOut)
	}
	if code, out, _ := xlbctl(t, "-admin", url, "announce", "on"); code != 0 || !strings.Contains(out, "1 prefixes announced") {
		t.Errorf("announce on: exit %d, %q", code, out)
	}
	var bodies []string
	for _, r := range c.requests() {
		if r.method != "POST" || r.path != "/api/v1/bgp/announce" {
			t.Errorf("unexpected request %s %s", r.method, r.path)
		}
		bodies = append(bodies, r.body)
	}
	if !slices.Equal(bodies, []string{`{"enabled":false}`, `{"enabled":true}`}) {
		t.Errorf("bodies %q", bodies)
	}
	if code, _, errOut := xlbctl(t, "-admin", url, "announce", "maybe"); code != 2 || !strings.Contains(errOut, "want off or on") {
		t.Errorf("announce maybe: exit %d, %q", code, errOut)
	}
	if code, _, _ := xlbctl(t, "-admin", url, "announce"); code != 2 {
		t.Errorf("announce without argument: exit %d", code)
	}
	c.set("POST /api/v1/bgp/announce", 409, `{"error": "bgp is not configured"}`)
	if code, _, errOut := xlbctl(t, "-admin", url, "announce", "off"); code != 1 || !strings.Contains(errOut, "not configured") {
		t.Errorf("without bgp: exit %d, %q", code, errOut)
	}
}

// TestDetachWithdrawsFirst: detach asks xlbd to withdraw every VIP before
// it removes the program, and refuses when xlbd runs but cannot withdraw.
func TestDetachWithdrawsFirst(t *testing.T) {
	saveDetach := detachAll
	t.Cleanup(func() { detachAll = saveDetach })
	c, url := newCanned(t)
	var order []string
	detachAll = func(pinPath string) error {
		order = append(order, fmt.Sprintf("detach after %d calls", len(c.requests())))
		return nil
	}
	c.set("POST /api/v1/bgp/announce", 200, bgpJSON)
	code, _, errOut := xlbctl(t, "-admin", url, "detach", "-withdraw-wait", "10ms")
	if code != 0 || !strings.Contains(errOut, "withdrew every VIP") {
		t.Fatalf("detach: exit %d, %q", code, errOut)
	}
	if reqs := c.requests(); len(reqs) != 1 || reqs[0].body != `{"enabled":false}` || !slices.Equal(order, []string{"detach after 1 calls"}) {
		t.Errorf("requests %+v, hook %q: want the withdrawal, then the detach", reqs, order)
	}

	// xlbd without bgp: detach goes on.
	c.set("POST /api/v1/bgp/announce", 409, `{"error": "bgp is not configured"}`)
	if code, _, errOut := xlbctl(t, "-admin", url, "detach"); code != 0 {
		t.Errorf("detach with xlbd without bgp: exit %d, %q", code, errOut)
	}
	// xlbd that refuses (no token): no detach.
	order = nil
	c.set("POST /api/v1/bgp/announce", 401, `{"error": "missing or wrong bearer token"}`)
	code, out, errOut := xlbctl(t, "-admin", url, "-o", "json", "detach")
	if code != 1 || len(order) != 0 || !strings.Contains(errOut, "withdraw the VIPs first") {
		t.Errorf("detach with a refused withdrawal: exit %d, hook %q, stderr %q", code, order, errOut)
	}
	if out != "" && !json.Valid([]byte(out)) {
		t.Errorf("-o json output is not JSON: %q", out)
	}
}
