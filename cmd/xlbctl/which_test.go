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
