//go:build linux

package integration

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
)

// TestDaemonHealthCheckViaVIP: with health_check.via: vip (the default), a
// backend that answers on its own address but lacks the VIP on lo is marked
// down by the check through the forwarding path, with a reason that names
// the likely cause; the others stay up. With via: address the same backend
// stays up (the old blind spot).
func TestDaemonHealthCheckViaVIP(t *testing.T) {
	for _, c := range []struct {
		forwarding, via string
		wantDown        bool
	}{
		{"ipip", "vip", true},
		{"dsr", "vip", true},
		{"ipip", "address", false},
	} {
		t.Run(c.forwarding+"-via-"+c.via, func(t *testing.T) {
			l := newDaemonLab(t, c.forwarding, "")
			if c.via != "vip" {
				raw := strings.Replace(readFile(t, l.cfgPath), "unhealthy_threshold: 2}", "unhealthy_threshold: 2, via: "+c.via+"}", 1)
				writeFile(t, l.cfgPath, raw)
				l.call(t, "POST", "/api/v1/reload", nil, 200, nil)
			}
			waitFor(t, "every backend up", 5*time.Second, func() bool {
				for _, a := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} {
					if !l.backend(t, a).Healthy {
						return false
					}
				}
				return true
			})
			l.backends[0].Run(t, "ip", "addr", "del", vip4.String()+"/32", "dev", "lo")
			if !c.wantDown {
				time.Sleep(2 * time.Second)
				if b := l.backend(t, "10.0.0.11"); !b.Healthy {
					t.Fatalf("via address: backend marked down (%s)", b.LastCheck)
				}
				return
			}
			waitFor(t, "backend without the VIP marked down", 5*time.Second, func() bool { return !l.backend(t, "10.0.0.11").Healthy })
			b := l.backend(t, "10.0.0.11")
			if !strings.Contains(b.LastCheck, "answers on 10.0.0.11:8080 but not on the VIP 10.0.0.100:8080") {
				t.Errorf("reason %q does not name the cause", b.LastCheck)
			}
			for _, a := range []string{"10.0.0.12", "10.0.0.13"} {
				if !l.backend(t, a).Healthy {
					t.Errorf("%s marked down too: %s", a, l.backend(t, a).LastCheck)
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDaemonHealthCheckViaVIPWithoutARoute: a VIP the balancer has no
// route to (off its subnets, only announced, no default route: SPEC's own
// example's shape) is still probed through the forwarding path, out of the
// interface that reaches the backend; correctly set-up backends stay up
// and one without the VIP is found.
func TestDaemonHealthCheckViaVIPWithoutARoute(t *testing.T) {
	for _, fwd := range []string{"ipip", "dsr"} {
		t.Run(fwd, func(t *testing.T) {
			l := newDaemonLab(t, fwd, "")
			const vip = "10.9.9.100"
			if out, err := exec.Command("ip", "netns", "exec", l.lb.Name, "ip", "route", "get", vip).CombinedOutput(); err == nil {
				t.Fatalf("the balancer has a route to %s, so this test proves nothing:\n%s", vip, out)
			}
			for _, b := range l.backends {
				b.AddAddr(t, "lo", vip+"/32")
				ln, err := b.Listen("tcp", vip+":8080")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			}
			writeFile(t, l.cfgPath, strings.Replace(readFile(t, l.cfgPath), "vip: "+vip4.String(), "vip: "+vip, 1))
			l.call(t, "POST", "/api/v1/reload", nil, 200, nil)
			// Up, and still up after several check intervals (200 ms,
			// unhealthy after 2 failures): a check that cannot reach the
			// VIP would have taken them down by then.
			allUp := func() bool {
				for _, a := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} {
					if !l.backend(t, a).Healthy {
						return false
					}
				}
				return true
			}
			waitFor(t, "every backend up through the unrouted VIP", 5*time.Second, allUp)
			for range 10 {
				time.Sleep(150 * time.Millisecond)
				if !allUp() {
					t.Fatalf("backends went down probed through the unrouted VIP: %s", l.backend(t, "10.0.0.12").LastCheck)
				}
			}
			l.backends[0].Run(t, "ip", "addr", "del", vip+"/32", "dev", "lo")
			waitFor(t, "backend without the VIP marked down", 5*time.Second, func() bool { return !l.backend(t, "10.0.0.11").Healthy })
			if b := l.backend(t, "10.0.0.11"); !strings.Contains(b.LastCheck, "but not on the VIP "+vip) {
				t.Errorf("reason %q does not name the cause", b.LastCheck)
			}
		})
	}
}

// TestDaemonLastCheckOfABackendNeverUp: a backend that starts down and
// never passes (added by the API, nothing answers there) still shows why in
// last_check, and the reason stays current: no transition ever reports it.
func TestDaemonLastCheckOfABackendNeverUp(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	l.call(t, "POST", api.PathServices+"/api/backends", api.AddBackend{Address: "10.0.0.99"}, 201, nil)
	waitFor(t, "a reason for the new backend", 5*time.Second, func() bool { return l.backend(t, "10.0.0.99").LastCheck != "" })
	if b := l.backend(t, "10.0.0.99"); b.Healthy || !strings.Contains(b.LastCheck, "consecutive failures") {
		t.Errorf("backend that never answered: healthy %v, last_check %q", b.Healthy, b.LastCheck)
	}
}

// TestDaemonHealthCheckViaVIPFindsARPAnswers: a DSR backend that answers
// ARP for the VIP (the VIP on lo with arp_ignore=0) is marked down by the
// check through the forwarding path, with a reason that says so: whoever
// on the segment asks for the VIP would send it the VIP's traffic past
// xlb, while the probe itself, steered to its MAC, finds it well. Set
// right again, it comes back.
func TestDaemonHealthCheckViaVIPFindsARPAnswers(t *testing.T) {
	l := newDaemonLab(t, "dsr", "")
	allUp := func() bool {
		for _, a := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} {
			if !l.backend(t, a).Healthy {
				return false
			}
		}
		return true
	}
	waitFor(t, "every backend up", 5*time.Second, allUp)
	l.backends[1].Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0")
	waitFor(t, "the backend answering ARP for the VIP marked down", 5*time.Second, func() bool { return !l.backend(t, "10.0.0.12").Healthy })
	if b := l.backend(t, "10.0.0.12"); !strings.Contains(b.LastCheck, "answers ARP for the VIP 10.0.0.100") || !strings.Contains(b.LastCheck, "arp_ignore=1") {
		t.Errorf("reason %q does not name the cause", b.LastCheck)
	}
	for _, a := range []string{"10.0.0.11", "10.0.0.13"} {
		if b := l.backend(t, a); !b.Healthy {
			t.Errorf("%s marked down too: %s", a, b.LastCheck)
		}
	}
	l.backends[1].Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
	waitFor(t, "the backend up again", 5*time.Second, allUp)
}
