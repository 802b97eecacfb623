//go:build linux

package daemon

import (
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/maps"
)

// ids hands out kernel ids for services and backends. A flow-table entry
// names a backend by id, so a restarted daemon must give every (service,
// backend) the id it had: ids are recovered from the pinned maps.
type ids struct {
	services map[string]uint32     // service key (maps.ServiceKey.String()) -> id
	backends map[backendRef]uint32 // -> id
	usedSvc  map[uint32]bool
	usedBe   map[uint32]bool
	// wasUp is the health a previous daemon left in the backends map;
	// failedOpen the backends it served only by failing open; origins
	// where it had them from.
	wasUp, failedOpen map[backendRef]bool
	origins           map[backendRef]maps.Origin
}

type backendRef struct {
	svc  uint32
	addr netip.Addr
}

func newIDs() *ids {
	return &ids{services: map[string]uint32{}, backends: map[backendRef]uint32{}, usedSvc: map[uint32]bool{}, usedBe: map[uint32]bool{}, wasUp: map[backendRef]bool{}, failedOpen: map[backendRef]bool{}, origins: map[backendRef]maps.Origin{}}
}

// recover reads the ids a previous daemon left in the maps.
func (x *ids) recover(m *maps.Maps) error {
	svcs, err := m.ListServices()
	if err != nil {
		return fmt.Errorf("recover service ids: %w", err)
	}
	for _, s := range svcs {
		x.services[s.ServiceKey.String()] = s.ID
		x.usedSvc[s.ID] = true
	}
	bes, err := m.ListBackends()
	if err != nil {
		return fmt.Errorf("recover backend ids: %w", err)
	}
	for _, b := range bes {
		x.backends[backendRef{b.ServiceID, b.Addr}] = b.ID
		x.usedBe[b.ID] = true
		x.wasUp[backendRef{b.ServiceID, b.Addr}] = b.Up && !b.FailOpen
		x.failedOpen[backendRef{b.ServiceID, b.Addr}] = b.FailOpen
		x.origins[backendRef{b.ServiceID, b.Addr}] = b.Origin
	}
	return nil
}

func (x *ids) service(key string) (uint32, error) {
	if id, ok := x.services[key]; ok {
		return id, nil
	}
	for id := uint32(1); id < maps.MaxServices; id++ {
		if !x.usedSvc[id] {
			x.usedSvc[id] = true
			x.services[key] = id
			return id, nil
		}
	}
	return 0, fmt.Errorf("more than %d L4 services", maps.MaxServices-1)
}

func (x *ids) releaseService(key string) {
	if id, ok := x.services[key]; ok {
		delete(x.usedSvc, id)
		delete(x.services, key)
	}
}

func (x *ids) backend(svc uint32, addr netip.Addr) (uint32, error) {
	ref := backendRef{svc, addr}
	if id, ok := x.backends[ref]; ok {
		return id, nil
	}
	for id := uint32(1); id < maps.MaxBackends; id++ {
		if !x.usedBe[id] {
			x.usedBe[id] = true
			x.backends[ref] = id
			return id, nil
		}
	}
	return 0, fmt.Errorf("more than %d L4 backends", maps.MaxBackends-1)
}

func (x *ids) releaseBackend(svc uint32, addr netip.Addr) {
	ref := backendRef{svc, addr}
	if id, ok := x.backends[ref]; ok {
		delete(x.usedBe, id)
		delete(x.backends, ref)
	}
}
