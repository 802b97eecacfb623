//go:build linux

package maps

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
)

// ErrNoBackend is Choose's answer when the service's table is empty.
var ErrNoBackend = errors.New("no backend in the service's table")

// Choice is where the data plane sends a flow now.
type Choice struct {
	BackendID     uint32
	Addr          netip.Addr
	FromFlowTable bool // a valid flow entry; else the Maglev table picked
	// MaglevID and Maglev are what the service's Maglev table picks for the
	// 5-tuple: where a TCP SYN from that address and port goes whatever
	// the flow table holds, and a UDP flow once its entry idles out. 0 and
	// the zero Addr when the table picks nothing (it is empty).
	MaglevID uint32
	Maglev   netip.Addr
}

// Choose answers "which backend does this client's flow to the service get
// now", as the program decides for a packet that is not a SYN: the flow
// entry if it is still valid (same service, same backend generation, backend
// up, and for UDP not idle past the timeout), else the service's Maglev
// table, hashed with the Go copy of the program's hash.
func (m *Maps) Choose(k ServiceKey, client netip.AddrPort) (Choice, error) {
	kk := k.kernel()
	var svc bpf.LbSvc
	if err := m.Services.Lookup(&kk, &svc); err != nil {
		return Choice{}, fmt.Errorf("service %s: %w", k, err)
	}
	if client.Addr().Unmap().Is4() != k.VIP.Unmap().Is4() {
		return Choice{}, fmt.Errorf("client %s and service %s are of different address families", client, k)
	}
	fk := FlowKey{Src: netip.AddrPortFrom(client.Addr().Unmap(), client.Port()), Dst: netip.AddrPortFrom(k.VIP.Unmap(), k.Port), Proto: k.Proto}
	var ch Choice
	table, err := m.Ring(svc.Id)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
	case err != nil:
		return Choice{}, err
	default:
		if id := Pick(table, svc.Flags&svcFlagIPHash != 0, fk.Src, fk.Dst, k.Proto); id != 0 {
			// A slot naming an empty backend record drops the packet
			// (drop_no_backend): no pick, as with no table.
			b, err := m.LookupBackend(id)
			switch {
			case err == nil:
				ch.MaglevID, ch.Maglev = id, b.Addr
			case !errors.Is(err, ebpf.ErrKeyNotExist):
				return Choice{}, err
			}
		}
	}
	f, b, ok, err := m.liveFlow(fk)
	if err != nil {
		return Choice{}, err
	}
	if ok {
		ch.BackendID, ch.Addr, ch.FromFlowTable = f.BackendID, b.Addr, true
		return ch, nil
	}
	if ch.MaglevID == 0 {
		return Choice{}, fmt.Errorf("service %s: %w", k, ErrNoBackend)
	}
	ch.BackendID, ch.Addr = ch.MaglevID, ch.Maglev
	return ch, nil
}

// liveFlow returns the copy of k's entry the program would follow: the most
// recently seen one that is valid (validFlow) and, for UDP, not idle past
// the timeout. A packet may reach any CPU, and the program looks in the
// other CPUs' tables when its own has no live entry, so one live copy is
// enough.
func (m *Maps) liveFlow(k FlowKey) (Flow, Backend, bool, error) {
	copies, err := m.FlowCopies(k)
	if err != nil || len(copies) == 0 {
		return Flow{}, Backend{}, false, err
	}
	var now, timeout uint64
	if k.Proto == ProtoUDP {
		var g bpf.LbGlobals
		if err := m.Settings.Lookup(uint32(0), &g); err != nil {
			return Flow{}, Backend{}, false, fmt.Errorf("read settings: %w", err)
		}
		// Read after the entries: a datagram the program handles meanwhile
		// stamps its entry with a time no later than this one, so now-seen
		// cannot wrap around.
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
			return Flow{}, Backend{}, false, fmt.Errorf("read the coarse monotonic clock: %w", err)
		}
		now, timeout = uint64(ts.Nano()), g.UdpTimeoutNs
	}
	for _, f := range copies {
		// select_flow_alive's test, on the clock the program stamps UDP
		// entries with (bpf_ktime_get_coarse_ns is CLOCK_MONOTONIC_COARSE).
		if k.Proto == ProtoUDP && now-f.LastSeen > timeout {
			continue
		}
		if b, ok := m.validFlow(f); ok {
			return f, b, true, nil
		}
	}
	return Flow{}, Backend{}, false, nil
}

// validFlow mirrors select_flow: the entry holds while its service is in
// place and its backend slot still holds the same, healthy backend. (UDP
// expiry is liveFlow's: LookupFlow, which also uses this, reports entries
// whatever their age.)
func (m *Maps) validFlow(f Flow) (Backend, bool) {
	var svc bpf.LbSvc
	if err := m.SvcByID.Lookup(f.ServiceID, &svc); err != nil || svc.Id != f.ServiceID {
		return Backend{}, false
	}
	var be bpf.LbBackend
	if err := m.Backends.Lookup(f.BackendID, &be); err != nil {
		return Backend{}, false
	}
	if be.Family == 0 || be.SvcId != f.ServiceID || be.Gen != f.Gen || be.Flags&backendFlagUp == 0 {
		return Backend{}, false
	}
	return Backend{ID: f.BackendID, ServiceID: be.SvcId, Addr: AddrFrom16(be.Addr, be.Family), Up: true}, true
}
