//go:build linux

package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/internal/maintenance"
)

// enableForwarding turns forwarding on where bpf_fib_lookup needs it: it
// answers only for interfaces that forward (IPv6: only when forwarding is on
// globally).
func enableForwarding(ifname string, ipv6 bool) error {
	paths := []string{"/proc/sys/net/ipv4/conf/" + ifname + "/forwarding"}
	if ipv6 {
		paths = append(paths, "/proc/sys/net/ipv6/conf/all/forwarding")
	}
	for _, p := range paths {
		cur, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("check forwarding on %s: %w", ifname, err)
		}
		if strings.TrimSpace(string(cur)) == "1" {
			continue
		}
		if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding (%s), which bpf_fib_lookup needs: %w", p, err)
		}
	}
	return nil
}

// interfaceAddrs returns the first global IPv4 and IPv6 address of an interface.
func interfaceAddrs(ifname string) (v4, v6 netip.Addr, err error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return v4, v6, fmt.Errorf("interface %s: %w", ifname, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return v4, v6, fmt.Errorf("addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.IsGlobalUnicast() {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() && !v4.IsValid() {
			v4 = ip
		} else if ip.Is6() && !v6.IsValid() {
			v6 = ip
		}
	}
	return v4, v6, nil
}

// nudgeNeighbour sends one empty datagram to the discard port of a backend
// with no health check, so the kernel resolves (and keeps) its neighbour
// entry, which the XDP program's FIB lookup needs.
func nudgeNeighbour(addr netip.Addr) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 9)))
	if err != nil {
		return
	}
	c.Write(nil)
	c.Close()
}

// awaitNeighbours resolves the next hops of backends before the first packet
// needs them: until a neighbour entry exists, the XDP program hands packets
// to the kernel instead of forwarding them. It waits at most timeout.
func awaitNeighbours(addrs []netip.Addr, timeout time.Duration) (missing []netip.Addr) {
	for _, a := range addrs {
		nudgeNeighbour(a)
	}
	deadline := time.Now().Add(timeout)
	for {
		missing = missing[:0]
		for _, a := range addrs {
			if !neighbourReady(a) {
				missing = append(missing, a)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// neighbourReady says whether the next hop towards addr has a usable
// neighbour entry.
func neighbourReady(addr netip.Addr) bool {
	routes, err := netlink.RouteGet(addr.AsSlice())
	if err != nil || len(routes) == 0 {
		return false
	}
	r := routes[0]
	hop := addr.AsSlice()
	if r.Gw != nil {
		hop = r.Gw
	}
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(r.LinkIndex, family)
	if err != nil {
		return false
	}
	usable := netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	for _, n := range neighs {
		if n.IP.Equal(hop) && n.State&usable != 0 {
			return true
		}
	}
	return false
}

// PinPathFree reports an error naming the xlbd that holds pinPath's lock,
// if one does: xlbd checks it when its admin port is taken, since a second
// daemon on the same pin path is the likely reason.
func PinPathFree(pinPath string) error {
	unlock, err := maintenance.Lock(pinPath)
	if err != nil {
		return err
	}
	unlock()
	return nil
}
