//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/maps"
)

// Which answers GET /api/v1/which and `xlbctl which`: the backend a client's
// flow to an L4 service gets now, from the flow table if it holds a valid
// entry, else from the service's Maglev table; and what the Maglev table
// picks, which a new connection from that port gets whatever the entry says.
func (c *controller) Which(service, client string) (api.Which, error) {
	ap, err := netip.ParseAddrPort(client)
	if err != nil {
		return api.Which{}, fmt.Errorf("%w: client %q: want IP:PORT, e.g. 192.0.2.10:40000 or [2001:db8::10]:40000", api.ErrInvalid, client)
	}
	var key maps.ServiceKey
	ok, l7 := false, false
	c.r.read(func(_ *config.Config, m *model) {
		if s := m.services[service]; s != nil {
			ok, l7 = s.cfg.IsL4(), !s.cfg.IsL4()
			if ok {
				key = serviceKey(&s.cfg)
			}
		}
	})
	m := c.maps
	if l7 {
		// It exists (GET lists it): a 404 would send the operator looking
		// for a typo in the name.
		return api.Which{}, fmt.Errorf("%w: which works on layer 4 services; %s is layer 7 (each request is balanced on its own)", api.ErrInvalid, service)
	}
	if !ok {
		return api.Which{}, fmt.Errorf("%w: no L4 service %q", api.ErrNotFound, service)
	}
	if m == nil {
		return api.Which{}, fmt.Errorf("%w: the L4 data plane is off (no xdp.interfaces)", api.ErrConflict)
	}
	ch, err := m.Choose(key, ap)
	if errors.Is(err, maps.ErrNoBackend) {
		return api.Which{}, fmt.Errorf("%w: %v", api.ErrConflict, err)
	}
	if err != nil {
		return api.Which{}, fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	w := api.Which{Service: service, Client: ap.String(), Backend: ch.Addr.String(), Source: api.WhichMaglev}
	if ch.FromFlowTable {
		w.Source = api.WhichFlowTable
	}
	if ch.Maglev.IsValid() {
		w.MaglevBackend = ch.Maglev.String()
	}
	return w, nil
}

var _ admin.WhichController = (*controller)(nil)
