//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/test/netns"
)

// bins holds xlbd and xlbctl, built once for the package.
var bins struct {
	once       sync.Once
	dir, err   string
	xlbd       string
	xlbctl     string
	buildError error
}

func buildBinaries(t *testing.T) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "xlb-bin-")
		if err != nil {
			bins.buildError = err
			return
		}
		bins.dir = dir
		flags, err := raceFlags()
		if err != nil {
			bins.buildError = err
			return
		}
		args := append(append([]string{"build"}, flags...), "-o", dir+"/", "github.com/xlbproject/xlb/cmd/xlbd", "github.com/xlbproject/xlb/cmd/xlbctl")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			bins.buildError = fmt.Errorf("go build: %v\n%s", err, out)
		}
		bins.xlbd, bins.xlbctl = filepath.Join(dir, "xlbd"), filepath.Join(dir, "xlbctl")
	})
	if bins.buildError != nil {
		t.Fatal(bins.buildError)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if raceReports() && code == 0 {
		code = 1
	}
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// backendServer is one backend: on VIP:80 it sends its name and a newline,
// then echoes lines (a long-lived connection shows which backend holds it);
// on its own address :8080 it answers health checks.
type backendServer struct {
	name    string
	host    *netns.Host
	healthy atomic.Bool
	mu      sync.Mutex
	lns     []net.Listener
	conns   map[net.Conn]bool
}

func (b *backendServer) start(t *testing.T, own string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns == nil {
		b.conns = map[net.Conn]bool{}
	}
	b.healthy.Store(true)
	for _, addr := range []string{vip4.String() + ":80", "[" + vip6.String() + "]:80"} {
		ln, err := b.host.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s: listen %s: %v", b.name, addr, err)
		}
		b.lns = append(b.lns, ln)
		go b.serveEcho(ln)
	}
	// The health endpoint answers on the backend's own address and on the
	// VIP (health_check.via: vip probes arrive there).
	for _, addr := range []string{own + ":8080", vip4.String() + ":8080"} {
		hln, err := b.host.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s: listen health %s: %v", b.name, addr, err)
		}
		b.lns = append(b.lns, hln)
		go http.Serve(hln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !b.healthy.Load() {
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		}))
	}
	t.Cleanup(b.kill)
}

func (b *backendServer) serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[c] = true
		b.mu.Unlock()
		go func() {
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			fmt.Fprintf(c, "%s\n", b.name)
			io.Copy(c, c)
		}()
	}
}

// kill is the backend process dying: listeners and connections close.
func (b *backendServer) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ln := range b.lns {
		ln.Close()
	}
	b.lns = nil
	for c := range b.conns {
		c.Close()
	}
}

// dlab is a lab run by the real xlbd.
type dlab struct {
	*lab
	servers []*backendServer
	cfgPath string
	pinDir  string
	xlbd    *exec.Cmd
	http    *http.Client
	token   string
}

const adminAddr = "127.0.0.1:9100"

func newDaemonLab(t *testing.T, forwarding string, extra string) *dlab {
	t.Helper()
	buildBinaries(t)
	l := &dlab{lab: newTopo(t, forwarding == "ipip")}
	for i, h := range l.backends {
		s := &backendServer{name: fmt.Sprintf("b%d", i+1), host: h}
		s.start(t, backendAddr4(i).String())
		l.servers = append(l.servers, s)
	}
	// Pins on a bpffs in the test's own mount namespace: xlbd runs under
	// `ip netns exec`, whose private mounts die with it.
	dir := t.TempDir()
	l.pinDir = filepath.Join(dir, "bpf")
	if err := os.Mkdir(l.pinDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", l.pinDir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		exec.Command(bins.xlbd, "-detach", "-config", l.cfgPath).Run()
		unix.Unmount(l.pinDir, unix.MNT_DETACH)
	})
	l.cfgPath = filepath.Join(dir, "xlb.yaml")
	l.writeConfig(t, forwarding, []string{"10.0.0.11: 1", "10.0.0.12: 1", "10.0.0.13: 2"}, extra)
	l.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.lb.Dial(network, addr, 2*time.Second)
		},
		DisableKeepAlives: true,
	}}
	l.startDaemon(t)
	return l
}

// writeConfig writes the daemon's config: one L4 service "api" on VIP:80.
// backends are "address: weight" strings.
func (l *dlab) writeConfig(t *testing.T, forwarding string, backends []string, extra string) {
	t.Helper()
	var bs strings.Builder
	for _, b := range backends {
		addr, w, _ := strings.Cut(b, ": ")
		fmt.Fprintf(&bs, "      - {address: %s, weight: %s}\n", addr, w)
	}
	cfg := fmt.Sprintf(`admin:
  listen: %s
%s
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
    protocol: tcp
    forwarding: %s
    backends:
%s    health_check: {type: http, port: 8080, path: /health, interval: 200ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2}
`, adminAddr, extra, l.pinDir, vip4, forwarding, bs.String())
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (l *dlab) startDaemon(t *testing.T) {
	t.Helper()
	l.xlbd = l.lb.Start(t, bins.xlbd, "-config", l.cfgPath, "-log-level", "debug")
	cmd := l.xlbd
	t.Cleanup(func() {
		// A clean stop (before the namespace's SIGKILL) lets xlbd release
		// its pin-path lock like an operator's SIGTERM would.
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := l.http.Get("http://" + adminAddr + api.PathHealthz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if l.xlbd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("xlbd did not become ready")
}

// stopDaemon sends SIGTERM and waits for xlbd to exit.
func (l *dlab) stopDaemon(t *testing.T) {
	t.Helper()
	if err := l.xlbd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.xlbd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("xlbd exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("xlbd did not exit after SIGTERM")
	}
}

func (l *dlab) services(t *testing.T) api.Services {
	t.Helper()
	var s api.Services
	l.call(t, "GET", api.PathServices, nil, 200, &s)
	return s
}

// call makes an admin API request and checks the status.
func (l *dlab) call(t *testing.T, method, path string, body any, want int, out any) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+adminAddr+path, rd)
	if l.token != "" {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := l.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return data
}

func (l *dlab) backend(t *testing.T, addr string) api.Backend {
	t.Helper()
	for _, s := range l.services(t).Services {
		for _, b := range s.Backends {
			if b.Address == addr {
				return b
			}
		}
	}
	t.Fatalf("no backend %s in the API", addr)
	return api.Backend{}
}

// waitFor polls cond until it holds or the timeout passes, returning how long it took.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
	return 0
}

// longConn is a connection held open through the balancer.
type longConn struct {
	c       net.Conn
	r       *bufio.Reader
	backend string
}

func (l *dlab) openLong(t *testing.T) *longConn {
	t.Helper()
	return l.openLongOn(t, 80)
}

// echo proves the connection still reaches the same backend process.
func (lc *longConn) echo(t *testing.T, msg string) {
	t.Helper()
	lc.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(lc.c, "%s\n", msg); err != nil {
		t.Fatalf("long connection to %s: write: %v", lc.backend, err)
	}
	got, err := lc.r.ReadString('\n')
	if err != nil || strings.TrimSpace(got) != msg {
		t.Fatalf("long connection to %s: echo %q, %v", lc.backend, got, err)
	}
}

// shares opens n connections and counts the first line each backend sends.
func (l *dlab) shares(t *testing.T, n int) map[string]int {
	t.Helper()
	return l.lab.connect(t, vip4.String()+":80", n, 4)
}

func TestDaemonWeightsAndStatus(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	counts := l.shares(t, 4000)
	checkShares(t, counts, []uint32{1, 1, 2})

	out, err := exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbctl, "status").CombinedOutput()
	if err != nil {
		t.Fatalf("xlbctl status: %v\n%s", err, out)
	}
	for _, want := range []string{"10.0.0.100:80", "10.0.0.11", "10.0.0.12", "10.0.0.13", "maglev", "ipip"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("xlbctl status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("xlbctl status:\n%s", out)
	// xlbctl maps -o json names fields as the API does, straight from the
	// pinned maps.
	out, err = exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbctl, "-o", "json", "maps", "-pin-path", l.pinDir+"/xlb").Output()
	var dump struct {
		Services []struct {
			Address, Protocol, Forwarding, Scheduler string
			RingSize                                 uint32 `json:"ring_size"`
		} `json:"services"`
		Backends []struct {
			Address string
			Up      bool
		} `json:"backends"`
		Flows []struct {
			Client, Service string
		} `json:"flows"`
		FlowsTotal int `json:"flows_total"`
	}
	if err != nil || json.Unmarshal(out, &dump) != nil || len(dump.Services) != 1 || dump.Services[0].Address != "10.0.0.100:80" ||
		dump.Services[0].Protocol != "tcp" || dump.Services[0].RingSize == 0 || len(dump.Backends) != 3 || !dump.Backends[0].Up ||
		dump.FlowsTotal == 0 || len(dump.Flows) == 0 || dump.Flows[0].Service != "10.0.0.100:80" {
		t.Errorf("xlbctl -o json maps: %v, %+v\n%s", err, dump, out)
	}
	metrics := l.call(t, "GET", api.PathMetrics, nil, 200, nil)
	for _, want := range []string{`xlb_l4_packets_total{backend="10.0.0.13",service="api"}`, `xlb_backend_up{backend="10.0.0.11",service="api"} 1`,
		"xlb_health_check_duration_seconds_bucket", `xlb_l4_dropped_total{reason="malformed"}`, `xlb_l4_new_flows_total`,
		// Families of what this config lacks (BGP, L7, DNS) are named all
		// the same, with their types, as SPEC lists them.
		"# TYPE xlb_bgp_peer_up gauge\n", "# TYPE xlb_bgp_announced gauge\n", "# TYPE xlb_l7_requests_total counter\n",
		"# TYPE xlb_l7_request_duration_seconds histogram\n", "# TYPE xlb_discovery_lookups_total counter\n"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestDaemonFailover kills a backend under a steady stream of new
// connections and measures the detection time and the failed connections.
func TestDaemonFailover(t *testing.T) {
	l := newDaemonLab(t, "dsr", "")
	type attempt struct {
		start time.Time
		ok    bool
	}
	var (
		stop     atomic.Bool
		mu       sync.Mutex
		attempts []attempt
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.client.Do(func() error {
			buf := make([]byte, 3)
			for !stop.Load() {
				start := time.Now()
				c, err := net.DialTimeout("tcp", vip4.String()+":80", time.Second)
				if err == nil {
					c.SetDeadline(time.Now().Add(time.Second))
					_, err = io.ReadFull(c, buf)
					c.Close()
				}
				mu.Lock()
				attempts = append(attempts, attempt{start, err == nil})
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
			return nil
		})
	}()
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	l.servers[1].kill()
	detect := waitFor(t, "b2 marked down", 5*time.Second, func() bool { return !l.backend(t, "10.0.0.12").Healthy })
	detected := killed.Add(detect)
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()
	// A connection counts on the side of detection where it started.
	var before, failedBefore, after, failedAfter int
	for _, a := range attempts {
		if a.start.Before(detected) {
			before++
			if !a.ok {
				failedBefore++
			}
		} else {
			after++
			if !a.ok {
				failedAfter++
			}
		}
	}
	t.Logf("failover: b2 killed, marked down after %v (interval 200ms x unhealthy_threshold 2); %d of %d connections started before detection failed, %d of %d after",
		detect.Round(time.Millisecond), failedBefore, before, failedAfter, after)
	if failedAfter != 0 {
		t.Errorf("%d connections started after the backend was marked down failed", failedAfter)
	}
	if limit := 2*200*time.Millisecond + 200*time.Millisecond + time.Second; detect > limit {
		t.Errorf("detection took %v, want within unhealthy_threshold x interval + one interval (+1s slack) = %v", detect, limit)
	}

	// It comes back after healthy_threshold passing checks.
	l.servers[1].start(t, backendAddr4(1).String())
	waitFor(t, "b2 up again", 5*time.Second, func() bool { return l.backend(t, "10.0.0.12").Healthy })
	counts := l.shares(t, 400)
	if counts["b2"] == 0 {
		t.Errorf("b2 recovered but gets no connections: %v", counts)
	}
}

func TestDaemonDrainKeepsConnection(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	lc := l.openLong(t)
	addr := map[string]string{"b1": "10.0.0.11", "b2": "10.0.0.12", "b3": "10.0.0.13"}[lc.backend]
	var ch api.Change
	l.call(t, "PATCH", api.PathServices+"/api/backends/"+addr, api.PatchBackend{Drain: ptr(true)}, 200, &ch)
	if ch.Persisted {
		t.Errorf("a drain through the API reported as persisted: %+v", ch)
	}
	lc.echo(t, "still there after drain")
	counts := l.shares(t, 300)
	if counts[lc.backend] != 0 {
		t.Errorf("drained backend %s got %d new connections: %v", lc.backend, counts[lc.backend], counts)
	}
	lc.echo(t, "still there after new traffic")
	if b := l.backend(t, addr); !b.Draining || b.Weight != 0 {
		t.Errorf("API shows %+v, want draining with weight 0", b)
	}
	l.call(t, "PATCH", api.PathServices+"/api/backends/"+addr, api.PatchBackend{Drain: ptr(false)}, 200, nil)
	if counts := l.shares(t, 400); counts[lc.backend] == 0 {
		t.Errorf("undrained backend %s gets nothing: %v", lc.backend, counts)
	}
}

func ptr[T any](v T) *T { return &v }

func TestDaemonAddBackendThroughAPI(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	// Start with b1 and b2 only.
	l.writeConfig(t, "ipip", []string{"10.0.0.11: 1", "10.0.0.12: 1"}, "")
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	if counts := l.shares(t, 300); counts["b3"] != 0 {
		t.Fatalf("b3 not configured but got %d connections", counts["b3"])
	}
	var ch api.Change
	l.call(t, "POST", api.PathServices+"/api/backends", api.AddBackend{Address: "10.0.0.13", Weight: ptr(2)}, 201, &ch)
	if ch.Persisted || ch.Note == "" {
		t.Errorf("runtime add should say it is not persisted: %+v", ch)
	}
	waitFor(t, "added backend healthy", 5*time.Second, func() bool { return l.backend(t, "10.0.0.13").Healthy })
	checkShares(t, l.shares(t, 4000), []uint32{1, 1, 2})
	if b := l.backend(t, "10.0.0.13"); b.Source != "api" {
		t.Errorf("added backend source %q, want api", b.Source)
	}
	// Adding it twice is a conflict; bad input is a 4xx JSON error.
	l.call(t, "POST", api.PathServices+"/api/backends", api.AddBackend{Address: "10.0.0.13"}, 409, nil)
	l.call(t, "POST", api.PathServices+"/api/backends", api.AddBackend{Address: "10.0.0.99:80"}, 400, nil)
	l.call(t, "POST", api.PathServices+"/nope/backends", api.AddBackend{Address: "10.0.0.14"}, 404, nil)
	l.call(t, "DELETE", api.PathServices+"/api/backends/10.0.0.99", nil, 404, nil)
}

// TestDaemonRestartKeepsConnection stops xlbd and starts it again while a
// TCP connection is open: the XDP program keeps forwarding while no daemon
// runs, and the new daemon adopts the flow table.
func TestDaemonRestartKeepsConnection(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	lc := l.openLong(t)
	lc.echo(t, "before restart")
	l.stopDaemon(t)
	lc.echo(t, "while no daemon runs")
	l.startDaemon(t)
	lc.echo(t, "after restart")
	// And the adopted flow entry is why: a fresh SYN table would not matter here.
	counts := l.shares(t, 400)
	if len(counts) != 3 {
		out, _ := exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbctl, "status").CombinedOutput()
		out2, _ := exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbctl, "maps", "-pin-path", l.pinDir+"/xlb").CombinedOutput()
		t.Errorf("after restart connections reached %v\n%s\n%s", counts, out, out2)
	}
}

// TestDaemonUpgradeKeepsConnection: a binary upgrade (SIGUSR2: the binary
// at xlbd's path runs in the same process) with the L4 data plane on keeps
// an open TCP connection on its backend, as a restart does, and the new
// image balances new ones over every backend.
func TestDaemonUpgradeKeepsConnection(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	lc := l.openLong(t)
	lc.echo(t, "before the upgrade")
	// A reload counted by this image: the next one's counters start at 0.
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	reloads := func() string {
		resp, err := l.http.Get("http://" + adminAddr + api.PathMetrics)
		if err != nil {
			return "unreachable"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if bytes.Contains(b, []byte(`xlb_config_reloads_total{result="ok"} 1`)) {
			return "old image"
		}
		if resp.StatusCode == 200 && bytes.Contains(b, []byte(`# TYPE xlb_config_reloads_total counter`)) {
			return "new image"
		}
		return "starting"
	}
	if got := reloads(); got != "old image" {
		t.Fatalf("before the upgrade: %s", got)
	}
	if err := l.xlbd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new image serving", 15*time.Second, func() bool { return reloads() == "new image" })
	waitFor(t, "backends healthy again", 10*time.Second, func() bool {
		for _, a := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} {
			if !l.backend(t, a).Healthy {
				return false
			}
		}
		return true
	})
	lc.echo(t, "after the upgrade")
	if exited(l.xlbd.Process.Pid) {
		t.Fatal("the process ended: an upgrade keeps it")
	}
	if counts := l.shares(t, 400); len(counts) != 3 {
		t.Errorf("after the upgrade connections reached %v", counts)
	}
}

func TestDaemonBrokenReloadChangesNothing(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	before := l.services(t)
	good, _ := os.ReadFile(l.cfgPath)
	broken := strings.Replace(string(good), "port: 80", "port: eighty", 1) + "bogus_key: 1\n"
	if err := os.WriteFile(l.cfgPath, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	var e api.Error
	l.call(t, "POST", api.PathReload, nil, 400, &e)
	if len(e.Details) < 2 || !strings.Contains(strings.Join(e.Details, "\n"), "xlb.yaml:") {
		t.Errorf("reload error should list every problem with file and line: %+v", e)
	}
	// SIGHUP with the same file: rejected too, the daemon keeps serving.
	l.xlbd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	after := l.services(t)
	if fmt.Sprint(before.Services[0].Backends[0].Address, len(before.Services)) != fmt.Sprint(after.Services[0].Backends[0].Address, len(after.Services)) {
		t.Errorf("services changed after a broken reload")
	}
	checkShares(t, l.shares(t, 4000), []uint32{1, 1, 2})

	// A file cut short to nothing (a write caught midway) is valid YAML, but
	// loading it would stop every service: refused the same way.
	if err := os.WriteFile(l.cfgPath, []byte("# xlb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e = api.Error{}
	l.call(t, "POST", api.PathReload, nil, 400, &e)
	if !strings.Contains(strings.Join(e.Details, "\n"), "the file is empty") {
		t.Errorf("reload of an empty file: %+v", e)
	}
	if after := l.services(t); len(after.Services) != len(before.Services) {
		t.Errorf("an empty file's reload left %d services, want %d", len(after.Services), len(before.Services))
	}
	// A file that is gone: a 400 naming it, not a 500.
	if err := os.Remove(l.cfgPath); err != nil {
		t.Fatal(err)
	}
	e = api.Error{}
	l.call(t, "POST", api.PathReload, nil, 400, &e)
	if !strings.Contains(strings.Join(e.Details, "\n"), "xlb.yaml: cannot read it: no such file or directory") {
		t.Errorf("reload of a missing file: %+v", e)
	}
	if err := os.WriteFile(l.cfgPath, good, 0o644); err != nil { // for the cleanup's -detach
		t.Fatal(err)
	}
	// A good file with a change only a restart applies: ok, and the answer
	// says what stays as it was.
	bigger := strings.Replace(string(good), "  pin_path:", "  flow_table_size: 4096\n  pin_path:", 1)
	if err := os.WriteFile(l.cfgPath, []byte(bigger), 0o644); err != nil {
		t.Fatal(err)
	}
	var rl api.Reload
	l.call(t, "POST", api.PathReload, nil, 200, &rl)
	if rl.Result != "ok" || len(rl.RestartNeeded) != 1 || !strings.HasPrefix(rl.RestartNeeded[0], "xdp.flow_table_size ") {
		t.Errorf("reload with a restart-only change: %+v", rl)
	}
	if err := os.WriteFile(l.cfgPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	rl = api.Reload{}
	raw := l.call(t, "POST", api.PathReload, nil, 200, &rl)
	var keys map[string]json.RawMessage
	if json.Unmarshal(raw, &keys) != nil || string(keys["restart_needed"]) != "[]" {
		t.Errorf("a reload that needs no restart does not say so: %s", raw)
	}
	if len(rl.RestartNeeded) != 0 {
		t.Errorf("reload back to the running file: %+v", rl)
	}
	checkShares(t, l.shares(t, 4000), []uint32{1, 1, 2})
	metrics := l.call(t, "GET", api.PathMetrics, nil, 200, nil)
	if !bytes.Contains(metrics, []byte(`xlb_config_reloads_total{result="error"} 4`)) {
		t.Errorf("/metrics does not count 4 failed reloads")
	}
}

func TestDaemonTokenAndSecondDaemon(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	l := newDaemonLab(t, "ipip", "  token_file: "+tokenFile)
	patch := api.PatchBackend{Weight: ptr(3)}
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 401, nil)
	l.token = "wrong"
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 401, nil)
	l.token = "s3cret"
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 200, nil)
	l.token = ""
	l.call(t, "GET", api.PathServices, nil, 200, nil) // reads need no token
	if b := l.backend(t, "10.0.0.11"); b.Weight != 3 || b.Persisted {
		t.Errorf("after PATCH weight 3: %+v", b)
	}

	// A reload that names another token file switches to its token at once:
	// the old one no longer opens the API.
	token2 := filepath.Join(dir, "token2")
	os.WriteFile(token2, []byte("n3w\n"), 0o600)
	backends := []string{"10.0.0.11: 1", "10.0.0.12: 1", "10.0.0.13: 2"}
	l.writeConfig(t, "ipip", backends, "  token_file: "+token2)
	l.token = "s3cret"
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 401, nil)
	l.token = "n3w"
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 200, nil)
	// And a file without the key opens it again, as the file says (logged).
	l.writeConfig(t, "ipip", backends, "")
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	l.token = ""
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 200, nil)
	// Back to a token by SIGHUP: calls without it are refused again.
	l.writeConfig(t, "ipip", backends, "  token_file: "+tokenFile)
	l.xlbd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the SIGHUP reload", 5*time.Second, func() bool {
		return bytes.Contains(l.call(t, "GET", api.PathMetrics, nil, 200, nil), []byte(`xlb_config_reloads_total{result="ok"} 3`))
	})
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 401, nil)

	// A reload rejected only when it applies (a listen address this host
	// does not have) keeps the running token, not the one it named.
	l.writeConfig(t, "ipip", backends, "  token_file: "+token2)
	f, err := os.OpenFile(l.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  - {name: web, layer: 7, listen: \"192.0.2.55:18099\", backends: [{address: \"127.0.0.1:9\"}]}\n")
	f.Close()
	l.token = "s3cret"
	l.call(t, "POST", api.PathReload, nil, 400, nil)
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 200, nil)
	l.token = "n3w"
	l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", patch, 401, nil)

	// A second daemon on the same pin path is refused.
	out, err := exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbd, "-config", l.cfgPath).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("another xlbd")) {
		t.Errorf("second xlbd: %v\n%s", err, out)
	}
}

// TestDaemonFailOpen: when every backend fails its checks, xlb keeps
// forwarding to the last healthy set rather than dropping the service.
func TestDaemonFailOpen(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	var lcs []*longConn
	for range 12 {
		lcs = append(lcs, l.openLong(t))
	}
	for _, s := range l.servers {
		s.healthy.Store(false)
	}
	waitFor(t, "service failing open", 5*time.Second, func() bool {
		for _, s := range l.services(t).Services {
			if s.Name == "api" {
				return s.FailOpen
			}
		}
		return false
	})
	for _, addr := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} {
		if l.backend(t, addr).Healthy {
			t.Errorf("%s still healthy", addr)
		}
	}
	counts := l.shares(t, 300)
	if len(counts) != 3 {
		t.Errorf("failing open should keep all three backends in use: %v", counts)
	}
	metrics := l.call(t, "GET", api.PathMetrics, nil, 200, nil)
	if !bytes.Contains(metrics, []byte(`xlb_service_fail_open{service="api"} 1`)) {
		t.Errorf("/metrics does not report fail-open")
	}
	// A restart while it fails open goes on failing open: the backends are
	// recovered down (not up, which is what the kernel serves them as), and
	// their connections keep their backends while the checks go on failing.
	l.stopDaemon(t)
	l.startDaemon(t)
	var svc api.Service
	l.call(t, "GET", api.PathServices+"/api", nil, 200, &svc)
	if !svc.FailOpen {
		t.Errorf("right after a restart during fail-open: %+v, want it failing open", svc)
	}
	for _, b := range svc.Backends {
		if b.Healthy {
			t.Errorf("%s healthy right after a restart during fail-open, want down as its checks said", b.Address)
		}
	}
	for i := range 10 {
		for _, lc := range lcs {
			lc.echo(t, fmt.Sprintf("after the restart %d", i))
		}
		time.Sleep(150 * time.Millisecond)
	}
	// One backend recovers: the service leaves fail-open and uses it alone.
	l.servers[0].healthy.Store(true)
	waitFor(t, "b1 healthy", 5*time.Second, func() bool { return l.backend(t, "10.0.0.11").Healthy })
	if counts := l.shares(t, 200); counts["b1"] != 200 {
		t.Errorf("with only b1 healthy, connections went to %v", counts)
	}
}

// TestDaemonRestartWithL4Off: a restart with no xdp.interfaces turns the
// L4 data plane off, as the reload that refused the change says: the
// program the previous xlbd left is removed, not left forwarding from
// tables nothing updates.
func TestDaemonRestartWithL4Off(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	l.stopDaemon(t)
	out := l.lb.Run(t, "ip", "link", "show", "eth0")
	if !strings.Contains(out, "prog/xdp") {
		t.Fatalf("no program left after SIGTERM:\n%s", out)
	}
	writeFile(t, l.cfgPath, strings.Replace(readFile(t, l.cfgPath), "interfaces: [eth0]", "interfaces: []", 1))
	l.startDaemon(t)
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); strings.Contains(out, "prog/xdp") {
		t.Errorf("the previous program still runs with xdp.interfaces empty:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(l.pinDir, "xlb", "links")); !os.IsNotExist(err) {
		t.Errorf("pins left under %s: %v", l.pinDir, err)
	}
}

// TestDaemonAdminPortInUseTouchesNothing: an xlbd that cannot bind its
// admin API exits before it attaches anything, rather than leave a fresh
// program on the interface with no daemon to run its health checks.
func TestDaemonAdminPortInUseTouchesNothing(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	l.stopDaemon(t)
	l.lb.Run(t, bins.xlbd, "-detach", "-config", l.cfgPath)
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); strings.Contains(out, "prog/xdp") {
		t.Fatalf("detach left a program:\n%s", out)
	}
	ln, err := l.lb.Listen("tcp", adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbd, "-config", l.cfgPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "admin: listen on "+adminAddr) {
		t.Fatalf("xlbd with its admin port taken: %v\n%s", err, out)
	}
	if out := l.lb.Run(t, "ip", "link", "show", "eth0"); strings.Contains(out, "prog/xdp") {
		t.Errorf("a failed start left a program attached:\n%s", out)
	}
}
