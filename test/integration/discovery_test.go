//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xlbproject/xlb/api"
)

// zoneServer is a DNS server on loopback (UDP and TCP) answering A
// queries for one name from a list the test changes.
type zoneServer struct {
	name string
	addr string
	mu   sync.Mutex
	ips  []string
	nx   bool
	srvs []*dns.Server
}

func startZone(t *testing.T, name string) *zoneServer {
	t.Helper()
	return startZoneAt(t, name, "127.0.0.1:0")
}

func zoneHandler(z *zoneServer) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		z.mu.Lock()
		defer z.mu.Unlock()
		switch q := req.Question[0]; {
		case z.nx || q.Name != z.name:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			for _, ip := range z.ips {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.ParseIP(ip)})
			}
		}
		_ = w.WriteMsg(m)
	})
}

func (z *zoneServer) set(ips ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.ips, z.nx = ips, false
}

func (z *zoneServer) setNX() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.nx = true
}

func (z *zoneServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range z.srvs {
		_ = s.ShutdownContext(ctx)
	}
	z.srvs = nil
}

// TestDaemonDiscoveryL7 runs xlbd with a layer 7 service that follows a
// DNS name only: while a client sends requests, the name scales from 2 to
// 6 addresses and back (0 failed requests, new backends serve after their
// first passing check and one that fails its checks never does, removed
// ones drain and go); the resolver stopped
// keeps the set; one NXDOMAIN changes nothing, two remove every backend.
func TestDaemonDiscoveryL7(t *testing.T) {
	buildBinaries(t)
	// Six backends on one port, 127.0.0.11..16 (all of 127/8 is local);
	// b6 fails its health checks.
	var port int
	var lns []net.Listener
	for attempt := 0; attempt < 20 && len(lns) < 6; attempt++ {
		for _, ln := range lns {
			ln.Close()
		}
		lns = nil
		ln, err := net.Listen("tcp", "127.0.0.11:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		lns = append(lns, ln)
		for i := 12; i <= 16; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, port))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
	}
	if len(lns) < 6 {
		t.Fatal("no port free on 127.0.0.11..16")
	}
	ip := func(i int) string { return fmt.Sprintf("127.0.0.%d", 10+i) }
	addr := func(i int) string { return net.JoinHostPort(ip(i), strconv.Itoa(port)) }
	for i, ln := range lns {
		name := fmt.Sprintf("b%d", i+1)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" {
				if name == "b6" {
					http.Error(w, "sick", 503)
					return
				}
				// A slow check keeps a backend that waits for its
				// first one down long enough to be seen.
				time.Sleep(50 * time.Millisecond)
			}
			io.WriteString(w, name)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}

	zone := startZone(t, "app.xlb.test")
	zone.set(ip(1), ip(2))
	listen, admin := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`admin: {listen: %q}
l7: {drain_timeout: 1s}
services:
  - name: web
    layer: 7
    listen: %q
    discover: {dns: app.xlb.test, port: %d, refresh: 1s, resolvers: [%q]}
    health_check: {type: http, path: /health, interval: 200ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2}
`, admin, listen, port, zone.addr)
	path := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startXlbd(t, path, admin, "-log-level", "debug")
	hc := &http.Client{Timeout: 5 * time.Second}
	status := func() api.Service {
		t.Helper()
		resp, err := hc.Get("http://" + admin + "/api/v1/services/web")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s api.Service
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// serving lists the backends that are healthy and not draining.
	serving := func() map[string]bool {
		out := map[string]bool{}
		for _, b := range status().Backends {
			if b.Healthy && !b.Draining {
				out[b.Address] = true
			}
		}
		return out
	}
	// The first answer after the start brings its backends up at once, as
	// configured backends at a start: no 503 until their first checks.
	var listed api.Service
	waitFor(t, "the first answer's two addresses listed", 5*time.Second, func() bool { listed = status(); return len(listed.Backends) == 2 })
	for _, b := range listed.Backends {
		if !b.Healthy {
			t.Errorf("the first answer's %s is down when listed: %+v, want up like a configured backend at start", b.Address, b)
		}
	}
	waitFor(t, "the two first addresses serving", 5*time.Second, func() bool { return len(serving()) == 2 })
	for _, b := range status().Backends {
		if b.Source != "dns" {
			t.Errorf("discovered backend %s has source %q, want dns", b.Address, b.Source)
		}
	}

	// A client that never stops, counting answers per backend.
	var (
		mu       sync.Mutex
		first    = map[string]time.Time{}
		count    = map[string]int{}
		failures []string
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := hc.Get("http://" + listen + "/")
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case resp.StatusCode != 200:
					failures = append(failures, fmt.Sprintf("%d %s", resp.StatusCode, body))
				default:
					b := string(body)
					count[b]++
					if _, ok := first[b]; !ok {
						first[b] = time.Now()
					}
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	stopClient := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopClient()
	counts := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range count {
			out[k] = v
		}
		return out
	}

	// Scale up: 2 -> 6, one of them sick.
	changed := time.Now()
	zone.set(ip(1), ip(2), ip(3), ip(4), ip(5), ip(6))
	waitFor(t, "b3..b5 serving requests", 10*time.Second, func() bool {
		c := counts()
		return c["b3"] > 0 && c["b4"] > 0 && c["b5"] > 0
	})
	mu.Lock()
	for _, b := range []string{"b3", "b4", "b5"} {
		t.Logf("scale up: %s got its first request %s after the DNS change", b, first[b].Sub(changed).Round(time.Millisecond))
	}
	mu.Unlock()
	if n := len(status().Backends); n != 6 {
		t.Errorf("%d backends after scaling up, want 6", n)
	}
	if c := counts(); c["b6"] != 0 {
		t.Errorf("b6, which never passed a check, served %d requests", c["b6"])
	}

	// Scale down: 6 -> 2. The removed addresses drain (1s) and go.
	changed = time.Now()
	zone.set(ip(1), ip(2))
	gone := waitFor(t, "b3..b6 removed", 10*time.Second, func() bool { return len(status().Backends) == 2 })
	t.Logf("scale down: removed from the service %s after the DNS change (refresh 1s, drain 1s)", gone.Round(time.Millisecond))
	before := counts()
	time.Sleep(500 * time.Millisecond)
	after := counts()
	for _, b := range []string{"b3", "b4", "b5", "b6"} {
		if after[b] != before[b] {
			t.Errorf("%s served %d requests after its removal", b, after[b]-before[b])
		}
	}
	if after["b1"] == before["b1"] || after["b2"] == before["b2"] {
		t.Errorf("b1 and b2 do not serve: %v -> %v", before, after)
	}

	// The resolver stopped: the last good set keeps serving.
	zone.stop()
	metrics := func() string {
		resp, err := hc.Get("http://" + admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	failed := regexp.MustCompile(`xlb_discovery_lookups_total\{result="(error|timeout)",service="web"\} [1-9]`)
	waitFor(t, "failed lookups counted", 5*time.Second, func() bool { return failed.MatchString(metrics()) })
	if s := serving(); len(s) != 2 || !s[addr(1)] || !s[addr(2)] {
		t.Errorf("with the resolver stopped the service has %v, want %s and %s", s, addr(1), addr(2))
	}

	stopClient()
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("%d failed requests while scaling, first: %s", len(failures), failures[0])
	}
	t.Logf("requests per backend: %v", count)
	mu.Unlock()
	m := metrics()
	for _, want := range []string{`xlb_discovery_backends{service="web"} 2`, `xlb_discovery_lookups_total{result="ok",service="web"}`} {
		if !bytes.Contains([]byte(m), []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// NXDOMAIN: once changes nothing, twice removes every backend.
	zone = startZoneAt(t, "app.xlb.test", zone.addr)
	zone.set(ip(1), ip(2))
	zone.setNX()
	nx := regexp.MustCompile(`xlb_discovery_lookups_total\{result="nxdomain",service="web"\} (\d+)`)
	nxCount := func() int {
		if m := nx.FindStringSubmatch(metrics()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return 0
	}
	waitFor(t, "one NXDOMAIN", 5*time.Second, func() bool { return nxCount() >= 1 })
	if n := len(status().Backends); n != 2 && nxCount() == 1 {
		t.Errorf("after one NXDOMAIN the service has %d backends, want 2", n)
	}
	waitFor(t, "every backend removed after two NXDOMAINs", 5*time.Second, func() bool { return len(status().Backends) == 0 })
	if n := nxCount(); n < 2 {
		t.Errorf("backends removed after %d NXDOMAIN", n)
	}
}

// startZoneAt starts a zone server again on the address a stopped one had.
func startZoneAt(t *testing.T, name, addr string) *zoneServer {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		z, err := tryZoneAt(name, addr)
		if err == nil {
			t.Cleanup(z.stop)
			return z
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart the zone server on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tryZoneAt(name, addr string) (*zoneServer, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	return serveZone(name, pc, ln), nil
}

// serveZone serves name's zone on pc (UDP) and ln (TCP), one address.
func serveZone(name string, pc net.PacketConn, ln net.Listener) *zoneServer {
	z := &zoneServer{name: dns.Fqdn(name), addr: pc.LocalAddr().String()}
	h := zoneHandler(z)
	z.srvs = []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
	for _, s := range z.srvs {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	return z
}

// TestDaemonDiscoveryL4 hands a layer 4 service over from its file's
// backends to a DNS name and scales it while connections are made: 0
// failed connections, a new backend takes its share after its first
// passing check, a removed one keeps its established connection while it
// drains and gets no new ones; two NXDOMAINs in a row empty the service.
func TestDaemonDiscoveryL4(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	pc, err := l.lb.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := l.lb.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	zone := serveZone("app.xlb.test", pc, ln)
	t.Cleanup(zone.stop)
	zone.set("10.0.0.11", "10.0.0.12")
	cfg := fmt.Sprintf(`admin:
  listen: %s
xdp:
  interfaces: [eth0]
  mode: native
  pin_path: %s/xlb
l7:
  drain_timeout: 2s
services:
  - name: api
    layer: 4
    vip: %s
    port: 80
    forwarding: ipip
    backends: []
    discover: {dns: app.xlb.test, refresh: 1s, resolvers: [%q]}
    health_check: {type: http, port: 8080, path: /health, interval: 200ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2}
`, adminAddr, l.pinDir, vip4, zone.addr)
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	backends := func() map[string]api.Backend {
		out := map[string]api.Backend{}
		for _, s := range l.services(t).Services {
			for _, b := range s.Backends {
				out[b.Address] = b
			}
		}
		return out
	}
	// 10.0.0.11 and .12 pass from the file to DNS without a drain; .13,
	// only in the file, drains (2s) and goes.
	waitFor(t, "10.0.0.13 removed", 6*time.Second, func() bool { return len(backends()) == 2 })
	for addr, b := range backends() {
		if b.Source != "dns" || !b.Healthy || b.Draining {
			t.Errorf("backend %s: %+v, want a healthy dns backend", addr, b)
		}
	}
	if c := l.shares(t, 400); c["b3"] != 0 || c["b1"] == 0 || c["b2"] == 0 {
		t.Errorf("connections with 10.0.0.11 and .12 discovered: %v", c)
	}

	// Scale up: .13 joins, down until its first passing check.
	zone.set("10.0.0.11", "10.0.0.12", "10.0.0.13")
	took := waitFor(t, "10.0.0.13 discovered and healthy", 5*time.Second, func() bool {
		b, ok := backends()["10.0.0.13"]
		return ok && b.Healthy
	})
	t.Logf("scale up: 10.0.0.13 healthy in the service %s after the DNS change", took.Round(time.Millisecond))
	checkShares(t, l.shares(t, 3000), []uint32{1, 1, 1})

	// Scale down: the established connection's backend leaves the answer.
	lc := l.openLong(t)
	lc.echo(t, "before")
	addrOf := map[string]string{"b1": "10.0.0.11", "b2": "10.0.0.12", "b3": "10.0.0.13"}
	gone := addrOf[lc.backend]
	var left []string
	for _, a := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} {
		if a != gone {
			left = append(left, a)
		}
	}
	zone.set(left...)
	waitFor(t, gone+" draining", 3*time.Second, func() bool { return backends()[gone].Draining })
	lc.echo(t, "while draining")
	if c := l.shares(t, 400); c[lc.backend] != 0 {
		t.Errorf("draining %s got %d new connections: %v", lc.backend, c[lc.backend], c)
	}
	waitFor(t, gone+" removed", 5*time.Second, func() bool { _, ok := backends()[gone]; return !ok })

	m := string(l.call(t, "GET", api.PathMetrics, nil, 200, nil))
	for _, want := range []string{`xlb_discovery_backends{service="api"} 2`, `xlb_discovery_lookups_total{result="ok",service="api"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A restart adopts the pinned maps: the backends they hold that the
	// name still gives are the name's again, healthy, with their flows,
	// not drained away at drain_timeout (2s).
	lc = l.openLong(t)
	lc.echo(t, "before the restart")
	l.stopDaemon(t)
	l.startDaemon(t)
	// Within a second: the first answer, well before the 2s drain would
	// have ended.
	waitFor(t, "the name's backends back as dns after the restart", time.Second, func() bool {
		bs := backends()
		for _, a := range left {
			if b, ok := bs[a]; !ok || b.Source != "dns" || b.Draining || !b.Healthy {
				return false
			}
		}
		return len(bs) == len(left)
	})
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) { // past drain_timeout
		bs := backends()
		for _, a := range left {
			if b, ok := bs[a]; !ok || b.Source != "dns" || b.Draining || (a == addrOf[lc.backend] && b.Active == 0) {
				t.Fatalf("%s after the restart: %+v (listed %v), want kept as dns, not draining, with its flows", a, b, ok)
			}
		}
	}
	lc.echo(t, "after the restart and drain_timeout")

	// A restart while the name does not answer (its DNS server down)
	// serves on with the set the previous xlbd left, past drain_timeout:
	// a failed lookup keeps the last good set, and a restart is no reason
	// to drop it.
	zoneAddr := zone.addr
	zone.stop()
	l.stopDaemon(t)
	l.startDaemon(t)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) { // past drain_timeout
		bs := backends()
		for _, a := range left {
			if b, ok := bs[a]; !ok || b.Source != "dns" || b.Draining {
				t.Fatalf("%s after a restart with DNS down: %+v (listed %v), want kept as dns, not draining", a, b, ok)
			}
		}
	}
	if c := l.shares(t, 200); len(c) != len(left) {
		t.Errorf("new connections after a restart with DNS down: %v, want both of the name's last backends", c)
	}
	lc.echo(t, "after a restart with DNS down")
	if m := string(l.call(t, "GET", api.PathMetrics, nil, 200, nil)); !strings.Contains(m, `xlb_discovery_lookups_total{result="error",service="api"}`) {
		t.Errorf("no failed lookup counted while the DNS server was down")
	}
	pc, err = l.lb.ListenPacket("udp", zoneAddr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err = l.lb.Listen("tcp", zoneAddr)
	if err != nil {
		t.Fatal(err)
	}
	zone = serveZone("app.xlb.test", pc, ln)
	t.Cleanup(zone.stop)
	zone.set(left...)

	// Two NXDOMAINs in a row empty the service; it stays listed.
	zone.setNX()
	waitFor(t, "every backend removed", 8*time.Second, func() bool { return len(backends()) == 0 })
	found := false
	for _, s := range l.services(t).Services {
		found = found || s.Name == "api"
	}
	if !found {
		t.Errorf("service api not listed once it has no backends")
	}
}
