//go:build linux

package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/maps"
	"github.com/xlbproject/xlb/test/netns"
	"github.com/xlbproject/xlb/test/privileged"
)

const peerWarning = "XDP_TX frames will be dropped by the peer unless it runs an XDP program"

func newLogger(t *testing.T) (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("loader log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// unmountInCleanup unmounts a bpffs at dir when the test ends, if one is mounted there
// (also when the mount was made by the code under test).
func unmountInCleanup(t *testing.T, dir string) {
	t.Cleanup(func() {
		for isBPFFS(dir) {
			// Only a bpffs mounted on dir itself: dir's own parent is not one.
			if isBPFFS(filepath.Dir(dir)) {
				return
			}
			if err := unix.Unmount(dir, 0); err != nil {
				t.Errorf("unmount bpffs %s: %v", dir, err)
				return
			}
		}
	})
}

// bpffs mounts a private bpffs for the test's pins, in the root mount namespace (so pins
// survive like in production; see DESIGN.md on `ip netns exec`).
func bpffs(t *testing.T) string {
	t.Helper()
	privileged.Require(t)
	dir := filepath.Join(t.TempDir(), "bpf")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs at %s: %v", dir, err)
	}
	unmountInCleanup(t, dir)
	return dir
}

// pair builds two namespaces, "lb" and "peer", joined by a veth named eth0 on both sides.
func pair(t *testing.T) (lb, peer *netns.Host) {
	t.Helper()
	tp := netns.New(t)
	lb, peer = tp.AddHost("lb"), tp.AddHost("peer")
	tp.Pair(lb, "eth0", []string{"10.99.0.1/24"}, peer, "eth0", []string{"10.99.0.2/24"})
	return lb, peer
}

func load(t *testing.T, opts Options) *Dataplane {
	t.Helper()
	d, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func attach(t *testing.T, h *netns.Host, d *Dataplane, ifname string, mode Mode) Attachment {
	t.Helper()
	var a Attachment
	if err := h.Do(func() error {
		var err error
		a, err = d.Attach(ifname, mode)
		return err
	}); err != nil {
		t.Fatalf("Attach(%s, %s) in %s: %v", ifname, mode, h.Name, err)
	}
	return a
}

// xdpOf reports the XDP program id and attach mode (IFLA_XDP_ATTACHED) of an interface.
func xdpOf(t *testing.T, h *netns.Host, ifname string) (uint32, uint32) {
	t.Helper()
	var id, mode uint32
	if err := h.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil {
			id, mode = x.ProgId, x.AttachMode
		}
		return nil
	}); err != nil {
		t.Fatalf("%s in %s: %v", ifname, h.Name, err)
	}
	return id, mode
}

// waitNoXDP waits until the interface has no XDP program: the kernel releases a link
// whose last pin was removed asynchronously.
func waitNoXDP(t *testing.T, h *netns.Host, ifname string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		id, _ := xdpOf(t, h, ifname)
		if id == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s still runs XDP program %d", ifname, h.Name, id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func progName(t *testing.T, id uint32) string {
	t.Helper()
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		t.Fatalf("program %d: %v", id, err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Name
}

func ipLinkShow(t *testing.T, h *netns.Host, ifname string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", h.Name, "link", "show", "dev", ifname).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s link show dev %s: %v: %s", h.Name, ifname, err, out)
	}
	return string(out)
}

// kernelFiles are made by the kernel (bpf_preload) at the root of every bpffs mount.
var kernelFiles = []string{"maps.debug", "progs.debug"}

// listDir lists a folder, without the kernel's own files at a bpffs root.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !slices.Contains(kernelFiles, e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"auto": ModeAuto, "native": ModeNative, "generic": ModeGeneric, " Native ": ModeNative} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "drv", "skb", "offload"} {
		if _, err := ParseMode(in); err == nil {
			t.Errorf("ParseMode(%q) succeeded", in)
		}
	}
}

func TestLoadNoPinNeedsNoBPFFS(t *testing.T) {
	privileged.Require(t)
	d := load(t, Options{NoPin: true, FlowTableSize: 4096, PinPath: "/nonexistent/never/created"})
	if d.Objs.XlbLb == nil || d.Objs.Flows == nil || d.Objs.MaglevRings == nil {
		t.Fatal("objects not assigned")
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Objs.Flows.MaxEntries(), bpf.FlowBuckets(4096, cpus)*uint32(cpus); got != want {
		t.Errorf("flows max_entries = %d buckets, want %d (4096 entries over %d CPUs, a slice each)", got, want, cpus)
	}
	if d.Adopted {
		t.Error("Adopted without pins")
	}
	if _, err := os.Stat("/nonexistent"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NoPin touched the pin path: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestLoadMountsBPFFSWhenMissing(t *testing.T) {
	privileged.Require(t)
	dir := filepath.Join(t.TempDir(), "run", "xlb")
	unmountInCleanup(t, dir)
	log, buf := newLogger(t)
	d := load(t, Options{PinPath: dir, Logger: log})
	if !isBPFFS(dir) {
		t.Fatalf("%s is not a bpffs after Load", dir)
	}
	if !strings.Contains(buf.String(), "mounted bpffs") {
		t.Errorf("no log line about the mount:\n%s", buf)
	}
	spec, err := bpf.LoadLb()
	if err != nil {
		t.Fatal(err)
	}
	for name := range spec.Maps {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			t.Errorf("map %s not pinned: %v", name, err)
			continue
		}
		checkMapBTF(t, m, name)
		m.Close()
	}
	if d.Adopted {
		t.Error("Adopted on a fresh bpffs")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Unpin(dir); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	if left := listDir(t, dir); len(left) != 0 {
		t.Errorf("left under %s after Unpin: %v", dir, left)
	}
}

func TestAttachModes(t *testing.T) {
	for _, tc := range []struct {
		mode     Mode
		want     Mode
		wantAttr uint32 // IFLA_XDP_ATTACHED
		ipWord   string // what `ip link show` prints for the mode
		warn     bool
	}{
		{ModeNative, ModeNative, xdpAttachedDrv, " xdp ", true},
		{ModeGeneric, ModeGeneric, xdpAttachedSKB, " xdpgeneric ", false},
		{ModeAuto, ModeNative, xdpAttachedDrv, " xdp ", true}, // veth supports native XDP
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			lb, _ := pair(t)
			pin := bpffs(t)
			log, buf := newLogger(t)
			d := load(t, Options{PinPath: pin, Logger: log})
			a := attach(t, lb, d, "eth0", tc.mode)
			if a.Mode != tc.want || a.Replaced || a.Interface != "eth0" || a.Ifindex == 0 || a.ProgramID == 0 {
				t.Errorf("Attach = %+v, want mode %s, not replaced", a, tc.want)
			}
			if got := d.Attachments(); len(got) != 1 || got[0] != a {
				t.Errorf("Attachments() = %+v, want [%+v]", got, a)
			}
			id, attr := xdpOf(t, lb, "eth0")
			if id != uint32(a.ProgramID) || attr != tc.wantAttr {
				t.Errorf("interface reports prog %d mode %d, want prog %d mode %d", id, attr, a.ProgramID, tc.wantAttr)
			}
			out := ipLinkShow(t, lb, "eth0")
			if !strings.Contains(out, "prog/xdp id "+strconv.Itoa(int(a.ProgramID))) || !strings.Contains(out, tc.ipWord) {
				t.Errorf("ip link show does not show %q and prog/xdp id %d:\n%s", tc.ipWord, a.ProgramID, out)
			}
			if _, err := os.Stat(filepath.Join(pin, "links", "eth0")); err != nil {
				t.Errorf("link not pinned: %v", err)
			}
			if got := strings.Contains(buf.String(), peerWarning); got != tc.warn {
				t.Errorf("peer warning logged = %v, want %v; log:\n%s", got, tc.warn, buf)
			}
			// A second Attach in the same mode is a no-op; another mode is refused.
			if again := attach(t, lb, d, "eth0", tc.want); again != a {
				t.Errorf("second Attach = %+v, want %+v", again, a)
			}
			other := ModeGeneric
			if tc.want == ModeGeneric {
				other = ModeNative
			}
			if err := lb.Do(func() error { _, err := d.Attach("eth0", other); return err }); err == nil {
				t.Errorf("Attach in %s mode over a %s attachment succeeded", other, tc.want)
			}
		})
	}
}

func TestAttachNativeWarnsAboutBareVethPeer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sameNS   bool
		peerPass bool
		warn     bool
	}{
		{"peer-in-other-netns-bare", false, false, true},
		{"peer-in-other-netns-with-pass", false, true, false},
		{"peer-in-same-netns-bare", true, false, true},
		{"peer-in-same-netns-with-pass", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := netns.New(t)
			lb := tp.AddHost("lb")
			peer, peerIf := lb, "veth1"
			if !tc.sameNS {
				peer, peerIf = tp.AddHost("peer"), "eth0"
			}
			tp.Pair(lb, "eth0", nil, peer, peerIf, nil)
			if tc.peerPass {
				if err := peer.Do(func() error { return AttachPass(peerIf) }); err != nil {
					t.Fatalf("AttachPass: %v", err)
				}
			}
			log, buf := newLogger(t)
			d := load(t, Options{NoPin: true, Logger: log})
			attach(t, lb, d, "eth0", ModeNative)
			if got := strings.Contains(buf.String(), peerWarning); got != tc.warn {
				t.Errorf("peer warning logged = %v, want %v; log:\n%s", got, tc.warn, buf)
			}
			if tc.warn && !strings.Contains(buf.String(), "peer="+peerIf) {
				t.Errorf("warning does not name the peer %s:\n%s", peerIf, buf)
			}
			// Without pins, closing the Dataplane detaches.
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			waitNoXDP(t, lb, "eth0")
		})
	}
}

// flowKey is an arbitrary established flow written before the restart.
var flowKey = maps.FlowKey{
	Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.10:80"), Proto: unix.IPPROTO_TCP,
}

func TestRestartAdoptsMapsAndReplacesProgramInPlace(t *testing.T) {
	lb, _ := pair(t)
	pin := bpffs(t)

	// First daemon.
	d1 := load(t, Options{PinPath: pin, FlowTableSize: 8192})
	if d1.Adopted {
		t.Fatal("first Load reports Adopted")
	}
	a1 := attach(t, lb, d1, "eth0", ModeGeneric)
	if err := maps.FromObjects(&d1.Objs.LbMaps).PutFlow(maps.Flow{FlowKey: flowKey, BackendID: 7}); err != nil {
		t.Fatalf("write flow: %v", err)
	}
	linkID := func() link.ID {
		l, err := link.LoadPinnedLink(filepath.Join(pin, "links", "eth0"), nil)
		if err != nil {
			t.Fatalf("pinned link: %v", err)
		}
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	id1 := linkID()
	if err := d1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// The daemon is gone; its pinned link keeps the program attached.
	if id, _ := xdpOf(t, lb, "eth0"); id != uint32(a1.ProgramID) {
		t.Fatalf("after Close the interface runs program %d, want %d", id, a1.ProgramID)
	}

	// Watch the interface while the second daemon takes over: it must never be without a program.
	var hnd *netlink.Handle
	if err := lb.Do(func() error {
		var err error
		hnd, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer hnd.Close()
	stop, done := make(chan struct{}), make(chan struct{})
	var seen []uint32
	var watchErr error
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			l, err := hnd.LinkByName("eth0")
			if err != nil {
				watchErr = err
				return
			}
			id := uint32(0)
			if x := l.Attrs().Xdp; x != nil {
				id = x.ProgId
			}
			if len(seen) == 0 || seen[len(seen)-1] != id {
				seen = append(seen, id)
			}
		}
	}()

	// Second daemon.
	log, buf := newLogger(t)
	d2 := load(t, Options{PinPath: pin, FlowTableSize: 8192, Logger: log})
	if !d2.Adopted {
		t.Error("second Load does not report Adopted")
	}
	if got, err := maps.FromObjects(&d2.Objs.LbMaps).LookupFlow(flowKey); err != nil || got.BackendID != 7 {
		t.Errorf("flow after restart: %+v, %v; want backend 7", got, err)
	}
	a2 := attach(t, lb, d2, "eth0", ModeGeneric)
	time.Sleep(20 * time.Millisecond) // let the watcher see the final state
	close(stop)
	<-done

	if !a2.Replaced || a2.Mode != ModeGeneric {
		t.Errorf("second Attach = %+v, want Replaced in generic mode", a2)
	}
	if a2.ProgramID == a1.ProgramID {
		t.Errorf("program id unchanged (%d)", a2.ProgramID)
	}
	if id, _ := xdpOf(t, lb, "eth0"); id != uint32(a2.ProgramID) {
		t.Errorf("interface runs program %d, want the new %d", id, a2.ProgramID)
	}
	if id2 := linkID(); id2 != id1 {
		t.Errorf("link id changed from %d to %d: the link was re-created, not updated", id1, id2)
	}
	if watchErr != nil {
		t.Fatalf("watcher: %v", watchErr)
	}
	if slices.Contains(seen, 0) {
		t.Errorf("interface was without a program during the takeover; program ids seen: %v", seen)
	}
	if !slices.Equal(seen, []uint32{uint32(a1.ProgramID), uint32(a2.ProgramID)}) {
		t.Errorf("program ids seen = %v, want [%d %d]", seen, a1.ProgramID, a2.ProgramID)
	}
	if !strings.Contains(buf.String(), "replaced xdp program in pinned link") {
		t.Errorf("no log line about the replacement:\n%s", buf)
	}
}

func TestRestartInAnotherModeReattaches(t *testing.T) {
	lb, peer := pair(t)
	if err := peer.Do(func() error { return AttachPass("eth0") }); err != nil {
		t.Fatal(err)
	}
	pin := bpffs(t)
	d1 := load(t, Options{PinPath: pin})
	attach(t, lb, d1, "eth0", ModeGeneric)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := load(t, Options{PinPath: pin})
	a := attach(t, lb, d2, "eth0", ModeNative)
	if a.Replaced || a.Mode != ModeNative {
		t.Errorf("Attach = %+v, want a fresh native attachment", a)
	}
	if id, attr := xdpOf(t, lb, "eth0"); id != uint32(a.ProgramID) || attr != xdpAttachedDrv {
		t.Errorf("interface reports prog %d mode %d, want %d native", id, attr, a.ProgramID)
	}
}

func TestAttachReplacesDefunctPinnedLink(t *testing.T) {
	tp := netns.New(t)
	lb, peer := tp.AddHost("lb"), tp.AddHost("peer")
	tp.Pair(lb, "eth0", nil, peer, "eth0", nil)
	pin := bpffs(t)
	d1 := load(t, Options{PinPath: pin})
	attach(t, lb, d1, "eth0", ModeGeneric)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	// The interface goes away (and comes back with a new ifindex): the pinned link is defunct.
	if err := lb.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	}); err != nil {
		t.Fatal(err)
	}
	tp.Pair(lb, "eth0", nil, peer, "eth0", nil)

	log, buf := newLogger(t)
	d2 := load(t, Options{PinPath: pin, Logger: log})
	a := attach(t, lb, d2, "eth0", ModeGeneric)
	if a.Replaced {
		t.Errorf("Attach = %+v, want a fresh attachment", a)
	}
	if id, _ := xdpOf(t, lb, "eth0"); id != uint32(a.ProgramID) {
		t.Errorf("interface runs program %d, want %d", id, a.ProgramID)
	}
	if !strings.Contains(buf.String(), "defunct") {
		t.Errorf("no log line about the defunct link:\n%s", buf)
	}
}

func TestLoadRejectsIncompatiblePinnedFlows(t *testing.T) {
	pin := bpffs(t)
	d1 := load(t, Options{PinPath: pin, FlowTableSize: 1024})
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, pin)

	d2, err := Load(Options{PinPath: pin, FlowTableSize: 2048})
	if err == nil {
		d2.Close()
		t.Fatal("Load with another flow table size succeeded")
	}
	msg := err.Error()
	for _, want := range []string{`"flows"`, "1024", "2048", "flow_table_size", "xlbctl detach"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	if !errors.Is(err, ebpf.ErrMapIncompatible) {
		t.Errorf("error does not wrap ebpf.ErrMapIncompatible: %v", err)
	}
	if after := listDir(t, pin); !slices.Equal(before, after) {
		t.Errorf("pins changed by the failed Load: %v -> %v", before, after)
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "flows"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if cpus, _ := ebpf.PossibleCPU(); m.MaxEntries() != bpf.FlowBuckets(1024, cpus)*uint32(cpus) {
		t.Errorf("pinned flows replaced: max_entries %d", m.MaxEntries())
	}
}

func TestFailedLoadRemovesOnlyItsOwnPins(t *testing.T) {
	pin := bpffs(t)
	// A dangling symlink under a map's name looks like no pin to the lookup but makes
	// pinning that map fail, after other maps were created and pinned.
	if err := os.Symlink("/nonexistent", filepath.Join(pin, "svc_stats")); err != nil {
		t.Fatal(err)
	}
	if d, err := Load(Options{PinPath: pin}); err == nil {
		d.Close()
		t.Fatal("Load succeeded")
	} else if !strings.Contains(err.Error(), "svc_stats") {
		t.Errorf("error does not name svc_stats: %v", err)
	}
	if left := listDir(t, pin); !slices.Equal(left, []string{"svc_stats"}) {
		t.Errorf("after a failed Load the pin path holds %v, want only the symlink", left)
	}
}

func TestDetachAndUnpinLeaveNothing(t *testing.T) {
	lb, _ := pair(t)
	pin := bpffs(t)
	d := load(t, Options{PinPath: pin})
	attach(t, lb, d, "eth0", ModeGeneric)
	if err := d.Detach("eth0"); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	waitNoXDP(t, lb, "eth0")
	if got := d.Attachments(); len(got) != 0 {
		t.Errorf("Attachments() after Detach = %+v", got)
	}
	if left := listDir(t, filepath.Join(pin, "links")); len(left) != 0 {
		t.Errorf("links left after Detach: %v", left)
	}
	if err := d.Detach("eth0"); err == nil {
		t.Error("second Detach succeeded")
	}

	// Attached again and left behind by an exiting daemon.
	attach(t, lb, d, "eth0", ModeGeneric)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if id, _ := xdpOf(t, lb, "eth0"); id == 0 {
		t.Fatal("program gone before Unpin")
	}
	// A later daemon may also detach what an earlier one left, without adopting it first.
	d2 := load(t, Options{PinPath: pin})
	if err := d2.Detach("eth0"); err != nil {
		t.Fatalf("Detach of a link left by a previous daemon: %v", err)
	}
	waitNoXDP(t, lb, "eth0")
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}

	// Attached again and left behind: Unpin alone (xlbctl detach) removes it too.
	d3 := load(t, Options{PinPath: pin})
	attach(t, lb, d3, "eth0", ModeGeneric)
	if err := d3.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Unpin(pin); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	waitNoXDP(t, lb, "eth0")
	if left := listDir(t, pin); len(left) != 0 {
		t.Errorf("left under the pin path after Unpin: %v", left)
	}
	if err := Unpin(pin); err != nil {
		t.Errorf("second Unpin: %v", err)
	}
	if err := Unpin(filepath.Join(pin, "missing")); err != nil {
		t.Errorf("Unpin of a missing path: %v", err)
	}
}

func TestDecapAndPassStayAttached(t *testing.T) {
	backend, _ := pair(t)
	do := func(f func() error) {
		t.Helper()
		if err := backend.Do(f); err != nil {
			t.Fatal(err)
		}
	}
	log, buf := newLogger(t)

	do(func() error { return AttachDecap("eth0", ModeAuto, AllowAny, log) })
	id, attr := xdpOf(t, backend, "eth0")
	if id == 0 || attr != xdpAttachedDrv || progName(t, id) != "xlb_decap" {
		t.Fatalf("after AttachDecap auto: prog %d mode %d", id, attr)
	}
	if !strings.Contains(buf.String(), "attached decap program") {
		t.Errorf("no log line about the attach:\n%s", buf)
	}

	// Generic replaces the native program.
	do(func() error { return AttachDecap("eth0", ModeGeneric, AllowAny, log) })
	id2, attr := xdpOf(t, backend, "eth0")
	if id2 == 0 || id2 == id || attr != xdpAttachedSKB || progName(t, id2) != "xlb_decap" {
		t.Fatalf("after AttachDecap generic: prog %d (was %d) mode %d", id2, id, attr)
	}

	do(func() error { return DetachDecap("eth0") })
	if id, _ := xdpOf(t, backend, "eth0"); id != 0 {
		t.Fatalf("after DetachDecap: prog %d", id)
	}
	// Nothing attached: said so, for the command to tell "nothing to remove".
	if err := backend.Do(func() error { return DetachDecap("eth0") }); !errors.Is(err, ErrNoXDP) {
		t.Errorf("DetachDecap with nothing attached: %v, want ErrNoXDP", err)
	}

	// The pass program is xlb's, but not the decap program: left in place.
	do(func() error { return AttachPass("eth0") })
	id, attr = xdpOf(t, backend, "eth0")
	if id == 0 || attr != xdpAttachedDrv || progName(t, id) != "xlb_pass" {
		t.Fatalf("after AttachPass: prog %d mode %d", id, attr)
	}
	err := backend.Do(func() error { return DetachDecap("eth0") })
	if err == nil || !strings.Contains(err.Error(), `"xlb_pass"`) || !strings.Contains(err.Error(), "not xlb's decap program") {
		t.Errorf("DetachDecap of the pass program: %v, want a refusal naming xlb_pass", err)
	}
	if got, _ := xdpOf(t, backend, "eth0"); got != id {
		t.Fatalf("after DetachDecap of the pass program: prog %d, want %d still there", got, id)
	}
	do(func() error {
		iface, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return setXDP(iface, -1, ModeNative)
	})

	// Netlink refuses to touch a balancer's bpf_link, and detach names it.
	d := load(t, Options{NoPin: true})
	attach(t, backend, d, "eth0", ModeGeneric)
	err = backend.Do(func() error { return AttachDecap("eth0", ModeGeneric, AllowAny, nil) })
	if err == nil || !strings.Contains(err.Error(), "XDP link is attached") {
		t.Errorf("AttachDecap over a bpf_link: %v", err)
	}
	err = backend.Do(func() error { return DetachDecap("eth0") })
	if err == nil || !strings.Contains(err.Error(), `"xlb_lb"`) || !strings.Contains(err.Error(), "xlbctl detach") {
		t.Errorf("DetachDecap over the balancer's link: %v, want a refusal naming xlb_lb", err)
	}
}

// TestDetachDecapLeavesOtherPrograms: an XDP program that is not xlb's
// (the backend's own, or the wrong interface) stays attached, and the
// refusal names it.
func TestDetachDecapLeavesOtherPrograms(t *testing.T) {
	backend, _ := pair(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "site_filter", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	for _, mode := range []Mode{ModeGeneric, ModeNative} {
		t.Run(string(mode), func(t *testing.T) {
			if err := backend.Do(func() error {
				iface, err := netlink.LinkByName("eth0")
				if err != nil {
					return err
				}
				return setXDP(iface, prog.FD(), mode)
			}); err != nil {
				t.Fatal(err)
			}
			id, _ := xdpOf(t, backend, "eth0")
			err := backend.Do(func() error { return DetachDecap("eth0") })
			if err == nil || errors.Is(err, ErrNoXDP) || !strings.Contains(err.Error(), `"site_filter"`) || !strings.Contains(err.Error(), "left in place") {
				t.Errorf("DetachDecap over another program: %v, want a refusal naming site_filter", err)
			}
			if got, _ := xdpOf(t, backend, "eth0"); got == 0 || got != id {
				t.Errorf("after the refused detach: prog %d, want %d", got, id)
			}
			if _, err := decapStatsIn(backend, "eth0"); err == nil || !strings.Contains(err.Error(), "site_filter") {
				t.Errorf("DecapStats over another program: %v", err)
			}
			if err := backend.Do(func() error {
				iface, err := netlink.LinkByName("eth0")
				if err != nil {
					return err
				}
				return setXDP(iface, -1, mode)
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// decapStatsIn is DecapStats in h's namespace.
func decapStatsIn(h *netns.Host, ifname string) ([]DecapStat, error) {
	var st []DecapStat
	err := h.Do(func() error {
		var err error
		st, err = DecapStats(ifname)
		return err
	})
	return st, err
}

func TestVerifierLogIsShortUnlessVerbose(t *testing.T) {
	var lines []string
	for i := range 100 {
		lines = append(lines, "line "+strconv.Itoa(i))
	}
	ve := &ebpf.VerifierError{Cause: unix.EACCES, Log: lines}
	short := withVerifierLog(fmt.Errorf("program xlb_lb: %w", ve), false)
	if !strings.Contains(short.Error(), "line 99") || strings.Contains(short.Error(), "line 79\n") ||
		!strings.Contains(short.Error(), "80 line(s) omitted") {
		t.Errorf("short form:\n%v", short)
	}
	full := withVerifierLog(fmt.Errorf("program xlb_lb: %w", ve), true)
	if !strings.Contains(full.Error(), "line 0\n") || !strings.Contains(full.Error(), "line 99") {
		t.Errorf("verbose form lacks lines:\n%v", full)
	}
	for _, err := range []error{short, full} {
		if !errors.Is(err, unix.EACCES) {
			t.Errorf("%v does not wrap the cause", err)
		}
	}
}

// An LRU-hash flows map pinned by an xlb from before the per-CPU bucket table
// is refused as another version's, not as a size change.
func TestLoadRejectsPinnedLRUFlows(t *testing.T) {
	pin := bpffs(t)
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "flows", Type: ebpf.LRUHash, KeySize: 40, ValueSize: 24, MaxEntries: 1 << 20, Flags: 1 << 1})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(filepath.Join(pin, "flows")); err != nil {
		t.Fatal(err)
	}
	d, err := Load(Options{PinPath: pin})
	if err == nil {
		d.Close()
		t.Fatal("Load adopted an LRU-hash flows map")
	}
	if msg := err.Error(); !strings.Contains(msg, "another xlb version") || strings.Contains(msg, "flow table size changed") {
		t.Errorf("error: %v", err)
	}
}

// checkMapBTF fails unless m carries BTF (so that bpftool dumps it by field
// names, as SPEC promises), which the kernel keeps for every map but those
// holding other maps.
func checkMapBTF(t *testing.T, m *ebpf.Map, name string) {
	t.Helper()
	if m.Type() == ebpf.ArrayOfMaps || m.Type() == ebpf.HashOfMaps {
		return
	}
	info, err := m.Info()
	if err != nil {
		t.Errorf("map %s: %v", name, err)
		return
	}
	if _, ok := info.BTFID(); !ok {
		t.Errorf("map %s carries no BTF: bpftool would dump it as raw bytes", name)
	}
}

// TestUnpinDetachesWhileHeld: Unpin (xlbctl detach, xlbd -detach) takes the
// program off the interface even while a running xlbd holds its link open;
// removing the pin alone left it forwarding until that xlbd exited.
func TestUnpinDetachesWhileHeld(t *testing.T) {
	lb, _ := pair(t)
	pin := bpffs(t)
	d := load(t, Options{PinPath: pin})
	attach(t, lb, d, "eth0", ModeNative)
	if id, _ := xdpOf(t, lb, "eth0"); id == 0 {
		t.Fatal("no program attached")
	}
	if err := Unpin(pin); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	waitNoXDP(t, lb, "eth0")
	if err := d.Close(); err != nil {
		t.Errorf("Close after Unpin: %v", err)
	}
}

// TestLostAttachments: an attachment whose link no longer holds the program
// is reported with how it was lost: detached by someone (xlbctl detach: the
// pins are gone too), its interface deleted, or deleted and back under a new
// ifindex. Attach after a detach attaches again and pins the maps again;
// after a re-creation it attaches to the new interface, egress probes too.
func TestLostAttachments(t *testing.T) {
	tp := netns.New(t)
	lb, peer := tp.AddHost("lb"), tp.AddHost("peer")
	tp.Pair(lb, "eth0", nil, peer, "eth0", nil)
	pin := bpffs(t)
	d := load(t, Options{PinPath: pin})
	attach(t, lb, d, "eth0", ModeGeneric)
	lost := func() []Loss {
		t.Helper()
		var out []Loss
		if err := lb.Do(func() error { out = d.Lost(); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := lost(); len(got) != 0 {
		t.Fatalf("Lost() right after Attach = %v, want none", got)
	}

	if err := Unpin(pin); err != nil {
		t.Fatal(err)
	}
	waitNoXDP(t, lb, "eth0")
	if got := lost(); !reflect.DeepEqual(got, []Loss{{"eth0", LinkDetached}}) {
		t.Fatalf("Lost() after Unpin = %v, want eth0 detached", got)
	}
	a := attach(t, lb, d, "eth0", ModeGeneric)
	if id, _ := xdpOf(t, lb, "eth0"); id != uint32(a.ProgramID) {
		t.Fatalf("after attaching again eth0 runs program %d, want %d", id, a.ProgramID)
	}
	if got := lost(); len(got) != 0 {
		t.Fatalf("Lost() after attaching again = %v, want none", got)
	}
	for _, name := range []string{"flows", "services", "backends", "links/eth0"} {
		if _, err := os.Stat(filepath.Join(pin, name)); err != nil {
			t.Errorf("after attaching again: %v, want %s pinned again", err, name)
		}
	}
	if err := lb.Do(func() error { return d.AttachHealthProbes("eth0") }); err != nil {
		t.Fatal(err)
	}

	lb.Run(t, "ip", "link", "del", "eth0")
	if got := lost(); !reflect.DeepEqual(got, []Loss{{"eth0", InterfaceGone}}) {
		t.Fatalf("Lost() after deleting eth0 = %v, want eth0 gone", got)
	}
	tp.Pair(lb, "eth0", nil, peer, "eth1", nil)
	if got := lost(); !reflect.DeepEqual(got, []Loss{{"eth0", InterfaceRecreated}}) {
		t.Fatalf("Lost() after re-creating eth0 = %v, want eth0 re-created", got)
	}
	a = attach(t, lb, d, "eth0", ModeGeneric)
	if id, _ := xdpOf(t, lb, "eth0"); id != uint32(a.ProgramID) {
		t.Fatalf("after the re-creation eth0 runs program %d, want %d", id, a.ProgramID)
	}
	if got := lost(); len(got) != 0 {
		t.Fatalf("Lost() after attaching to the new eth0 = %v, want none", got)
	}
	if err := lb.Do(func() error { return d.AttachHealthProbes("eth0") }); err != nil {
		t.Fatal(err)
	}
	var ifindex int
	if err := lb.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			ifindex = l.Attrs().Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	probe := d.probes["eth0"]
	d.mu.Unlock()
	if info, err := probe.Info(); err != nil || info.TCX() == nil || int(info.TCX().Ifindex) != ifindex {
		t.Errorf("health-probe link after the re-creation: %+v, %v; want it on the new eth0 (ifindex %d)", info, err, ifindex)
	}

	// Gone for good: a reload without it detaches what is left.
	lb.Run(t, "ip", "link", "del", "eth0")
	if err := lb.Do(func() error { return d.Detach("eth0") }); err != nil {
		t.Errorf("Detach of an interface that is gone: %v", err)
	}
	if got := lost(); len(got) != 0 {
		t.Errorf("Lost() after detaching the gone eth0 = %v, want none", got)
	}
}

// TestUnpinRemovesProbeNeighbours: the permanent entries xlbd makes for
// probes through the forwarding path (an address given the interface's own
// MAC) go with a detach; other permanent entries stay.
func TestUnpinRemovesProbeNeighbours(t *testing.T) {
	lb, _ := pair(t)
	pin := bpffs(t)
	d := load(t, Options{PinPath: pin})
	attach(t, lb, d, "eth0", ModeGeneric)
	var own net.HardwareAddr
	foreign := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}
	if err := lb.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		own = l.Attrs().HardwareAddr
		for ip, mac := range map[string]net.HardwareAddr{"10.99.0.100": own, "10.99.0.7": foreign} {
			if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
				IP: net.ParseIP(ip), HardwareAddr: mac}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := lb.Do(func() error { return Unpin(pin) }); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	out := lb.Run(t, "ip", "neigh", "show", "dev", "eth0")
	if strings.Contains(out, "10.99.0.100 ") {
		t.Errorf("the probe entry (own MAC %s) survived the detach:\n%s", own, out)
	}
	if !strings.Contains(out, "10.99.0.7 ") {
		t.Errorf("a foreign permanent entry went with the detach:\n%s", out)
	}
}
