package config

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// anInterface returns the name of an interface this host has.
func anInterface(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Skipf("no interface to name: %v", err)
	}
	return ifs[0].Name
}

// TestLoadChecksTheHost: Load (xlbd -check, the start, a reload) refuses an
// xdp.interfaces entry this host lacks and a listen host name that does not
// resolve, each with file, line and key, as the attach or the bind would
// have failed; interfaces that exist, IP literals and names that resolve
// (localhost) pass. Parse leaves the host alone.
func TestLoadChecksTheHost(t *testing.T) {
	lo := anInterface(t)
	in := `admin: {listen: "nonexistent.invalid:9100"}
xdp: {interfaces: [` + lo + `, xlb-none0]}
services:
  - name: web
    layer: 7
    listen: nonexistent.invalid:22020
    backends: [{address: 127.0.0.1:9001}]
  - name: local
    layer: 7
    listen: localhost:22021
    backends: [{address: 127.0.0.1:9001}]
  - name: any
    layer: 7
    listen: :22022
    backends: [{address: 127.0.0.1:9001}]
  - name: literal
    layer: 7
    listen: "[::1]:22023"
    backends: [{address: 127.0.0.1:9001}]
`
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(path, []byte(in)); err != nil {
		t.Errorf("Parse asked the host: %v", err)
	}
	_, err := Load(path)
	list, ok := err.(ErrorList)
	if !ok {
		t.Fatalf("Load: %v, want an ErrorList", err)
	}
	var got []string
	for _, e := range list {
		// The resolver's own words (which server, NXDOMAIN or a timeout)
		// vary by host; that the name is given is what counts.
		msg, _, _ := strings.Cut(e.Error(), " (")
		got = append(got, strings.TrimPrefix(msg, path))
	}
	want := []string{
		":1: admin.listen: nonexistent.invalid does not resolve on this host",
		":2: xdp.interfaces[1]: no interface xlb-none0 on this host",
		":6: services[0].listen: nonexistent.invalid does not resolve on this host",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Load errors:\n%s\nwant (up to the first parenthesis):\n%s", list, strings.Join(want, "\n"))
	}
	for _, e := range list {
		if strings.Contains(e.Msg, "does not resolve") && !strings.Contains(e.Msg, "give an IP address, or a name this host resolves") {
			t.Errorf("%s: the fix is missing", e)
		}
	}

	// -check's load: the same findings, as warnings, and the config.
	c, err := LoadForCheck(path)
	if err != nil {
		t.Fatalf("LoadForCheck: %v, want warnings only", err)
	}
	if n := strings.Count(strings.Join(c.Warnings, "\n"), "(checked on this host)"); n != len(want) || !strings.Contains(strings.Join(c.Warnings, "\n"), "no interface xlb-none0 on this host (ip link lists them), so the XDP program cannot attach to it (checked on this host)") {
		t.Errorf("LoadForCheck warnings: %q", c.Warnings)
	}

	good := strings.NewReplacer(`"nonexistent.invalid:9100"`, `"localhost:9100"`, ", xlb-none0", "", "nonexistent.invalid:22020", "127.0.0.1:22020").Replace(in)
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("Load of a config this host can serve: %v", err)
	}
}
