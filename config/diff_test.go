package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const diffBase = `
xdp: {interfaces: [eth0]}
services:
  - name: api
    layer: 4
    vip: 10.0.1.100
    port: 80
    backends:
      - {address: 10.0.1.1}
      - {address: 10.0.1.2}
  - name: web
    layer: 7
    listen: ":8080"
    backends:
      - {address: "127.0.0.1:9001"}
    routes:
      - match: {path_prefix: /v1/}
        backends: [{address: "127.0.0.1:9101"}]
  - name: old
    layer: 7
    listen: ":8081"
    backends: [{address: "127.0.0.1:9001"}]
`

func mustParse(t *testing.T, in string) *Config {
	t.Helper()
	c, err := Parse("xlb.yaml", []byte(strings.TrimPrefix(in, "\n")))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// edit applies old -> new replacements to a config text, failing when one
// does not apply, so that a test cannot silently diff identical files.
func edit(t *testing.T, in string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(in, pairs[i]) {
			t.Fatalf("edit: %q not found", pairs[i])
		}
		in = strings.Replace(in, pairs[i], pairs[i+1], 1)
	}
	return in
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name  string
		edits []string
		want  []string
	}{
		{"identical", nil, nil},
		{"backend-added-and-removed", []string{
			`      - {address: "127.0.0.1:9001"}
    routes:`, `      - {address: "127.0.0.1:9001"}
      - {address: "127.0.0.1:9002"}
    routes:`,
			"      - {address: 10.0.1.1}\n", "",
		}, []string{
			"service api: backend 10.0.1.1 removed",
			"service web: backend 127.0.0.1:9002 added",
		}},
		{"weight-and-settings", []string{
			"{address: 10.0.1.2}", "{address: 10.0.1.2, weight: 3}",
			`    listen: ":8080"`, `    listen: ":8088"
    scheduler: least_conn
    health_check: {type: http, path: /health}`,
			`{address: "127.0.0.1:9101"}`, `{address: "127.0.0.1:9101", max_conns: 10}`,
		}, []string{
			"service api: weight of 10.0.1.2 1 -> 3",
			"service web: listen :8080 -> :8088",
			"service web: scheduler round_robin -> least_conn",
			"service web: health_check added (http)",
			"service web: routes[0]: scheduler round_robin -> least_conn",
			"service web: routes[0]: max_conns of 127.0.0.1:9101 0 -> 10",
		}},
		{"services-added-removed-replaced", []string{
			"  - name: old\n", "  - name: new\n",
			"    layer: 4\n    vip: 10.0.1.100\n    port: 80\n", "    layer: 7\n    listen: \":80\"\n",
			"{address: 10.0.1.1}", `{address: "10.0.1.1:80"}`,
			"{address: 10.0.1.2}", `{address: "10.0.1.2:80"}`,
		}, []string{
			"service api: layer 4 -> 7 (the service is replaced)",
			"service new added",
			"service old removed",
		}},
		{"routes-and-health", []string{
			"    port: 80\n", "    port: 80\n    health_check: {interval: 10s}\n    rate_limit: {rate: 100/s, burst: 10}\n",
			`      - match: {path_prefix: /v1/}`, `      - match: {path_prefix: /v2/, methods: [GET]}`,
			`        backends: [{address: "127.0.0.1:9101"}]`, `        backends: [{address: "127.0.0.1:9101"}]
      - match: {headers: {X-Canary: "1"}}
        backends: [{address: "127.0.0.1:9102"}]`,
		}, []string{
			"service api: rate_limit off -> 100/s burst 10 key source_ip",
			"service api: health_check added (tcp)",
			"service web: routes[0]: match path_prefix /v1/ -> path_prefix /v2/ methods GET",
			"service web: routes[1] added (header X-Canary=1)",
		}},
		{"global-settings", []string{
			"xdp: {interfaces: [eth0]}", "xdp: {interfaces: [eth0, eth1], flow_table_size: 2048}\nadmin: {listen: \"127.0.0.1:9200\"}\nl7: {drain_timeout: 5s}",
		}, []string{
			"admin.listen 127.0.0.1:9100 -> 127.0.0.1:9200 (needs restart)",
			"xdp.flow_table_size 1048576 -> 2048 (needs restart)",
			"xdp.interfaces [eth0] -> [eth0, eth1]",
			"l7.drain_timeout 30s -> 5s",
		}},
	}
	old := mustParse(t, diffBase)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			new := mustParse(t, edit(t, diffBase, tt.edits...))
			if got := Diff(old, new); !slices.Equal(got, tt.want) {
				t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestDiffNil(t *testing.T) {
	c := mustParse(t, diffBase)
	want := []string{"xdp.interfaces [] -> [eth0]", "service api added", "service web added", "service old added"}
	if got := Diff(nil, c); !slices.Equal(got, want) {
		t.Errorf("Diff(nil, c) = %q, want %q", got, want)
	}
	want = []string{"xdp.interfaces [eth0] -> []", "service api removed", "service web removed", "service old removed"}
	if got := Diff(c, nil); !slices.Equal(got, want) {
		t.Errorf("Diff(c, nil) = %q, want %q", got, want)
	}
}

func TestRestartNeeded(t *testing.T) {
	old := mustParse(t, diffBase)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edits []string
		want  []string
	}{
		{"nothing", nil, nil},
		{"live-changes-only", []string{
			"{address: 10.0.1.2}", "{address: 10.0.1.2, weight: 0}",
			"xdp: {interfaces: [eth0]}", "xdp: {interfaces: [eth0]}\nl7: {idle_timeout: 1s}\nadmin: {token_file: " + token + "}",
		}, nil},
		{"pins-and-admin", []string{
			"xdp: {interfaces: [eth0]}", `xdp: {interfaces: [eth0], pin_path: /sys/fs/bpf/xlb2, flow_table_size: 4096, mode: native}
admin: {listen: "[::1]:9100"}`,
		}, []string{
			"admin.listen 127.0.0.1:9100 -> [::1]:9100",
			"xdp.pin_path /sys/fs/bpf/xlb -> /sys/fs/bpf/xlb2",
			"xdp.flow_table_size 1048576 -> 4096",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			new := mustParse(t, edit(t, diffBase, tt.edits...))
			if got := new.RestartNeeded(old); !slices.Equal(got, tt.want) {
				t.Errorf("RestartNeeded:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestDiffL4Renames: a layer 4 service is its VIP, port and protocol, as
// xlbd applies it: one that keeps them under a new name is renamed, two
// that swap names are two renames (not each one's VIP changing), and a
// name that moves to a new VIP while its old VIP goes to another name is
// a new service.
func TestDiffL4Renames(t *testing.T) {
	const base = `
xdp: {interfaces: [eth0]}
services:
  - {name: a, layer: 4, vip: 10.0.1.100, port: 80, backends: [{address: 10.0.1.1}]}
  - {name: b, layer: 4, vip: 10.0.1.101, port: 80, backends: [{address: 10.0.1.1}]}
`
	old := mustParse(t, base)
	for _, tt := range []struct {
		name  string
		edits []string
		want  []string
	}{
		{"rename", []string{"name: a,", "name: a2,"}, []string{"service a renamed to a2"}},
		{"rename-and-a-backend", []string{"name: a, layer: 4, vip: 10.0.1.100, port: 80, backends: [{address: 10.0.1.1}]",
			"name: a2, layer: 4, vip: 10.0.1.100, port: 80, backends: [{address: 10.0.1.2}]"},
			[]string{"service a renamed to a2", "service a2: backend 10.0.1.2 added", "service a2: backend 10.0.1.1 removed"}},
		{"swap", []string{"name: a,", "name: tmp,", "name: b,", "name: a,", "name: tmp,", "name: b,"},
			[]string{"service a renamed to b", "service b renamed to a"}},
		{"name-to-a-new-vip", []string{"name: a, layer: 4, vip: 10.0.1.100", "name: c, layer: 4, vip: 10.0.1.100",
			"name: b, layer: 4, vip: 10.0.1.101", "name: b, layer: 4, vip: 10.0.1.101, port: 80, backends: [{address: 10.0.1.1}]}\n  - {name: a, layer: 4, vip: 10.0.1.102"},
			[]string{"service a renamed to c", "service a added"}},
		{"vip-change", []string{"vip: 10.0.1.101", "vip: 10.0.1.102"}, []string{"service b: vip 10.0.1.101 -> 10.0.1.102"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			new := mustParse(t, edit(t, base, tt.edits...))
			if got := Diff(old, new); !slices.Equal(got, tt.want) {
				t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
