//go:build linux

package integration

import (
	"os"
	"strings"
	"testing"
	"time"
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
