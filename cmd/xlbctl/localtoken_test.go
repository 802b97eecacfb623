package main

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/api"
)

func TestSameListener(t *testing.T) {
	for _, c := range []struct {
		listen, target string
		want           bool
	}{
		{"127.0.0.1:9100", "127.0.0.1:9100", true},
		{"127.0.0.1:9100", "localhost:9100", true},
		{"[::1]:9100", "127.0.0.1:9100", true},
		{"0.0.0.0:9100", "10.0.0.2:9100", true},
		{":9100", "lb1:9100", true},
		{"127.0.0.1:9100", "127.0.0.1:9101", false},
		{"10.0.0.2:9100", "127.0.0.1:9100", false},
		{"10.0.0.2:9100", "10.0.0.3:9100", false},
		{"nonsense", "127.0.0.1:9100", false},
	} {
		if got := sameListener(c.listen, c.target); got != c.want {
			t.Errorf("sameListener(%q, %q) = %v, want %v", c.listen, c.target, got, c.want)
		}
	}
}

// fakeProc makes a /proc with one process per command line, each started
// in cwd.
func fakeProc(t *testing.T, cwd string, cmdlines ...[]string) string {
	t.Helper()
	root := t.TempDir()
	for i, argv := range cmdlines {
		dir := filepath.Join(root, string(rune('1'+i))+"00")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(argv, "\x00")+"\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(cwd, filepath.Join(dir, "cwd")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestRunningConfigs(t *testing.T) {
	cwd := t.TempDir()
	root := fakeProc(t, cwd,
		[]string{"/usr/local/bin/xlbd", "-config", "/etc/xlb/a.yaml"},
		[]string{"xlbd", "-log-level", "debug", "--config=b.yaml"},
		[]string{"./bin/xlbd"},
		[]string{"xlbd", "decap", "-interface", "eth0", "-allow", "any"},
		[]string{"/usr/bin/nginx", "-config", "/etc/nginx.conf"},
	)
	got := runningConfigs(root)
	want := []string{"/etc/xlb/a.yaml", filepath.Join(cwd, "b.yaml"), defaultConfig}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("runningConfigs = %v, want %v", got, want)
	}
}

// TestLocalToken: xlbctl on the balancer finds the token of the xlbd that
// serves the address it calls, and of no other.
func TestLocalToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(cfg, []byte("admin:\n  listen: 127.0.0.1:19100\n  token_file: token\nservices: [{name: x, oops: 1}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := fakeProc(t, dir, []string{"xlbd", "-config", "xlb.yaml"})
	base := func(s string) *url.URL { u, _ := parseAdminURL(s); return u }
	if got := localToken(base("127.0.0.1:19100"), "", root); got != "s3cret" {
		t.Errorf("from the running xlbd: %q, want s3cret", got)
	}
	if got := localToken(base("http://localhost:19100"), cfg, "/nonexistent"); got != "s3cret" {
		t.Errorf("from -config: %q, want s3cret", got)
	}
	if got := localToken(base("127.0.0.1:19101"), "", root); got != "" {
		t.Errorf("another port got the token: %q", got)
	}
	if got := localToken(base("10.9.9.9:19100"), "", root); got != "" {
		t.Errorf("another host got the token: %q", got)
	}
}

// TestConfigGivesAddressAndToken: with -config, a change reaches the
// daemon its admin.listen names, with its token, and no other flag.
func TestConfigGivesAddressAndToken(t *testing.T) {
	fake := &fakeController{services: []api.Service{{
		Name: "web", Layer: 7, Address: "0.0.0.0:8080", Protocol: "http", Scheduler: "round_robin",
		Backends: []api.Backend{{Address: "127.0.0.1:9001", Weight: 1, ConfigWeight: 1, Healthy: true, Source: "config", Persisted: true}},
	}}}
	dir := t.TempDir()
	ts := tokenServer(t, fake, filepath.Join(dir, "token"))
	cfg := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(cfg, []byte("admin:\n  listen: "+strings.TrimPrefix(ts.URL, "http://")+"\n  token_file: token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XLB_ADMIN", "")
	t.Setenv("XLB_TOKEN", "")
	t.Setenv("XLB_TOKEN_FILE", "")
	if code, out, errOut := xlbctl(t, "-config", cfg, "drain", "web", "127.0.0.1:9001"); code != 0 || !strings.Contains(out, "draining") {
		t.Errorf("drain with -config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := xlbctl(t, "-config", filepath.Join(dir, "missing.yaml"), "status"); code != 1 || !strings.Contains(errOut, "-config") {
		t.Errorf("missing -config: exit %d, stderr %q", code, errOut)
	}
}
