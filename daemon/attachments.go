//go:build linux

package daemon

import (
	"fmt"
	"strings"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/loader"
)

// Attachments are checked on every housekeeping pass: an XDP program can
// leave its interface while xlbd runs. When the interface is deleted the
// kernel takes the link with it; one of the same name coming back (a
// driver reload, a re-created veth or VLAN) is attached again at once,
// forwarding sysctls and egress probes included. When someone detaches
// the program (xlbctl detach while xlbd runs) it stays off until a reload
// or a restart asks for it. Meanwhile the node does not forward what
// arrives on that interface: /healthz answers 503 naming it, and BGP
// withdraws the VIPs announced by health, so neither an upstream balancer
// nor the routers send this node traffic it would drop.

// checkAttachments looks at the data plane's attachments and records what
// is missing; under the reload lock, so it never races a reload's own
// attach and detach.
func (d *Daemon) checkAttachments() {
	if d.dp.dp == nil {
		return
	}
	d.reloading.Lock()
	defer d.reloading.Unlock()
	if d.stopping {
		return
	}
	cfg := d.r.config()
	var missing []string
	lost := map[string]bool{}
	for _, l := range d.dp.dp.Lost() {
		lost[l.Interface] = true
		switch l.Kind {
		case loader.InterfaceRecreated:
			if err := d.dp.repair(cfg, l.Interface); err != nil {
				missing = append(missing, fmt.Sprintf("interface %s was re-created and attaching to it failed: %v", l.Interface, err))
				continue
			}
			delete(lost, l.Interface)
			d.log.Warn("interface was re-created: xdp attached to it again", "interface", l.Interface)
			// The VIPs' neighbour entries for probes went with the old
			// interface: make them again, as a first check target does.
			probeNeighbours.Clear()
			d.r.retargetAll()
		case loader.InterfaceGone:
			missing = append(missing, fmt.Sprintf("interface %s is gone: nothing is forwarded there until it is back", l.Interface))
		default:
			missing = append(missing, fmt.Sprintf("the XDP program was detached from %s (xlbctl detach?): reload or restart xlbd to attach it again", l.Interface))
		}
	}
	d.lostIfs.Store(&lost)
	now := strings.Join(missing, "; ")
	if prev := d.unserved.Load(); prev != nil && *prev == now {
		return
	}
	d.unserved.Store(&now)
	if now == "" {
		d.log.Info("xdp attached on every configured interface again")
	} else {
		d.log.Error("L4 data plane not forwarding", "reason", now)
	}
	d.r.resyncAnnouncements()
}

// lostInterfaces names the configured interfaces the program is missing
// from, as the last check found (xlb_xdp_attached).
func (d *Daemon) lostInterfaces() map[string]bool {
	if p := d.lostIfs.Load(); p != nil {
		return *p
	}
	return nil
}

// notServing says why the L4 data plane does not forward on every
// configured interface, or "".
func (d *Daemon) notServing() string {
	if p := d.unserved.Load(); p != nil {
		return *p
	}
	return ""
}

// repair attaches to an interface that was re-created, as a start does:
// forwarding sysctls, the program, the egress probes, and the outer source
// when it is the interface that gives it.
func (p *dataplane) repair(cfg *config.Config, ifname string) error {
	if err := enableForwarding(ifname, hasIPv6(cfg)); err != nil {
		return err
	}
	mode, err := loader.ParseMode(cfg.XDP.Mode)
	if err != nil {
		return err
	}
	if _, err := p.dp.Attach(ifname, mode); err != nil {
		return err
	}
	if err := p.dp.AttachHealthProbes(ifname); err != nil {
		p.log.Warn("health checks with via: vip fall back to the backends' own addresses", "interface", ifname, "err", err)
	}
	if cfg.XDP.Interfaces[0] == ifname {
		return p.putSettings(cfg)
	}
	return nil
}
