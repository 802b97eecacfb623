//go:build linux

package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/discovery"
	"github.com/xlbproject/xlb/test/lbtest"
	"github.com/xlbproject/xlb/test/privileged"
)

// fakePrior is what a previous daemon left: health by address.
type fakePrior map[netip.Addr]bool

func (f fakePrior) recoveredUp(_ *config.Service, a netip.Addr) (bool, bool) {
	up, ok := f[a]
	return up, ok
}

func (fakePrior) recoveredFailOpen(*config.Service, netip.Addr) bool { return false }

func (f fakePrior) recoveredBackends(*config.Service) []netip.Addr {
	var out []netip.Addr
	for a := range f {
		out = append(out, a)
	}
	return out
}

// A backend recovered from fakePrior came from the previous daemon's file.
func (fakePrior) recoveredSource(*config.Service, netip.Addr) source { return fromConfig }

// originsPrior is fakePrior with the origins the previous daemon recorded
// for backends that were not its file's.
type originsPrior struct {
	fakePrior
	src map[netip.Addr]source
}

func (o originsPrior) recoveredSource(c *config.Service, a netip.Addr) source {
	if s, ok := o.src[a]; ok {
		return s
	}
	return o.fakePrior.recoveredSource(c, a)
}

var noPrior = fakePrior{}

func testConfig(t *testing.T, backends string) *config.Config {
	t.Helper()
	yaml := `l7: {drain_timeout: 10s}
services:
  - name: web
    layer: 7
    listen: 127.0.0.1:8080
    health_check: {type: http, path: /health}
    backends:
` + backends + `    routes:
      - match: {path_prefix: /r/}
        backends: [{address: 10.0.9.9:80}]
`
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const twoBackends = "      - {address: 10.0.0.1:80, weight: 2}\n      - {address: 10.0.0.2:80}\n"

func loaded(t *testing.T, backends string) (*model, *service) {
	t.Helper()
	m := newModel().reloaded(testConfig(t, backends), true, noPrior, time.Now())
	return m, m.services["web"]
}

func apiBackend(addr string, w int) *backend {
	return &backend{name: addr, conf: config.Backend{Address: addr, Weight: w}, src: fromAPI}
}

func TestModelAPIWeightSurvivesAddDrainAndExpiry(t *testing.T) {
	m, s := loaded(t, twoBackends)
	b := s.find("10.0.0.1:80")
	setWeight(b, 7)
	if _, err := m.add(s, apiBackend("10.0.0.3:80", 1), nil); err != nil {
		t.Fatal(err)
	}
	if b.weight() != 7 {
		t.Errorf("after an add: weight %d, want the API's 7", b.weight())
	}
	s.find("10.0.0.3:80").drain = true
	now := time.Now()
	m.remove(s.find("10.0.0.2:80"), now)
	if gone := m.expire(now.Add(11*time.Second), nil); len(gone["web"]) != 1 || gone["web"][0].name != "10.0.0.2:80" {
		t.Fatalf("expire removed %v, want 10.0.0.2:80", gone)
	}
	if b.weight() != 7 || b.effWeight() != 7 || b.persisted() {
		t.Errorf("after a drain and an expiry: weight %d eff %d persisted %v, want 7 7 false", b.weight(), b.effWeight(), b.persisted())
	}
	if s.find("10.0.0.2:80") != nil {
		t.Error("expired backend still in the pool")
	}
}

func TestModelReloadDropsRuntimeChanges(t *testing.T) {
	m, s := loaded(t, twoBackends)
	now := time.Now()
	b1 := s.find("10.0.0.1:80")
	setWeight(b1, 9)
	b1.up, b1.lastCheck = false, "connection refused"
	m.remove(s.find("10.0.0.2:80"), now)
	m.expire(now.Add(time.Minute), nil) // the config backend is gone until reload
	if _, err := m.add(s, apiBackend("10.0.0.3:80", 1), nil); err != nil {
		t.Fatal(err)
	}

	next := m.reloaded(testConfig(t, twoBackends), false, noPrior, now)
	ns := next.services["web"]
	if got := ns.find("10.0.0.1:80"); got.weight() != 2 || !got.persisted() || got.up || got.lastCheck != "connection refused" {
		t.Errorf("config backend after reload: weight %d persisted %v up %v check %q; want its file weight 2, persisted, and its health kept",
			got.weight(), got.persisted(), got.up, got.lastCheck)
	}
	if got := ns.find("10.0.0.2:80"); got == nil || got.removing() || got.effWeight() != 1 {
		t.Errorf("config backend removed through the API is not back after reload: %+v", got)
	}
	if got := ns.find("10.0.0.3:80"); got == nil || !got.removing() || got.effWeight() != 0 {
		t.Errorf("API-added backend after reload should drain before it goes: %+v", got)
	}
	if gone := next.expire(now.Add(11*time.Second), nil); len(gone["web"]) != 1 {
		t.Errorf("API-added backend not gone after its drain: %v", gone)
	}
	// The running model is untouched until the caller commits.
	if s.find("10.0.0.2:80") != nil || s.find("10.0.0.3:80").removing() || b1.weight() != 9 {
		t.Error("reloaded changed the running model")
	}
}

func TestModelAddRevivesAndConflicts(t *testing.T) {
	m, s := loaded(t, twoBackends)
	if _, err := m.add(s, apiBackend("10.0.0.1:80", 1), nil); err == nil {
		t.Error("adding a backend the service has: no conflict")
	}
	b := s.find("10.0.0.1:80")
	setWeight(b, 5)
	m.remove(b, time.Now())
	revived, err := m.add(s, apiBackend("10.0.0.1:80", 1), nil)
	if err != nil || !revived || b.removing() || b.weight() != 5 {
		t.Errorf("add of a backend being removed: revived %v err %v removing %v weight %d; want revived with its API weight 5", revived, err, b.removing(), b.weight())
	}
	if len(s.backends) != 2 {
		t.Errorf("revival added a second entry: %d backends", len(s.backends))
	}
}

func TestModelRouteOnlyBackendsAreChecked(t *testing.T) {
	m, s := loaded(t, twoBackends)
	if len(s.routeBackends) != 1 || s.find("10.0.9.9:80") != nil {
		t.Fatalf("route backend should be route-only: own %d, route-only %d", len(s.backends), len(s.routeBackends))
	}
	targets, initial := checkTargets(m, checkPaths{})
	if len(targets) != 3 || !initial["web/10.0.9.9:80"] {
		t.Errorf("targets %v initial %v: want both own backends and the route's, up at start", targets, initial)
	}
	if _, bs := m.health("web/10.0.9.9:80"); len(bs) != 1 {
		t.Error("health key of the route backend finds nothing")
	}
}

// TestModelRouteBackendsApartFromThePool: an address both in the pool and
// in a route is one check key with a backend in each list; once the pool's
// is on its way out or gone, the route's is still probed and reported.
func TestModelRouteBackendsApartFromThePool(t *testing.T) {
	m, s := loaded(t, twoBackends+"      - {address: 10.0.9.9:80}\n")
	if len(s.routeBackends) != 1 || s.find("10.0.9.9:80") == nil {
		t.Fatalf("10.0.9.9:80 should be in both lists: own %d, route %d", len(s.backends), len(s.routeBackends))
	}
	if _, bs := m.health("web/10.0.9.9:80"); len(bs) != 2 {
		t.Errorf("health key of an address in both finds %d backends, want 2", len(bs))
	}
	keys := func() []string {
		targets, _ := checkTargets(m, checkPaths{})
		var out []string
		for _, tg := range targets {
			out = append(out, tg.Key)
		}
		return out
	}
	all := "[web/10.0.0.1:80 web/10.0.0.2:80 web/10.0.9.9:80]"
	if got := fmt.Sprint(keys()); got != all {
		t.Errorf("targets %s, want %s (one key for the address in both)", got, all)
	}
	if got := len(s.reported()); got != 3 {
		t.Errorf("%d backends reported, want 3", got)
	}
	m.remove(s.find("10.0.9.9:80"), time.Now())
	if got := fmt.Sprint(keys()); got != all {
		t.Errorf("targets while the pool's copy drains: %s, want %s", got, all)
	}
	m.expire(time.Now().Add(time.Minute), nil)
	if got := fmt.Sprint(keys()); got != all {
		t.Errorf("targets after the pool's copy went: %s, want %s", got, all)
	}
	if r := s.reported(); len(r) != 3 || r[2] != s.routeBackends[0] {
		t.Errorf("reported after the pool's copy went: %d, want the pool's two and the route's", len(r))
	}
}

// TestModelReloadDrainsAnAPIAddARouteAlsoNames: the API's addition to the
// pool drains and goes on a reload, as any does; the route's stays.
func TestModelReloadDrainsAnAPIAddARouteAlsoNames(t *testing.T) {
	cfg := testConfig(t, twoBackends)
	m := newModel().reloaded(cfg, true, noPrior, time.Now())
	s := m.services["web"]
	if _, err := m.add(s, apiBackend("10.0.9.9:80", 1), nil); err != nil {
		t.Fatal(err)
	}
	next := m.reloaded(cfg, false, noPrior, time.Now())
	ns := next.services["web"]
	if b := ns.find("10.0.9.9:80"); b == nil || !b.removing() {
		t.Errorf("API-added 10.0.9.9:80 after a reload: %+v, want draining before removal", b)
	}
	if b := ns.findRouteBackend("10.0.9.9:80"); b == nil || b.removing() || !b.up {
		t.Errorf("the route's 10.0.9.9:80 after a reload: %+v, want kept and up", b)
	}
}

// TestModelFirstAnswerAtStart: at xlbd's start the first answer's backends
// start up, as configured ones do (a service that only discovers must not
// refuse traffic until their first checks), and a backend recovered from
// the pinned maps that the name still gives becomes the name's again with
// its health, instead of draining away with its flows; later answers' new
// backends wait for their checks.
func TestModelFirstAnswerAtStart(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`services:
  - name: api
    layer: 4
    vip: 10.0.0.100
    port: 80
    discover: {dns: api.internal}
    health_check: {type: tcp}
`))
	if err != nil {
		t.Fatal(err)
	}
	pre := fakePrior{netip.MustParseAddr("10.0.0.11"): true, netip.MustParseAddr("10.0.0.12"): false}
	now := time.Now()
	m := newModel().reloaded(cfg, true, pre, now)
	m = m.reloaded(cfg, false, pre, now) // a reload before the answer keeps the start's bet
	s := m.services["api"]
	if b := s.find("10.0.0.11"); b == nil || !b.removing() {
		t.Fatalf("recovered backend before the answer: %+v, want draining until the name gives it", b)
	}
	answer := []discovery.Backend{{Address: "10.0.0.11", Weight: 1}, {Address: "10.0.0.12", Weight: 1}, {Address: "10.0.0.13", Weight: 1}}
	if _, err := m.discovered(s, answer, now); err != nil {
		t.Fatal(err)
	}
	for addr, up := range map[string]bool{"10.0.0.11": true, "10.0.0.12": false, "10.0.0.13": true} {
		b := s.find(addr)
		if b == nil || b.removing() || b.src != fromDNS || b.up != up {
			t.Errorf("%s after the first answer: %+v, want the name's, not draining, up %v", addr, b, up)
		}
	}
	m.discovered(s, append(answer, discovery.Backend{Address: "10.0.0.14", Weight: 1}), now)
	if b := s.find("10.0.0.14"); b == nil || b.up {
		t.Errorf("a later answer's new backend: %+v, want down until checked", b)
	}
}

func TestModelRestartDrainsRecoveredAPIBackends(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`services:
  - name: api
    layer: 4
    vip: 10.0.0.100
    port: 80
    backends: [{address: 10.0.0.11}, {address: 10.0.0.12}]
    health_check: {type: tcp}
`))
	if err != nil {
		t.Fatal(err)
	}
	pre := originsPrior{
		fakePrior: fakePrior{netip.MustParseAddr("10.0.0.11"): false, netip.MustParseAddr("10.0.0.12"): true,
			netip.MustParseAddr("10.0.0.13"): true, netip.MustParseAddr("10.0.0.14"): true},
		src: map[netip.Addr]source{netip.MustParseAddr("10.0.0.13"): fromAPI},
	}
	now := time.Now()
	s := newModel().reloaded(cfg, true, pre, now).services["api"]
	if b := s.find("10.0.0.11"); b.up {
		t.Error("a restart forgot that the previous daemon saw 10.0.0.11 down")
	}
	// 10.0.0.13 the API had added; 10.0.0.14 the previous file listed (it
	// recorded no other origin): neither is an API addition of this xlbd,
	// but the first is one still, and the second is not one at all.
	for addr, src := range map[string]source{"10.0.0.13": fromAPI, "10.0.0.14": fromConfig} {
		b := s.find(addr)
		if b == nil || !b.removing() || b.src != src || b.effWeight() != 0 {
			t.Fatalf("backend %s the previous daemon had and the file lacks: %+v, want draining before removal, source %s", addr, b, src)
		}
		if !b.removeAt.Equal(now.Add(config.DefaultDrainTimeout)) {
			t.Errorf("%s: removal at %v, want after the drain timeout", addr, b.removeAt)
		}
		if b.persisted() != (src != fromAPI) {
			t.Errorf("%s: persisted %v, want %v (an API addition is a runtime change, the file's drain is not)", addr, b.persisted(), src != fromAPI)
		}
	}
	if stand := s.standIns(); stand != nil {
		t.Errorf("recovered backends stand in: %v", stand)
	}
}

// TestModelDiscovered: a lookup's set becomes the service's source-dns
// backends: new ones start down (the service has checks), ones that left
// the answer drain, a returning one is revived, a file or API backend at
// the same address stays theirs, and a reload keeps the discovered ones
// while the service still follows a name. The service gains its name by a
// reload (not at start, whose first answer starts up: the next test).
func TestModelDiscovered(t *testing.T) {
	cfg := testConfig(t, twoBackends)
	cfg.Services[0].Discover = &config.Discover{DNS: "web.internal", Type: "a", Port: 80, Weight: 1}
	now := time.Now()
	m := newModel().reloaded(cfg, false, noPrior, now)
	s := m.services["web"]
	m.add(s, apiBackend("10.0.0.7:80", 5), nil)
	dns := func(addrs ...string) []discovery.Backend {
		var out []discovery.Backend
		for _, a := range addrs {
			out = append(out, discovery.Backend{Address: a, Weight: 3})
		}
		return out
	}
	changed, err := m.discovered(s, dns("10.0.0.2:80", "10.0.0.5:80", "10.0.0.6:80", "10.0.0.7:80"), now)
	if err != nil || !changed {
		t.Fatalf("first answer: changed %v, %v", changed, err)
	}
	want := map[string]source{"10.0.0.1:80": fromConfig, "10.0.0.2:80": fromConfig, "10.0.0.5:80": fromDNS, "10.0.0.6:80": fromDNS, "10.0.0.7:80": fromAPI}
	if len(s.backends) != len(want) {
		t.Fatalf("%d backends, want %d", len(s.backends), len(want))
	}
	for _, b := range s.backends {
		if want[b.name] != b.src {
			t.Errorf("%s: source %s, want %s", b.name, b.src, want[b.name])
		}
		if b.src == fromDNS && (b.up || b.weight() != 3) {
			t.Errorf("discovered %s: up %v weight %d, want down with the answer's weight 3", b.name, b.up, b.weight())
		}
	}
	if changed, _ := m.discovered(s, dns("10.0.0.2:80", "10.0.0.5:80", "10.0.0.6:80", "10.0.0.7:80"), now); changed {
		t.Error("the same answer again changed the model")
	}
	m.discovered(s, dns("10.0.0.5:80"), now)
	if b := s.find("10.0.0.6:80"); b == nil || !b.removing() {
		t.Error("a backend that left the answer is not draining")
	}
	if b := s.find("10.0.0.7:80"); b.removing() {
		t.Error("an API backend drained because the answer lacks it")
	}
	m.discovered(s, dns("10.0.0.5:80", "10.0.0.6:80"), now)
	if b := s.find("10.0.0.6:80"); b.removing() {
		t.Error("a backend back in the answer is still draining")
	}
	next := m.reloaded(cfg, false, noPrior, now)
	if b := next.services["web"].find("10.0.0.5:80"); b == nil || b.removing() || b.src != fromDNS {
		t.Errorf("after a reload the discovered backend is %+v, want kept", b)
	}
	cfg.Services[0].Discover = nil
	next = m.reloaded(cfg, false, noPrior, now)
	if b := next.services["web"].find("10.0.0.5:80"); b == nil || !b.removing() {
		t.Error("a reload that drops discover left its backends serving")
	}
}

// TestModelExpireIdleBackendsGoBeforeTheDrainEnds: a backend being removed
// goes as soon as nothing uses it (after the grace), and one still in use
// at the end of its drain goes anyway; backends not being removed stay
// however idle they are.
func TestModelExpireIdleBackendsGoBeforeTheDrainEnds(t *testing.T) {
	m, s := loaded(t, twoBackends)
	now := time.Now()
	idleB, busyB := s.find("10.0.0.1:80"), s.find("10.0.0.2:80")
	m.remove(idleB, now)
	m.remove(busyB, now)
	if _, err := m.add(s, apiBackend("10.0.0.3:80", 1), nil); err != nil {
		t.Fatal(err)
	}
	idle := func(_ *service, b *backend) bool { return b != busyB }
	names := func(gone map[string][]*backend) []string {
		var out []string
		for _, b := range gone["web"] {
			out = append(out, b.name)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		at   time.Duration
		want []string
	}{
		{"within-the-grace", removalGrace / 2, nil},
		{"idle-after-the-grace", removalGrace, []string{"10.0.0.1:80"}},
		{"busy-before-the-drain-ends", 9 * time.Second, nil},
		{"busy-at-the-drain-end", 10 * time.Second, []string{"10.0.0.2:80"}},
	} {
		if got := names(m.expire(now.Add(tc.at), idle)); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: removed %v, want %v", tc.name, got, tc.want)
		}
	}
	if len(s.backends) != 1 || s.backends[0].name != "10.0.0.3:80" {
		t.Errorf("left %d backends, want only the API-added one that was never removed", len(s.backends))
	}
}

// TestModelStandIns: backends a reload dropped from the file keep taking
// new requests while none of the new ones is up, and only then; neither an
// API removal nor a name's answer makes one.
func TestModelStandIns(t *testing.T) {
	m, s := loaded(t, twoBackends)
	now := time.Now()
	next := m.reloaded(testConfig(t, "      - {address: 10.0.0.3:80}\n"), false, noPrior, now)
	ns := next.services["web"]
	stand := ns.standIns()
	old1, old2, fresh := ns.find("10.0.0.1:80"), ns.find("10.0.0.2:80"), ns.find("10.0.0.3:80")
	if fresh.up || !stand[old1] || !stand[old2] || old1.share(stand) != 2 || fresh.share(stand) != 1 {
		t.Fatalf("before the new backend's first check: stand-ins %v, new up %v", stand, fresh.up)
	}
	if gone := next.expire(now.Add(5*time.Second), func(*service, *backend) bool { return true }); len(gone) != 0 {
		t.Errorf("idle stand-ins expired: %v", gone)
	}
	// The new backend takes longer than the drain timeout (10s) to come up.
	late := now.Add(11 * time.Second)
	if gone := next.expire(late, nil); len(gone) != 0 {
		t.Errorf("stand-ins removed at their drain's end while still the only backends up: %v", gone)
	}
	if !old1.persisted() {
		t.Error("a backend the file dropped shows as a runtime change")
	}
	fresh.up = true
	if stand := ns.standIns(); stand != nil || old1.share(stand) != 0 {
		t.Errorf("with the new backend up: stand-ins %v", stand)
	}
	if gone := next.expire(late.Add(5*time.Second), nil); len(gone) != 0 {
		t.Errorf("former stand-ins removed before a drain from when they stopped standing in: %v", gone)
	}
	if gone := next.expire(late.Add(5*time.Second), func(*service, *backend) bool { return true }); len(gone["web"]) != 2 {
		t.Errorf("the old backends did not go once idle: %v", gone)
	}

	// An API removal of the last backend up is no stand-in.
	m, s = loaded(t, twoBackends)
	s.find("10.0.0.2:80").up = false
	m.remove(s.find("10.0.0.1:80"), now)
	if stand := s.standIns(); stand != nil || s.find("10.0.0.1:80").persisted() {
		t.Errorf("API removal: stand-ins %v, persisted %v", stand, s.find("10.0.0.1:80").persisted())
	}
}

// TestRecentlyHealthyLeavesOutTheNeverChecked: failing open never takes a
// backend that has not passed a first check.
func TestRecentlyHealthyLeavesOutTheNeverChecked(t *testing.T) {
	long := time.Now().Add(-time.Hour)
	s := &service{backends: []*backend{
		{name: "10.0.0.1", addr: netip.MustParseAddr("10.0.0.1"), conf: config.Backend{Weight: 1}, lastUp: long},
		{name: "10.0.0.2", addr: netip.MustParseAddr("10.0.0.2"), conf: config.Backend{Weight: 1}, src: fromDNS},
	}}
	got := recentlyHealthy(s, time.Now().Add(-time.Minute))
	if len(got) != 1 || !got[netip.MustParseAddr("10.0.0.1")] {
		t.Errorf("fail-open set %v, want the once-healthy 10.0.0.1 only", got)
	}
	s.backends = s.backends[1:]
	if got := recentlyHealthy(s, time.Now().Add(-time.Minute)); len(got) != 0 {
		t.Errorf("fail-open set %v with only a never-checked backend, want none", got)
	}
}

// TestModelProvenCarriesOver: what BGP counts as proven (a passed check,
// or serving unchecked) survives a reload that adds checks and a rename;
// a start's assumption proves nothing.
func TestModelProvenCarriesOver(t *testing.T) {
	parse := func(name, check string) *config.Config {
		cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`services:
  - name: %s
    layer: 4
    vip: 10.0.0.100
    port: 80
    backends: [{address: 10.0.0.11}, {address: 10.0.0.12}]
%s`, name, check)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	const hc = "    health_check: {type: tcp}\n"
	now := time.Now()
	m := newModel().reloaded(parse("api", hc), true, noPrior, now)
	for _, b := range m.services["api"].backends {
		if !b.up || b.proven || b.judged {
			t.Errorf("%s at start: up %v proven %v judged %v, want up by assumption only", b.name, b.up, b.proven, b.judged)
		}
	}
	m = newModel().reloaded(parse("api", ""), true, noPrior, now)
	m = m.reloaded(parse("api", hc), false, noPrior, now)
	m.services["api"].backends[1].up = false // a check said so since
	m = m.reloaded(parse("api-v2", hc), false, noPrior, now)
	s := m.services["api-v2"]
	if b := s.backends[0]; !b.proven {
		t.Errorf("%s served unchecked, then checks came and a rename: not proven", b.name)
	}
	if b := s.find("10.0.0.12"); b.up {
		t.Errorf("%s: up after the rename, want its down carried over", b.name)
	}
}

// renameYAML is services on 10.0.0.100, each "name:port", checked, on
// backends 10.0.0.11 and 10.0.0.12 (a service on :82 on 10.0.0.13).
func renameYAML(t *testing.T, services ...string) *config.Config {
	t.Helper()
	var y strings.Builder
	y.WriteString("services:\n")
	for _, sp := range services {
		name, port, _ := strings.Cut(sp, ":")
		backends := "{address: 10.0.0.11}, {address: 10.0.0.12}"
		if port == "82" {
			backends = "{address: 10.0.0.13}"
		}
		fmt.Fprintf(&y, "  - {name: %s, layer: 4, vip: 10.0.0.100, port: %s, backends: [%s], health_check: {type: tcp}}\n", name, port, backends)
	}
	cfg, err := config.Parse("test.yaml", []byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// renameCases are reloads that give a running L4 service's name to another
// service: the rename is to be recognised by VIP, port and protocol.
var renameCases = []struct {
	name string
	to   []string
	// renamed: the name each port's service has after the reload.
	renamed map[string]string
}{
	{"rename-and-reuse-the-old-name", []string{"api-v1:80", "web:81", "api:82"}, map[string]string{"80": "api-v1", "81": "web"}},
	{"swap-two-names", []string{"web:80", "api:81"}, map[string]string{"80": "web", "81": "api"}},
}

// renameStart is the running model of renameCases: api on :80 with
// 10.0.0.11 down, web on :81 with 10.0.0.12 down, every other backend
// proven by a passed check.
func renameStart(t *testing.T) *model {
	t.Helper()
	m := newModel().reloaded(renameYAML(t, "api:80", "web:81"), true, noPrior, time.Now())
	for name, down := range map[string]string{"api": "10.0.0.11", "web": "10.0.0.12"} {
		for _, b := range m.services[name].backends {
			b.judged, b.proven = true, b.name != down
			if b.name == down {
				b.up, b.lastCheck = false, "connection refused on "+name
			}
		}
	}
	return m
}

// TestModelRenameOntoAUsedName: a reload that renames an L4 service and
// gives its old name to another service, or swaps two services' names,
// keeps each service's backends' health by VIP, port and protocol; the
// service that takes a name afresh starts as a new one. Both were rebuilt
// (matched by name first): health reset, and every flow re-selected.
func TestModelRenameOntoAUsedName(t *testing.T) {
	for _, tc := range renameCases {
		t.Run(tc.name, func(t *testing.T) {
			m := renameStart(t)
			wasAt := map[string]*service{"80": m.services["api"], "81": m.services["web"]}
			next := m.reloaded(renameYAML(t, tc.to...), false, noPrior, time.Now())
			for port, name := range tc.renamed {
				s, was := next.services[name], wasAt[port]
				for _, old := range was.backends {
					b := s.find(old.name)
					if b == nil || b.removing() || b.up != old.up || b.lastCheck != old.lastCheck || b.proven != old.proven || b.judged != old.judged {
						t.Errorf(":%s now %s, backend %s: %+v, want up %v (%q), proven %v as it was", port, name, old.name, b, old.up, old.lastCheck, old.proven)
					}
				}
			}
			if s := next.services["api"]; s.cfg.Port == 82 {
				if b := s.find("10.0.0.13"); b == nil || b.up || b.proven {
					t.Errorf("the new service that took the name api: %+v, want its backend down until its first check", b)
				}
			}
			moved := m.movedNames(next)
			want := []string{"api"}
			if tc.name == "swap-two-names" {
				want = []string{"web", "api"}
			}
			if fmt.Sprint(moved) != fmt.Sprint(want) {
				t.Errorf("names given to another service: %v, want %v", moved, want)
			}
		})
	}
}

// TestL4ProjectorRenameOntoAUsedName: the kernel side of the same reloads.
// Each VIP, port and protocol keeps its service id and its backends' ids
// and generations (established flows keep their backends), whatever
// name it has now; BGP hears each name's new state and forgets none that
// is still in use.
func TestL4ProjectorRenameOntoAUsedName(t *testing.T) {
	privileged.Require(t)
	for _, tc := range renameCases {
		t.Run(tc.name, func(t *testing.T) {
			env := lbtest.New(t)
			p := newL4Projector(slog.New(slog.DiscardHandler), env.Maps, newIDs())
			m := renameStart(t)
			if err := p.reconcile(m); err != nil {
				t.Fatal(err)
			}
			// A backend's id and generation are what a flow-table entry
			// names: another generation, and its flows re-select.
			type ids struct {
				svc           uint32
				backends, gen [2]uint32
			}
			at := func(name string) ids {
				var x ids
				x.svc, _ = p.serviceID(name)
				for i := range 2 {
					x.backends[i] = p.backendID(name, lbtest.Backend4(i+1))
					if x.backends[i] != 0 {
						g, err := env.Maps.BackendGen(x.backends[i])
						if err != nil {
							t.Fatal(err)
						}
						x.gen[i] = g
					}
				}
				return x
			}
			before := map[string]ids{"80": at("api"), "81": at("web")}
			synced := map[string]uint16{}
			var forgotten []string
			p.synced = func(s *service, _ bool) { synced[s.cfg.Name] = uint16(s.cfg.Port) }
			p.removed = func(name string) { forgotten = append(forgotten, name) }

			next := m.reloaded(renameYAML(t, tc.to...), false, p, time.Now())
			if err := p.reconcile(next); err != nil {
				t.Fatal(err)
			}
			for port, name := range tc.renamed {
				if got := at(name); got != before[port] || got.svc == 0 {
					t.Errorf(":%s now %s: kernel ids %+v, want %+v as before the reload", port, name, got, before[port])
				}
			}
			if s := next.services["api"]; s.cfg.Port == 82 {
				if got := at("api"); got.svc == 0 || got.svc == before["80"].svc || p.backendID("api", lbtest.Backend4(3)) == 0 {
					t.Errorf("the new api on :82: service id %d (api on :80 had %d), backend id %d; want a service of its own",
						got.svc, before["80"].svc, p.backendID("api", lbtest.Backend4(3)))
				}
			}
			for _, name := range next.order {
				if synced[name] != uint16(next.services[name].cfg.Port) {
					t.Errorf("BGP heard %s last on :%d, want :%d", name, synced[name], next.services[name].cfg.Port)
				}
			}
			if len(forgotten) != 0 {
				t.Errorf("BGP forgot %v, names still in use", forgotten)
			}
		})
	}
}
