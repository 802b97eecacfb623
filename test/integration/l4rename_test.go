//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
)

// serveOnPort makes every backend of l also serve on VIP:port as it does
// on VIP:80: its name, then an echo of each line.
func serveOnPort(t *testing.T, l *dlab, port int) {
	t.Helper()
	for _, s := range l.servers {
		ln, err := s.host.Listen("tcp", fmt.Sprintf("%s:%d", vip4, port))
		if err != nil {
			t.Fatalf("%s: listen on :%d: %v", s.name, port, err)
		}
		var (
			mu    sync.Mutex
			conns []net.Conn
		)
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go func() {
					defer c.Close()
					fmt.Fprintf(c, "%s\n", s.name)
					io.Copy(c, c)
				}()
			}
		}()
	}
}

// openLongOn is openLong to VIP:port.
func (l *dlab) openLongOn(t *testing.T, port int) *longConn {
	t.Helper()
	var c net.Conn
	err := l.client.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", vip4, port), 2*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(3 * time.Second))
	name, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("long connection to :%d: %v", port, err)
	}
	return &longConn{c: c, r: r, backend: strings.TrimSpace(name)}
}

func (l *dlab) flowReselects(t *testing.T) uint64 {
	t.Helper()
	var st struct {
		L4 []api.Stat `json:"l4"`
	}
	l.call(t, "GET", api.PathStats, nil, 200, &st)
	for _, s := range st.L4 {
		if s.Name == "flow_reselect" {
			return s.Packets
		}
	}
	t.Fatal("no flow_reselect counter")
	return 0
}

// TestDaemonReloadSwappingTwoServiceNamesKeepsTheirFlows: two services on
// one VIP (:80 and :81) swap their names in a reload. Each is its VIP,
// port and protocol, so each keeps its kernel state and its backends'
// health under its new name: every established connection on both ports
// keeps its backend. Both were rebuilt (matched by name): backends down
// until their first checks, every flow re-selected, and connections reset.
func TestDaemonReloadSwappingTwoServiceNamesKeepsTheirFlows(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	serveOnPort(t, l, 81)
	cfg := readFile(t, l.cfgPath)
	_, api80, _ := strings.Cut(cfg, "  - name: api\n")
	writeFile(t, l.cfgPath, cfg+"  - name: web\n"+strings.Replace(api80, "port: 80\n", "port: 81\n", 1))
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	allUp := func(service string) bool {
		var s api.Service
		l.call(t, "GET", api.PathServices+"/"+service, nil, 200, &s)
		for _, b := range s.Backends {
			if !b.Healthy {
				return false
			}
		}
		return len(s.Backends) == 3
	}
	waitFor(t, "web's backends up", 10*time.Second, func() bool { return allUp("web") })
	waitFor(t, "every backend of api takes connections", 10*time.Second, func() bool { return len(l.shares(t, 30)) == 3 })

	conns := map[int][]*longConn{}
	for _, port := range []int{80, 81} {
		for range 12 {
			conns[port] = append(conns[port], l.openLongOn(t, port))
		}
	}
	before := l.flowReselects(t)

	swapped := strings.NewReplacer("  - name: api\n", "  - name: web\n", "  - name: web\n", "  - name: api\n").Replace(readFile(t, l.cfgPath))
	writeFile(t, l.cfgPath, swapped)
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	for _, want := range []struct{ name, address string }{{"api", vip4.String() + ":81"}, {"web", vip4.String() + ":80"}} {
		var s api.Service
		l.call(t, "GET", api.PathServices+"/"+want.name, nil, 200, &s)
		if s.Address != want.address {
			t.Fatalf("after the swap %s is at %s, want %s", want.name, s.Address, want.address)
		}
		for _, b := range s.Backends {
			if !b.Healthy {
				t.Errorf("after the swap backend %s of %s is down (%s), want its health carried over", b.Address, want.name, b.LastCheck)
			}
		}
	}
	for round := range 3 {
		for port, cs := range conns {
			for i, lc := range cs {
				lc.echo(t, fmt.Sprintf("after the swap, round %d, :%d #%d", round, port, i))
			}
		}
		time.Sleep(300 * time.Millisecond) // past a check interval: the checks agree
	}
	// The entries still name their backends' generations: not one of the
	// connections' packets had to choose again.
	if n := l.flowReselects(t) - before; n != 0 {
		t.Errorf("flow_reselect rose by %d across the swap, want 0", n)
	}
}

// TestDaemonRestartReportsABackendTheFileDroppedAsTheFiles: a backend the
// file listed and that the file given to the next xlbd no longer lists
// drains and goes, reported as the file's (source config, persisted), as
// after a reload; it was reported as an API addition that never happened.
// (An API addition stays one: TestRuntimeRestartDrainsAPIAddedL4Backend.)
func TestDaemonRestartReportsABackendTheFileDroppedAsTheFiles(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	waitFor(t, "every backend up", 10*time.Second, func() bool { return len(l.shares(t, 30)) == 3 })
	l.stopDaemon(t)
	l.writeConfig(t, "ipip", []string{"10.0.0.11: 1", "10.0.0.12: 1"}, "")
	l.startDaemon(t)
	if b := l.backend(t, "10.0.0.13"); b.Source != "config" || !b.Persisted || !b.Draining {
		t.Errorf("backend the file dropped across a restart: %+v, want source config, persisted, draining", b)
	}
}
