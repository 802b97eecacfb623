//go:build linux

package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"

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
//
// Only packets whose outer source lies inside one of allow are decapsulated; others
// pass to the kernel untouched and are counted (DecapStats). allow must not be empty:
// AllowAny is the explicit "every source" choice.
func AttachDecap(ifname string, mode Mode, allow []netip.Prefix, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(allow) == 0 {
		return fmt.Errorf("attach decap to %s: no allowed outer sources (use AllowAny to decapsulate from anyone)", ifname)
	}
	m, id, err := attachNetlink(ifname, bpf.DecapProgXlbDecap, mode, allow, log)
	if err != nil {
		return fmt.Errorf("attach decap to %s: %w", ifname, err)
	}
	log.Info("attached decap program", keyInterface, ifname, keyMode, m, keyProgramID, id, "allow", allow)
	return nil
}

// AllowAny is the allow list that decapsulates from every outer source.
var AllowAny = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// DecapStatNames label the decap program's counters, in the order of enum
// xlb_decap_stat (bpf/include/consts.h); a test keeps them in step.
var DecapStatNames = []string{"decap_ipip", "decap_ip6ip6", "pass_not_encapsulated", "drop_malformed", "pass_source_not_allowed", "pass_outer_fragment"}

// DecapStat is one summed counter of the decap program.
type DecapStat struct {
	Name    string
	Packets uint64
	Bytes   uint64
}

// DecapStats reads the counters of the decap program attached to the named interface
// (in the calling thread's network namespace), summed over CPUs.
func DecapStats(ifname string) ([]DecapStat, error) {
	runtime.LockOSThread()
	iface, err := netlink.LinkByName(ifname)
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("decap stats of %s: %w", ifname, err)
	}
	prog, info, err := attachedXDP(iface)
	if err != nil {
		return nil, fmt.Errorf("decap stats of %s: %w", ifname, err)
	}
	defer prog.Close()
	if err := isDecap(info); err != nil {
		return nil, fmt.Errorf("decap stats of %s: %w", ifname, err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		mi, err := m.Info()
		if err != nil || mi.Name != bpf.DecapMapDecapStats {
			m.Close()
			continue
		}
		defer m.Close()
		out := make([]DecapStat, len(DecapStatNames))
		for i, name := range DecapStatNames {
			var per []bpf.DecapStat
			if err := m.Lookup(uint32(i), &per); err != nil {
				return nil, fmt.Errorf("decap stats of %s: read %s: %w", ifname, name, err)
			}
			out[i].Name = name
			for _, c := range per {
				out[i].Packets += c.Packets
				out[i].Bytes += c.Bytes
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("decap stats of %s: program %d has no %s map", ifname, iface.Attrs().Xdp.ProgId, bpf.DecapMapDecapStats)
}

// ErrNoXDP is the answer of DetachDecap and DecapStats for an interface
// with no XDP program attached.
var ErrNoXDP = errors.New("no XDP program attached")

// DetachDecap removes xlb's decap program from the named interface (in the
// calling thread's network namespace). Any other XDP program is left in
// place and reported as an error: the hook is the interface's, and an
// operator who typed the wrong interface, or whose backend runs its own XDP
// program, must not lose it. With no program attached it returns ErrNoXDP.
//
// Netlink has no "remove only if it is still this program", so a program
// attached between the check and the removal would go too; nothing of
// xlb's races there (xlbd decap is one command at a time).
func DetachDecap(ifname string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	iface, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("detach decap from %s: %w", ifname, err)
	}
	prog, info, err := attachedXDP(iface)
	if err != nil {
		return fmt.Errorf("detach decap from %s: %w", ifname, err)
	}
	prog.Close()
	if err := isDecap(info); err != nil {
		return fmt.Errorf("detach decap from %s: %w: left in place", ifname, err)
	}
	modes := []Mode{ModeNative, ModeGeneric}
	if m := attachedMode(iface); m != "" {
		modes = []Mode{m}
	}
	var errs []error
	for _, m := range modes {
		if err := setXDP(iface, -1, m); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach decap from %s: %w", ifname, err)
	}
	return nil
}

// attachedXDP opens the XDP program attached to iface, and reads its info;
// ErrNoXDP when there is none.
func attachedXDP(iface netlink.Link) (*ebpf.Program, *ebpf.ProgramInfo, error) {
	x := iface.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return nil, nil, ErrNoXDP
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
	if err != nil {
		return nil, nil, fmt.Errorf("open XDP program %d: %w", x.ProgId, err)
	}
	info, err := prog.Info()
	if err != nil {
		prog.Close()
		return nil, nil, fmt.Errorf("XDP program %d: %w", x.ProgId, err)
	}
	return prog, info, nil
}

// isDecap says why info is not xlb's decap program (nil if it is). The
// kernel keeps BPF_OBJ_NAME_LEN-1 characters of a program's name.
func isDecap(info *ebpf.ProgramInfo) error {
	if info.Name == bpf.DecapProgXlbDecap[:min(len(bpf.DecapProgXlbDecap), 15)] {
		return nil
	}
	id, _ := info.ID()
	hint := ""
	if info.Name == bpf.LbProgXlbLb {
		hint = " (xlb's balancer: xlbctl detach removes it)"
	}
	return fmt.Errorf("the XDP program attached is %q (id %d), not xlb's decap program%s", info.Name, id, hint)
}

// AttachPass attaches the do-nothing xlb_pass program in native mode to the named
// interface, e.g. the peer veth of a balancer running in native mode, so that the
// frames the balancer sends with XDP_TX are received instead of dropped.
func AttachPass(ifname string) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, _, err := attachNetlink(ifname, bpf.DecapProgXlbPass, ModeNative, nil, log); err != nil {
		return fmt.Errorf("attach pass program to %s: %w", ifname, err)
	}
	return nil
}

// attachNetlink loads one program of the decap collection and attaches it to ifname.
func attachNetlink(ifname, progName string, mode Mode, allow []netip.Prefix, log *slog.Logger) (Mode, ebpf.ProgramID, error) {
	if !mode.valid() {
		return "", 0, fmt.Errorf("unknown mode %q", mode)
	}
	prog, err := loadDecapProgram(progName, allow)
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
// uses (xlb_pass needs none); xlb_decap's allow lists are filled from allow.
func loadDecapProgram(name string, allow []netip.Prefix) (*ebpf.Program, error) {
	spec, err := bpf.LoadDecap()
	if err != nil {
		return nil, err
	}
	switch name {
	case bpf.DecapProgXlbDecap:
		// LoadAndAssign creates the maps for the program; the program holds its own
		// references once our handles are closed.
		var objs struct {
			Prog   *ebpf.Program `ebpf:"xlb_decap"`
			Allow4 *ebpf.Map     `ebpf:"decap_allow4"`
			Allow6 *ebpf.Map     `ebpf:"decap_allow6"`
		}
		if err := spec.LoadAndAssign(&objs, nil); err != nil {
			return nil, fmt.Errorf("load %s: %w", name, withVerifierLog(err, false))
		}
		defer objs.Allow4.Close()
		defer objs.Allow6.Close()
		if err := FillDecapAllow(objs.Allow4, objs.Allow6, allow); err != nil {
			objs.Prog.Close()
			return nil, err
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

// FillDecapAllow writes allowed outer-source prefixes into the decap program's LPM
// tries (IPv4 prefixes into allow4, IPv6 into allow6).
func FillDecapAllow(allow4, allow6 *ebpf.Map, allow []netip.Prefix) error {
	for _, p := range allow {
		p = p.Masked()
		one := uint8(1)
		if p.Addr().Is4() {
			b := p.Addr().As4()
			k := bpf.DecapLpm4Key{Prefixlen: uint32(p.Bits()), Addr: binary.NativeEndian.Uint32(b[:])}
			if err := allow4.Put(&k, &one); err != nil {
				return fmt.Errorf("allow %s: %w", p, err)
			}
			continue
		}
		b := p.Addr().As16()
		k := bpf.DecapLpm6Key{Prefixlen: uint32(p.Bits())}
		for i := range k.Addr {
			k.Addr[i] = binary.NativeEndian.Uint32(b[i*4:])
		}
		if err := allow6.Put(&k, &one); err != nil {
			return fmt.Errorf("allow %s: %w", p, err)
		}
	}
	return nil
}

// DecapAllowMax is how many -allow prefixes of one family the decap program
// holds (XLB_DECAP_ALLOW_ENTRIES; a test keeps them equal).
const DecapAllowMax = 256

// ParseAllow parses a -allow value: comma-separated CIDRs (a bare address is a
// single host), or "any".
func ParseAllow(s string) ([]netip.Prefix, bool, error) {
	if s == "any" {
		return AllowAny, true, nil
	}
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "any" {
			return nil, false, fmt.Errorf("-allow: \"any\" must stand alone")
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, false, fmt.Errorf("-allow: %q is not a CIDR or an address", f)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, false, fmt.Errorf("-allow: %q mixes IPv4-mapped and IPv6 addresses", f)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, false, fmt.Errorf("-allow: no CIDR given")
	}
	var v4 int
	for _, p := range out {
		if p.Addr().Is4() {
			v4++
		}
	}
	if v4 > DecapAllowMax || len(out)-v4 > DecapAllowMax {
		return nil, false, fmt.Errorf("-allow: %d IPv4 and %d IPv6 prefixes; the decap program holds at most %d of each (cover the balancers with wider prefixes)",
			v4, len(out)-v4, DecapAllowMax)
	}
	return out, false, nil
}
