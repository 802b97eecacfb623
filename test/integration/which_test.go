//go:build linux

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
)

func (l *dlab) which(t *testing.T, client string) api.Which {
	t.Helper()
	var w api.Which
	l.call(t, "GET", api.PathWhich+"?"+url.Values{"service": {"api"}, "client": {client}}.Encode(), nil, 200, &w)
	return w
}

// TestWhichAgreesWithConnections: before a connection, which names the
// backend Maglev will pick for its 5-tuple; the real connection from that
// source port lands there; while (and after) it is open, which answers from
// the flow table, with the same backend.
func TestWhichAgreesWithConnections(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	nameOf := map[string]string{}
	for i := range l.backends {
		nameOf[backendAddr4(i).String()] = fmt.Sprintf("b%d", i+1)
	}
	seen := map[string]bool{}
	for i := range 24 {
		client := fmt.Sprintf("10.0.0.1:%d", 41000+i*7)
		before := l.which(t, client)
		if before.Source != api.WhichMaglev || before.Service != "api" || before.Client != client {
			t.Fatalf("which before connecting: %+v", before)
		}
		var c net.Conn
		err := l.client.Do(func() error {
			laddr, _ := net.ResolveTCPAddr("tcp", client)
			var err error
			c, err = (&net.Dialer{LocalAddr: laddr, Timeout: 2 * time.Second}).Dial("tcp", vip4.String()+":80")
			return err
		})
		if err != nil {
			t.Fatalf("connect from %s: %v", client, err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		name, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			c.Close()
			t.Fatalf("connection from %s: %v", client, err)
		}
		got := strings.TrimSpace(name)
		if want := nameOf[before.Backend]; got != want {
			t.Errorf("%s: which said %s (%s), the connection reached %s", client, before.Backend, want, got)
		}
		seen[got] = true
		during := l.which(t, client)
		c.Close()
		if during.Source != api.WhichFlowTable || during.Backend != before.Backend || during.MaglevBackend != before.Backend {
			t.Errorf("%s: which during the connection %+v, want %s from the flow table and from Maglev", client, during, before.Backend)
		}
	}
	if len(seen) < 2 {
		t.Errorf("24 connections reached only %v: the check proves little", seen)
	}

	out, err := exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbctl, "-o", "json", "which", "api", "10.0.0.1:41000").CombinedOutput()
	if err != nil {
		t.Fatalf("xlbctl which: %v\n%s", err, out)
	}
	var w api.Which
	if err := json.Unmarshal(out, &w); err != nil || w.Source != api.WhichFlowTable || w.Backend == "" {
		t.Errorf("xlbctl -o json which: %s (%v)", out, err)
	}
	out, _ = exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbctl, "which", "api", "10.0.0.1:41000").CombinedOutput()
	if !strings.Contains(string(out), "flow table") || !strings.Contains(string(out), w.Backend) {
		t.Errorf("xlbctl which: %s", out)
	}

	// A drain moves the port's Maglev pick, while the entry the closed
	// connection left still names the drained backend (it is up, and a
	// drain keeps flows): which says both, and never "established".
	l.call(t, "PATCH", api.PathServices+"/api/backends/"+w.Backend, api.PatchBackend{Drain: ptr(true)}, 200, nil)
	left := l.which(t, "10.0.0.1:41000")
	if left.Source != api.WhichFlowTable || left.Backend != w.Backend || left.MaglevBackend == "" || left.MaglevBackend == w.Backend {
		t.Errorf("which after draining %s: %+v, want it from the flow table and another backend from Maglev", w.Backend, left)
	}
	out, _ = exec.Command("ip", "netns", "exec", l.lb.Name, bins.xlbctl, "which", "api", "10.0.0.1:41000").CombinedOutput()
	want := fmt.Sprintf("api 10.0.0.1:41000 -> %s, from the flow table (this flow's entry); a new connection from this port would go to %s (Maglev)\n", w.Backend, left.MaglevBackend)
	if string(out) != want {
		t.Errorf("xlbctl which after the drain:\n got %q\nwant %q", out, want)
	}

	var e api.Error
	l.call(t, "GET", api.PathWhich+"?service=nope&client=10.0.0.1:1", nil, 404, &e)
	l.call(t, "GET", api.PathWhich+"?service=api&client=10.0.0.1", nil, 400, &e)
	l.call(t, "GET", api.PathWhich+"?service=api", nil, 400, &e)
}
