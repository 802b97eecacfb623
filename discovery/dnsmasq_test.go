package discovery

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/test/freeport"
	"github.com/xlbproject/xlb/test/privileged"
)

// dnsmasq is a dnsmasq process serving the names of an addn-hosts file
// on a loopback port, authoritative for xlb.test (unknown names there are
// NXDOMAIN).
type dnsmasq struct {
	t     *testing.T
	addr  string
	hosts string
	cmd   *exec.Cmd
	out   *syncbuf.Buffer
}

func startDnsmasq(t *testing.T) *dnsmasq {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/dnsmasq") // not on a user's PATH
	}
	if err != nil {
		if os.Getenv(privileged.EnvRequire) == "1" {
			t.Fatalf("dnsmasq not found and %s=1 forbids skipping: run make deps", privileged.EnvRequire)
		}
		t.Skip("dnsmasq not found; run make deps (Debian package dnsmasq)")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := &dnsmasq{t: t, hosts: filepath.Join(dir, "hosts")}
	m.write()
	port := freePort(t)
	m.addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	m.cmd = exec.Command(bin,
		"--no-daemon", "--port", fmt.Sprint(port), "--addn-hosts", m.hosts, "--no-resolv", "--no-hosts",
		// Only loopback, none of /etc/dnsmasq.conf, no pid file, and the
		// current user (as root it would switch to one that cannot read
		// the test's folder).
		"--listen-address=127.0.0.1", "--bind-interfaces", "--conf-file=/dev/null", "--pid-file=", "--user="+u.Username,
		"--local=/xlb.test/", "--local-ttl=1",
	)
	out := &syncbuf.Buffer{}
	m.out = out
	m.cmd.Stdout, m.cmd.Stderr = out, out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = m.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = m.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", out.String())
		}
	})
	// Ready when it answers.
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion("ready.xlb.test.", dns.TypeA)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, _, err := c.Exchange(q, m.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq does not answer on %s:\n%s", m.addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return m
}

// write replaces the addn-hosts file with one line per address of
// app.xlb.test.
func (m *dnsmasq) write(addrs ...string) {
	m.t.Helper()
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "%s app.xlb.test\n", a)
	}
	if err := os.WriteFile(m.hosts, []byte(b.String()), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

// reload makes dnsmasq read addn-hosts again (and clear its cache), and
// waits until it has: it handles SIGHUP later, and a query it answered
// before that met the old file (an NXDOMAIN the resolver then keeps).
func (m *dnsmasq) reload() {
	m.t.Helper()
	read := "read " + m.hosts + " - "
	before := strings.Count(m.out.String(), read)
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		m.t.Fatalf("SIGHUP dnsmasq: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Count(m.out.String(), read) == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			m.t.Fatalf("dnsmasq did not read %s again within 5s after SIGHUP:\n%s", m.hosts, m.out.String())
		}
	}
}

// freePort returns a loopback port free for UDP and TCP.
func freePort(t *testing.T) int { return freeport.Port(t, "127.0.0.1", true) }

// TestDnsmasqScale follows a name served by dnsmasq while its addn-hosts
// file scales from 2 to 5 addresses and back, as an autoscaling group's
// DNS would.
func TestDnsmasqScale(t *testing.T) {
	t.Parallel()
	m := startDnsmasq(t)
	m.write("10.4.0.1", "10.4.0.2")
	m.reload()
	d, w, _ := start(t, Options{})
	r := []string{m.addr}
	if err := d.Set([]Target{
		{Service: "app", Layer: 7, Name: "app.xlb.test", Type: "a", Port: 8080, Resolvers: r},
		{Service: "gone", Layer: 4, Name: "gone.xlb.test", Type: "a", Resolvers: r},
	}); err != nil {
		t.Fatal(err)
	}
	w.waitSet("app", 3*time.Second, "10.4.0.1:8080", "10.4.0.2:8080")
	m.write("10.4.0.1", "10.4.0.2", "10.4.0.3", "10.4.0.4", "10.4.0.5")
	m.reload()
	w.waitSet("app", 3*time.Second, "10.4.0.1:8080", "10.4.0.2:8080", "10.4.0.3:8080", "10.4.0.4:8080", "10.4.0.5:8080")
	m.write("10.4.0.4", "10.4.0.5")
	m.reload()
	w.waitSet("app", 3*time.Second, "10.4.0.4:8080", "10.4.0.5:8080")
	u := w.wait("gone", time.Second, "a lookup", func(Update) bool { return true })
	if u.Result != ResultNXDomain {
		t.Errorf("a name dnsmasq does not know: %s (%v), want nxdomain", u.Result, u.Err)
	}
}

// TestDnsmasqResolverByName: a resolver may be named by host name
// (discover.resolvers is host:port); the system's resolver turns it into
// addresses, each asked in turn: "localhost" is ::1 (where dnsmasq does not
// listen) and 127.0.0.1 (where it does).
func TestDnsmasqResolverByName(t *testing.T) {
	t.Parallel()
	m := startDnsmasq(t)
	m.write("10.4.0.7")
	m.reload()
	_, port, err := net.SplitHostPort(m.addr)
	if err != nil {
		t.Fatal(err)
	}
	d, w, _ := start(t, Options{})
	if err := d.Set([]Target{{Service: "app", Layer: 7, Name: "app.xlb.test", Type: "a", Port: 8080,
		Resolvers: []string{net.JoinHostPort("localhost", port)}}}); err != nil {
		t.Fatal(err)
	}
	w.waitSet("app", 3*time.Second, "10.4.0.7:8080")
	if err := d.Set([]Target{{Service: "app", Layer: 7, Name: "app.xlb.test", Type: "a", Port: 8080,
		Resolvers: []string{"no-such-resolver.invalid:53"}}}); err != nil {
		t.Fatal(err)
	}
	u := w.wait("app", 5*time.Second, "a failed lookup", func(u Update) bool { return u.Err != nil })
	if !strings.Contains(u.Err.Error(), "no-such-resolver.invalid") {
		t.Errorf("a resolver whose name does not resolve: %v, want an error naming it", u.Err)
	}
}
