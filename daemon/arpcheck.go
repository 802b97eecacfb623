//go:build linux

package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A backend on the balancer's segment that answers ARP for the VIP (the
// VIP on lo without arp_ignore=1) takes the VIP's traffic from whoever on
// the segment asks, past xlb, while a probe through the forwarding path,
// which never asks ARP for the VIP, finds it well. The check asks the
// segment who has the VIP, as a router would.

// arpWait is how long the question waits for answers: hosts on one
// segment answer within microseconds.
const arpWait = 100 * time.Millisecond

// arpFresh is how long one question's answers serve the probes of every
// backend of the VIP.
const arpFresh = time.Second

type arpKey struct {
	ifindex int
	vip     netip.Addr
}

type arpAnswer struct {
	mu   sync.Mutex
	at   time.Time
	macs map[string]bool // who answered, by MAC
	err  error
}

var arpAnswers sync.Map // arpKey -> *arpAnswer

// arpCheck returns the check of one backend (IPv4, on the balancer's
// segment) for a probe: an error naming the problem if the backend's MAC
// answers ARP for vip; nil when it does not, or when it cannot be told
// (not on-link, no neighbour entry yet: the probe's own verdict stands).
func arpCheck(vip, backend netip.Addr) func(ctx context.Context) error {
	if !vip.Is4() || !backend.Is4() {
		return nil
	}
	return func(ctx context.Context) error {
		routes, err := netlink.RouteGet(backend.AsSlice())
		if err != nil || len(routes) == 0 || routes[0].Gw != nil {
			return nil
		}
		link, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil || len(link.Attrs().HardwareAddr) != 6 {
			return nil
		}
		mac := neighbourMAC(link.Attrs().Index, backend)
		if mac == nil {
			return nil
		}
		src, ok := netip.AddrFromSlice(routes[0].Src)
		if !ok || !src.Is4() {
			return nil
		}
		a := answersFor(arpKey{link.Attrs().Index, vip}, link.Attrs().HardwareAddr, src.Unmap())
		if a.err != nil || !a.macs[mac.String()] {
			return nil
		}
		return fmt.Errorf("answers ARP for the VIP %s (from %s, on %s): whoever on that segment asks for the VIP sends its traffic straight to this backend, past xlb; set arp_ignore=1 and arp_announce=2 on it", vip, mac, link.Attrs().Name)
	}
}

// neighbourMAC is the kernel's neighbour entry for addr on the link, or nil.
func neighbourMAC(ifindex int, addr netip.Addr) net.HardwareAddr {
	ns, err := netlink.NeighList(ifindex, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == addr && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr
		}
	}
	return nil
}

// answersFor asks the segment who has key.vip, or reuses an answer younger
// than arpFresh.
func answersFor(key arpKey, hw net.HardwareAddr, src netip.Addr) *arpAnswer {
	v, _ := arpAnswers.LoadOrStore(key, &arpAnswer{})
	a := v.(*arpAnswer)
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Since(a.at) < arpFresh {
		return a
	}
	a.macs, a.err = askARP(key.ifindex, hw, src, key.vip)
	a.at = time.Now()
	return a
}

// askARP broadcasts an ARP request for target from (hw, src) on ifindex and
// returns the senders of the replies that come within arpWait, but hw.
func askARP(ifindex int, hw net.HardwareAddr, src, target netip.Addr) (map[string]bool, error) {
	proto := htons(unix.ETH_P_ARP)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		return nil, err
	}
	req := make([]byte, 28)
	binary.BigEndian.PutUint16(req[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(req[2:], 0x0800) // IPv4
	req[4], req[5] = 6, 4
	binary.BigEndian.PutUint16(req[6:], 1) // request
	copy(req[8:14], hw)
	s4, t4 := src.As4(), target.As4()
	copy(req[14:18], s4[:])
	copy(req[24:28], t4[:])
	to := &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	if err := unix.Sendto(fd, req, 0, to); err != nil {
		return nil, err
	}
	macs := map[string]bool{}
	deadline := time.Now().Add(arpWait)
	buf := make([]byte, 128)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return macs, nil
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			return nil, err
		}
		p := buf[:n]
		if n < 28 || binary.BigEndian.Uint16(p[6:]) != 2 || !bytes.Equal(p[14:18], t4[:]) {
			continue
		}
		sha := net.HardwareAddr(append([]byte(nil), p[8:14]...))
		if !bytes.Equal(sha, hw) {
			macs[sha.String()] = true
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
