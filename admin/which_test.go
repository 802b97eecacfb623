package admin

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/xlbproject/xlb/api"
)

// whichFake is a controller that also answers which.
type whichFake struct{ *fakeController }

func (whichFake) Which(service, client string) (api.Which, error) {
	if service != "api" {
		return api.Which{}, fmt.Errorf("%w: no L4 service %q", api.ErrNotFound, service)
	}
	return api.Which{Service: service, Client: client, Backend: "10.0.1.1", Source: api.WhichFlowTable, MaglevBackend: "10.0.1.3"}, nil
}

func TestWhich(t *testing.T) {
	h := newHarness(t, false)
	if a := h.do(t, "GET", api.PathWhich+"?service=api&client=192.0.2.1:4000", "", ""); a.status != 501 {
		t.Errorf("controller without Which: status %d %s", a.status, a.body)
	}
	h.srv.ctl = whichFake{h.fake}
	a := h.do(t, "GET", api.PathWhich+"?service=api&client=192.0.2.1:4000", "", "")
	var w api.Which
	if err := json.Unmarshal(a.body, &w); a.status != 200 || err != nil || w != (api.Which{Service: "api", Client: "192.0.2.1:4000", Backend: "10.0.1.1", Source: "flow_table", MaglevBackend: "10.0.1.3"}) {
		t.Errorf("which: %d %s", a.status, a.body)
	}
	// SPEC's four fields keep their names; maglev_backend is the one added.
	var fields map[string]string
	if err := json.Unmarshal(a.body, &fields); err != nil || len(fields) != 5 || fields["service"] != "api" || fields["client"] != "192.0.2.1:4000" ||
		fields["backend"] != "10.0.1.1" || fields["source"] != "flow_table" || fields["maglev_backend"] != "10.0.1.3" {
		t.Errorf("which JSON %s: want service, client, backend, source and maglev_backend", a.body)
	}
	for target, want := range map[string]int{
		api.PathWhich + "?service=api":                    400,
		api.PathWhich + "?client=192.0.2.1:4000":          400,
		api.PathWhich + "?service=nope&client=10.0.0.1:1": 404,
	} {
		if a := h.do(t, "GET", target, "", ""); a.status != want {
			t.Errorf("%s: status %d, want %d (%s)", target, a.status, want, a.body)
		}
	}
}
