//go:build linux

package maps

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
)

// ErrNoBackend is Choose's answer when the service's table is empty.
var ErrNoBackend = errors.New("no backend in the service's table")

// Choice is where the data plane sends a flow now.
type Choice struct {
	BackendID     uint32
	Addr          netip.Addr
	FromFlowTable bool // a valid flow entry; else the Maglev table picked
}

// Choose answers "which backend does this client's flow to the service get
// now", as the program decides for a packet that is not a SYN: the flow
// entry if it is still valid (same service, same backend generation, backend
// up), else the service's Maglev table, hashed with the Go copy of the
// program's hash.
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
	if f, err := m.LookupFlow(fk); err == nil {
		if b, ok := m.validFlow(f); ok {
			return Choice{BackendID: f.BackendID, Addr: b.Addr, FromFlowTable: true}, nil
		}
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return Choice{}, err
	}
	table, err := m.Ring(svc.Id)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Choice{}, fmt.Errorf("service %s: %w", k, ErrNoBackend)
	}
	if err != nil {
		return Choice{}, err
	}
	id := Pick(table, svc.Flags&svcFlagIPHash != 0, fk.Src, fk.Dst, k.Proto)
	if id == 0 {
		return Choice{}, fmt.Errorf("service %s: %w", k, ErrNoBackend)
	}
	b, err := m.LookupBackend(id)
	if err != nil {
		return Choice{}, err
	}
	return Choice{BackendID: id, Addr: b.Addr}, nil
}

// validFlow mirrors select_flow: the entry holds while its service is in
// place and its backend slot still holds the same, healthy backend. (UDP
// expiry is not judged here: the program's clock is not userspace's.)
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
