//go:build linux

package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Values of IFLA_XDP_ATTACHED (enum in linux/if_link.h, not in x/sys/unix).
const (
	xdpAttachedDrv = 1
	xdpAttachedSKB = 2
)

// Attachment describes the load-balancer program attached to one interface.
type Attachment struct {
	Interface string
	Ifindex   int
	// Mode is the mode in effect: native or generic, never auto.
	Mode      Mode
	ProgramID ebpf.ProgramID
	// Replaced reports that a link pinned by a previous daemon was switched to this
	// program in place, without a moment with no program attached.
	Replaced bool
}

type attachment struct {
	Attachment
	link link.Link
}

// Attach attaches the load-balancer program to the named interface with a bpf_link.
//
// The interface name is resolved in the calling thread's network namespace. In auto
// mode native is tried first, then generic. With pins, the link is pinned at
// <PinPath>/links/<ifname> once the attach succeeded. A link pinned there by a
// previous daemon is switched to the new program in place (no traffic gap); a defunct
// one (its interface is gone) is removed and a fresh link made. Native mode on a veth
// whose peer has no XDP program logs a warning: the peer drops XDP_TX frames.
func (d *Dataplane) Attach(ifname string, mode Mode) (Attachment, error) {
	if !mode.valid() {
		return Attachment{}, fmt.Errorf("attach xdp to %s: unknown mode %q", ifname, mode)
	}
	// The name lookup and the attach must see the same network namespace; a caller
	// that switched only its own thread into a namespace relies on this.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Attachment{}, fmt.Errorf("attach xdp to %s: dataplane is closed", ifname)
	}
	iface, err := netlink.LinkByName(ifname)
	if err != nil {
		return Attachment{}, fmt.Errorf("attach xdp to %s: %w", ifname, err)
	}
	ifindex := iface.Attrs().Index

	if cur, ok := d.links[ifname]; ok {
		if cur.Ifindex != ifindex {
			// The interface was deleted and re-created: the old link is
			// defunct, and so is the egress probe link.
			d.log.Info("interface was re-created, dropping its old xdp link", keyInterface, ifname)
			_ = dropLink(cur.link)
			delete(d.links, ifname)
			d.dropProbes(ifname)
		} else if !linkHolds(cur.link) {
			// Someone detached it (xlbctl detach, bpftool link detach):
			// attaching again is what this call asks for.
			d.log.Info("xdp link was detached by someone else, attaching again", keyInterface, ifname)
			_ = dropLink(cur.link)
			delete(d.links, ifname)
			if err := d.repinMaps(); err != nil {
				return Attachment{}, fmt.Errorf("attach xdp to %s: %w", ifname, err)
			}
		} else if mode == ModeAuto || mode == cur.Mode {
			return cur.Attachment, nil
		} else {
			return Attachment{}, fmt.Errorf("attach xdp to %s: already attached in %s mode; detach it first", ifname, cur.Mode)
		}
	}

	var restore Mode // mode of a pinned link removed because another mode was asked for
	if d.pinPath != "" {
		a, oldMode, err := d.adoptPinnedLink(ifname, iface, mode)
		if err != nil {
			return Attachment{}, err
		}
		if a != nil {
			d.links[ifname] = a
			return a.Attachment, nil
		}
		restore = oldMode
		if restore != "" {
			// Its program is gone now; look again so the check below sees that.
			if iface, err = netlink.LinkByIndex(ifindex); err != nil {
				return Attachment{}, fmt.Errorf("attach xdp to %s: %w", ifname, err)
			}
		}
	}

	if x := iface.Attrs().Xdp; x != nil && x.ProgId != 0 {
		return Attachment{}, fmt.Errorf("attach xdp to %s: the interface already has an XDP program (id %d) that this xlb did not attach; remove it first (ip link set dev %s xdp off)",
			ifname, x.ProgId, ifname)
	}
	a, err := d.attachFresh(ifname, ifindex, mode)
	if err != nil && restore != "" {
		// Switching modes needs a gap; if the new mode fails, put the old one back.
		if back, rerr := d.attachFresh(ifname, ifindex, restore); rerr == nil {
			d.links[ifname] = back
			return Attachment{}, fmt.Errorf("%w (the previous %s attachment was restored)", err, restore)
		}
	}
	if err != nil {
		return Attachment{}, err
	}
	d.links[ifname] = a
	if a.Mode == ModeNative {
		d.checkVethPeer(iface)
	}
	return a.Attachment, nil
}

// adoptPinnedLink takes over the link a previous daemon pinned for ifname, switching it
// to this program. It returns nil (and no error) when there is none to take over, with
// oldMode set when a working link was removed because another mode was asked for.
func (d *Dataplane) adoptPinnedLink(ifname string, iface netlink.Link, mode Mode) (_ *attachment, oldMode Mode, _ error) {
	path := filepath.Join(d.pinPath, linksDir, ifname)
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("attach xdp to %s: %w", ifname, err)
	}
	info, err := l.Info()
	if err != nil || info.Type != link.XDPType || info.XDP() == nil {
		l.Close()
		return nil, "", fmt.Errorf("attach xdp to %s: pinned object %s is not an XDP link (%v); remove it (xlbctl detach)", ifname, path, err)
	}
	ifindex := iface.Attrs().Index
	switch linked := int(info.XDP().Ifindex); {
	case linked == 0:
		// The kernel detached the link when its interface went away.
		d.log.Info("removing defunct pinned xdp link", keyInterface, ifname, keyPath, path)
		if err := dropLink(l); err != nil {
			return nil, "", fmt.Errorf("attach xdp to %s: remove defunct link %s: %w", ifname, path, err)
		}
		return nil, "", nil
	case linked != ifindex:
		l.Close()
		return nil, "", fmt.Errorf("attach xdp to %s: pinned link %s is attached to ifindex %d, but %s is ifindex %d; run xlbctl detach to remove it",
			ifname, path, linked, ifname, ifindex)
	}
	x := iface.Attrs().Xdp
	if x == nil || x.ProgId != uint32(info.Program) {
		// Same ifindex, other program: the link belongs to an interface in another namespace.
		l.Close()
		return nil, "", fmt.Errorf("attach xdp to %s: pinned link %s runs program %d, which is not the one on %s (another network namespace?); run xlbctl detach to remove it",
			ifname, path, info.Program, ifname)
	}
	cur := ModeGeneric
	if x.AttachMode == xdpAttachedDrv {
		cur = ModeNative
	}
	if mode != ModeAuto && mode != cur {
		// The kernel has no in-place mode switch, so this one change costs a short gap.
		d.log.Info("xdp mode changed, re-attaching", keyInterface, ifname, "from", cur, "to", mode)
		if err := dropLink(l); err != nil {
			return nil, "", fmt.Errorf("attach xdp to %s: remove %s link: %w", ifname, cur, err)
		}
		return nil, cur, nil
	}
	if err := l.Update(d.Objs.XlbLb); err != nil {
		l.Close()
		return nil, "", fmt.Errorf("attach xdp to %s: replace program in pinned link: %w", ifname, err)
	}
	a := &attachment{
		Attachment: Attachment{Interface: ifname, Ifindex: ifindex, Mode: cur, ProgramID: d.progID, Replaced: true},
		link:       l,
	}
	d.log.Info("replaced xdp program in pinned link", keyInterface, ifname, keyIfindex, ifindex, keyMode, cur,
		"old_program_id", info.Program, keyProgramID, d.progID)
	return a, "", nil
}

// attachFresh makes a new link, trying the modes in order, and pins it.
func (d *Dataplane) attachFresh(ifname string, ifindex int, mode Mode) (*attachment, error) {
	var errs []error
	for _, m := range mode.candidates() {
		flags := link.XDPDriverMode
		if m == ModeGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: d.Objs.XlbLb, Interface: ifindex, Flags: flags})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s mode: %w", m, err))
			continue
		}
		if len(errs) > 0 {
			d.log.Info("native xdp unavailable, fell back to generic", keyInterface, ifname, keyError, errs[0])
		}
		if d.pinPath != "" {
			if err := d.pinLink(l, ifname); err != nil {
				l.Close() // detaches: an unpinned link would not outlive us
				return nil, fmt.Errorf("attach xdp to %s: %w", ifname, err)
			}
		}
		d.log.Info("attached xdp program", keyInterface, ifname, keyIfindex, ifindex, keyMode, m, keyProgramID, d.progID)
		return &attachment{
			Attachment: Attachment{Interface: ifname, Ifindex: ifindex, Mode: m, ProgramID: d.progID},
			link:       l,
		}, nil
	}
	return nil, fmt.Errorf("attach xdp to %s: %w", ifname, errors.Join(errs...))
}

func (d *Dataplane) pinLink(l link.Link, ifname string) error {
	dir := filepath.Join(d.pinPath, linksDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin link: %w", err)
	}
	path := filepath.Join(dir, ifname)
	if err := l.Pin(path); err != nil {
		return fmt.Errorf("pin link at %s: %w", path, err)
	}
	return nil
}

// dropLink detaches a link whoever else holds it, removes its pin and closes it.
func dropLink(l link.Link) error {
	var errs []error
	if err := l.Detach(); err != nil && !errors.Is(err, link.ErrNotSupported) {
		errs = append(errs, err)
	}
	if err := l.Unpin(); err != nil {
		errs = append(errs, err)
	}
	if err := l.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Attachments lists the interfaces this Dataplane attached to, by name.
func (d *Dataplane) Attachments() []Attachment {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Attachment, 0, len(d.links))
	for _, name := range sortedKeys(d.links) {
		out = append(out, d.links[name].Attachment)
	}
	return out
}

// LossKind says how an attachment lost its interface.
type LossKind int

const (
	// LinkDetached: the interface is there, the program is not: someone
	// detached the link (xlbctl detach, bpftool link detach). Only an
	// explicit Attach puts it back.
	LinkDetached LossKind = iota
	// InterfaceGone: the interface was deleted, and the kernel detached
	// the link with it.
	InterfaceGone
	// InterfaceRecreated: the interface was deleted and one of the same
	// name is back (a new ifindex); Attach attaches to it.
	InterfaceRecreated
)

func (k LossKind) String() string {
	switch k {
	case LinkDetached:
		return "detached"
	case InterfaceGone:
		return "interface gone"
	case InterfaceRecreated:
		return "interface re-created"
	}
	return fmt.Sprintf("LossKind(%d)", int(k))
}

// Loss is an attachment whose program no longer runs on its interface.
type Loss struct {
	Interface string
	Kind      LossKind
}

// Lost lists the attachments whose link no longer holds the program on
// their interface, by name. Names resolve in the calling thread's network
// namespace, as Attach's do.
func (d *Dataplane) Lost() []Loss {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Loss
	for _, name := range sortedKeys(d.links) {
		a := d.links[name]
		if linkHolds(a.link) {
			continue
		}
		kind := LinkDetached
		if iface, err := netlink.LinkByName(name); err != nil {
			kind = InterfaceGone
		} else if iface.Attrs().Index != a.Ifindex {
			kind = InterfaceRecreated
		}
		out = append(out, Loss{Interface: name, Kind: kind})
	}
	return out
}

// linkHolds says whether an XDP link still has its program on an
// interface: the kernel zeroes the link's ifindex when it is detached or
// its interface goes away.
func linkHolds(l link.Link) bool {
	info, err := l.Info()
	return err == nil && info.XDP() != nil && info.XDP().Ifindex != 0
}

// dropProbes closes the egress probe link of an interface, so that the
// next AttachHealthProbes attaches anew; under d.mu.
func (d *Dataplane) dropProbes(ifname string) {
	if l, ok := d.probes[ifname]; ok {
		_ = l.Close()
		delete(d.probes, ifname)
	}
}

// Detach removes the program from one interface: it detaches the link, unpins and
// closes it. A link pinned by a previous daemon and not yet adopted is removed too.
func (d *Dataplane) Detach(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("detach xdp from %s: dataplane is closed", ifname)
	}
	var l link.Link
	if a, ok := d.links[ifname]; ok {
		l = a.link
	} else if d.pinPath != "" {
		pinned, err := link.LoadPinnedLink(filepath.Join(d.pinPath, linksDir, ifname), nil)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("detach xdp from %s: %w", ifname, err)
		}
		l = pinned
	}
	if l == nil {
		return fmt.Errorf("detach xdp from %s: not attached", ifname)
	}
	delete(d.links, ifname)
	if err := dropLink(l); err != nil {
		return fmt.Errorf("detach xdp from %s: %w", ifname, err)
	}
	d.log.Info("detached xdp program", keyInterface, ifname)
	return nil
}

// checkVethPeer warns when native XDP runs on a veth whose peer has no XDP program:
// the peer then drops every frame the program sends back with XDP_TX.
func (d *Dataplane) checkVethPeer(iface netlink.Link) {
	v, ok := iface.(*netlink.Veth)
	if !ok {
		return
	}
	name := iface.Attrs().Name
	peer, err := vethPeer(v)
	if err != nil {
		d.log.Warn("native xdp on a veth whose peer could not be checked: XDP_TX frames will be dropped by the peer unless it runs an XDP program",
			keyInterface, name, keyError, err)
		return
	}
	pa := peer.Attrs()
	if pa.Xdp != nil && pa.Xdp.ProgId != 0 {
		return
	}
	d.log.Warn("native xdp on a veth whose peer has no XDP program: XDP_TX frames will be dropped by the peer unless it runs an XDP program (attach one there, e.g. xlb_pass, or use generic mode)",
		keyInterface, name, "peer", pa.Name, "peer_ifindex", pa.Index, "peer_netnsid", iface.Attrs().NetNsID)
}

// vethPeer finds the other end of a veth, which may live in another network namespace.
func vethPeer(v *netlink.Veth) (netlink.Link, error) {
	idx, err := netlink.VethPeerIndex(v)
	if err != nil {
		// IFLA_LINK carries the same index when ethtool stats are unavailable.
		if idx = v.Attrs().ParentIndex; idx <= 0 {
			return nil, fmt.Errorf("veth peer index: %w", err)
		}
	}
	nsid := v.Attrs().NetNsID
	if nsid < 0 { // IFLA_LINK_NETNSID is only sent for a peer in another namespace
		peer, err := netlink.LinkByIndex(idx)
		if err != nil {
			return nil, fmt.Errorf("veth peer %d: %w", idx, err)
		}
		return peer, nil
	}
	// Ask for the link inside the peer's namespace by its id (IFLA_TARGET_NETNSID,
	// Linux 4.20+), which needs no handle on that namespace.
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(nsid))))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, 0)
	if err != nil {
		return nil, fmt.Errorf("veth peer %d in netns id %d: %w", idx, nsid, err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("veth peer %d in netns id %d: %d answers", idx, nsid, len(msgs))
	}
	return netlink.LinkDeserialize(nil, msgs[0])
}
