//go:build linux

package netns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/xlbproject/xlb/test/privileged"
)

const dialTimeout = 5 * time.Second

// echoOnce accepts one connection on ln, echoes what it reads back, upper-cased, and
// reports the peer address it saw.
func echoOnce(t *testing.T, ln net.Listener) <-chan string {
	t.Helper()
	peer := make(chan string, 1)
	go func() {
		defer close(peer)
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(dialTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Errorf("server read: %v", err)
			return
		}
		if _, err := io.WriteString(c, strings.ToUpper(line)); err != nil {
			t.Errorf("server write: %v", err)
			return
		}
		peer <- c.RemoteAddr().String()
	}()
	return peer
}

// tcpRoundTrip listens on server at addr, dials it from client, exchanges a line and
// returns the client address the server saw.
func tcpRoundTrip(t *testing.T, client, server *Host, network, addr string) string {
	t.Helper()
	ln := listen(t, server, network, addr)
	defer ln.Close()
	return tcpRoundTripOn(t, client, ln, network, addr)
}

// listen opens a listener in server. A test that needs one address twice keeps one
// listener: a closed listener's port is not free at once while another goroutine of
// the test binary forks (exec of ip, sysctl, ... in parallel tests): the child holds
// a copy of the descriptor until its exec, so the socket stays in LISTEN and a new
// bind gets "address already in use" (seen as TestBridge/tcp4 failing at random).
func listen(t *testing.T, server *Host, network, addr string) net.Listener {
	t.Helper()
	ln, err := server.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, server.Name, err)
	}
	return ln
}

// tcpRoundTripOn dials ln (at addr) from client, exchanges a line and returns the
// client address the server saw.
func tcpRoundTripOn(t *testing.T, client *Host, ln net.Listener, network, addr string) string {
	t.Helper()
	peer := echoOnce(t, ln)

	c, err := client.Dial(network, addr, dialTimeout)
	if err != nil {
		t.Fatalf("dial %s %s from %s: %v", network, addr, client.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	msg := fmt.Sprintf("hello from %s\n", client.Name)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("client write: %v", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if want := strings.ToUpper(msg); got != want {
		t.Fatalf("echo: got %q, want %q", got, want)
	}
	return <-peer
}

func udpRoundTrip(t *testing.T, client, server *Host, network, addr string) {
	t.Helper()
	pc, err := server.ListenPacket(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, server.Name, err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		_ = pc.SetDeadline(time.Now().Add(dialTimeout))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo([]byte(strings.ToUpper(string(buf[:n]))), from)
	}()
	c, err := client.Dial(network, addr, dialTimeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatalf("udp write: %v", err)
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp read: %v", err)
	}
	if got := string(buf[:n]); got != "PING" {
		t.Fatalf("udp echo: got %q", got)
	}
}

func TestBridge(t *testing.T) {
	privileged.Require(t)
	t.Parallel()
	tp := New(t)
	if !strings.HasPrefix(tp.Prefix(), "xlbt") || len(tp.Prefix()) != len("xlbt")+6 {
		t.Fatalf("unexpected prefix %q", tp.Prefix())
	}
	a, b, c := tp.AddHost("a"), tp.AddHost("b"), tp.AddHost("c")
	br := tp.AddBridge()
	if br2 := tp.AddBridge(); br2 != br {
		t.Fatal("AddBridge created a second bridge")
	}
	if a.Name != tp.Prefix()+"-a" || br.Name != tp.Prefix()+"-br" {
		t.Fatalf("names: %q %q", a.Name, br.Name)
	}
	links := make([]Link, 0, 3)
	for i, h := range []*Host{a, b, c} {
		links = append(links, tp.Connect(h, "eth0", fmt.Sprintf("10.77.0.%d/24", i+1), fmt.Sprintf("fd77::%d/64", i+1)))
	}

	for _, l := range links {
		if l.Name != "eth0" || l.Index <= 0 || len(l.MAC) != 6 || l.PeerNS != br.Name || l.PeerName == "" {
			t.Fatalf("bad link info %+v", l)
		}
		if got := l.Host.LinkByName(t, "eth0"); got.Index != l.Index || got.MAC.String() != l.MAC.String() || got.PeerName != l.PeerName {
			t.Fatalf("LinkByName = %+v, Connect returned %+v", got, l)
		}
		// The bridge side exists in the bridge namespace, is up, and is a port of br0.
		out := br.Run(t, "ip", "-o", "link", "show", "dev", l.PeerName)
		if !strings.Contains(out, "master "+BridgeIfName) || !strings.Contains(out, "state UP") {
			t.Fatalf("bridge port %s: %s", l.PeerName, out)
		}
		pl := br.LinkByName(t, l.PeerName)
		if pl.PeerName != "eth0" || pl.PeerNS != l.Host.Name {
			t.Fatalf("bridge port info %+v", pl)
		}
		// MTU 1500 on both ends.
		if out := l.Host.Run(t, "ip", "-o", "link", "show", "dev", "eth0"); !strings.Contains(out, "mtu 1500 ") {
			t.Fatalf("mtu: %s", out)
		}
		if out := br.Run(t, "ip", "-o", "link", "show", "dev", l.PeerName); !strings.Contains(out, "mtu 1500 ") {
			t.Fatalf("peer mtu: %s", out)
		}
	}
	if out := br.Run(t, "ip", "-d", "link", "show", "dev", BridgeIfName); !strings.Contains(out, "stp_state 0") || !strings.Contains(out, "forward_delay 0 ") {
		t.Fatalf("bridge settings: %s", out)
	}
	// Addresses are present and not tentative; rp_filter is off.
	out := a.Run(t, "ip", "-o", "addr", "show", "dev", "eth0")
	if !strings.Contains(out, "10.77.0.1/24") || !strings.Contains(out, "fd77::1/64") || strings.Contains(out, "tentative") {
		t.Fatalf("addresses: %s", out)
	}
	for _, key := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter", "net.ipv4.conf.eth0.rp_filter"} {
		if v := strings.TrimSpace(a.Run(t, "sysctl", "-n", key)); v != "0" {
			t.Fatalf("%s = %s", key, v)
		}
	}

	t.Run("tcp4", func(t *testing.T) {
		// Both clients reach one listener (see listen for why not two in a row).
		ln := listen(t, b, "tcp", "10.77.0.2:7000")
		defer ln.Close()
		if peer := tcpRoundTripOn(t, a, ln, "tcp", "10.77.0.2:7000"); !strings.HasPrefix(peer, "10.77.0.1:") {
			t.Fatalf("server saw peer %s", peer)
		}
		if peer := tcpRoundTripOn(t, c, ln, "tcp", "10.77.0.2:7000"); !strings.HasPrefix(peer, "10.77.0.3:") {
			t.Fatalf("server saw peer %s", peer)
		}
	})
	t.Run("tcp6", func(t *testing.T) {
		if peer := tcpRoundTrip(t, a, b, "tcp", "[fd77::2]:7001"); !strings.HasPrefix(peer, "[fd77::1]:") {
			t.Fatalf("server saw peer %s", peer)
		}
		if peer := tcpRoundTrip(t, b, c, "tcp6", "[fd77::3]:7001"); !strings.HasPrefix(peer, "[fd77::2]:") {
			t.Fatalf("server saw peer %s", peer)
		}
	})
	t.Run("udp", func(t *testing.T) {
		udpRoundTrip(t, a, c, "udp", "10.77.0.3:7002")
		udpRoundTrip(t, a, c, "udp", "[fd77::3]:7002")
	})
}

// TestPairRouted builds a - r - b with two Pairs, a VIP on b's lo and routes through r.
func TestPairRouted(t *testing.T) {
	privileged.Require(t)
	t.Parallel()
	tp := New(t)
	a, r, b := tp.AddHost("a"), tp.AddHost("r"), tp.AddHost("b")
	la, lr := tp.Pair(a, "eth0", []string{"10.78.1.1/24", "fd78:1::1/64"}, r, "eth-a", []string{"10.78.1.254/24", "fd78:1::fe/64"})
	if la.Host != a || lr.Host != r || la.PeerName != "eth-a" || lr.PeerName != "eth0" || la.PeerNS != r.Name || lr.PeerNS != a.Name {
		t.Fatalf("pair info: %+v %+v", la, lr)
	}
	if la.Index <= 0 || lr.Index <= 0 || len(la.MAC) != 6 || la.MAC.String() == lr.MAC.String() {
		t.Fatalf("pair info: %+v %+v", la, lr)
	}
	tp.Pair(r, "eth-b", []string{"10.78.2.254/24", "fd78:2::fe/64"}, b, "eth0", []string{"10.78.2.1/24", "fd78:2::1/64"})
	r.Sysctl(t, "net.ipv4.ip_forward", "1")
	r.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	if v := strings.TrimSpace(r.Run(t, "sysctl", "-n", "net.ipv4.ip_forward")); v != "1" {
		t.Fatalf("ip_forward = %s", v)
	}
	if v := strings.TrimSpace(a.Run(t, "sysctl", "-n", "net.ipv4.ip_forward")); v != "0" {
		t.Fatalf("ip_forward leaked to another namespace: %s", v)
	}

	b.AddAddr(t, "lo", "10.78.0.100/32")
	b.AddAddr(t, "lo", "fd78::100/128")
	a.Route(t, "10.78.0.100/32", "via", "10.78.1.254")
	a.Route(t, "fd78::100/128", "via", "fd78:1::fe")
	r.Route(t, "10.78.0.100/32", "via", "10.78.2.1")
	r.Route(t, "fd78::100/128", "via", "fd78:2::1")
	// b answers via a default route (asymmetric for the VIP, which needs rp_filter off).
	b.Route(t, "default", "via", "10.78.2.254")
	b.Route(t, "-6", "default", "via", "fd78:2::fe")

	if peer := tcpRoundTrip(t, a, b, "tcp", "10.78.0.100:80"); !strings.HasPrefix(peer, "10.78.1.1:") {
		t.Fatalf("server saw %s", peer)
	}
	if peer := tcpRoundTrip(t, a, b, "tcp", "[fd78::100]:80"); !strings.HasPrefix(peer, "[fd78:1::1]:") {
		t.Fatalf("server saw %s", peer)
	}
	a.Route(t, "10.78.2.0/24", "via", "10.78.1.254")
	if peer := tcpRoundTrip(t, b, a, "tcp", "10.78.1.1:81"); !strings.HasPrefix(peer, "10.78.2.1:") {
		t.Fatalf("server saw %s", peer)
	}
}

func TestNeighAndLinkByName(t *testing.T) {
	privileged.Require(t)
	t.Parallel()
	tp := New(t)
	h := tp.AddHost("h")
	tp.Connect(h, "eth0", "10.79.0.1/24", "fd79::1/64")
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}
	h.Neigh(t, "eth0", netip.MustParseAddr("10.79.0.2"), mac)
	h.Neigh(t, "eth0", netip.MustParseAddr("fd79::2"), mac)
	h.Neigh(t, "eth0", netip.MustParseAddr("10.79.0.2"), mac) // replace is idempotent
	out := h.Run(t, "ip", "neigh", "show", "dev", "eth0")
	for _, want := range []string{"10.79.0.2 lladdr 02:00:00:00:00:42 PERMANENT", "fd79::2 lladdr 02:00:00:00:00:42 PERMANENT"} {
		if !strings.Contains(out, want) {
			t.Fatalf("neighbours: missing %q in:\n%s", want, out)
		}
	}
	lo := h.LinkByName(t, "lo")
	if lo.Index != 1 || lo.PeerName != "" || lo.Host != h {
		t.Fatalf("lo: %+v", lo)
	}
	if out := h.Run(t, "ip", "-o", "link", "show", "dev", "lo"); !strings.Contains(out, "UP") {
		t.Fatalf("lo not up: %s", out)
	}
}

func TestDo(t *testing.T) {
	privileged.Require(t)
	t.Parallel()
	tp := New(t)
	h := tp.AddHost("h")
	want, err := vnetns.GetFromName(h.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if before.Equal(want) {
		t.Fatal("test already runs in the new namespace?")
	}

	var inside bool
	err = h.Do(func() error {
		cur, err := vnetns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		inside = cur.Equal(want)
		return nil
	})
	if err != nil || !inside {
		t.Fatalf("Do: err=%v inside=%v", err, inside)
	}
	after, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Fatalf("namespace changed by Do: before %v after %v", before, after)
	}

	// Errors are returned, panics re-raised, and the namespace is still restored.
	sentinel := errors.New("sentinel")
	if err := h.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("Do error = %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		_ = h.Do(func() error { panic("boom") })
	}()
	again, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !again.Equal(before) {
		t.Fatal("namespace changed after panicking Do")
	}

	// A socket created inside Do stays in the namespace: listen on lo there, and make
	// sure the same port is free in our own namespace.
	ln, err := h.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	own, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d taken in own namespace, listener leaked out: %v", port, err)
	}
	own.Close()
	if peer := tcpRoundTrip(t, h, h, "tcp", "127.0.0.1:7003"); !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Fatalf("peer %s", peer)
	}
}

func TestStartAndRun(t *testing.T) {
	privileged.Require(t)
	t.Parallel()
	tp := New(t)
	h := tp.AddHost("h")
	cmd := h.Start(t, "sleep", "600")
	// The process runs inside the namespace, once `ip netns exec` (which
	// Start has only started) has entered it: a listing made at once
	// sometimes found only itself there (seen once in CI).
	in := func(pids string) bool {
		return strings.Contains(" "+strings.Join(strings.Fields(pids), " ")+" ", fmt.Sprintf(" %d ", cmd.Process.Pid))
	}
	var pids string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if pids = h.Run(t, "ip", "netns", "pids", h.Name); in(pids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not in namespace %s after 5s (pids: %q)", cmd.Process.Pid, h.Name, pids)
		}
	}
	if out := h.Run(t, "echo", "hi"); out != "hi\n" {
		t.Fatalf("Run output %q", out)
	}
}

// TestCleanup checks that nothing with the topology's prefix is left after the test's
// cleanup, both for a passing subtest and for a test that fails midway (run in a child
// process, since a failing subtest would fail this test too).
func TestCleanup(t *testing.T) {
	privileged.Require(t)
	if os.Getenv("XLB_NETNS_FAIL_HELPER") == "1" {
		t.Skip("helper mode")
	}
	var prefix string
	var pid int
	t.Run("topology", func(t *testing.T) {
		tp := New(t)
		prefix = tp.Prefix()
		a, b := tp.AddHost("a"), tp.AddHost("b")
		tp.Connect(a, "eth0", "10.80.0.1/24")
		tp.Connect(b, "eth0", "10.80.0.2/24")
		tp.Pair(a, "eth1", nil, b, "eth1", nil)
		pid = a.Start(t, "sleep", "600").Process.Pid
		if n := countNamespaces(t, prefix); n != 3 {
			t.Fatalf("%d namespaces with prefix %s, want 3", n, prefix)
		}
	})
	if n := countNamespaces(t, prefix); n != 0 {
		t.Fatalf("%d namespaces with prefix %s left after cleanup", n, prefix)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("started process %d still exists after cleanup (kill 0: %v)", pid, err)
	}

	t.Run("failing", func(t *testing.T) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run=^TestCleanupFailHelper$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "XLB_NETNS_FAIL_HELPER=1")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--- FAIL: TestCleanupFailHelper") {
			t.Fatalf("helper should have failed: err=%v\n%s", err, out)
		}
		var p string
		for _, line := range strings.Split(string(out), "\n") {
			if _, rest, ok := strings.Cut(line, "PREFIX="); ok {
				p = strings.TrimSpace(rest)
			}
		}
		if p == "" {
			t.Fatalf("no prefix in helper output:\n%s", out)
		}
		if n := countNamespaces(t, p); n != 0 {
			t.Fatalf("%d namespaces with prefix %s left after a failing test:\n%s", n, p, out)
		}
	})
}

// TestCleanupFailHelper fails midway through building a topology; run by TestCleanup.
func TestCleanupFailHelper(t *testing.T) {
	if os.Getenv("XLB_NETNS_FAIL_HELPER") != "1" {
		return // only meaningful when re-executed as a helper process
	}
	tp := New(t)
	fmt.Printf("PREFIX=%s\n", tp.Prefix())
	a := tp.AddHost("a")
	tp.Connect(a, "eth0", "10.81.0.1/24")
	a.Start(t, "sleep", "600")
	tp.AddHost("a") // duplicate: fails the test halfway
	t.Error("not reached")
}

func countNamespaces(t *testing.T, prefix string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix+"-") {
			n++
		}
	}
	if m, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"-*")); len(m) != n {
		t.Fatalf("ip netns list shows %d, /run/netns has %v", n, m)
	}
	return n
}

// TestRoundTripsWhileForking runs TestBridge/tcp4's two round trips to one
// address many times while other goroutines fork and exec, as parallel tests
// do: with a listener closed and reopened between the two (the old test), the
// second bind failed now and then with "address already in use".
func TestRoundTripsWhileForking(t *testing.T) {
	privileged.Require(t)
	tp := New(t)
	a, b, c := tp.AddHost("a"), tp.AddHost("b"), tp.AddHost("c")
	for i, h := range []*Host{a, b, c} {
		tp.Connect(h, "eth0", fmt.Sprintf("10.78.0.%d/24", i+1))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = exec.Command("true").Run()
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for i := range 40 {
		addr := fmt.Sprintf("10.78.0.2:%d", 7100+i)
		ln := listen(t, b, "tcp", addr)
		tcpRoundTripOn(t, a, ln, "tcp", addr)
		tcpRoundTripOn(t, c, ln, "tcp", addr)
		ln.Close()
	}
}
