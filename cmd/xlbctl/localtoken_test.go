package main

import (
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/admin"
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
	if got, _ := localToken(base("127.0.0.1:19100"), "", root); got != "s3cret" {
		t.Errorf("from the running xlbd: %q, want s3cret", got)
	}
	if got, _ := localToken(base("http://localhost:19100"), cfg, "/nonexistent"); got != "s3cret" {
		t.Errorf("from -config: %q, want s3cret", got)
	}
	if got, _ := localToken(base("127.0.0.1:19101"), "", root); got != "" {
		t.Errorf("another port got the token: %q", got)
	}
	if got, _ := localToken(base("10.9.9.9:19100"), "", root); got != "" {
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

// TestReadAdminSectionLenient: a config mid-edit, broken elsewhere, still
// gives its admin settings; only a broken admin block itself does not.
func TestReadAdminSectionLenient(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, text    string
		listen, token string
		wantErr       bool
	}{
		{name: "whole", text: "admin:\n  listen: 10.0.0.2:9100\n  token_file: /t\n", listen: "10.0.0.2:9100", token: "/t"},
		{name: "syntax-error-after", text: "admin:\n  listen: 10.0.0.2:9100\n  token_file: tok\n\n# services\nservices:\n  - name: [unclosed\n",
			listen: "10.0.0.2:9100", token: filepath.Join(dir, "tok")},
		{name: "syntax-error-before", text: "xdp:\n\tinterfaces: [eth0]\nadmin:   # the API\n  listen: 10.0.0.2:9100\n\n  # the token\n  token_file: /t\nl7: {\n",
			listen: "10.0.0.2:9100", token: "/t"},
		{name: "flow", text: "services: [oops\nadmin: {listen: \"[::1]:9200\", token_file: /t}\nl7:\n", listen: "[::1]:9200", token: "/t"},
		{name: "crlf", text: "admin:\r\n  token_file: /t\r\nl7: [\r\n", listen: "127.0.0.1:9100", token: "/t"},
		{name: "no-admin", text: "adminx:\n  token_file: /t\nl7: [\n", listen: "127.0.0.1:9100"},
		{name: "empty", text: "", listen: "127.0.0.1:9100"},
		{name: "broken-admin", text: "admin:\n  listen: [10.0.0.2\n", wantErr: true},
	} {
		p := filepath.Join(dir, c.name+".yaml")
		if err := os.WriteFile(p, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := readAdminSection(p)
		if c.wantErr {
			if err == nil {
				t.Errorf("%s: no error, got %+v", c.name, a)
			}
			continue
		}
		if err != nil || a.Listen != c.listen || a.TokenFile != c.token {
			t.Errorf("%s: %+v, %v; want listen %q, token_file %q", c.name, a, err, c.listen, c.token)
		}
	}
}

// useProc points xlbctl's search for the running xlbd at a fake /proc.
func useProc(t *testing.T, root string) {
	t.Helper()
	save := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = save })
}

// reloadErrors is what xlbctl prints of fakeController's failed reload.
const reloadErrors = "xlbctl: xlb.yaml:3: admin.listen: missing port\nxlb.yaml:9: services[0].scheduler: unknown \"fastest\"\n"

// TestReloadOfABrokenConfig: `xlbctl reload` run to see why a config
// mid-edit is wrong shows xlbd's errors, not a token error; when the file
// is gone, the message says why the token was not sent.
func TestReloadOfABrokenConfig(t *testing.T) {
	t.Setenv("XLB_ADMIN", "")
	t.Setenv("XLB_CONFIG", "")
	t.Setenv("XLB_TOKEN", "")
	t.Setenv("XLB_TOKEN_FILE", "")
	dir := t.TempDir()
	ts := tokenServer(t, &fakeController{}, filepath.Join(dir, "token"))
	listen := strings.TrimPrefix(ts.URL, "http://")
	cfg := filepath.Join(dir, "xlb.yaml")
	useProc(t, fakeProc(t, dir, []string{"xlbd", "-config", "xlb.yaml"}))

	for name, text := range map[string]string{
		"syntax":  "admin:\n  listen: " + listen + "\n  token_file: token\nservices:\n  - name: api\n\tport: 80\n",
		"flow":    "admin: {listen: \"" + listen + "\", token_file: token}\nservices: [{name: api\n",
		"unknown": "services: {oops\n\nadmin:\n  listen: " + listen + "\n  token_file: token\n",
	} {
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"reload"}, {"-config", cfg, "reload"}} {
			if code, out, errOut := xlbctl(t, args...); code != 1 || out != "" || errOut != reloadErrors {
				t.Errorf("%s: %q: exit %d, stdout %q, stderr %q; want xlbd's errors", name, args, code, out, errOut)
			}
		}
	}

	// An empty file names no token file.
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := xlbctl(t, "-admin", ts.URL, "reload")
	if code != 1 || !strings.Contains(errOut, "missing or wrong bearer token (xlbd's config "+cfg+" names no admin.token_file; give -token-file") {
		t.Errorf("empty config: exit %d, stderr %q", code, errOut)
	}

	// A deleted file: xlbd asks for the token xlbctl could not read ...
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = xlbctl(t, "-admin", ts.URL, "reload")
	if code != 1 || !strings.Contains(errOut, "missing or wrong bearer token (xlbd's config "+cfg+" is missing, so its token could not be read; give -token-file") {
		t.Errorf("deleted config: exit %d, stderr %q", code, errOut)
	}
	// ... or, needing none, answers its errors.
	srv, err := admin.New(&fakeController{}, admin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	open := httptest.NewServer(srv.Handler())
	t.Cleanup(open.Close)
	if code, _, errOut := xlbctl(t, "-admin", open.URL, "reload"); code != 1 || errOut != reloadErrors {
		t.Errorf("deleted config, no token needed: exit %d, stderr %q", code, errOut)
	}
}

// TestLocalAdminOfThisNamespace: xlbctl dials the xlbd of its own network
// namespace, and refuses to guess between two that listen apart.
func TestLocalAdminOfThisNamespace(t *testing.T) {
	dir := t.TempDir()
	for name, listen := range map[string]string{"a.yaml": "127.0.0.1:9201", "b.yaml": "127.0.0.1:9202"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("admin:\n  listen: "+listen+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	root := fakeProc(t, dir, []string{"xlbd", "-config", "a.yaml"}, []string{"xlbd", "-config", "b.yaml"})
	if _, err := localAdmin(root); err == nil || !strings.Contains(err.Error(), "127.0.0.1:9201, 127.0.0.1:9202: give -admin") {
		t.Errorf("two daemons in one namespace: %v", err)
	}
	// The second runs in another network namespace (ip netns exec).
	for link, pid := range map[string]string{"net:[4026531840]": "self", "net:[4026531841]": "200"} {
		if err := os.MkdirAll(filepath.Join(root, pid, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(link, filepath.Join(root, pid, "ns", "net")); err != nil {
			t.Fatal(err)
		}
	}
	if a, err := localAdmin(root); err != nil || a != "127.0.0.1:9201" {
		t.Errorf("one daemon in this namespace: %q, %v; want 127.0.0.1:9201", a, err)
	}
}

// TestLocalPinPath: maps and detach work on the pin path of the config
// (-config, else the running xlbd's), not always the default.
func TestLocalPinPath(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{"a.yaml": "xdp:\n  pin_path: /sys/fs/bpf/node-a\n", "b.yaml": "xdp: {pin_path: /sys/fs/bpf/node-b/}\n", "c.yaml": "services: []\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := localPinPath(filepath.Join(dir, "b.yaml"), fakeProc(t, dir)); err != nil || p != "/sys/fs/bpf/node-b" {
		t.Errorf("-config b.yaml: %q, %v", p, err)
	}
	if p, err := localPinPath(filepath.Join(dir, "c.yaml"), fakeProc(t, dir)); err != nil || p != defaultPinPath {
		t.Errorf("-config naming no pin path: %q, %v", p, err)
	}
	if p, err := localPinPath("", fakeProc(t, dir, []string{"xlbd", "-config", "a.yaml"})); err != nil || p != "/sys/fs/bpf/node-a" {
		t.Errorf("running xlbd with a.yaml: %q, %v", p, err)
	}
	if _, err := localPinPath("", fakeProc(t, dir, []string{"xlbd", "-config", "a.yaml"}, []string{"xlbd", "-config", "b.yaml"})); err == nil || !strings.Contains(err.Error(), "give -pin-path") {
		t.Errorf("two daemons with two pin paths: %v", err)
	}
}

func TestDialAddress(t *testing.T) {
	for listen, want := range map[string]string{
		":9100":          "127.0.0.1:9100",
		"0.0.0.0:9100":   "127.0.0.1:9100",
		"[::]:9100":      "[::1]:9100",
		"10.0.0.2:9100":  "10.0.0.2:9100",
		"[::1]:9200":     "[::1]:9200",
		"localhost:9100": "localhost:9100",
	} {
		if got := dialAddress(listen); got != want {
			t.Errorf("dialAddress(%q) = %q, want %q", listen, got, want)
		}
	}
}

// TestAdminFromRunningConfig: without -admin, xlbctl calls the address the
// running xlbd's config names, with its token; -admin and XLB_ADMIN win.
func TestAdminFromRunningConfig(t *testing.T) {
	t.Setenv("XLB_ADMIN", "")
	t.Setenv("XLB_CONFIG", "")
	t.Setenv("XLB_TOKEN", "")
	t.Setenv("XLB_TOKEN_FILE", "")
	fake := &fakeController{services: []api.Service{{
		Name: "web", Layer: 7, Address: "0.0.0.0:8080", Protocol: "http", Scheduler: "round_robin",
		Backends: []api.Backend{{Address: "127.0.0.1:9001", Weight: 1, ConfigWeight: 1, Healthy: true, Source: "config", Persisted: true}},
	}}}
	dir := t.TempDir()
	ts := tokenServer(t, fake, filepath.Join(dir, "token"))
	_, port, _ := strings.Cut(strings.TrimPrefix(ts.URL, "http://"), ":")
	// A listener on every address is reached on loopback.
	if err := os.WriteFile(filepath.Join(dir, "xlb.yaml"), []byte("admin:\n  listen: \":"+port+"\"\n  token_file: token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	useProc(t, fakeProc(t, dir, []string{"/usr/sbin/xlbd", "-config", "xlb.yaml"}))
	if code, out, errOut := xlbctl(t, "drain", "web", "127.0.0.1:9001"); code != 0 || !strings.Contains(out, "draining") {
		t.Errorf("drain: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	c, url := newCanned(t)
	if code, _, errOut := xlbctl(t, "-admin", url, "stats"); code != 0 || len(c.requests()) != 1 {
		t.Errorf("-admin: exit %d, stderr %q, %d calls to it", code, errOut, len(c.requests()))
	}
	t.Setenv("XLB_ADMIN", url)
	if code, _, errOut := xlbctl(t, "stats"); code != 0 || len(c.requests()) != 2 {
		t.Errorf("XLB_ADMIN: exit %d, stderr %q, %d calls to it", code, errOut, len(c.requests()))
	}
}
