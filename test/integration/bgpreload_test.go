//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
)

// TestBGPReloadsKeepTheVIP: reloads that change how a service's backends
// are known, while the data plane keeps serving, leave its VIP with the
// router at every moment. Every node gets the same reload at once, so a
// withdrawal on each would leave the router no next hop:
//   - a reload that replaces every backend by one still booting (the
//     dropped ones stand in until it is up),
//   - a reload that gives a running service its first health check (a
//     slow one: its backends served unchecked, and stay proven),
//   - a rename (same VIP, port and protocol: the kernel keeps its state).
func TestBGPReloadsKeepTheVIP(t *testing.T) {
	l := newBGPLab(t)
	both := []string{l.nodes[0].addr, l.nodes[1].addr}
	l.waitHops(t, both...)
	const fast = `{type: http, port: 8080, path: /health, interval: 200ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2, via: address}`
	const slow = `{type: http, port: 8080, path: /health, interval: 5s, timeout: 2s, healthy_threshold: 2, unhealthy_threshold: 3, via: address}`
	svc := func(name, check string, backends ...string) string {
		s := fmt.Sprintf("  - name: %s\n    layer: 4\n    vip: %s\n    port: 80\n    forwarding: ipip\n    backends: [{address: %s}]\n",
			name, vip4, strings.Join(backends, "}, {address: "))
		if check != "" {
			s += "    health_check: " + check + "\n"
		}
		return s
	}
	reloadAll := func(services string) {
		t.Helper()
		for _, n := range l.nodes {
			if err := os.WriteFile(n.cfgPath, []byte(nodeConfigWith(n.pinDir, filepath.Join(filepath.Dir(n.cfgPath), "bgp.pw"), services)), 0o644); err != nil {
				t.Fatal(err)
			}
			n.call(t, "POST", api.PathReload, nil, 200, nil)
		}
	}
	allUp := func(name string) bool {
		for _, n := range l.nodes {
			s := n.service(t, name)
			for _, b := range s.Backends {
				if !b.Healthy || b.Draining {
					return false
				}
			}
			if len(s.Backends) == 0 {
				return false
			}
		}
		return true
	}
	// keeps runs a reload and fails if the router ever had no route to
	// the VIP until settle passed.
	keeps := func(what string, reload func(), settle func()) {
		t.Helper()
		m := watchHops(l, t, vip4.String())
		reload()
		settle()
		if ev := m.end(); slices.ContainsFunc(ev, func(e hopEvent) bool { return len(e.hops) == 0 }) {
			t.Errorf("%s: the router lost every next hop of %s:\n%s", what, vip4, formatHops(ev))
		}
		l.waitHops(t, both...)
	}

	base := svc("api", fast, "10.0.0.11", "10.0.0.12", "10.0.0.13")
	reloadAll(base)
	waitFor(t, "api's backends up on both nodes", 10*time.Second, func() bool { return allUp("api") })
	l.waitHops(t, both...)

	keeps("a reload replacing every backend by one still booting", func() {
		l.servers[3].healthy.Store(false)
		reloadAll(svc("api", fast, "10.0.0.14"))
	}, func() {
		time.Sleep(2 * time.Second)
		l.servers[3].healthy.Store(true)
		waitFor(t, "10.0.0.14 up on both nodes", 10*time.Second, func() bool { return allUp("api") })
	})

	reloadAll(svc("api", "", "10.0.0.11", "10.0.0.12", "10.0.0.13"))
	waitFor(t, "the unchecked backends back", 10*time.Second, func() bool { return allUp("api") })
	l.waitHops(t, both...)
	keeps("a reload adding a first health check", func() {
		reloadAll(svc("api", slow, "10.0.0.11", "10.0.0.12", "10.0.0.13"))
	}, func() { time.Sleep(3 * time.Second) })

	keeps("a rename", func() {
		reloadAll(svc("api-v2", slow, "10.0.0.11", "10.0.0.12", "10.0.0.13"))
	}, func() { time.Sleep(3 * time.Second) })
	for _, n := range l.nodes {
		if s := n.service(t, "api-v2"); len(s.Backends) != 3 {
			t.Errorf("%s: api-v2 after the rename: %+v", n.name, s)
		}
	}

	// Two services on two VIPs swap names: both VIPs are wanted before
	// and after, so no withdrawal may reach the router, not even one
	// quickly undone (told of one service at a time, the speaker withdrew
	// the VIP the first one left until the second took it).
	other := strings.ReplaceAll(svc("other", slow, "10.0.0.11", "10.0.0.12", "10.0.0.13"), vip4.String(), idleVIP)
	reloadAll(svc("api-v2", slow, "10.0.0.11", "10.0.0.12", "10.0.0.13") + other)
	waitFor(t, "both VIPs announced by both nodes", 10*time.Second, func() bool {
		return slices.Equal(l.nextHops(t, idleVIP), both) && slices.Equal(l.nextHops(t, vip4.String()), both)
	})
	before := l.birdWithdraws(t)
	swapped := strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(
		svc("api-v2", slow, "10.0.0.11", "10.0.0.12", "10.0.0.13")+other, "name: api-v2", "name: tmp"), "name: other", "name: api-v2"), "name: tmp", "name: other")
	reloadAll(swapped)
	time.Sleep(time.Second)
	if after := l.birdWithdraws(t); after != before {
		t.Errorf("a reload swapping two services' names across their VIPs: the router received %d withdrawals", after-before)
	}
	for _, n := range l.nodes {
		if s := n.service(t, "other"); s.Address != vip4.String()+":80" {
			t.Errorf("%s: other after the swap: %s, want %s:80", n.name, s.Address, vip4)
		}
	}
}

// birdWithdraws is the number of withdrawals the router received from
// every node over IPv4 (bird's import withdraws, received column).
func (l *bgpLab) birdWithdraws(t *testing.T) int {
	t.Helper()
	total := 0
	for _, n := range l.nodes {
		out := l.birdc(t, "show", "protocols", "all", n.name)
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "Import" && f[1] == "withdraws:" {
				v, err := strconv.Atoi(f[2])
				if err != nil {
					t.Fatalf("birdc: %q: %v", line, err)
				}
				total += v
				found = true
			}
		}
		if !found {
			t.Fatalf("birdc show protocols all %s: no import withdraws line:\n%s", n.name, out)
		}
	}
	return total
}

type hopEvent struct {
	at   time.Duration
	hops []string
}

// hopWatch records every change of the router's next hops to a VIP,
// polled every 10 ms.
type hopWatch struct {
	mu     sync.Mutex
	events []hopEvent
	stop   chan struct{}
	done   chan struct{}
}

func watchHops(l *bgpLab, t *testing.T, vip string) *hopWatch {
	m := &hopWatch{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(m.done)
		var last []string
		for first := true; ; first = false {
			select {
			case <-m.stop:
				return
			default:
			}
			if h := l.nextHops(t, vip); first || !slices.Equal(h, last) {
				m.mu.Lock()
				m.events = append(m.events, hopEvent{time.Since(start), h})
				m.mu.Unlock()
				last = h
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return m
}

func (m *hopWatch) end() []hopEvent {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

func formatHops(ev []hopEvent) string {
	var b strings.Builder
	for _, e := range ev {
		fmt.Fprintf(&b, "  +%v %v\n", e.at.Round(time.Millisecond), e.hops)
	}
	return b.String()
}
