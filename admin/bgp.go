package admin

import (
	"fmt"
	"net/http"

	"github.com/xlbproject/xlb/api"
)

// BGPController is what a Controller with a BGP speaker implements as well;
// a Controller without it answers GET /api/v1/bgp with "configured": false
// and refuses announce changes.
type BGPController interface {
	// BGPStatus returns the sessions, the announced prefixes and each
	// service's announcement state.
	BGPStatus() api.BGP
	// SetAnnounce turns announcing on or off (maintenance): off withdraws
	// every VIP. Without a bgp section it fails with api.ErrConflict.
	SetAnnounce(enabled bool) (api.BGP, error)
}

func (s *Server) bgpStatus(w http.ResponseWriter, r *http.Request) {
	b, ok := s.ctl.(BGPController)
	if !ok {
		writeJSON(w, http.StatusOK, normalizeBGP(api.BGP{}))
		return
	}
	writeJSON(w, http.StatusOK, normalizeBGP(b.BGPStatus()))
}

func (s *Server) bgpAnnounce(r *http.Request) (int, any, error) {
	var req api.BGPAnnounce
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.Enabled == nil {
		return 0, nil, fmt.Errorf(`%w: "enabled" is required: true announces the VIPs, false withdraws them all`, api.ErrInvalid)
	}
	b, ok := s.ctl.(BGPController)
	if !ok {
		return 0, nil, fmt.Errorf("%w: bgp is not configured", api.ErrConflict)
	}
	st, err := b.SetAnnounce(*req.Enabled)
	return http.StatusOK, normalizeBGP(st), err
}

// normalizeBGP makes empty lists [] rather than null, and gives a session
// that is not established the uptime "0s", in the format of an established
// one's, so that a script parses every peer's uptime the same way.
func normalizeBGP(b api.BGP) api.BGP {
	if b.Peers == nil {
		b.Peers = []api.BGPPeer{}
	}
	for i := range b.Peers {
		if b.Peers[i].Uptime == "" {
			b.Peers[i].Uptime = "0s"
		}
	}
	if b.Announced == nil {
		b.Announced = []api.BGPPrefix{}
	}
	if b.Services == nil {
		b.Services = []api.BGPService{}
	}
	return b
}
