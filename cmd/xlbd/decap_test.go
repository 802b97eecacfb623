//go:build linux

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/test/netns"
)

func TestDecapRequiresAllow(t *testing.T) {
	for _, args := range [][]string{
		{"decap", "-interface", "eth0"},
		{"decap", "-interface", "eth0", "-allow", ""},
		{"decap", "-interface", "eth0", "-allow", "10.0.0.0/8,any"},
		{"decap", "-interface", "eth0", "-allow", "not-a-cidr"},
		// Every -allow counts, not the last one alone. (An interface that
		// does not exist: should parsing let this through, nothing of the
		// machine's is touched.)
		{"decap", "-interface", "xlb-none0", "-allow", "not-a-cidr", "-allow", "10.0.0.1"},
		{"decap", "-interface", "xlb-none0", "-allow", "any", "-allow", "10.0.0.1"},
		// A space-separated list is a mistake, not a shorter list.
		{"decap", "-interface", "xlb-none0", "-allow", "10.0.0.1", "10.0.0.2"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "-allow") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

// TestDecapDetachSaysWhatItDid: -detach removes xlb's decap program, says
// there was nothing to remove when nothing is attached (exit 0), and leaves
// another program in place, naming it (exit 1).
func TestDecapDetachSaysWhatItDid(t *testing.T) {
	tp := netns.New(t)
	backend, peer := tp.AddHost("be"), tp.AddHost("peer")
	tp.Pair(backend, "eth0", []string{"10.98.0.1/24"}, peer, "eth0", []string{"10.98.0.2/24"})
	xlbd := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := -1
		if err := backend.Do(func() error { code = run(args, &out, &errb); return nil }); err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	detach := []string{"decap", "-interface", "eth0", "-detach"}

	if code, out, errOut := xlbd(detach...); code != 0 || out != "no XDP program on eth0: nothing to remove\n" {
		t.Errorf("detach with nothing attached: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	if code, out, errOut := xlbd("decap", "-interface", "eth0", "-allow", "10.98.0.2", "-mode", "generic"); code != 0 {
		t.Fatalf("attach: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := xlbd(detach...); code != 0 || out != "decap program removed from eth0\n" {
		t.Errorf("detach of the decap program: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if id := xdpProg(t, backend); id != 0 {
		t.Errorf("after the detach: XDP program %d on eth0", id)
	}

	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "site_filter", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if err := backend.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, prog.FD(), unix.XDP_FLAGS_SKB_MODE)
	}); err != nil {
		t.Fatal(err)
	}
	id := xdpProg(t, backend)
	code, out, errOut := xlbd(detach...)
	if code != 1 || out != "" || !strings.Contains(errOut, `"site_filter"`) || !strings.Contains(errOut, "left in place") {
		t.Errorf("detach over another program: exit %d, stdout %q, stderr %q; want exit 1 naming site_filter", code, out, errOut)
	}
	if got := xdpProg(t, backend); got != id {
		t.Errorf("after the refused detach: XDP program %d on eth0, want %d", got, id)
	}
}

// xdpProg is the id of the XDP program on h's eth0, 0 if none.
func xdpProg(t *testing.T, h *netns.Host) uint32 {
	t.Helper()
	var id uint32
	if err := h.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			id = x.ProgId
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return id
}
