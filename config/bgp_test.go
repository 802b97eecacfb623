package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The bgp example of SPEC.md, with an L4 service that sets announce.
const bgpSpecExample = `
xdp: {interfaces: [eth0]}
services:
  - name: api
    layer: 4
    vip: 10.0.0.10
    port: 80
    backends: [{address: 10.0.1.1}]
    announce: always
bgp:
  asn: 65001
  router_id: 10.0.0.1
  listen_port: 179
  graceful_restart: {enabled: true, restart_time: 120s}
  peers:
    - {address: 10.0.0.254, asn: 65000, port: 179, hold_time: 9s, password_file: ""}
  next_hop: ""
`

func TestParseBGP(t *testing.T) {
	c, err := Parse("xlb.yaml", []byte(bgpSpecExample))
	if err != nil {
		t.Fatal(err)
	}
	want := &BGP{
		ASN: 65001, RouterID: netip.MustParseAddr("10.0.0.1"), ListenPort: 179,
		GracefulRestart: GracefulRestart{Enabled: true, RestartTime: 120 * time.Second},
		Peers:           []BGPPeer{{Address: netip.MustParseAddr("10.0.0.254"), ASN: 65000, Port: 179, HoldTime: 9 * time.Second, Line: 16}},
		Line:            11,
	}
	if !reflect.DeepEqual(c.BGP, want) {
		t.Errorf("bgp:\n%+v\nwant\n%+v", c.BGP, want)
	}
	if a := c.Service("api").Announce; a != "always" {
		t.Errorf("announce %q, want always", a)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings %q", c.Warnings)
	}
}

func TestParseBGPDefaults(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "peer.pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(filepath.Join(dir, "xlb.yaml"), []byte(`
xdp: {interfaces: [eth0]}
services:
  - {name: api, layer: 4, vip: "2001:db8::10", port: 80, backends: [{address: "2001:db8::1"}]}
  - {name: web, layer: 7, listen: 127.0.0.1:8080, backends: [{address: 127.0.0.1:9001}]}
bgp:
  asn: 4200000001
  peers: [{address: "fd00::1", asn: 65000, password_file: peer.pw}]
  next_hop: "fd00::2"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &BGP{
		ASN: 4200000001, ListenPort: 179, GracefulRestart: GracefulRestart{Enabled: true, RestartTime: 120 * time.Second},
		Peers:   []BGPPeer{{Address: netip.MustParseAddr("fd00::1"), ASN: 65000, Port: 179, HoldTime: 90 * time.Second, PasswordFile: pw, Line: 8}},
		NextHop: netip.MustParseAddr("fd00::2"), Line: 7,
	}
	if !reflect.DeepEqual(c.BGP, want) {
		t.Errorf("bgp:\n%+v\nwant\n%+v", c.BGP, want)
	}
	if a := c.Service("api").Announce; a != "healthy" {
		t.Errorf("default announce %q, want healthy", a)
	}
	if a := c.Service("web").Announce; a != "" {
		t.Errorf("a layer 7 service got announce %q", a)
	}

	// No bgp section: no speaker, and announce only warns.
	c, err = Parse("xlb.yaml", []byte(l4+"    backends: [{address: 10.0.1.1}]\n    announce: never\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.BGP != nil {
		t.Errorf("bgp %+v without a bgp section", c.BGP)
	}
	if !slices.Contains(c.Warnings, "xlb.yaml:8: services[0].announce: has no effect without a bgp section") {
		t.Errorf("warnings %q", c.Warnings)
	}
}

func TestParseBGPErrors(t *testing.T) {
	svc := l4 + "    backends: [{address: 10.0.1.1}]\n"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty-section", "bgp: {}\n", []string{
			`xlb.yaml:1: bgp.router_id: missing; without xdp.interfaces there is no address to take it from: give an IPv4 address of this node, like 10.0.0.1`,
			`xlb.yaml:1: bgp.asn: missing; give this node's AS number, like 65001`,
			`xlb.yaml:1: bgp.peers: missing; give at least one router, like [{address: 10.0.0.254, asn: 65000}]`,
		}},
		{"unknown-key", "bgp: {asn: 1, router_id: 10.0.0.9, peers: [{address: 10.0.0.1, asn: 2}], local_as: 3}\n", []string{
			`xlb.yaml:1: bgp.local_as: unknown key; known keys here: asn, router_id, listen_port, graceful_restart, peers, next_hop`,
		}},
		{"bad-values", `
bgp:
  asn: 0
  router_id: "2001:db8::1"
  listen_port: 0
  graceful_restart: {enabled: yes please, restart_time: 5000s}
  next_hop: 10.0.0.1:179
  peers:
    - {address: 10.0.0.254, asn: 65000, hold_time: 2s, port: 70000}
    - {address: 10.0.0.254, asn: 65000}
    - {asn: 65000, hold_time: 3500ms, password_file: /nonexistent/pw}
    - {address: nope, asn: -1}
`, []string{
			`xlb.yaml:2: bgp.asn: must be between 1 and 4294967295, got 0`,
			`xlb.yaml:3: bgp.router_id: must be an IPv4 address (BGP identifiers are 32 bits), got 2001:db8::1`,
			`xlb.yaml:4: bgp.listen_port: must be a port (1-65535), or -1 to only dial out, got 0`,
			`xlb.yaml:5: bgp.graceful_restart.enabled: expected true or false, got "yes please"`,
			`xlb.yaml:5: bgp.graceful_restart.restart_time: must be at most 1h8m15s (the capability has 12 bits of seconds), got 1h23m20s`,
			`xlb.yaml:6: bgp.next_hop: expected an IP address without a port, got "10.0.0.1:179"; the port goes under the service's port`,
			`xlb.yaml:8: bgp.peers[0].hold_time: must be at least 3s, got 2s`,
			`xlb.yaml:8: bgp.peers[0].port: must be between 1 and 65535, got 70000`,
			`xlb.yaml:9: bgp.peers[1].address: peer 10.0.0.254 is listed twice (first on line 8)`,
			`xlb.yaml:10: bgp.peers[2].address: missing; give the router's IP address`,
			`xlb.yaml:10: bgp.peers[2].hold_time: must be whole seconds, got 3.5s`,
			`xlb.yaml:10: bgp.peers[2].password_file: file /nonexistent/pw does not exist`,
			`xlb.yaml:11: bgp.peers[3].address: expected an IPv4 or IPv6 address, got "nope"`,
			`xlb.yaml:11: bgp.peers[3].asn: must be between 1 and 4294967295, got -1`,
		}},
		{"peer-is-router-id", "bgp: {asn: 1, router_id: 10.0.0.9, peers: [{address: 10.0.0.9, asn: 2}]}\n", []string{
			`xlb.yaml:1: bgp.peers[0].address: 10.0.0.9 is this node's router_id; a peer is a router, another address`,
		}},
		{"empty-peers", "bgp: {asn: 1, router_id: 10.0.0.9, peers: []}\n", []string{
			`xlb.yaml:1: bgp.peers: empty; give at least one router, like [{address: 10.0.0.254, asn: 65000}]`,
		}},
		{"announce-typo", svc + "    announce: healty\n", []string{
			`xlb.yaml:7: services[0].announce: must be healthy, always or never, got "healty"; did you mean healthy?`,
		}},
		{"announce-on-layer-7", l7 + "    backends: [{address: 127.0.0.1:9001}]\n    announce: always\n", []string{
			`xlb.yaml:6: services[0].announce: applies to layer 4 services only, and this one is layer 7; bgp announces layer 4 VIPs`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("xlb.yaml", []byte(strings.TrimPrefix(tt.in, "\n")))
			if err == nil {
				t.Fatalf("Parse succeeded (bgp %+v); want errors:\n%s", c.BGP, strings.Join(tt.want, "\n"))
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList: %v", err, err)
			}
			if got := list.Details(); !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestDiffAnnounce(t *testing.T) {
	old := mustParse(t, diffBase)
	new := mustParse(t, edit(t, diffBase, "    port: 80\n", "    port: 80\n    announce: never\n"))
	if got, want := Diff(old, new), []string{"service api: announce healthy -> never"}; !slices.Equal(got, want) {
		t.Errorf("Diff %q, want %q", got, want)
	}
}
