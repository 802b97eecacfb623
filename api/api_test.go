package api

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestCountersAlwaysSent: a fresh backend's counters carry every field at
// 0, not "counters": {}.
func TestCountersAlwaysSent(t *testing.T) {
	raw, err := json.Marshal(Backend{Address: "10.0.0.11"})
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, v := range b.Counters {
		if v != 0 {
			t.Errorf("%s = %d, want 0", k, v)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"bytes", "errors", "new_flows", "packets", "requests"}; !slices.Equal(keys, want) {
		t.Errorf("counters %v, want %v: %s", keys, want, raw)
	}
}

// TestBGPPeerUptimeAlwaysSent: the field is there whatever the state.
func TestBGPPeerUptimeAlwaysSent(t *testing.T) {
	raw, err := json.Marshal(BGPPeer{Address: "10.0.0.254", State: "active"})
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if _, ok := p["uptime"]; !ok {
		t.Errorf("no uptime: %s", raw)
	}
}
