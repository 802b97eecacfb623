//go:build linux

// Package netns builds throwaway network topologies of namespaces, veths and a bridge for xlb's tests.
//
// Everything is created inside new, uniquely named network namespaces; nothing is ever
// created in, or changed on, the namespace the test runs in. A veth is created inside
// one namespace with its peer placed directly in the other one, so not even a transient
// interface appears in the caller's namespace. All namespaces are deleted in t.Cleanup
// (which also removes their veths and bridge), after the processes started with
// Host.Start have been killed.
//
// A typical test:
//
//	tp := netns.New(t)
//	client := tp.AddHost("client")
//	lb := tp.AddHost("lb")
//	tp.Connect(client, "eth0", "10.0.0.1/24", "fd00::1/64")
//	tp.Connect(lb, "eth0", "10.0.0.2/24", "fd00::2/64")
//	ln, err := lb.Listen("tcp", "10.0.0.2:80")
//
// Every new namespace gets lo up, net.ipv4.conf.{all,default,lo}.rp_filter=0 and IPv6
// duplicate address detection disabled (accept_dad=0; addresses are added with nodad).
package netns

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/test/privileged"
)

// BridgeIfName is the name of the Linux bridge device inside the bridge namespace.
const BridgeIfName = "br0"

// bridgeHostName is the short name of the bridge namespace ("<prefix>-br").
const bridgeHostName = "br"

// linkUpTimeout bounds how long Connect and Pair wait for a new veth to become
// operationally up (carrier on, qdisc attached) before returning.
const linkUpTimeout = 5 * time.Second

// Topology is a set of namespaces created for one test. All names carry a unique per-test
// prefix (e.g. "xlbt" + 6 random hex chars) so parallel/aborted runs never collide.
type Topology struct {
	t      testing.TB
	prefix string

	brMu sync.Mutex // serialises AddBridge

	mu     sync.Mutex
	hosts  map[string]*Host // by short name
	bridge *Host
	seq    int              // counter for bridge-side veth names
	links  map[linkKey]Link // veth ends created by Connect/Pair
}

type linkKey struct {
	ns, name string
}

// Host is one namespace.
type Host struct {
	// Name is the full netns name as in `ip netns list` ("<prefix>-<name>").
	Name string
	// Short is the name passed to AddHost ("br" for the bridge namespace).
	Short string

	tp *Topology
	ns vnetns.NsHandle // open handle on /run/netns/<Name>
	nl *netlink.Handle // netlink sockets living inside the namespace
}

// Link describes one network interface inside a host.
type Link struct {
	Host  *Host
	Name  string
	Index int // ifindex inside Host's namespace
	MAC   net.HardwareAddr
	// PeerName is the other end of a veth created by Connect (the bridge-side port) or
	// Pair (the other host's interface); empty when unknown.
	PeerName string
	// PeerNS is the full netns name holding PeerName.
	PeerNS string
}

// New creates an empty topology and registers t.Cleanup to delete everything it creates
// (namespaces, which also removes their veths and bridges). Calls privileged.Require(t) first.
func New(t testing.TB) *Topology {
	t.Helper()
	privileged.Require(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("netns: the ip command (iproute2) is required: %v", err)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netns: random prefix: %v", err)
	}
	return &Topology{
		t:      t,
		prefix: "xlbt" + hex.EncodeToString(b[:]),
		hosts:  make(map[string]*Host),
		links:  make(map[linkKey]Link),
	}
}

// Prefix returns the unique prefix ("xlbt" + 6 hex chars) of all namespace names.
func (tp *Topology) Prefix() string { return tp.prefix }

// Hosts returns all namespaces created so far (including the bridge namespace), in no particular order.
func (tp *Topology) Hosts() []*Host {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	hs := make([]*Host, 0, len(tp.hosts))
	for _, h := range tp.hosts {
		hs = append(hs, h)
	}
	return hs
}

// AddHost creates namespace <prefix>-<name>, brings lo up.
// The name must be unique within the topology, non-empty, must not be "br" (reserved
// for the bridge namespace) and must not contain '/' or white space.
func (tp *Topology) AddHost(name string) *Host {
	tp.t.Helper()
	if name == bridgeHostName {
		tp.t.Fatalf("netns: host name %q is reserved for the bridge namespace", name)
	}
	return tp.addHost(name)
}

func (tp *Topology) addHost(name string) *Host {
	t := tp.t
	t.Helper()
	if name == "" || strings.ContainsAny(name, "/ \t\r\n") || name == "." || name == ".." {
		t.Fatalf("netns: invalid host name %q", name)
	}
	full := tp.prefix + "-" + name

	tp.mu.Lock()
	if _, dup := tp.hosts[name]; dup {
		tp.mu.Unlock()
		t.Fatalf("netns: host %q already exists", name)
	}
	h := &Host{Name: full, Short: name, tp: tp, ns: vnetns.None()}
	tp.hosts[name] = h
	tp.mu.Unlock()

	// Register the cleanup before creating anything, so a failure halfway through
	// (or a panic) still deletes the namespace.
	t.Cleanup(func() { h.destroy(t) })

	if out, err := exec.Command("ip", "netns", "add", full).CombinedOutput(); err != nil {
		t.Fatalf("netns: ip netns add %s: %v: %s", full, err, bytes.TrimSpace(out))
	}
	ns, err := vnetns.GetFromName(full)
	if err != nil {
		t.Fatalf("netns: open namespace %s: %v", full, err)
	}
	h.ns = ns
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netns: netlink handle in %s: %v", full, err)
	}
	h.nl = nl

	// Sysctls first, so that interfaces created later inherit the "default" values.
	for _, kv := range [][2]string{
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
		{"net.ipv4.conf.lo.rp_filter", "0"},
	} {
		h.Sysctl(t, kv[0], kv[1])
	}
	for _, kv := range [][2]string{
		{"net.ipv6.conf.all.disable_ipv6", "0"},
		{"net.ipv6.conf.default.disable_ipv6", "0"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	} {
		// Tolerate a kernel without IPv6 (the IPv6 tests will fail on their own).
		if err := h.sysctl(kv[0], kv[1]); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("netns: %s: sysctl %s=%s: %v", full, kv[0], kv[1], err)
		}
	}

	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("netns: %s: lo: %v", full, err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatalf("netns: %s: set lo up: %v", full, err)
	}
	return h
}

// destroy closes the handles and deletes the namespace. The kernel removes the veths
// and bridges inside it (once the last socket or process using it is gone).
func (h *Host) destroy(t testing.TB) {
	if h.nl != nil {
		h.nl.Close()
		h.nl = nil
	}
	if h.ns.IsOpen() {
		h.ns.Close()
	}
	if _, err := os.Stat(filepath.Join("/run/netns", h.Name)); errors.Is(err, os.ErrNotExist) {
		return // never created (or already gone)
	}
	if out, err := exec.Command("ip", "netns", "delete", h.Name).CombinedOutput(); err != nil {
		t.Errorf("netns: cleanup: ip netns delete %s: %v: %s", h.Name, err, bytes.TrimSpace(out))
	}
}

// AddBridge creates a namespace "<prefix>-br" holding a Linux bridge (once) and returns its Host;
// hosts are connected to it with Connect. The bridge device is named BridgeIfName ("br0"),
// has STP off, forward_delay 0 and multicast snooping off (so IPv6 neighbour discovery is
// simply flooded), and is up. Connect calls AddBridge itself when needed.
func (tp *Topology) AddBridge() *Host {
	tp.t.Helper()
	tp.brMu.Lock()
	defer tp.brMu.Unlock()
	tp.mu.Lock()
	br := tp.bridge
	tp.mu.Unlock()
	if br != nil {
		return br
	}

	h := tp.addHost(bridgeHostName)
	t := tp.t
	// netlink.Bridge (v1.3.1) cannot set stp_state/forward_delay; iproute2 can. `ip -n`
	// only switches the network namespace, the link is created inside h.
	if out, err := exec.Command("ip", "-n", h.Name, "link", "add", BridgeIfName, "type", "bridge",
		"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0").CombinedOutput(); err != nil {
		t.Fatalf("netns: %s: create bridge: %v: %s", h.Name, err, bytes.TrimSpace(out))
	}
	dev, err := h.nl.LinkByName(BridgeIfName)
	if err != nil {
		t.Fatalf("netns: %s: %v", h.Name, err)
	}
	if err := h.nl.LinkSetUp(dev); err != nil {
		t.Fatalf("netns: %s: set %s up: %v", h.Name, BridgeIfName, err)
	}
	tp.mu.Lock()
	tp.bridge = h
	tp.mu.Unlock()
	return h
}

// Connect creates a veth pair: one end inside h named ifName (e.g. "eth0"), the other end enslaved to the bridge
// (inside the bridge namespace), both up. addrs are CIDR strings assigned to h's end ("10.0.0.1/24", "fd00::1/64"; IPv6 with nodad).
// Returns the Link info: ifindex inside h and MAC. The bridge is created first if AddBridge was not called yet.
func (tp *Topology) Connect(h *Host, ifName string, addrs ...string) Link {
	t := tp.t
	t.Helper()
	br := tp.AddBridge()
	if h == br {
		t.Fatalf("netns: cannot connect the bridge namespace to itself")
	}

	tp.mu.Lock()
	tp.seq++
	peer := fmt.Sprintf("p%d-%s", tp.seq, strings.Map(func(r rune) rune {
		if r == ':' || r > 0x7e || r <= ' ' {
			return '_'
		}
		return r
	}, h.Short))
	tp.mu.Unlock()
	if len(peer) > unix.IFNAMSIZ-1 {
		peer = peer[:unix.IFNAMSIZ-1]
	}

	la, _ := tp.veth(h, ifName, br, peer)

	bl, err := br.nl.LinkByName(peer)
	if err != nil {
		t.Fatalf("netns: %s: %v", br.Name, err)
	}
	bridge, err := br.nl.LinkByName(BridgeIfName)
	if err != nil {
		t.Fatalf("netns: %s: %v", br.Name, err)
	}
	if err := br.nl.LinkSetMaster(bl, bridge); err != nil {
		t.Fatalf("netns: %s: enslave %s to %s: %v", br.Name, peer, BridgeIfName, err)
	}
	tp.up(h, ifName, br, peer)
	for _, a := range addrs {
		h.AddAddr(t, ifName, a)
	}
	return la
}

// Pair creates a veth pair directly between two hosts (a in host a named aName, b in host b named bName), up, with addresses.
func (tp *Topology) Pair(a *Host, aName string, aAddrs []string, b *Host, bName string, bAddrs []string) (Link, Link) {
	t := tp.t
	t.Helper()
	la, lb := tp.veth(a, aName, b, bName)
	tp.up(a, aName, b, bName)
	for _, addr := range aAddrs {
		a.AddAddr(t, aName, addr)
	}
	for _, addr := range bAddrs {
		b.AddAddr(t, bName, addr)
	}
	return la, lb
}

// veth creates a veth inside a (named aName) whose peer is created directly inside b
// (named bName), so it never exists in any other namespace.
func (tp *Topology) veth(a *Host, aName string, b *Host, bName string) (Link, Link) {
	t := tp.t
	t.Helper()
	attrs := netlink.NewLinkAttrs() // TxQLen -1: keep the kernel's default
	attrs.Name = aName
	attrs.MTU = 1500
	v := &netlink.Veth{
		LinkAttrs:     attrs,
		PeerName:      bName,
		PeerMTU:       1500,
		PeerTxQLen:    -1,
		PeerNamespace: netlink.NsFd(int(b.ns)),
	}
	if err := a.nl.LinkAdd(v); err != nil {
		t.Fatalf("netns: veth %s/%s <-> %s/%s: %v", a.Name, aName, b.Name, bName, err)
	}
	la, lb := a.LinkByName(t, aName), b.LinkByName(t, bName)
	la.PeerName, la.PeerNS = bName, b.Name
	lb.PeerName, lb.PeerNS = aName, a.Name
	tp.mu.Lock()
	tp.links[linkKey{a.Name, aName}] = la
	tp.links[linkKey{b.Name, bName}] = lb
	tp.mu.Unlock()
	return la, lb
}

// up sets both veth ends up and waits until both are operationally up, so that the
// first packets sent after Connect/Pair returns are not dropped.
func (tp *Topology) up(a *Host, aName string, b *Host, bName string) {
	t := tp.t
	t.Helper()
	for _, e := range []struct {
		h    *Host
		name string
	}{{a, aName}, {b, bName}} {
		l, err := e.h.nl.LinkByName(e.name)
		if err != nil {
			t.Fatalf("netns: %s: %v", e.h.Name, err)
		}
		if err := e.h.nl.LinkSetUp(l); err != nil {
			t.Fatalf("netns: %s: set %s up: %v", e.h.Name, e.name, err)
		}
	}
	deadline := time.Now().Add(linkUpTimeout)
	for _, e := range []struct {
		h    *Host
		name string
	}{{a, aName}, {b, bName}} {
		for {
			l, err := e.h.nl.LinkByName(e.name)
			if err != nil {
				t.Fatalf("netns: %s: %v", e.h.Name, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("netns: %s: %s did not come up (operstate %v)", e.h.Name, e.name, l.Attrs().OperState)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// Run runs a command inside the namespace (via `ip netns exec`), failing the test with its output on error; returns combined output.
func (h *Host) Run(t testing.TB, args ...string) string {
	t.Helper()
	if len(args) == 0 {
		t.Fatalf("netns: %s: Run without a command", h.Name)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("netns: %s: %s: %v\n%s", h.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Start starts a long-running command inside the namespace, killed (and waited) in cleanup; returns the *exec.Cmd.
//
// The command runs in its own process group; cleanup sends SIGKILL to the whole group,
// waits for it and logs its combined output (visible with -v or when the test fails).
// Cleanups run in reverse order, so the process is killed before the namespaces are
// deleted. The caller may call Wait itself (for a command expected to exit), but not
// concurrently with the test's cleanup; Stdout/Stderr are already set and must not be changed.
func (h *Host) Start(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	if len(args) == 0 {
		t.Fatalf("netns: %s: Start without a command", h.Name)
	}
	out := &syncbuf.Buffer{}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.Name}, args...)...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("netns: %s: start %s: %v", h.Name, strings.Join(args, " "), err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not waited for yet: the group id is still ours
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
		t.Logf("netns: %s: %s exited (%v); output:\n%s", h.Name, strings.Join(args, " "), cmd.ProcessState, out.String())
	})
	return cmd
}

// Do runs f on an OS thread switched into the namespace and returns f's error.
//
// f runs in a fresh goroutine locked to its thread (runtime.LockOSThread, netns.Set, f,
// then restore the original namespace and unlock); Do waits for it. If restoring fails,
// the thread is left locked so the runtime discards it when the goroutine exits, and the
// calling goroutine's own thread is never switched at all. Sockets created inside f stay
// in the namespace and can be used from any goroutine afterwards. A panic in f is
// re-raised in the caller; if f calls runtime.Goexit (e.g. t.FailNow), so does Do.
// f must not start goroutines that expect to run in the namespace.
func (h *Host) Do(f func() error) error {
	type result struct {
		err      error
		panicked bool
		pv       any
		goexit   bool
	}
	ch := make(chan result, 1)
	go func() {
		res := result{goexit: true}
		defer func() { ch <- res }()

		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res = result{err: fmt.Errorf("netns: get current namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := vnetns.Set(h.ns); err != nil {
			if vnetns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			res = result{err: fmt.Errorf("netns: enter %s: %w", h.Name, err)}
			return
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					res.panicked, res.pv = true, r
				}
			}()
			res.err = f()
			res.goexit = false
		}()
		if res.panicked {
			res.goexit = false
		}
		if err := vnetns.Set(orig); err != nil {
			// Keep the thread locked: it dies with this goroutine.
			res.err = errors.Join(res.err, fmt.Errorf("netns: restore namespace after %s: %w", h.Name, err))
			return
		}
		runtime.UnlockOSThread()
	}()
	res := <-ch
	switch {
	case res.panicked:
		panic(res.pv)
	case res.goexit:
		runtime.Goexit()
	}
	return res.err
}

// Listen opens a TCP (or unix) listener inside the namespace (via Do).
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet listener (e.g. "udp", "udp6") inside the namespace (via Do).
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// Dial dials from inside the namespace (via Do) with a timeout.
func (h *Host) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// Sysctl sets a sysctl inside the namespace, e.g. h.Sysctl(t, "net.ipv4.ip_forward", "1").
// Keys use dots as separators (like sysctl(8)); a key containing '/' is taken as a path
// below /proc/sys, which allows interface names with dots ("net/ipv4/conf/eth0.10/rp_filter").
func (h *Host) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := h.sysctl(key, value); err != nil {
		t.Fatalf("netns: %s: sysctl %s=%s: %v", h.Name, key, value, err)
	}
}

func (h *Host) sysctl(key, value string) error {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	p = filepath.Join("/proc/sys", filepath.Clean("/"+p))
	// /proc/sys/net is resolved against the network namespace of the opening thread.
	return h.Do(func() error {
		return os.WriteFile(p, []byte(value), 0o644)
	})
}

// AddAddr adds an address to a link inside the host (e.g. a VIP on "lo": "10.0.0.100/32").
// IPv6 addresses are added with nodad, so they are usable immediately.
func (h *Host) AddAddr(t testing.TB, ifName, cidr string) {
	t.Helper()
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatalf("netns: %s: bad address %q: %v", h.Name, cidr, err)
	}
	if addr.IP.To4() == nil {
		addr.Flags |= unix.IFA_F_NODAD
	}
	l, err := h.nl.LinkByName(ifName)
	if err != nil {
		t.Fatalf("netns: %s: %s: %v", h.Name, ifName, err)
	}
	if err := h.nl.AddrAdd(l, addr); err != nil {
		t.Fatalf("netns: %s: add %s to %s: %v", h.Name, cidr, ifName, err)
	}
}

// Neigh adds a permanent neighbour entry (ip neigh replace ADDR lladdr MAC dev IF nud permanent).
func (h *Host) Neigh(t testing.TB, ifName string, addr netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	l, err := h.nl.LinkByName(ifName)
	if err != nil {
		t.Fatalf("netns: %s: %s: %v", h.Name, ifName, err)
	}
	family := netlink.FAMILY_V6
	if addr.Unmap().Is4() {
		addr, family = addr.Unmap(), netlink.FAMILY_V4
	}
	n := &netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       family,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(addr.AsSlice()),
		HardwareAddr: mac,
	}
	if err := h.nl.NeighSet(n); err != nil {
		t.Fatalf("netns: %s: neigh replace %s lladdr %s dev %s: %v", h.Name, addr, mac, ifName, err)
	}
}

// Route adds a route inside the host, e.g. h.Route(t, "10.0.0.100/32", "via", "10.0.0.2").
// The arguments are those of `ip route add`; for an IPv6 default route say "-6", "default", ...
// or give "::/0".
func (h *Host) Route(t testing.TB, args ...string) {
	t.Helper()
	var family []string
	if len(args) > 0 && (args[0] == "-4" || args[0] == "-6") {
		family, args = args[:1], args[1:]
	}
	cmdArgs := append(append([]string{"-n", h.Name}, family...), "route", "add")
	cmdArgs = append(cmdArgs, args...)
	if out, err := exec.Command("ip", cmdArgs...).CombinedOutput(); err != nil {
		t.Fatalf("netns: %s: ip %s: %v: %s", h.Name, strings.Join(cmdArgs, " "), err, bytes.TrimSpace(out))
	}
}

// LinkByName returns Link info of an interface inside the host. PeerName/PeerNS are
// filled in for veth ends created by Connect or Pair.
func (h *Host) LinkByName(t testing.TB, name string) Link {
	t.Helper()
	l, err := h.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("netns: %s: %s: %v", h.Name, name, err)
	}
	a := l.Attrs()
	link := Link{Host: h, Name: a.Name, Index: a.Index, MAC: a.HardwareAddr}
	h.tp.mu.Lock()
	if known, ok := h.tp.links[linkKey{h.Name, name}]; ok && known.Index == a.Index {
		link.PeerName, link.PeerNS = known.PeerName, known.PeerNS
	}
	h.tp.mu.Unlock()
	return link
}
