package main

import (
	"strings"
	"testing"
)

func TestWhichCommand(t *testing.T) {
	c, url := newCanned(t)
	c.set("GET /api/v1/which", 200, `{"service": "api", "client": "192.0.2.1:4000", "backend": "10.0.1.1", "source": "maglev"}`)
	code, out, errOut := xlbctl(t, "-admin", url, "which", "api", "192.0.2.1:4000")
	if code != 0 || !strings.Contains(out, "api 192.0.2.1:4000 -> 10.0.1.1") || !strings.Contains(out, "Maglev") {
		t.Fatalf("which: exit %d\n%s%s", code, out, errOut)
	}
	reqs := c.requests()
	if len(reqs) != 1 || reqs[0].path != "/api/v1/which" {
		t.Fatalf("requests %+v", reqs)
	}
	if code, _, _ := xlbctl(t, "-admin", url, "which", "api"); code == 0 {
		t.Error("which with one argument succeeded")
	}
}

// TestWhichFlowEntryAndMaglev: an answer from the flow table is the entry's,
// not a claim that a connection is open; when a new connection from the
// port would go elsewhere, both are said.
func TestWhichFlowEntryAndMaglev(t *testing.T) {
	c, url := newCanned(t)
	for _, tc := range []struct {
		name, body string
		want       string
	}{
		{"entry-differs-from-maglev",
			`{"service": "api", "client": "192.0.2.1:4000", "backend": "10.40.0.11", "source": "flow_table", "maglev_backend": "10.40.0.13"}`,
			"api 192.0.2.1:4000 -> 10.40.0.11, from the flow table (this flow's entry); a new connection from this port would go to 10.40.0.13 (Maglev)\n"},
		{"entry-same-as-maglev",
			`{"service": "api", "client": "192.0.2.1:4000", "backend": "10.40.0.11", "source": "flow_table", "maglev_backend": "10.40.0.11"}`,
			"api 192.0.2.1:4000 -> 10.40.0.11, from the flow table (this flow's entry)\n"},
		{"entry-no-maglev-pick",
			`{"service": "api", "client": "192.0.2.1:4000", "backend": "10.40.0.11", "source": "flow_table"}`,
			"api 192.0.2.1:4000 -> 10.40.0.11, from the flow table (this flow's entry)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.set("GET /api/v1/which", 200, tc.body)
			code, out, errOut := xlbctl(t, "-admin", url, "which", "api", "192.0.2.1:4000")
			if code != 0 || out != tc.want {
				t.Errorf("exit %d\n got %q\nwant %q\n%s", code, out, tc.want, errOut)
			}
			if strings.Contains(out, "established") {
				t.Errorf("%q: the data plane cannot know a connection is still open", out)
			}
		})
	}
}
