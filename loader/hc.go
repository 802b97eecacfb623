//go:build linux

package loader

import (
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// AttachHealthProbes attaches xlb_hc at the named interface's egress (TCX), so
// that health probes marked for a backend (maps.HealthProbeMark) leave the way
// the balancer forwards client packets to it. The link lives as long as this
// Dataplane (probes come from the running xlbd; nothing is pinned) and is
// closed by Close. Attaching twice to one interface is a no-op.
func (d *Dataplane) AttachHealthProbes(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("attach health probes to %s: dataplane closed", ifname)
	}
	if _, ok := d.probes[ifname]; ok {
		return nil
	}
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("attach health probes to %s: %w", ifname, err)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: iface.Index, Program: d.Objs.XlbHc, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		return fmt.Errorf("attach health probes to %s egress (TCX, kernel 6.6+): %w", ifname, err)
	}
	if d.probes == nil {
		d.probes = map[string]link.Link{}
	}
	d.probes[ifname] = l
	d.log.Info("health probes attached at egress", keyInterface, ifname)
	return nil
}

// HealthProbesAttached says whether xlb_hc runs at the egress of at least one interface.
func (d *Dataplane) HealthProbesAttached() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.probes) > 0
}
