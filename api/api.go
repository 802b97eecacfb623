// Package api holds the admin API's JSON shapes, shared by the daemon, the
// admin HTTP server and xlbctl.
package api

import (
	"encoding/json"
	"errors"
	"time"
)

// Paths of the admin API (SPEC.md).
const (
	PathHealthz  = "/healthz"
	PathMetrics  = "/metrics"
	PathServices = "/api/v1/services"
	PathReload   = "/api/v1/reload"
)

// Error is every error answer: {"error": "..."} with a 4xx/5xx status.
// Details carries a list when there is one (e.g. every config error).
type Error struct {
	Error   string   `json:"error"`
	Details []string `json:"details,omitempty"`
}

// Services is the answer of GET /api/v1/services.
type Services struct {
	Services []Service `json:"services"`
}

// Service is one configured service and its live state.
type Service struct {
	Name      string    `json:"name"`
	Layer     int       `json:"layer"`                // 4 or 7
	Address   string    `json:"address"`              // L4: vip:port; L7: listen address
	Protocol  string    `json:"protocol"`             // tcp, udp, http, https
	Scheduler string    `json:"scheduler"`            // maglev, ip_hash, round_robin, ...
	Forward   string    `json:"forwarding,omitempty"` // L4: ipip or dsr
	FailOpen  bool      `json:"fail_open"`            // every backend is down: serving the last healthy set
	Backends  []Backend `json:"backends"`
	Counters  Counters  `json:"counters"`

	// MaglevFingerprint digests the L4 service's current Maglev table by
	// backend address: nodes with the same one send every flow to the same
	// backend. Empty when the service has no table.
	MaglevFingerprint string `json:"maglev_fingerprint,omitempty"`
}

// Backend is one backend's live state.
type Backend struct {
	Address      string   `json:"address"`
	Weight       int      `json:"weight"`        // effective weight (0 = drained)
	ConfigWeight int      `json:"config_weight"` // weight in the config file
	Healthy      bool     `json:"healthy"`
	Draining     bool     `json:"draining"`             // no new flows: drained, being removed, or weight 0
	Source       string   `json:"source"`               // "config", "api" or "dns": where it came from
	Persisted    bool     `json:"persisted"`            // false: a runtime change the next reload will undo
	LastCheck    string   `json:"last_check,omitempty"` // last health check result ("ok" or the error)
	Active       int64    `json:"active"`               // L4: flow-table entries; L7: in-flight requests
	Counters     Counters `json:"counters"`
	// ResponseTimeMs is L7's time-decaying average from a request on an
	// open connection to its answer's head, what least_time weighs;
	// omitted without a sample in the last 5 seconds (and for L4).
	ResponseTimeMs float64 `json:"response_time_ms,omitempty"`
}

// Counters are traffic totals: packets, bytes and new flows for L4,
// requests and errors for L7. Every field is always sent (0 where the
// layer has none), so a script reads a fresh backend's counters as it
// reads any other's.
type Counters struct {
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
	NewFlows uint64 `json:"new_flows"`
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
}

// AddBackend is the body of POST /api/v1/services/{name}/backends.
type AddBackend struct {
	Address string `json:"address"`
	Weight  *int   `json:"weight,omitempty"` // default 1
}

// PatchBackend is the body of PATCH /api/v1/services/{name}/backends/{address}.
type PatchBackend struct {
	Weight *int  `json:"weight,omitempty"`
	Drain  *bool `json:"drain,omitempty"`
}

// Change answers a mutating call: what happened, and whether it survives a
// reload (runtime changes do not, unless written to the config file).
type Change struct {
	Service   string `json:"service"`
	Backend   string `json:"backend,omitempty"`
	Result    string `json:"result"`
	Persisted bool   `json:"persisted"`
	Note      string `json:"note,omitempty"`
}

// Reload answers POST /api/v1/reload.
type Reload struct {
	Result   string    `json:"result"` // "ok"
	Services int       `json:"services"`
	At       time.Time `json:"at"`
	// RestartNeeded lists the file's changes that the running xlbd keeps
	// its old values for until it restarts (admin.listen, xdp.pin_path,
	// xdp.flow_table_size, the bgp section), as "key old -> new".
	RestartNeeded []string `json:"restart_needed"` // [] when none
}

// Stats answers GET /api/v1/stats: the data plane's verdict and event counters.
// In JSON the list is "l4", in the data plane's order, and each counter is
// also a key of its own ({"tx": {"packets": N, "bytes": N}, ...}), so that a
// script reads one by name without searching the list.
type Stats struct {
	L4 []Stat `json:"l4"`
}

// MarshalJSON writes the list and the counters by name.
func (s Stats) MarshalJSON() ([]byte, error) {
	out := make(map[string]any, len(s.L4)+1)
	for _, st := range s.L4 {
		out[st.Name] = struct {
			Packets uint64 `json:"packets"`
			Bytes   uint64 `json:"bytes"`
		}{st.Packets, st.Bytes}
	}
	l4 := s.L4
	if l4 == nil {
		l4 = []Stat{}
	}
	out["l4"] = l4
	return json.Marshal(out)
}

// Stat is one summed counter.
type Stat struct {
	Name    string `json:"name"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// PathStats is GET /api/v1/stats.
const PathStats = "/api/v1/stats"

// Error kinds a Controller returns; the admin server maps them to statuses.
var (
	ErrNotFound = errors.New("not found")       // 404
	ErrInvalid  = errors.New("invalid request") // 400
	ErrConflict = errors.New("conflict")        // 409
	// ErrUnavailable: the daemon cannot do it now (it is shutting down).
	ErrUnavailable = errors.New("unavailable") // 503
)

// Detailed is an error with a list of details (every config validation error).
type Detailed interface {
	error
	Details() []string
}
