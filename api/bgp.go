package api

import "time"

// Paths of the BGP calls (SPEC.md).
const (
	PathBGP         = "/api/v1/bgp"
	PathBGPAnnounce = "/api/v1/bgp/announce"
)

// BGP answers GET /api/v1/bgp (and POST /api/v1/bgp/announce): the speaker's
// sessions, what it announces and why.
type BGP struct {
	// Configured is false when the config has no bgp section; the rest is
	// then empty.
	Configured bool `json:"configured"`
	// Announcing is false after `xlbctl announce off` (maintenance): every
	// VIP is withdrawn.
	Announcing      bool         `json:"announcing"`
	ASN             uint32       `json:"asn,omitempty"`
	RouterID        string       `json:"router_id,omitempty"`
	GracefulRestart bool         `json:"graceful_restart"`
	RestartTime     string       `json:"restart_time,omitempty"`
	Peers           []BGPPeer    `json:"peers"`
	Announced       []BGPPrefix  `json:"announced"`
	Services        []BGPService `json:"services"`
}

// BGPPeer is one session.
type BGPPeer struct {
	Address string    `json:"address"`
	ASN     uint32    `json:"asn"`
	State   string    `json:"state"`  // idle, connect, active, opensent, openconfirm, established
	Uptime  string    `json:"uptime"` // a Go duration while established, else "0s"
	Since   time.Time `json:"since"`  // when the state was entered
	// LastError is the last reason the session went down.
	LastError string `json:"last_error,omitempty"`
}

// BGPPrefix is one announced route.
type BGPPrefix struct {
	Prefix   string   `json:"prefix"`   // the VIP's /32 or /128
	NextHop  string   `json:"next_hop"` // an address, or "session address"
	Services []string `json:"services"` // the services that want it
}

// BGPService is one L4 service's announcement state.
type BGPService struct {
	Name      string `json:"name"`
	VIP       string `json:"vip"`
	Wanted    bool   `json:"wanted"`    // by its announce mode and health
	Announced bool   `json:"announced"` // its VIP is announced now (by it or another service)
	Reason    string `json:"reason"`
}

// BGPAnnounce is the body of POST /api/v1/bgp/announce.
type BGPAnnounce struct {
	Enabled *bool `json:"enabled"`
}
