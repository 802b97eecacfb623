package admin

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/internal/syncbuf"
)

// fakeBGP is a Controller with a BGP speaker.
type fakeBGP struct {
	*fakeController
	announcing bool
}

func (f *fakeBGP) BGPStatus() api.BGP {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := api.BGP{Configured: true, Announcing: f.announcing, ASN: 65001, RouterID: "10.0.0.2",
		Peers: []api.BGPPeer{{Address: "10.0.0.254", ASN: 65000, State: "established", Uptime: "5s"},
			{Address: "10.0.0.253", ASN: 65000, State: "active"}}}
	if f.announcing {
		b.Announced = []api.BGPPrefix{{Prefix: "10.0.0.10/32", NextHop: "session address", Services: []string{"api"}}}
	}
	return b
}

func (f *fakeBGP) SetAnnounce(on bool) (api.BGP, error) {
	f.record("announce %t", on)
	f.mu.Lock()
	f.announcing = on
	f.mu.Unlock()
	return f.BGPStatus(), nil
}

var _ BGPController = (*fakeBGP)(nil)

func newBGPHarness(t *testing.T, withToken bool) (*harness, *fakeBGP) {
	t.Helper()
	h := &harness{fake: newFake(), logs: &syncbuf.Buffer{}}
	fb := &fakeBGP{fakeController: h.fake, announcing: true}
	o := Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(h.logs, nil))}
	if withToken {
		o.TokenFile = writeToken(t, t.TempDir(), testToken+"\n")
	}
	srv, err := New(fb, o)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	return h, fb
}

func TestBGPStatus(t *testing.T) {
	h, _ := newBGPHarness(t, false)
	a := h.do(t, "GET", api.PathBGP, "", "")
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var b api.BGP
	a.decode(t, &b)
	if !b.Configured || !b.Announcing || len(b.Peers) != 2 || b.Peers[0].State != "established" || len(b.Announced) != 1 {
		t.Errorf("GET %s: %+v", api.PathBGP, b)
	}
	if !strings.Contains(string(a.body), `"services": []`) {
		t.Errorf("an empty list must be [], not null: %s", a.body)
	}
}

// TestBGPStatusUptimeOfEveryPeer: SPEC lists each peer with its uptime, so
// a session that is not established says "0s" rather than leaving it out.
func TestBGPStatusUptimeOfEveryPeer(t *testing.T) {
	h, _ := newBGPHarness(t, false)
	a := h.do(t, "GET", api.PathBGP, "", "")
	var raw struct {
		Peers []map[string]any `json:"peers"`
	}
	a.decode(t, &raw)
	want := map[string]string{"10.0.0.254": "5s", "10.0.0.253": "0s"}
	for _, p := range raw.Peers {
		addr, _ := p["address"].(string)
		up, ok := p["uptime"].(string)
		if !ok || up != want[addr] {
			t.Errorf("peer %s: uptime %v (present %v), want %q", addr, p["uptime"], ok, want[addr])
		}
	}
	if len(raw.Peers) != len(want) {
		t.Errorf("%d peers, want %d: %s", len(raw.Peers), len(want), a.body)
	}
}

func TestBGPStatusWithoutSpeaker(t *testing.T) {
	h := newHarness(t, false) // its controller has no BGP
	a := h.do(t, "GET", api.PathBGP, "", "")
	var b api.BGP
	a.decode(t, &b)
	if a.status != 200 || b.Configured || b.Peers == nil {
		t.Errorf("status %d, %+v", a.status, b)
	}
	a = h.do(t, "POST", api.PathBGPAnnounce, `{"enabled": false}`, "")
	if a.status != 409 {
		t.Errorf("announce without bgp: status %d, want 409: %s", a.status, a.body)
	}
	a.apiError(t)
}

func TestBGPAnnounce(t *testing.T) {
	h, fb := newBGPHarness(t, true)
	if a := h.do(t, "POST", api.PathBGPAnnounce, `{"enabled": false}`, ""); a.status != 401 {
		t.Fatalf("announce without the token: status %d", a.status)
	}
	a := h.do(t, "POST", api.PathBGPAnnounce, `{"enabled": false}`, testToken)
	var b api.BGP
	a.decode(t, &b)
	if a.status != 200 || b.Announcing || len(b.Announced) != 0 || fb.announcing {
		t.Fatalf("announce off: status %d, %+v", a.status, b)
	}
	if a := h.do(t, "POST", api.PathBGPAnnounce, `{"enabled": true}`, testToken); a.status != 200 || !fb.announcing {
		t.Fatalf("announce on: status %d: %s", a.status, a.body)
	}
	if got := fb.Calls(); strings.Join(got, ",") != "announce false,announce true" {
		t.Errorf("calls %q", got)
	}
	if !strings.Contains(h.logs.String(), "path="+api.PathBGPAnnounce) {
		t.Errorf("the announce call is not logged:\n%s", h.logs)
	}
	for _, tc := range []struct{ name, body string }{
		{"empty", ""}, {"no-enabled", `{}`}, {"string", `{"enabled": "no"}`},
		{"unknown-field", `{"enabled": true, "vip": "10.0.0.10"}`}, {"not-json", `off`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := h.do(t, "POST", api.PathBGPAnnounce, tc.body, testToken)
			if a.status != 400 {
				t.Errorf("status %d, want 400: %s", a.status, a.body)
			}
			a.apiError(t)
		})
	}
	if n := len(fb.Calls()); n != 2 {
		t.Errorf("bad bodies reached the controller: %q", fb.Calls())
	}
	if a := h.do(t, "GET", api.PathBGPAnnounce, "", ""); a.status != 405 {
		t.Errorf("GET announce: status %d, want 405", a.status)
	}
}
