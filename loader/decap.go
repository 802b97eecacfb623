//go:build linux

package loader

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
)

// The backend-side programs are attached through netlink (IFLA_XDP), not with a
// bpf_link: the device itself then holds the program, so it stays attached after
// `xlbd decap` exits, with no bpffs pin to manage.

// AttachDecap attaches the decapsulation program (xlb_decap) to the named interface,
// resolved in the calling thread's network namespace, replacing any program attached
// there through netlink. Auto mode tries driver mode, then generic (skb) mode.
func AttachDecap(ifname string, mode Mode, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, id, err := attachNetlink(ifname, bpf.DecapProgXlbDecap, mode, log)
	if err != nil {
		return fmt.Errorf("attach decap to %s: %w", ifname, err)
	}
	log.Info("attached decap program", keyInterface, ifname, keyMode, m, keyProgramID, id)
	return nil
}

// DetachDecap removes any XDP program attached through netlink from the named
// interface, in both modes. A bpf_link (the balancer's program) is left alone and
// reported as an error.
func DetachDecap(ifname string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	iface, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("detach decap from %s: %w", ifname, err)
	}
	var errs []error
	for _, m := range []Mode{ModeNative, ModeGeneric} {
		if err := setXDP(iface, -1, m); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach decap from %s: %w", ifname, err)
	}
	return nil
}

// AttachPass attaches the do-nothing xlb_pass program in native mode to the named
// interface, e.g. the peer veth of a balancer running in native mode, so that the
// frames the balancer sends with XDP_TX are received instead of dropped.
func AttachPass(ifname string) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, _, err := attachNetlink(ifname, bpf.DecapProgXlbPass, ModeNative, log); err != nil {
		return fmt.Errorf("attach pass program to %s: %w", ifname, err)
	}
	return nil
}

// attachNetlink loads one program of the decap collection and attaches it to ifname.
func attachNetlink(ifname, progName string, mode Mode, log *slog.Logger) (Mode, ebpf.ProgramID, error) {
	if !mode.valid() {
		return "", 0, fmt.Errorf("unknown mode %q", mode)
	}
	prog, err := loadDecapProgram(progName)
	if err != nil {
		return "", 0, err
	}
	// The attached program keeps itself (and its map) alive; our descriptor can go.
	defer prog.Close()
	var id ebpf.ProgramID
	if info, err := prog.Info(); err == nil {
		id, _ = info.ID()
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	iface, err := netlink.LinkByName(ifname)
	if err != nil {
		return "", 0, err
	}
	cur := attachedMode(iface)
	var errs []error
	for _, m := range mode.candidates() {
		if cur != "" && cur != m {
			// The kernel refuses a native and a generic program side by side, so the
			// other mode's program goes first (replacement within a mode is atomic).
			if err := setXDP(iface, -1, cur); err != nil {
				return "", 0, err
			}
			cur = ""
		}
		err := setXDP(iface, prog.FD(), m)
		if err == nil {
			return m, id, nil
		}
		errs = append(errs, err)
		if len(errs) < len(mode.candidates()) {
			log.Info("native xdp unavailable, falling back to generic", keyInterface, ifname, keyError, err)
		}
	}
	return "", 0, errors.Join(errs...)
}

// attachedMode says in which mode a program is attached to iface ("" if none).
func attachedMode(iface netlink.Link) Mode {
	x := iface.Attrs().Xdp
	if x == nil {
		return ""
	}
	switch x.AttachMode {
	case xdpAttachedDrv:
		return ModeNative
	case xdpAttachedSKB:
		return ModeGeneric
	}
	return ""
}

// setXDP attaches fd (or detaches, with fd -1) in mode through netlink.
func setXDP(iface netlink.Link, fd int, mode Mode) error {
	flags := unix.XDP_FLAGS_DRV_MODE
	if mode == ModeGeneric {
		flags = unix.XDP_FLAGS_SKB_MODE
	}
	err := netlink.LinkSetXdpFdWithFlags(iface, fd, flags)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY):
		// A bpf_link owns the hook; netlink may not replace or remove it.
		return fmt.Errorf("%s mode: %w (an XDP link is attached, e.g. xlb's balancer: detach it with xlbctl detach)", mode, err)
	case fd < 0:
		return fmt.Errorf("%s mode: remove program: %w", mode, err)
	}
	return fmt.Errorf("%s mode: %w", mode, err)
}

// loadDecapProgram loads one program of the decap collection, and only the maps it
// uses (xlb_pass needs none).
func loadDecapProgram(name string) (*ebpf.Program, error) {
	spec, err := bpf.LoadDecap()
	if err != nil {
		return nil, err
	}
	switch name {
	case bpf.DecapProgXlbDecap:
		// LoadAndAssign creates decap_stats for the program and drops our handle on it:
		// the program holds its own reference.
		var objs struct {
			Prog *ebpf.Program `ebpf:"xlb_decap"`
		}
		if err := spec.LoadAndAssign(&objs, nil); err != nil {
			return nil, fmt.Errorf("load %s: %w", name, withVerifierLog(err, false))
		}
		return objs.Prog, nil
	case bpf.DecapProgXlbPass:
		var objs struct {
			Prog *ebpf.Program `ebpf:"xlb_pass"`
		}
		if err := spec.LoadAndAssign(&objs, nil); err != nil {
			return nil, fmt.Errorf("load %s: %w", name, withVerifierLog(err, false))
		}
		return objs.Prog, nil
	}
	return nil, fmt.Errorf("no program %s in the decap collection", name)
}
