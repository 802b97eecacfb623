//go:build linux

package daemon

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
)

// TestBGPWanted: what each announce mode makes of a service's backends.
func TestBGPWanted(t *testing.T) {
	a1, a2 := netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.1.2")
	checks := &config.HealthCheck{Type: "http", Interval: time.Second, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2}
	type be struct {
		addr     netip.Addr
		up       bool
		weight   int
		drain    bool
		passed   bool
		removing bool
	}
	tests := []struct {
		name     string
		announce string
		checks   *config.HealthCheck
		failOpen bool
		backends []be
		want     bool
		reason   string
	}{
		{"never", "never", checks, false, []be{{a1, true, 1, false, true, false}}, false, "announce: never"},
		{"always-even-when-down", "always", checks, true, []be{{a1, false, 1, false, true, false}}, true, "announce: always"},
		{"healthy-one-up", "healthy", checks, false, []be{{a1, true, 1, false, true, false}, {a2, false, 1, false, true, false}}, true, "1 of 2 weighted backends up"},
		{"fresh-xlbd-before-a-passing-check", "healthy", checks, false, []be{{a1, true, 1, false, false, false}, {a2, true, 1, false, false, false}}, false, "no backend has passed a check"},
		{"all-down-fail-open", "healthy", checks, true, []be{{a1, false, 1, false, true, false}, {a2, false, 1, false, true, false}}, false, "every backend is down"},
		{"up-but-drained-and-the-other-down", "healthy", checks, false, []be{{a1, true, 1, true, true, false}, {a2, false, 1, false, true, false}}, false, "no backend is up"},
		{"all-drained", "healthy", checks, false, []be{{a1, true, 1, true, true, false}, {a2, true, 0, false, true, false}}, true, "every backend is drained"},
		// A reload dropped it and nothing that stays is up: it stands in,
		// takes new flows, and the VIP stays.
		{"removal-pending-only", "healthy", checks, false, []be{{a1, true, 1, false, true, true}}, true, "1 of 1 weighted backends up"},
		{"reload-replaced-every-backend", "healthy", checks, false, []be{{a1, true, 1, false, true, true}, {a2, false, 1, false, false, false}}, true, "1 of 2 weighted backends up"},
		{"no-checks", "healthy", nil, false, []be{{a1, true, 1, false, false, false}}, true, "no health check"},
		{"no-backends", "healthy", checks, false, nil, false, "no backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &announcer{}
			s := &service{cfg: config.Service{Name: "api", Layer: 4, Announce: tt.announce, HealthCheck: tt.checks}}
			for _, b := range tt.backends {
				mb := &backend{name: b.addr.String(), addr: b.addr, conf: config.Backend{Address: b.addr.String(), Addr: b.addr, Weight: b.weight}, src: fromConfig, up: b.up, drain: b.drain, judged: b.passed, proven: b.passed}
				if b.removing {
					mb.removeAt = time.Now().Add(time.Minute)
				}
				s.backends = append(s.backends, mb)
			}
			got, reason := a.wanted(s, tt.failOpen)
			if got != tt.want || !strings.Contains(reason, tt.reason) {
				t.Errorf("wanted %t (%q), want %t (%q)", got, reason, tt.want, tt.reason)
			}
		})
	}
}

// TestBGPWantedNeedsTheDataPlane: a VIP whose backends are up is not
// announced while the program is missing from an interface (announce:
// always ones are), nor at all with the L4 data plane off.
func TestBGPWantedNeedsTheDataPlane(t *testing.T) {
	a1 := netip.MustParseAddr("10.0.1.1")
	svc := func(announce string) *service {
		return &service{cfg: config.Service{Name: "api", Layer: 4, Announce: announce}, backends: []*backend{
			{name: a1.String(), addr: a1, conf: config.Backend{Address: a1.String(), Addr: a1, Weight: 1}, src: fromConfig, up: true}}}
	}
	why := ""
	a := &announcer{unserved: func() string { return why }}
	if got, reason := a.wanted(svc("healthy"), false); !got {
		t.Fatalf("with the program attached: not wanted (%s)", reason)
	}
	why = "interface eth0 is gone"
	if got, reason := a.wanted(svc("healthy"), false); got || !strings.Contains(reason, why) {
		t.Errorf("with eth0 gone: wanted %t (%q), want false saying so", got, reason)
	}
	if got, _ := a.wanted(svc("always"), false); !got {
		t.Error("announce: always with eth0 gone: withdrawn, want announced")
	}
	a = &announcer{l4Off: true}
	for _, mode := range []string{"healthy", "always"} {
		if got, reason := a.wanted(svc(mode), false); got || !strings.Contains(reason, "no xdp.interfaces") {
			t.Errorf("announce: %s with L4 off: wanted %t (%q), want false saying so", mode, got, reason)
		}
	}
}

func TestBGPSettingsIgnoreLines(t *testing.T) {
	a := &config.BGP{ASN: 1, Line: 3, Peers: []config.BGPPeer{{ASN: 2, Line: 5}}}
	b := &config.BGP{ASN: 1, Line: 9, Peers: []config.BGPPeer{{ASN: 2, Line: 11}}}
	if !reflect.DeepEqual(bgpSettings(a), bgpSettings(b)) {
		t.Error("the same bgp settings on other lines compare different")
	}
	b.Peers[0].ASN = 3
	if reflect.DeepEqual(bgpSettings(a), bgpSettings(b)) {
		t.Error("a changed peer compares equal")
	}
	if a.Line != 3 || a.Peers[0].Line != 5 {
		t.Error("bgpSettings changed its argument")
	}
}
