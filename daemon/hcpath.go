//go:build linux

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/loader"
	"github.com/xlbproject/xlb/maps"
)

// Health checks through the forwarding path (health_check.via: vip): the
// probe is addressed to VIP:port from a socket marked for the backend, and
// the egress program (loader.AttachHealthProbes) sends it the way client
// packets go to that backend.

// probeNeighbours remembers the VIPs made reachable for probes: the
// interface probes are bound to, "" for a VIP the balancer routes itself.
var probeNeighbours sync.Map // netip.Addr -> string

// probePath sends L4 checks through the forwarding path.
type probePath struct {
	log *slog.Logger
	dp  *loader.Dataplane
	l4  *l4Projector
}

// viaVIP rewrites an L4 check target to probe through the forwarding path,
// when the service asks for it and the egress program is attached. It runs
// under the reconciler's lock, after the projection gave b its id.
func (p *probePath) viaVIP(s *service, b *backend, t *health.Target) {
	hc := s.cfg.HealthCheck
	if hc == nil || hc.Via != "vip" || p.dp == nil || !p.dp.HealthProbesAttached() {
		return
	}
	id := p.l4.backendID(s.cfg.Name, b.addr)
	if id == 0 {
		return
	}
	own, err := netip.ParseAddrPort(t.Addr)
	if err != nil {
		return
	}
	vip := netip.AddrPortFrom(s.cfg.VIP, own.Port())
	t.Addr = vip.String() // also the HTTP Host a client would send
	dev := p.probeNeighbour(s.cfg.VIP, b.addr)
	// ARP answers for the VIP are DSR's trouble (its backends share the
	// balancer's segment, and README's setup for them sets arp_ignore).
	var arp func(context.Context) error
	if s.cfg.Forwarding == "dsr" {
		arp = arpCheck(s.cfg.VIP, b.addr)
	}
	t.Dial = probeDial(maps.HealthProbeMark(id), dev, vip.String(), own.String(), arp)
}

// probeNeighbour makes the VIP reachable for probes and returns the
// interface they must be bound to ("" for none). A VIP that lies on a
// connected subnet gets a permanent neighbour entry (the interface's own
// MAC): the kernel would otherwise ask ARP/NDP for the VIP, which no
// backend answers (they must not), and the probe would never reach the
// egress program, which rewrites the MACs anyway. A VIP routed through a
// gateway needs nothing. A VIP the balancer has no route to (it is only
// announced, or lies on no subnet of its own) is put on the link that
// reaches the backend: probes are bound to that interface, where the kernel
// takes an unrouted destination as on-link, and the VIP gets the neighbour
// entry there.
func (p *probePath) probeNeighbour(vip, backend netip.Addr) string {
	if dev, done := probeNeighbours.Load(vip); done {
		return dev.(string)
	}
	dev := ""
	routes, err := netlink.RouteGet(vip.AsSlice())
	if err != nil || len(routes) == 0 {
		routes, err = netlink.RouteGet(backend.AsSlice())
		if err != nil || len(routes) == 0 {
			p.log.Warn("health probes via the VIP: no route to the VIP nor to the backend", "vip", vip, "backend", backend, "err", err)
			return ""
		}
		dev = "-" // named below
	} else if routes[0].Gw != nil {
		probeNeighbours.Store(vip, "")
		return ""
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		p.log.Warn("health probes via the VIP: route interface", "vip", vip, "err", err)
		return ""
	}
	if dev != "" {
		dev = l.Attrs().Name
	}
	family := netlink.FAMILY_V4
	if vip.Is6() {
		family = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: family, State: netlink.NUD_PERMANENT,
		IP: vip.AsSlice(), HardwareAddr: l.Attrs().HardwareAddr}
	if err := netlink.NeighSet(n); err != nil {
		p.log.Warn("health probes via the VIP: neighbour entry", "vip", vip, "interface", l.Attrs().Name, "err", err)
		return ""
	}
	probeNeighbours.Store(vip, dev)
	if dev != "" {
		p.log.Info("no route to the VIP: health probes through the forwarding path leave by the backend's interface", "vip", vip, "interface", dev)
	} else {
		p.log.Info("permanent neighbour entry for an on-link VIP, for health probes through the forwarding path", "vip", vip, "interface", l.Attrs().Name)
	}
	return dev
}

// probeDial dials the VIP from a socket carrying mark (bound to dev, if
// set); arp (nil: none) then checks the backend does not answer ARP for the
// VIP. When the dial fails it
// tries the backend's own address, so that the reason says what is likely
// wrong: a backend that answers there but not on the VIP lacks the VIP on
// lo, has the wrong ARP/rp_filter settings or no decapsulation.
func probeDial(mark uint32, dev, vip, own string, arp func(context.Context) error) func(ctx context.Context, network, addr string) (net.Conn, error) {
	marked := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
			if serr == nil && dev != "" {
				serr = unix.BindToDevice(int(fd), dev)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		// Half the probe's time for the VIP leaves the rest for the diagnosis.
		vctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			vctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		}
		c, err := marked.DialContext(vctx, network, addr)
		cancel()
		if err == nil {
			// It answers on the VIP through xlb: is xlb the only way there?
			if arp != nil {
				if aerr := arp(ctx); aerr != nil {
					c.Close()
					return nil, aerr
				}
			}
			return c, nil
		}
		var plain net.Dialer
		if oc, oerr := plain.DialContext(ctx, network, own); oerr == nil {
			oc.Close()
			return nil, fmt.Errorf("answers on %s but not on the VIP %s: is the VIP on lo, arp_ignore set, decap attached? (%w)", own, vip, err)
		}
		return nil, err
	}
}
