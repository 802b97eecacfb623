package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// l4 and l7 open a minimal valid service, for cases about one more key.
const (
	l4 = `
services:
  - name: api
    layer: 4
    vip: 10.0.0.10
    port: 80
`
	l7 = `
services:
  - name: web
    layer: 7
    listen: 0.0.0.0:8080
`
)

// TestParseErrors checks the exact errors of invalid files: file, line, key
// and message. Inputs lose their first newline, so line 1 is the line after
// the opening backquote.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		// The file as a whole.
		{"yaml-syntax-error", `
services:
  - name: api
    layer: [4
`, []string{`xlb.yaml:3: invalid YAML: did not find expected ',' or ']': the flow opened on this line is not closed with ]`}}, // the parser says line 2, where the mapping began
		{"yaml-tab", "services:\n  - name: a\n\tlayer: 4\n", []string{
			`xlb.yaml:3: invalid YAML: a tab indents this line; YAML indents with spaces only`}},
		{"yaml-tab-in-block", "l7:\n  idle_timeout: 1s\n\tdrain_timeout: 3s\n", []string{
			`xlb.yaml:3: invalid YAML: a tab indents this line; YAML indents with spaces only`}},
		{"yaml-unclosed-quote", `
services:
  - name: web
    layer: 7
    listen: "127.0.0.1:8080
    backends: [{address: 127.0.0.1:9001}]
  - name: api
    layer: 4
`, []string{`xlb.yaml:4: invalid YAML: the quote opened on this line is not closed on it`}},
		{"yaml-unclosed-quote-at-end", "services:\n  - name: 'web\n", []string{
			`xlb.yaml:2: invalid YAML: the quote opened on this line is not closed on it`}},
		{"yaml-unclosed-flow", `
a: 1
services:
  - name: a
    vip: 10.0.0.1
    backends: [{address: 10.0.0.2}
    port: 80
`, []string{`xlb.yaml:5: invalid YAML: did not find expected ',' or ']': the flow opened on this line is not closed with ]`}},
		{"yaml-misindented", `
services:
  - name: a
    layer: 4
    backends:
      - address: 10.0.0.2
   port: 80
`, []string{`xlb.yaml:6: invalid YAML: did not find expected '-' indicator: this line's indentation lines up with no block above it`}},
		{"yaml-syntax-error-first-line", "a: b: c\n", []string{
			`xlb.yaml:1: invalid YAML: mapping values are not allowed in this context`}},
		{"yaml-unknown-anchor", `
xdp:
  mode: auto
  pin_path: *nope
`, []string{`xlb.yaml:3: invalid YAML: unknown anchor 'nope' referenced`}},
		{"top-level-list", "- admin\n", []string{
			`xlb.yaml:1: expected a mapping with keys admin, xdp, l7 and services, got a list`}},
		{"unknown-top-key-suggestion", "servces: []\n", []string{
			`xlb.yaml:1: servces: unknown key; did you mean "services"?`}},
		{"unknown-top-key", "frontends: []\n", []string{
			`xlb.yaml:1: frontends: unknown key; known keys here: admin, xdp, l7, services, bgp`}},
		{"duplicate-key", `
xdp:
  mode: auto
  mode: native
`, []string{`xlb.yaml:3: xdp.mode: key given twice (first on line 2)`}},
		{"second-document", `
xdp: {mode: auto}
---
l7: {}
`, []string{`xlb.yaml:3: a second YAML document starts here; the config is a single document (remove the "---")`}},

		// admin
		{"admin-unknown-key-suggestion", `
admin:
  listen: 127.0.0.1:9100
  tokenfile: /etc/xlb/token
`, []string{`xlb.yaml:3: admin.tokenfile: unknown key; did you mean "token_file"?`}},
		{"admin-listen-no-port", "admin: {listen: localhost}\n", []string{
			`xlb.yaml:1: admin.listen: expected host:port like 0.0.0.0:8080, got "localhost"`}},
		{"admin-listen-bad-port", "admin: {listen: 127.0.0.1:99999}\n", []string{
			`xlb.yaml:1: admin.listen: port must be between 1 and 65535, got "99999"`}},
		{"admin-listen-number", "admin: {listen: 9100}\n", []string{
			`xlb.yaml:1: admin.listen: expected host:port like 0.0.0.0:9100, got 9100 (for every address write ":9100")`}},
		{"admin-token-file-missing", "admin: {token_file: /nonexistent/token}\n", []string{
			`xlb.yaml:1: admin.token_file: file /nonexistent/token does not exist`}},
		{"admin-not-a-mapping", "admin: 127.0.0.1:9100\n", []string{
			`xlb.yaml:1: admin: expected a mapping with keys listen and token_file, got "127.0.0.1:9100"`}},

		// xdp
		{"xdp-mode-typo", "xdp: {mode: nativ}\n", []string{
			`xlb.yaml:1: xdp.mode: must be auto, native or generic, got "nativ"; did you mean native?`}},
		{"xdp-mode-unknown", "xdp: {mode: offload}\n", []string{
			`xlb.yaml:1: xdp.mode: must be auto, native or generic, got "offload"`}},
		{"xdp-flow-table-too-small", "xdp: {flow_table_size: 100}\n", []string{
			`xlb.yaml:1: xdp.flow_table_size: must be between 1024 and 67108864, got 100`}},
		{"xdp-flow-insert-limit-negative", "xdp: {flow_insert_limit: -1}\n", []string{
			`xlb.yaml:1: xdp.flow_insert_limit: must be between 0 and 4294967296, got -1`}},
		{"xdp-ipip-source-prefix-not-a-prefix", "xdp: {ipip_source_prefix: 172.16.0.1}\n", []string{
			`xlb.yaml:1: xdp.ipip_source_prefix: expected an IPv4 prefix such as 172.16.0.0/16, got "172.16.0.1"`}},
		{"xdp-ipip-source-prefix-multicast", "xdp: {ipip_source_prefix: 224.0.0.0/8}\n", []string{
			`xlb.yaml:1: xdp.ipip_source_prefix: 224.0.0.0/8 is multicast (224.0.0.0/4): no packet may come from there (routers and the backends' kernels drop it); give unicast space the backends can route back to, such as 172.16.0.0/16`}},
		{"xdp-ipip-source-prefix-loopback", "xdp: {ipip_source_prefix: 127.0.0.0/8}\n", []string{
			`xlb.yaml:1: xdp.ipip_source_prefix: 127.0.0.0/8 is loopback (127.0.0.0/8): no packet may come from there (routers and the backends' kernels drop it); give unicast space the backends can route back to, such as 172.16.0.0/16`}},
		{"xdp-ipip-source-prefix-this-network", "xdp: {ipip_source_prefix: 0.0.0.0/8}\n", []string{
			`xlb.yaml:1: xdp.ipip_source_prefix: 0.0.0.0/8 is "this network" (0.0.0.0/8): no packet may come from there (routers and the backends' kernels drop it); give unicast space the backends can route back to, such as 172.16.0.0/16`}},
		{"xdp-ipip-source-prefix-v6", "xdp: {ipip_source_prefix: \"fd00::/64\"}\n", []string{
			`xlb.yaml:1: xdp.ipip_source_prefix: must be an IPv4 prefix (IP6IP6 keeps the balancer's address), got fd00::/64`}},
		{"xdp-ipip-source-prefix-too-long", "xdp:\n  ipip_source_prefix: 172.16.0.1/32\n", []string{
			`xlb.yaml:2: xdp.ipip_source_prefix: prefix length must be between /8 and /31, got /32`}},
		{"xdp-ipip-source-prefix-host-bits", "xdp: {ipip_source_prefix: 172.16.3.0/16}\n", []string{
			`xlb.yaml:1: xdp.ipip_source_prefix: 172.16.3.0/16 has host bits set: did you mean 172.16.0.0/16?`}},
		{"xdp-flow-table-not-a-number", "xdp: {flow_table_size: 1M}\n", []string{
			`xlb.yaml:1: xdp.flow_table_size: expected an integer, got "1M"`}},
		{"xdp-interfaces-not-a-list", "xdp: {interfaces: eth0}\n", []string{
			`xlb.yaml:1: xdp.interfaces: expected a list like [eth0, eth1], got "eth0"`}},
		{"xdp-interfaces-bad-names", `
xdp:
  interfaces:
    - eth0
    - eth0
    - a-name-longer-than-15
    - "eth/1"
`, []string{
			`xlb.yaml:4: xdp.interfaces[1]: interface eth0 is listed twice (first on line 3)`,
			`xlb.yaml:5: xdp.interfaces[2]: interface name "a-name-longer-than-15" is longer than 15 characters`,
			`xlb.yaml:6: xdp.interfaces[3]: "eth/1" is not a valid interface name`,
		}},
		{"xdp-pin-path-relative", "xdp: {pin_path: bpf/xlb}\n", []string{
			`xlb.yaml:1: xdp.pin_path: must be an absolute path in a bpffs mount, like /sys/fs/bpf/xlb, got "bpf/xlb"`}},

		// l7
		{"l7-duration-word", "l7: {drain_timeout: five}\n", []string{
			`xlb.yaml:1: l7.drain_timeout: expected a duration like 5s, got "five"`}},
		{"l7-duration-without-unit", "l7: {idle_timeout: 5}\n", []string{
			`xlb.yaml:1: l7.idle_timeout: expected a duration like 5s, got 5 (add a unit: 5s or 5ms)`}},
		{"l7-duration-negative", "l7: {read_header_timeout: -1s, drain_timeout: -1s}\n", []string{
			`xlb.yaml:1: l7.read_header_timeout: must be positive, got -1s`,
			`xlb.yaml:1: l7.drain_timeout: must not be negative, got -1s`,
		}},
		{"l7-max-header-bytes", "l7: {max_header_bytes: 100}\n", []string{
			`xlb.yaml:1: l7.max_header_bytes: must be between 1024 and 16777216, got 100`}},

		// services: common keys
		{"services-not-a-list", "services:\n  name: api\n", []string{
			`xlb.yaml:2: services: expected a list like [{name: web, layer: 7, ...}], got a mapping`}},
		{"service-layer-missing", `
services:
  - name: api
    vip: 10.0.0.10
    port: 80
    backends: [{address: 10.0.1.1}]
`, []string{`xlb.yaml:2: services[0].layer: missing; set layer: 4 (XDP, packets) or layer: 7 (HTTP proxy)`}},
		{"service-layer-5", `
services:
  - name: api
    layer: 5
`, []string{`xlb.yaml:3: services[0].layer: must be 4 (XDP, packets) or 7 (HTTP proxy), got 5`}},
		{"service-layer-word", `
services:
  - name: api
    layer: L4
`, []string{`xlb.yaml:3: services[0].layer: expected an integer, got "L4"`}},
		{"service-name-missing", `
services:
  - layer: 7
    listen: :8080
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:2: services[0].name: missing; every service needs a unique name`}},
		{"service-name-invalid", `
services:
  - name: Web Frontend
    layer: 7
    listen: :8080
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:2: services[0].name: "Web Frontend" is not a valid name: 1 to 63 lower-case letters, digits, '-' and '_', starting with a letter or digit`}},
		{"service-unknown-key-suggestion", l4 + `    backend: [{address: 10.0.1.1}]
`, []string{
			`xlb.yaml:2: services[0].backends: a layer 4 service needs at least one backend`,
			`xlb.yaml:6: services[0].backend: unknown key; did you mean "backends"?`,
		}},
		{"service-null-item", "services:\n  -\n  - [web]\n", []string{
			`xlb.yaml:2: services[0]: empty service; give it at least name and layer`,
			`xlb.yaml:3: services[1]: expected a mapping like {name: web, layer: 7, ...}, got a list`,
		}},
		{"service-required-keys-null", `
services:
  - name:
    layer: 4
    vip:
    port: 80
    backends:
`, []string{
			`xlb.yaml:2: services[0].name: missing; every service needs a unique name`,
			`xlb.yaml:4: services[0].vip: missing; a layer 4 service needs the virtual IP address it serves`,
			`xlb.yaml:6: services[0].backends: a layer 4 service needs at least one backend`,
		}},
		{"service-names-duplicate", `
services:
  - {name: web, layer: 7, listen: ":8080", backends: [{address: "127.0.0.1:9001"}]}
  - {name: web, layer: 7, listen: ":8081", backends: [{address: "127.0.0.1:9001"}]}
`, []string{`xlb.yaml:3: services[1].name: service name "web" is already used on line 2`}},

		// layer 4
		{"l4-vip-invalid", l4[:strings.Index(l4, "    vip")] + `    vip: 10.0.0.300
    port: 80
    backends: [{address: 10.0.1.1}]
`, []string{`xlb.yaml:4: services[0].vip: expected an IPv4 or IPv6 address, got "10.0.0.300"`}},
		{"l4-vip-with-port", `
services:
  - name: api
    layer: 4
    vip: 10.0.0.10:80
    port: 80
    backends: [{address: 10.0.1.1}]
`, []string{`xlb.yaml:4: services[0].vip: expected an IP address without a port, got "10.0.0.10:80"; the port goes under the service's port`}},
		{"l4-vip-ipv4-mapped", `
services:
  - name: api
    layer: 4
    vip: "::ffff:10.0.0.10"
    port: 80
    backends: [{address: 10.0.1.1}]
`, []string{`xlb.yaml:4: services[0].vip: write the IPv4 address 10.0.0.10 rather than ::ffff:10.0.0.10`}},
		{"l4-vip-and-port-missing", `
services:
  - name: api
    layer: 4
    backends: [{address: 10.0.1.1}]
`, []string{
			`xlb.yaml:2: services[0].vip: missing; a layer 4 service needs the virtual IP address it serves`,
			`xlb.yaml:2: services[0].port: missing; a layer 4 service needs its port (1-65535)`,
		}},
		{"l4-port-out-of-range", `
services:
  - name: api
    layer: 4
    vip: 10.0.0.10
    port: 70000
    backends: [{address: 10.0.1.1}]
`, []string{`xlb.yaml:5: services[0].port: must be between 1 and 65535, got 70000`}},
		{"l4-protocol-and-forwarding", l4 + `    protocol: sctp
    forwarding: dr
    backends: [{address: 10.0.1.1}]
`, []string{
			`xlb.yaml:6: services[0].protocol: must be tcp or udp, got "sctp"`,
			`xlb.yaml:7: services[0].forwarding: must be ipip or dsr, got "dr"; did you mean dsr?`,
		}},
		{"l4-scheduler-of-layer-7", l4 + `    scheduler: round_robin
    backends: [{address: 10.0.1.1}]
`, []string{`xlb.yaml:6: services[0].scheduler: round_robin is a layer 7 scheduler; a layer 4 service uses maglev or ip_hash`}},
		{"l4-backend-with-port", l4 + `    backends:
      - address: 10.0.1.1:8080
`, []string{`xlb.yaml:7: services[0].backends[0].address: a layer 4 backend is an IP address without a port: it serves on the VIP's port, 80; write 10.0.1.1`}},
		{"l4-backend-hostname", l4 + `    backends:
      - address: backend1.example.com
`, []string{`xlb.yaml:7: services[0].backends[0].address: expected an IP address, got "backend1.example.com" (layer 4 backends are addresses; host names are not resolved)`}},
		{"l4-backend-family-mismatch", l4 + `    backends:
      - address: 2001:db8::1
`, []string{`xlb.yaml:7: services[0].backends[0].address: 2001:db8::1 is IPv6 but the VIP 10.0.0.10 is IPv4; a layer 4 backend must be in the VIP's family`}},
		{"l4-backend-multicast", l4 + `    backends:
      - address: 224.0.0.1
`, []string{`xlb.yaml:7: services[0].backends[0].address: a backend cannot be a multicast address (224.0.0.1)`}},
		{"l4-backend-duplicate", l4 + `    backends:
      - address: 10.0.1.1
      - address: 10.0.1.2
      - {address: 10.0.1.1, weight: 2}
`, []string{`xlb.yaml:9: services[0].backends[2].address: backend 10.0.1.1 is listed twice (first on line 7)`}},
		{"l4-backend-weight-range", l4 + `    backends:
      - address: 10.0.1.1
        weight: -1
      - address: 10.0.1.2
        weight: 1001
      - address: 10.0.1.3
        weight: heavy
`, []string{
			`xlb.yaml:8: services[0].backends[0].weight: must be between 0 and 1000, got -1`,
			`xlb.yaml:10: services[0].backends[1].weight: must be between 0 and 1000, got 1001`,
			`xlb.yaml:12: services[0].backends[2].weight: expected an integer, got "heavy"`,
		}},
		{"l4-backend-unknown-key", l4 + `    backends:
      - address: 10.0.1.1
        wieght: 2
`, []string{`xlb.yaml:8: services[0].backends[0].wieght: unknown key; did you mean "weight"?`}},
		{"l4-backend-layer-7-keys", l4 + `    backends:
      - {address: 10.0.1.1, max_conns: 100}
`, []string{`xlb.yaml:7: services[0].backends[0].max_conns: applies to layer 7 backends only; the XDP program forwards packets without counting or ramping connections`}},
		{"l4-backend-scalar", l4 + `    backends: [10.0.1.1]
`, []string{`xlb.yaml:6: services[0].backends[0]: expected a mapping like {address: 10.0.1.1}, got "10.0.1.1"`}},
		{"l4-backend-address-missing", l4 + `    backends:
      - weight: 2
`, []string{`xlb.yaml:7: services[0].backends[0].address: missing; every backend needs an address`}},
		{"l4-backends-empty", l4 + `    backends: []
`, []string{`xlb.yaml:6: services[0].backends: a layer 4 service needs at least one backend`}},
		{"l4-layer-7-keys", l4 + `    listen: 0.0.0.0:80
    routes: []
    sticky: {cookie: x}
    backends: [{address: 10.0.1.1}]
`, []string{
			`xlb.yaml:6: services[0].listen: applies to layer 7 services only, and this one is layer 4; a layer 4 service takes vip and port instead`,
			`xlb.yaml:7: services[0].routes: applies to layer 7 services only, and this one is layer 4; routing on host, path or headers needs the HTTP tier (layer: 7)`,
			`xlb.yaml:8: services[0].sticky: applies to layer 7 services only, and this one is layer 4; it needs the HTTP tier (layer: 7); for persistence at layer 4 use scheduler: ip_hash`,
		}},
		{"l4-same-vip-port-protocol", `
services:
  - {name: a, layer: 4, vip: 10.0.0.10, port: 80, backends: [{address: 10.0.1.1}]}
  - {name: b, layer: 4, vip: 10.0.0.10, port: 80, protocol: tcp, backends: [{address: 10.0.1.2}]}
`, []string{`xlb.yaml:3: services[1].vip: 10.0.0.10:80/tcp is already served by service a (line 2)`}},
		{"l4-rate-limit-header-key", l4 + `    rate_limit: {rate: 10/s, key: "header:X-Key"}
    backends: [{address: 10.0.1.1}]
`, []string{`xlb.yaml:6: services[0].rate_limit.key: a layer 4 rate limit counts new connections per source address; key can only be source_ip, got "header:X-Key"`}},

		// layer 7
		{"l7-layer-4-keys", `
services:
  - name: web
    layer: 7
    vip: 10.0.0.10
    listen: :8080
    forwarding: dsr
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:4: services[0].vip: applies to layer 4 services only, and this one is layer 7; a layer 7 service takes listen: host:port instead`,
			`xlb.yaml:6: services[0].forwarding: applies to layer 4 services only, and this one is layer 7; a layer 7 service proxies connections to its backends`,
		}},
		{"l7-listen-missing", `
services:
  - name: web
    layer: 7
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:2: services[0].listen: missing; a layer 7 service needs the host:port it listens on, like 0.0.0.0:8080`}},
		{"l7-backend-without-port", l7 + `    backends:
      - address: localhost
      - address: 10.0.1.1
`, []string{
			`xlb.yaml:6: services[0].backends[0].address: a layer 7 backend needs a port: write localhost:80`,
			`xlb.yaml:7: services[0].backends[1].address: a layer 7 backend needs a port: write 10.0.1.1:80`,
		}},
		{"l7-backend-with-scheme", l7 + `    backends:
      - address: http://127.0.0.1:9001
`, []string{`xlb.yaml:6: services[0].backends[0].address: write host:port without a scheme, like 127.0.0.1:9001`}},
		{"l7-backend-duplicate", l7 + `    backends:
      - address: LOCALHOST:9001
      - address: localhost:9001
`, []string{`xlb.yaml:7: services[0].backends[1].address: backend localhost:9001 is listed twice (first on line 6)`}},
		{"l7-backends-missing", l7, []string{
			`xlb.yaml:2: services[0].backends: a layer 7 service needs at least one backend, or routes that have their own`}},
		{"l7-route-without-backends", l7 + `    routes:
      - match: {path_prefix: /v1/}
        backends: [{address: 127.0.0.1:9101}]
      - match: {path_prefix: /v2/}
`, []string{`xlb.yaml:8: services[0].routes[1].backends: this route has no backends and the service has none to fall back on`}},
		{"l7-scheduler-of-layer-4", l7 + `    scheduler: maglev
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:5: services[0].scheduler: maglev is a layer 4 scheduler; a layer 7 service uses round_robin, least_conn, ip_hash, consistent_hash, least_time or random_two`}},
		{"l7-scheduler-typo", l7 + `    scheduler: least_con
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:5: services[0].scheduler: must be round_robin, least_conn, ip_hash, consistent_hash, least_time or random_two, got "least_con"; did you mean least_conn?`}},
		{"l7-consistent-hash-without-key", l7 + `    scheduler: consistent_hash
    backends: [{address: 127.0.0.1:9001}]
    routes:
      - {match: {host: a.example.com}, scheduler: consistent_hash}
`, []string{
			`xlb.yaml:5: services[0].scheduler: consistent_hash needs hash_key: header:NAME, cookie:NAME, path or source_ip`,
			`xlb.yaml:8: services[0].routes[0].scheduler: consistent_hash needs the service's hash_key: header:NAME, cookie:NAME, path or source_ip`,
		}},
		{"l7-hash-key-null", l7 + `    scheduler: consistent_hash
    hash_key:
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:5: services[0].scheduler: consistent_hash needs hash_key: header:NAME, cookie:NAME, path or source_ip`}},
		{"l7-listen-bad-host", `
services:
  - {name: web, layer: 7, listen: "my host:80", backends: [{address: "127.0.0.1:9001"}]}
`, []string{`xlb.yaml:2: services[0].listen: "my host" is neither an IP address nor a host name`}},
		{"mistyped-addresses-are-not-names", `
services:
  - {name: web, layer: 7, listen: "300.1.1.1:80", backends: [{address: "999.0.0.1:8080"}]}
`, []string{
			`xlb.yaml:2: services[0].listen: "300.1.1.1" is not an IPv4 address: four numbers 0-255, like 10.0.0.1`,
			`xlb.yaml:2: services[0].backends[0].address: "999.0.0.1" is not an IPv4 address: four numbers 0-255, like 10.0.0.1`,
		}},
		{"l7-hash-key-format", l7 + `    scheduler: consistent_hash
    hash_key: hdr:X-User
    backends: [{address: 127.0.0.1:9001}]
  - name: web2
    layer: 7
    listen: 0.0.0.0:8081
    scheduler: consistent_hash
    hash_key: "cookie:bad name"
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:6: services[0].hash_key: must be header:NAME, cookie:NAME, path or source_ip, got "hdr:X-User"`,
			`xlb.yaml:12: services[1].hash_key: "bad name" is not a valid cookie name`,
		}},
		{"l7-sticky-without-cookie", l7 + `    sticky: {ttl: 1h}
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:5: services[0].sticky.cookie: missing; sticky needs the cookie's name, like {cookie: srv_id}`}},
		{"l7-retries", l7 + `    retries:
      attempts: 11
      on: [connect_error, 404, 5xx, timeot]
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:6: services[0].retries.attempts: must be between 0 and 10, got 11`,
			`xlb.yaml:7: services[0].retries.on[1]: only 5xx statuses (500-599) are retried, got 404`,
			`xlb.yaml:7: services[0].retries.on[2]: must be connect_error, timeout, grpc_unavailable, grpc_resource_exhausted or a 5xx status such as 502, got "5xx"`,
			`xlb.yaml:7: services[0].retries.on[3]: must be connect_error, timeout, grpc_unavailable, grpc_resource_exhausted or a 5xx status such as 502, got "timeot"; did you mean timeout?`,
		}},
		{"l7-timeouts-and-passive-health", l7 + `    timeouts: {connect: 0s, response_header: 30}
    passive_health: {max_fails: -1, fail_timeout: 0s}
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:5: services[0].timeouts.connect: must be positive, got 0s`,
			`xlb.yaml:5: services[0].timeouts.response_header: expected a duration like 5s, got 30 (add a unit: 30s or 30ms)`,
			`xlb.yaml:6: services[0].passive_health.max_fails: must be between 0 and 100, got -1`,
			`xlb.yaml:6: services[0].passive_health.fail_timeout: must be positive, got 0s`,
		}},
		{"l7-rate-limit-zero", l7 + `    rate_limit: {rate: 0/s, burst: 0}
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:5: services[0].rate_limit.rate: must be at least 1 per period, got 0/s`,
			`xlb.yaml:5: services[0].rate_limit.burst: must be at least 1, got 0`,
		}},
		{"l7-rate-limit-format", l7 + `    rate_limit: {rate: 10/d, key: user}
  - name: web2
    layer: 7
    listen: 0.0.0.0:8081
    rate_limit: {rate: 100}
    backends: [{address: 127.0.0.1:9001}]
  - name: web3
    layer: 7
    listen: 0.0.0.0:8082
    rate_limit: {burst: 5}
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:2: services[0].backends: a layer 7 service needs at least one backend, or routes that have their own`,
			`xlb.yaml:5: services[0].rate_limit.rate: unknown unit "d" in "10/d"; use s, m or h`,
			`xlb.yaml:5: services[0].rate_limit.key: must be source_ip or header:NAME, got "user"`,
			`xlb.yaml:9: services[1].rate_limit.rate: expected a rate like 100/s (per s, m or h), got 100`,
			`xlb.yaml:14: services[2].rate_limit.rate: missing; give a rate like 100/s (units s, m, h)`,
		}},
		{"l7-tls-half", l7 + `    tls: {cert_file: /etc/xlb/cert.pem}
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:5: services[0].tls.key_file: missing; cert_file needs its private key (key_file)`}},
		{"l7-tls-files-missing", l7 + `    tls:
      cert_file: /nonexistent/cert.pem
      key_file: /nonexistent/key.pem
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:6: services[0].tls.cert_file: file /nonexistent/cert.pem does not exist`,
			`xlb.yaml:7: services[0].tls.key_file: file /nonexistent/key.pem does not exist`,
		}},
		{"l7-route-match", l7 + `    backends: [{address: 127.0.0.1:9001}]
    routes:
      - match:
          host: "api.example.com:8080"
          path_prefix: v1/
          methods: [get, "GE T"]
          headers: {"X Bad": "1", X-Empty: }
          paths: [/a]
`, []string{
			`xlb.yaml:8: services[0].routes[0].match.host: expected a host name like api.example.com or *.example.com (no port), got "api.example.com:8080"`,
			`xlb.yaml:9: services[0].routes[0].match.path_prefix: must start with "/", got "v1/"`,
			`xlb.yaml:10: services[0].routes[0].match.methods[0]: methods are upper case: write GET`,
			`xlb.yaml:10: services[0].routes[0].match.methods[1]: "GE T" is not an HTTP method`,
			`xlb.yaml:11: services[0].routes[0].match.headers.X Bad: "X Bad" is not a valid header name`,
			`xlb.yaml:11: services[0].routes[0].match.headers.X-Empty: give the value the header must have`,
			`xlb.yaml:12: services[0].routes[0].match.paths: unknown key; known keys here: host, path_prefix, methods, headers`,
		}},
		{"l7-same-listen", `
services:
  - {name: a, layer: 7, listen: "0.0.0.0:8080", backends: [{address: "127.0.0.1:9001"}]}
  - {name: b, layer: 7, listen: "10.0.0.5:8080", backends: [{address: "127.0.0.1:9001"}]}
  - {name: c, layer: 7, listen: "[::]:8081", backends: [{address: "127.0.0.1:9001"}]}
  - {name: d, layer: 7, listen: ":8081", backends: [{address: "127.0.0.1:9001"}]}
`, []string{
			`xlb.yaml:3: services[1].listen: 10.0.0.5:8080 overlaps the listen address 0.0.0.0:8080 of service a (line 2)`,
			`xlb.yaml:5: services[3].listen: :8081 overlaps the listen address [::]:8081 of service c (line 4)`,
		}},
		{"l7-listen-is-admin", `
admin: {listen: "127.0.0.1:9200"}
services:
  - {name: a, layer: 7, listen: "localhost:9200", backends: [{address: "127.0.0.1:9001"}]}
  - {name: b, layer: 7, listen: ":9100", backends: [{address: "127.0.0.1:9001"}]}
`, []string{
			`xlb.yaml:3: services[0].listen: localhost:9200 overlaps admin.listen (line 1), 127.0.0.1:9200`,
		}},
		{"l7-listen-default-admin", `
services:
  - {name: a, layer: 7, listen: ":9100", backends: [{address: "127.0.0.1:9001"}]}
`, []string{`xlb.yaml:2: services[0].listen: :9100 overlaps the default admin.listen, 127.0.0.1:9100`}},
		{"l7-listen-is-l4-vip", `
xdp: {interfaces: [eth0]}
services:
  - {name: a, layer: 4, vip: 10.0.0.10, port: 80, backends: [{address: 10.0.1.1}]}
  - {name: b, layer: 7, listen: "10.0.0.10:80", backends: [{address: "127.0.0.1:9001"}]}
`, []string{`xlb.yaml:4: services[1].listen: 10.0.0.10:80 is the vip:port of layer 4 service a (line 3); the XDP program takes those packets before this listener sees them`}},

		// health checks
		{"health-timeout-above-interval", l4 + `    backends: [{address: 10.0.1.1}]
    health_check: {type: tcp, interval: 2s, timeout: 3s}
`, []string{`xlb.yaml:7: services[0].health_check.timeout: must not be longer than interval (2s), got 3s`}},
		{"health-interval-too-short", l4 + `    backends: [{address: 10.0.1.1}]
    health_check: {interval: 50ms, timeout: 10ms}
`, []string{`xlb.yaml:7: services[0].health_check.interval: must be at least 100ms, got 50ms`}},
		{"health-thresholds", l4 + `    backends: [{address: 10.0.1.1}]
    health_check:
      healthy_threshold: 0
      unhealthy_threshold: 11
`, []string{
			`xlb.yaml:8: services[0].health_check.healthy_threshold: must be between 1 and 10, got 0`,
			`xlb.yaml:9: services[0].health_check.unhealthy_threshold: must be between 1 and 10, got 11`,
		}},
		{"health-expect-status", l4 + `    backends: [{address: 10.0.1.1}]
    health_check: {type: http, expect_status: 2xx}
  - name: api2
    layer: 4
    vip: 10.0.0.11
    port: 80
    backends: [{address: 10.0.1.1}]
    health_check: {type: http, expect_status: 399-200}
  - name: api3
    layer: 4
    vip: 10.0.0.12
    port: 80
    backends: [{address: 10.0.1.1}]
    health_check: {type: http, expect_status: 200-600}
`, []string{
			`xlb.yaml:7: services[0].health_check.expect_status: expected a status like 200 or a range like 200-399, got "2xx"`,
			`xlb.yaml:13: services[1].health_check.expect_status: range 399-200 is backwards; write 200-399`,
			`xlb.yaml:19: services[2].health_check.expect_status: status 600 is not between 100 and 599`,
		}},
		{"health-type-and-path", l4 + `    backends: [{address: 10.0.1.1}]
    health_check: {type: icmp}
  - name: api2
    layer: 4
    vip: 10.0.0.11
    port: 80
    backends: [{address: 10.0.1.1}]
    health_check: {type: http, path: health, port: 0}
`, []string{
			`xlb.yaml:7: services[0].health_check.type: must be http, tcp, grpc or none, got "icmp"`,
			`xlb.yaml:13: services[1].health_check.path: expected a URL path starting with "/", like /health, got "health"`,
			`xlb.yaml:13: services[1].health_check.port: must be between 1 and 65535, got 0`,
		}},
		{"health-grpc-layer-4", l4 + `    backends: [{address: 10.0.1.1}]
    health_check: {type: grpc}
`, []string{`xlb.yaml:7: services[0].health_check.type: grpc checks are for layer 7 services (gRPC backends); use tcp or http at layer 4`}},
		{"health-unknown-key-prefix", l4 + `    backends: [{address: 10.0.1.1}]
    health_check: {unhealthy: 2}
`, []string{`xlb.yaml:7: services[0].health_check.unhealthy: unknown key; did you mean "unhealthy_threshold"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("xlb.yaml", []byte(strings.TrimPrefix(tt.in, "\n")))
			if err == nil {
				t.Fatalf("Parse succeeded (warnings %q); want errors:\n%s", c.Warnings, strings.Join(tt.want, "\n"))
			}
			if c != nil {
				t.Errorf("Parse returned a config with its errors")
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

// specExample returns the config example of SPEC.md (testdata/spec.yaml),
// with TLS files that exist.
func specExample(t *testing.T) (data []byte, cert, key string) {
	t.Helper()
	data, err := os.ReadFile("testdata/spec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = writeCert(t, dir, "cert", "www.example.com")
	old := `tls: {cert_file: "", key_file: ""}`
	if !strings.Contains(string(data), old) {
		t.Fatalf("testdata/spec.yaml has no %q", old)
	}
	data = []byte(strings.Replace(string(data), old, "tls: {cert_file: "+cert+", key_file: "+key+"}", 1))
	return data, cert, key
}

func TestParseSpecExample(t *testing.T) {
	data, cert, key := specExample(t)
	c, err := Parse("xlb.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`xlb.yaml:51: services[1].hash_key: unused: only scheduler consistent_hash reads hash_key`}; !slices.Equal(c.Warnings, want) {
		t.Errorf("warnings %q, want %q", c.Warnings, want)
	}
	if c.Admin != (Admin{Listen: "127.0.0.1:9100"}) {
		t.Errorf("admin %+v", c.Admin)
	}
	if want := (XDP{Interfaces: []string{"eth0"}, Mode: "auto", PinPath: "/sys/fs/bpf/xlb", FlowTableSize: 1048576, FlowInsertLimit: 100000}); !reflect.DeepEqual(c.XDP, want) {
		t.Errorf("xdp %+v, want %+v", c.XDP, want)
	}
	if want := (L7{DrainTimeout: 30 * time.Second, MaxHeaderBytes: 65536, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}); c.L7 != want {
		t.Errorf("l7 %+v, want %+v", c.L7, want)
	}
	if len(c.Services) != 2 {
		t.Fatalf("%d services, want 2", len(c.Services))
	}

	api := c.Service("api")
	wantAPI := Service{
		Name: "api", Layer: 4, Line: 20,
		VIP: netip.MustParseAddr("10.0.0.10"), Port: 80, Protocol: "tcp", Forwarding: "ipip",
		Scheduler: "maglev", Announce: "healthy",
		RateLimit: &RateLimit{Rate: 1000, Per: time.Minute, Burst: 100, Key: "source_ip"},
		Backends: []Backend{
			{Address: "10.0.1.1", Addr: netip.MustParseAddr("10.0.1.1"), Weight: 3, Line: 31},
			{Address: "10.0.1.2", Addr: netip.MustParseAddr("10.0.1.2"), Weight: 1, Line: 33},
		},
		HealthCheck: &HealthCheck{
			Type: "http", Port: 8080, Path: "/health", ExpectStatus: "200", ExpectMin: 200, ExpectMax: 200,
			Interval: 5 * time.Second, Timeout: 2 * time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3, Via: "vip",
		},
	}
	if !reflect.DeepEqual(*api, wantAPI) {
		t.Errorf("service api:\n%+v\nwant\n%+v", *api, wantAPI)
	}
	if !api.IsL4() {
		t.Error("api is not L4")
	}

	web := c.Service("web")
	wantWeb := Service{
		Name: "web", Layer: 7, Line: 46,
		Listen: "0.0.0.0:8080",
		TLS: &TLS{
			Certificates: []CertPair{{CertFile: cert, KeyFile: key}},
			CertFile:     cert, KeyFile: key, MinVersion: "1.2",
		},
		Protocols:       []string{"http1", "h2"},
		BackendProtocol: "http1",
		Scheduler:       "round_robin",
		HashKey:         "header:X-User-ID",
		Sticky:          &Sticky{Cookie: "srv_id", TTL: time.Hour},
		RateLimit:       &RateLimit{Rate: 100, Per: time.Second, Burst: 50, Key: "source_ip"},
		Retries:         Retries{Attempts: 2, On: []string{"connect_error", "502", "503", "504"}},
		Timeouts:        Timeouts{Connect: 2 * time.Second, ResponseHeader: 30 * time.Second},
		PassiveHealth:   PassiveHealth{MaxFails: 3, FailTimeout: 30 * time.Second},
		Backends: []Backend{{
			Address: "127.0.0.1:9001", AddrPort: netip.MustParseAddrPort("127.0.0.1:9001"),
			Weight: 1, MaxConns: 100, SlowStart: 30 * time.Second, Line: 57,
		}},
		HealthCheck: &HealthCheck{
			Type: "http", Path: "/health", ExpectStatus: "200", ExpectMin: 200, ExpectMax: 200,
			Interval: 5 * time.Second, Timeout: 2 * time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3,
		},
		Routes: []Route{{
			Match: Match{
				Host: "api.example.com", PathPrefix: "/v1/", Methods: []string{"GET", "HEAD"},
				Headers: map[string]string{"X-Canary": "1"},
			},
			Scheduler: "least_conn",
			Backends: []Backend{{
				Address: "127.0.0.1:9101", AddrPort: netip.MustParseAddrPort("127.0.0.1:9101"), Weight: 1, Line: 66,
			}},
			Line: 64,
		}},
	}
	if !reflect.DeepEqual(*web, wantWeb) {
		t.Errorf("service web:\n%+v\nwant\n%+v", *web, wantWeb)
	}
	if web.IsL4() {
		t.Error("web is L4")
	}
	if kind, name := web.HashKeyParts(); kind != "header" || name != "X-User-ID" {
		t.Errorf("HashKeyParts = %q, %q", kind, name)
	}
	if !web.Retries.Has("502") || web.Retries.Has("500") {
		t.Errorf("Retries.Has wrong for %v", web.Retries.On)
	}
	if c.Service("nope") != nil {
		t.Error("Service(nope) is not nil")
	}

	// The example as SPEC.md writes it (TLS off) is valid too.
	raw, err := os.ReadFile("testdata/spec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err = Parse("xlb.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	if tls := c.Service("web").TLS; tls != nil {
		t.Errorf("tls with empty files = %+v, want nil", tls)
	}
}

// TestParseDefaults checks what keys left out become.
func TestParseDefaults(t *testing.T) {
	c, err := Parse("xlb.yaml", []byte(`
xdp: {interfaces: [eth0]}
services:
  - name: dns
    layer: 4
    vip: 2001:db8::53
    port: 53
    protocol: udp
    rate_limit: {rate: 10/h}
    backends: [{address: "2001:db8::1"}, {address: "2001:db8::2", weight: 0}]
    health_check: {port: 5353}
  - name: web
    layer: 7
    listen: "[::1]:8080"
    backends: [{address: "localhost:9001"}]
    health_check: {type: http}
    routes:
      - backends: [{address: "[::1]:9002", weight: 5}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %q", c.Warnings)
	}
	dns := c.Service("dns")
	if dns.Scheduler != "maglev" || dns.Forwarding != "ipip" || dns.Protocol != "udp" {
		t.Errorf("dns: scheduler %q forwarding %q protocol %q", dns.Scheduler, dns.Forwarding, dns.Protocol)
	}
	if *dns.RateLimit != (RateLimit{Rate: 10, Per: time.Hour, Burst: 1, Key: "source_ip"}) {
		t.Errorf("dns rate limit %+v", *dns.RateLimit)
	}
	if dns.Backends[0].Weight != 1 || dns.Backends[1].Weight != 0 {
		t.Errorf("weights %d %d, want 1 0", dns.Backends[0].Weight, dns.Backends[1].Weight)
	}
	wantHC := HealthCheck{Type: "tcp", Port: 5353, Path: "/", ExpectStatus: "200", ExpectMin: 200, ExpectMax: 200,
		Interval: 5 * time.Second, Timeout: 2 * time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3, Via: "vip"}
	if *dns.HealthCheck != wantHC {
		t.Errorf("dns health check %+v, want %+v", *dns.HealthCheck, wantHC)
	}
	if got := dns.CheckAddress(&dns.Backends[0]); got != "[2001:db8::1]:5353" {
		t.Errorf("CheckAddress = %q", got)
	}
	if dns.Backend("2001:DB8:0::2") != &dns.Backends[1] {
		t.Errorf("Backend(2001:DB8:0::2) did not find 2001:db8::2")
	}

	web := c.Service("web")
	if web.Scheduler != "round_robin" || web.Sticky != nil || web.TLS != nil || web.RateLimit != nil {
		t.Errorf("web: %+v", web)
	}
	if !reflect.DeepEqual(web.Retries, Retries{Attempts: 1, On: []string{"connect_error"}}) {
		t.Errorf("retries %+v", web.Retries)
	}
	if web.Timeouts != (Timeouts{Connect: 5 * time.Second, ResponseHeader: 60 * time.Second}) {
		t.Errorf("timeouts %+v", web.Timeouts)
	}
	if web.PassiveHealth != (PassiveHealth{MaxFails: 1, FailTimeout: 10 * time.Second}) {
		t.Errorf("passive health %+v", web.PassiveHealth)
	}
	if hc := web.HealthCheck; hc.Port != 0 || hc.Path != "/" || hc.ExpectMin != 200 || hc.ExpectMax != 200 {
		t.Errorf("web health check %+v", *hc)
	}
	if b := web.Backends[0]; b.AddrPort.IsValid() || b.Address != "localhost:9001" {
		t.Errorf("host name backend %+v", b)
	}
	if got := web.CheckAddress(&web.Backends[0]); got != "localhost:9001" {
		t.Errorf("CheckAddress = %q", got)
	}
	if rt := web.Routes[0]; rt.Scheduler != "round_robin" || rt.Backends[0].AddrPort != netip.MustParseAddrPort("[::1]:9002") || rt.Backends[0].Weight != 5 {
		t.Errorf("route %+v", rt)
	}
}

// TestParseValid checks files that look odd but are valid.
func TestParseValid(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		wantWarnings []string
	}{
		{"empty-file", "", []string{"xlb.yaml: no services configured; xlb serves nothing"}},
		{"comments-only", "# nothing yet\n", []string{"xlb.yaml: no services configured; xlb serves nothing"}},
		{"no-services", "admin: {listen: 127.0.0.1:9100}\nservices: []\n", []string{
			"xlb.yaml:2: services: no services configured; xlb serves nothing"}},
		{"null-sections", "admin:\nxdp:\nl7:\nservices:\n", []string{
			"xlb.yaml:4: services: no services configured; xlb serves nothing"}},
		{"vip-with-spaces", `
xdp: {interfaces: [eth0]}
services:
  - {name: api, layer: 4, vip: " 10.0.0.10 ", port: 80, backends: [{address: " 10.0.1.1"}]}
`, nil},
		{"loopback-vip", `
xdp: {interfaces: [eth0]}
services:
  - {name: api, layer: 4, vip: 127.0.0.10, port: 80, backends: [{address: 10.0.1.1}]}
`, []string{"xlb.yaml:3: services[0].vip: 127.0.0.10 is a loopback address: packets to it never cross an XDP interface, so the balancer sees none"}},
		{"same-vip-port-other-protocol", `
xdp: {interfaces: [eth0]}
services:
  - {name: dns-udp, layer: 4, vip: 10.0.0.53, port: 53, protocol: udp, backends: [{address: 10.0.1.1}]}
  - {name: dns-tcp, layer: 4, vip: 10.0.0.53, port: 53, protocol: tcp, backends: [{address: 10.0.1.1}]}
`, nil},
		{"all-drained", `
xdp: {interfaces: [eth0]}
services:
  - name: api
    layer: 4
    vip: 10.0.0.10
    port: 80
    backends: [{address: 10.0.1.1, weight: 0}]
`, []string{"xlb.yaml:7: services[0].backends: every backend has weight 0 (drained): the service takes no new connections"}},
		{"l7-backends-only-in-routes", `
services:
  - name: web
    layer: 7
    listen: :8080
    routes:
      - match: {path_prefix: /a/}
        backends: [{address: "127.0.0.1:9001"}]
      - backends: [{address: "127.0.0.1:9002"}]
      - match: {host: "*.example.com"}
        backends: [{address: "127.0.0.1:9003"}]
`, []string{"xlb.yaml:9: services[0].routes[2]: unreachable: routes[1] matches every request"}},
		{"admin-public-without-token", "admin: {listen: \":9100\"}\nservices:\n  - {name: web, layer: 7, listen: \":8080\", backends: [{address: \"127.0.0.1:9001\"}]}\n", []string{
			`xlb.yaml:1: admin.listen: :9100 is reachable beyond this host and admin.token_file is empty: anyone who reaches it can change backends; set a token_file or listen on 127.0.0.1`}},
		{"l4-without-interfaces", `
services:
  - {name: api, layer: 4, vip: 10.0.0.10, port: 80, backends: [{address: 10.0.1.1}]}
`, []string{"xlb.yaml:2: services[0]: layer 4 service api has no data plane: xdp.interfaces is empty"}},
		{"udp-health-check-on-service-port", `
xdp: {interfaces: [eth0]}
services:
  - name: dns
    layer: 4
    vip: 10.0.0.53
    port: 53
    protocol: udp
    backends: [{address: 10.0.1.1}]
    health_check: {type: tcp}
`, []string{"xlb.yaml:9: services[0].health_check.port: a tcp health check of a udp service probes TCP port 53; set port to one the backends answer on"}},
		{"health-http-keys-on-tcp", `
xdp: {interfaces: [eth0]}
services:
  - name: api
    layer: 4
    vip: 10.0.0.10
    port: 80
    backends: [{address: 10.0.1.1}]
    health_check:
      type: tcp
      path: /health
`, []string{"xlb.yaml:10: services[0].health_check.path: ignored with type tcp: only http checks use it"}},
		{"quoted-numbers", `
services:
  - {name: web, layer: "7", listen: ":8080", backends: [{address: "127.0.0.1:9001", weight: "2"}]}
`, nil},
		{"flow-mapping-everything", `{services: [{name: web, layer: 7, listen: ":8080", backends: [{address: "127.0.0.1:9001"}]}]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("xlb.yaml", []byte(strings.TrimPrefix(tt.in, "\n")))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !slices.Equal(c.Warnings, tt.wantWarnings) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(tt.wantWarnings, "\n"))
			}
		})
	}
}

func TestParseMergeKeys(t *testing.T) {
	c, err := Parse("xlb.yaml", []byte(`
l7: {}
services:
  - &base
    name: web
    layer: 7
    listen: ":8080"
    health_check: &check {type: http, path: /health, interval: 2s, timeout: 1s}
    backends: [{address: "127.0.0.1:9001"}]
  - <<: *base
    name: web2
    listen: ":8081"
    health_check:
      <<: *check
      path: /ready
`))
	if err != nil {
		t.Fatal(err)
	}
	web2 := c.Service("web2")
	if web2 == nil || web2.Layer != 7 || web2.Listen != ":8081" || len(web2.Backends) != 1 {
		t.Fatalf("web2 = %+v", web2)
	}
	if hc := web2.HealthCheck; hc.Type != "http" || hc.Path != "/ready" || hc.Interval != 2*time.Second {
		t.Errorf("merged health check %+v", *hc)
	}
	if c.Service("web").HealthCheck.Path != "/health" {
		t.Errorf("merge changed the anchor's mapping")
	}
}

// TestParseManyErrors checks that every error of a file is reported, sorted
// by line, not just the first.
func TestParseManyErrors(t *testing.T) {
	in := `services:
  - name: web
    layer: 7
    listen: ":8080"
    backends:
      - {address: "127.0.0.1:9001", weight: 2000}
    health_check: {interval: 1s, timeout: 3s}
xdp:
  mode: turbo
  flow_table_size: 10
admin:
  listen: nowhere
  colour: blue
services2: []
`
	_, err := Parse("/etc/xlb/xlb.yaml", []byte(in))
	want := []string{
		`/etc/xlb/xlb.yaml:6: services[0].backends[0].weight: must be between 0 and 1000, got 2000`,
		`/etc/xlb/xlb.yaml:7: services[0].health_check.timeout: must not be longer than interval (1s), got 3s`,
		`/etc/xlb/xlb.yaml:9: xdp.mode: must be auto, native or generic, got "turbo"`,
		`/etc/xlb/xlb.yaml:10: xdp.flow_table_size: must be between 1024 and 67108864, got 10`,
		`/etc/xlb/xlb.yaml:12: admin.listen: expected host:port like 0.0.0.0:8080, got "nowhere"`,
		`/etc/xlb/xlb.yaml:13: admin.colour: unknown key; known keys here: listen, token_file`,
		`/etc/xlb/xlb.yaml:14: services2: unknown key; did you mean "services"?`,
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v, want an ErrorList", err)
	}
	if got := list.Details(); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("Error() = %q", got)
	}
	e := list[0]
	if e.File != "/etc/xlb/xlb.yaml" || e.Line != 6 || e.Key != "services[0].backends[0].weight" || e.Msg != "must be between 0 and 1000, got 2000" {
		t.Errorf("first error = %#v", e)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{"xlb.yaml", 12, "services[1].backends[0].weight", "must be between 0 and 1000, got -1"},
			"xlb.yaml:12: services[1].backends[0].weight: must be between 0 and 1000, got -1"},
		{Error{"xlb.yaml", 3, "", "invalid YAML: x"}, "xlb.yaml:3: invalid YAML: x"},
		{Error{"xlb.yaml", 0, "admin", "m"}, "xlb.yaml: admin: m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	// Relative TLS and token paths are relative to the config's folder.
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeCert(t, dir, "cert", "www.example.com")
	writeCert(t, dir, "ca", "ca.example.com")
	path := filepath.Join(dir, "xlb.yaml")
	good := `
admin: {token_file: token}
services:
  - name: web
    layer: 7
    listen: ":8443"
    tls: {cert_file: cert.pem, key_file: cert-key.pem, client_ca_file: ca.pem}
    backend_protocol: https
    backend_tls: {ca_file: ca.pem, cert_file: cert.pem, key_file: cert-key.pem}
    backends: [{address: "127.0.0.1:9001"}]
`
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != path || c.Admin.TokenFile != filepath.Join(dir, "token") {
		t.Errorf("file %q token %q", c.File, c.Admin.TokenFile)
	}
	if tls := c.Service("web").TLS; tls == nil || tls.CertFile != filepath.Join(dir, "cert.pem") || tls.KeyFile != filepath.Join(dir, "cert-key.pem") ||
		!slices.Equal(tls.Certificates, []CertPair{{filepath.Join(dir, "cert.pem"), filepath.Join(dir, "cert-key.pem")}}) ||
		tls.ClientCAFile != filepath.Join(dir, "ca.pem") {
		t.Errorf("tls %+v", tls)
	}
	want := BackendTLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "cert-key.pem")}
	if bt := c.Service("web").BackendTLS; bt == nil || *bt != want {
		t.Errorf("backend_tls %+v, want %+v", bt, want)
	}

	// A folder is not a certificate.
	bad := strings.Replace(good, "cert_file: cert.pem", "cert_file: .", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Msg != dir+" is a folder; name a file" || list[0].Line != 7 {
		t.Errorf("Load(folder as cert) = %v", err)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping fs.ErrNotExist", err)
	}
	if errors.As(err, &list) {
		t.Errorf("Load(missing) returned an ErrorList")
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"health_check", "backends", "max_conns", "unhealthy_threshold", "vip"}
	for in, want := range map[string]string{
		"healthcheck":  "health_check",
		"Health-Check": "health_check",
		"backend":      "backends",
		"max-conns":    "max_conns",
		"unhealthy":    "unhealthy_threshold",
		"vpi":          "vip",
		"naem":         "",
		"backedns":     "backends",
		"vi":           "vip",
		"color":        "",
	} {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"http2": "h2", "HTTP/1.1": "http1", "prot": "port", "protcol": "protocol"} {
		if got := suggest(in, []string{"http1", "h2", "port", "protocol"}); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestParseAliasBomb checks that aliases cannot make Parse run for long or
// report without end.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x: &b {address: 10.0.1.1}\n")
	b.WriteString("y: &s\n  name: api\n  layer: 4\n  vip: 10.0.0.1\n  port: 80\n  backends: [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("*b")
	}
	b.WriteString("]\nservices: [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("*s")
	}
	b.WriteString("]\n")
	start := time.Now()
	_, err := Parse("xlb.yaml", []byte(b.String()))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Parse took %s", d)
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v", err)
	}
	if len(list) != maxErrors+1 || list[maxErrors].Msg != "more than 200 errors; stopping here" {
		t.Errorf("%d errors, last %v", len(list), list[len(list)-1])
	}
}

// TestXDPFlowInsertLimitAndSourcePrefix: the two data-plane keys of the
// flood guard and the per-flow IPIP source.
func TestXDPFlowInsertLimitAndSourcePrefix(t *testing.T) {
	c, err := Parse("xlb.yaml", []byte("xdp:\n  flow_insert_limit: 0\n  ipip_source_prefix: 172.16.0.0/16\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.XDP.FlowInsertLimit != 0 || c.XDP.IPIPSourcePrefix != netip.MustParsePrefix("172.16.0.0/16") {
		t.Errorf("xdp %+v", c.XDP)
	}
	c, err = Parse("xlb.yaml", []byte("xdp: {ipip_source_prefix: \"\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.XDP.FlowInsertLimit != DefaultFlowInsertLimit || c.XDP.IPIPSourcePrefix.IsValid() {
		t.Errorf("defaults: xdp %+v", c.XDP)
	}
}

func TestHealthCheckVia(t *testing.T) {
	base := "services:\n  - {name: a, layer: 4, vip: 10.0.0.10, port: 80, backends: [{address: 10.0.1.1}], health_check: {type: tcp, via: %s}}\n"
	c, err := Parse("xlb.yaml", []byte(strings.Replace(base, "%s", "address", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Service("a").HealthCheck.Via; got != "address" {
		t.Errorf("via %q", got)
	}
	_, err = Parse("xlb.yaml", []byte(strings.Replace(base, "%s", "vips", 1)))
	if err == nil || !strings.Contains(err.Error(), "xlb.yaml:2: services[0].health_check.via: must be vip or address") {
		t.Errorf("typo: %v", err)
	}
	_, err = Parse("xlb.yaml", []byte("services:\n  - {name: w, layer: 7, listen: 127.0.0.1:8080, backends: [{address: 127.0.0.1:9001}], health_check: {via: vip}}\n"))
	if err == nil || !strings.Contains(err.Error(), "xlb.yaml:2: services[0].health_check.via: vip applies to layer 4 services only") {
		t.Errorf("layer 7: %v", err)
	}
	if _, err := Parse("xlb.yaml", []byte("services:\n  - {name: w, layer: 7, listen: 127.0.0.1:8080, backends: [{address: 127.0.0.1:9001}], health_check: {via: address}}\n")); err != nil {
		t.Errorf("layer 7, via: address (what layer 7 checks do): %v", err)
	}
}

// TestSecretFiles: a token or TCP MD5 key file that would give no secret, or
// one the kernel refuses, is refused by -check rather than by the daemon (or
// not at all: an empty password file meant a session without MD5).
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("empty", " \n")
	write("good", "s3cret\n")
	write("long", strings.Repeat("k", 81)+"\n")
	write("eighty", strings.Repeat("k", 80)+"\n")
	const bgp = "bgp: {asn: 65001, router_id: 10.0.0.1, peers: [{address: 10.0.0.254, asn: 65000, password_file: %s}]}\n"
	for _, tt := range []struct{ in, want string }{
		{"admin: {token_file: empty}\n", dir + "/empty is empty; it must hold the bearer token (or drop the key)"},
		{"admin: {token_file: good}\n", ""},
		{fmt.Sprintf(bgp, "empty"), dir + "/empty is empty; it must hold the TCP MD5 key (or drop the key)"},
		{fmt.Sprintf(bgp, "long"), dir + "/long holds more than 80 bytes; the TCP MD5 key is at most 80"},
		{fmt.Sprintf(bgp, "eighty"), ""},
	} {
		path := filepath.Join(dir, "xlb.yaml")
		if err := os.WriteFile(path, []byte(tt.in), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		var list ErrorList
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case tt.want != "" && (!errors.As(err, &list) || len(list) != 1 || list[0].Msg != tt.want):
			t.Errorf("%q: %v\nwant: %s", tt.in, err, tt.want)
		}
	}
}

// TestDurationZero: a bare 0 is a duration, as in Go, where 0 is allowed;
// where it is not, the error says why.
func TestDurationZero(t *testing.T) {
	c, err := Parse("xlb.yaml", []byte("l7: {drain_timeout: 0}\n"))
	if err != nil || c.L7.DrainTimeout != 0 {
		t.Fatalf("drain_timeout: 0: %v", err)
	}
	for in, want := range map[string]string{
		"l7: {idle_timeout: 0}\n": "xlb.yaml:1: l7.idle_timeout: must be positive, got 0s",
		"bgp: {asn: 1, router_id: 10.0.0.1, peers: [{address: 10.0.0.2, asn: 2, hold_time: 0s}]}\n": "xlb.yaml:1: bgp.peers[0].hold_time: must be at least 3s: 0 turns keepalives off, and a router would keep sending flows to a balancer that died",
		"l7: {idle_timeout: 5}\n": "xlb.yaml:1: l7.idle_timeout: expected a duration like 5s, got 5 (add a unit: 5s or 5ms)",
	} {
		_, err := Parse("xlb.yaml", []byte(in))
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 || list[0].Error() != want {
			t.Errorf("%q: %v\nwant %s", in, err, want)
		}
	}
}
