package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
)

const servicesJSON = `{
  "services": [
    {
      "name": "api", "layer": 4, "address": "10.0.0.10:80", "protocol": "tcp",
      "scheduler": "maglev", "forwarding": "ipip", "fail_open": false, "maglev_fingerprint": "3fa2b1c4d5e6",
      "backends": [
        {"address": "10.0.1.1", "weight": 3, "config_weight": 3, "healthy": true, "draining": false,
         "source": "config", "persisted": true, "last_check": "ok", "active": 12,
         "counters": {"packets": 4242, "bytes": 1536}},
        {"address": "10.0.1.2", "weight": 0, "config_weight": 1, "healthy": true, "draining": true,
         "source": "config", "persisted": false, "active": 3, "counters": {"packets": 7, "bytes": 700}}
      ],
      "counters": {}
    },
    {
      "name": "dns", "layer": 4, "address": "[2001:db8::53]:53", "protocol": "udp",
      "scheduler": "ip_hash", "forwarding": "dsr", "fail_open": true,
      "backends": [
        {"address": "2001:db8::1", "weight": 1, "config_weight": 1, "healthy": false, "draining": false,
         "source": "api", "persisted": false, "last_check": "dial udp: connection refused", "active": 0, "counters": {}}
      ],
      "counters": {}
    },
    {
      "name": "web", "layer": 7, "address": "0.0.0.0:8080", "protocol": "http", "scheduler": "round_robin",
      "fail_open": false,
      "backends": [
        {"address": "127.0.0.1:9001", "weight": 1, "config_weight": 1, "healthy": true, "draining": false,
         "source": "config", "persisted": true, "active": 2, "counters": {"requests": 99}}
      ],
      "counters": {}
    }
  ]
}
`

const statsJSON = `{"l4": [
  {"name": "pass_not_vip", "packets": 10, "bytes": 1000},
  {"name": "tx", "packets": 5000, "bytes": 3145728},
  {"name": "drop_malformed", "packets": 2, "bytes": 120},
  {"name": "flow_reselect", "packets": 1, "bytes": 0}
]}
`

// canned is an admin API that answers fixed bodies and records requests.
type canned struct {
	t       *testing.T
	mu      sync.Mutex
	answers map[string]cannedAnswer // "METHOD escaped-path" -> answer
	reqs    []recorded
}

type cannedAnswer struct {
	status int
	body   string
}

type recorded struct {
	method, path, rawPath, auth, body string
}

func newCanned(t *testing.T) (*canned, string) {
	c := &canned{t: t, answers: map[string]cannedAnswer{
		"GET /api/v1/services":      {200, servicesJSON},
		"GET /api/v1/services/api":  {200, serviceJSON(t, "api")},
		"GET /api/v1/services/nope": {404, `{"error": "service \"nope\" not found"}`},
		"GET /api/v1/stats":         {200, statsJSON},
		"POST /api/v1/reload":       {200, `{"result": "ok", "services": 3, "at": "2025-01-01T00:00:00Z"}`},
	}}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func serviceJSON(t *testing.T, name string) string {
	var all api.Services
	if err := json.Unmarshal([]byte(servicesJSON), &all); err != nil {
		t.Fatal(err)
	}
	for _, s := range all.Services {
		if s.Name == name {
			b, _ := json.Marshal(s)
			return string(b)
		}
	}
	t.Fatalf("no service %s", name)
	return ""
}

func (c *canned) set(key string, status int, body string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answers[key] = cannedAnswer{status, body}
}

func (c *canned) requests() []recorded {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

func (c *canned) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.reqs = append(c.reqs, recorded{r.Method, r.URL.Path, r.URL.EscapedPath(), r.Header.Get("Authorization"), string(body)})
	a, ok := c.answers[r.Method+" "+r.URL.EscapedPath()]
	c.mu.Unlock()
	if !ok {
		// Mutating calls answer a Change naming what they were given.
		if r.Method == "PATCH" || r.Method == "DELETE" || r.Method == "POST" {
			parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/api/v1/services/"), "/", 3)
			ch := api.Change{Service: parts[0], Result: map[string]string{"PATCH": "patched", "DELETE": "deleted", "POST": "posted"}[r.Method]}
			if len(parts) == 3 {
				ch.Backend = parts[2]
			}
			b, _ := json.Marshal(ch)
			a = cannedAnswer{200, string(b)}
		} else {
			a = cannedAnswer{404, `{"error": "no such path"}`}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

// xlbctl runs the CLI and returns its exit status and output.
func xlbctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestStatusTable(t *testing.T) {
	_, url := newCanned(t)
	code, out, errOut := xlbctl(t, "-admin", url, "status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	fields := func(i int) []string { return strings.Fields(lines[i]) }
	want := [][]string{
		{"Prot", "LocalAddress:Port", "Scheduler", "Forward", "Service"},
		{"->", "Backend", "Weight", "Config", "Health", "Drain", "Source", "Active", "Pkts/Reqs", "Bytes", "Check"},
		{"TCP", "10.0.0.10:80", "maglev", "ipip", "api", "table", "3fa2b1c4d5e6"},
		{"->", "10.0.1.1", "3", "3", "up", "-", "config", "12", "4242", "1.5K"},
		{"->", "10.0.1.2", "0", "1", "up", "draining", "config*", "3", "7", "700"},
		{"UDP", "[2001:db8::53]:53", "ip_hash", "dsr", "dns", "FAIL-OPEN", "(every", "backend", "down:", "serving", "the", "last", "healthy", "set)"},
		{"->", "2001:db8::1", "1", "1", "DOWN", "-", "api*", "0", "0", "0", "dial", "udp:", "connection", "refused"},
		{"HTTP", "0.0.0.0:8080", "round_robin", "-", "web"},
		{"->", "127.0.0.1:9001", "1", "1", "up", "-", "config", "2", "99", "-"},
	}
	if len(lines) < len(want) {
		t.Fatalf("status has %d lines, want at least %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if got := fields(i); !slices.Equal(got, w) {
			t.Errorf("line %d = %q, want %q", i, got, w)
		}
	}
	if !strings.Contains(out, "* runtime change") {
		t.Errorf("no footnote for runtime changes:\n%s", out)
	}
	// Backend columns line up across services.
	col := strings.Index(lines[1], "Weight")
	if lines[3][col] != '3' || lines[8][col] != '1' {
		t.Errorf("weights not in the Weight column (%d):\n%s", col, out)
	}
	for _, l := range lines {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing space in %q", l)
		}
	}
}

func TestStatusOneService(t *testing.T) {
	c, url := newCanned(t)
	code, out, errOut := xlbctl(t, "-admin", url, "status", "api")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "10.0.1.1") || strings.Contains(out, "dns") {
		t.Errorf("status api:\n%s", out)
	}
	if r := c.requests(); len(r) != 2 || r[0].path != "/api/v1/services/api" || r[1].path != "/healthz" {
		t.Errorf("requests %+v, want the service, then /healthz", r)
	}
}

// TestStatusWarnsWhenNotServing: what /healthz tells an upstream balancer
// heads the table; nothing is added while xlbd serves, nor to -o json.
func TestStatusWarnsWhenNotServing(t *testing.T) {
	c, url := newCanned(t)
	c.set("GET /healthz", 200, `{"status": "ok"}`)
	if _, out, _ := xlbctl(t, "-admin", url, "status"); strings.Contains(out, "WARNING") {
		t.Errorf("status while serving:\n%s", out)
	}
	c.set("GET /healthz", 503, `{"status": "unavailable", "error": "interface eth0 is gone: nothing is forwarded there until it is back"}`)
	code, out, errOut := xlbctl(t, "-admin", url, "status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if first, _, _ := strings.Cut(out, "\n"); first != "WARNING: xlbd is not serving: interface eth0 is gone: nothing is forwarded there until it is back" {
		t.Errorf("first line %q, want the warning:\n%s", first, out)
	}
	if !strings.Contains(out, "10.0.1.1") {
		t.Errorf("no table after the warning:\n%s", out)
	}
	if _, out, _ := xlbctl(t, "-admin", url, "-o", "json", "status"); strings.Contains(out, "WARNING") {
		t.Errorf("-o json status carries the warning:\n%s", out)
	}
}

func TestStatusUnknownService(t *testing.T) {
	_, url := newCanned(t)
	code, out, errOut := xlbctl(t, "-admin", url, "status", "nope")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if errOut != "xlbctl: service \"nope\" not found\n" {
		t.Errorf("stderr %q", errOut)
	}
	if out != "" {
		t.Errorf("stdout %q", out)
	}
}

func TestStats(t *testing.T) {
	_, url := newCanned(t)
	code, out, errOut := xlbctl(t, "-admin", url, "stats")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range [][]string{
		{"Counter", "Kind", "Packets", "Bytes"},
		{"pass_not_vip", "PASS", "10", "1000"},
		{"tx", "TX", "5000", "3.0M"},
		{"drop_malformed", "DROP", "2", "120"},
		{"flow_reselect", "event", "1", "0"},
	} {
		found := false
		for _, l := range strings.Split(out, "\n") {
			if slices.Equal(strings.Fields(l), want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no line %q in:\n%s", want, out)
		}
	}
}

func TestJSONOutputIsTheRawAnswer(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, servicesJSON},
		{[]string{"stats"}, statsJSON},
		{[]string{"reload"}, `{"result": "ok", "services": 3, "at": "2025-01-01T00:00:00Z"}` + "\n"},
		{[]string{"drain", "api", "10.0.1.1"}, `{"service":"api","backend":"10.0.1.1","result":"patched","persisted":false}` + "\n"},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			_, url := newCanned(t)
			// -o before and after the command.
			for _, args := range [][]string{
				append([]string{"-admin", url, "-o", "json"}, tc.args...),
				append(append([]string{"-admin", url}, tc.args...), "-o", "json"),
			} {
				code, out, errOut := xlbctl(t, args...)
				if code != 0 {
					t.Fatalf("%q: exit %d: %s", args, code, errOut)
				}
				if out != tc.want {
					t.Errorf("%q: stdout\n%s\nwant\n%s", args, out, tc.want)
				}
			}
		})
	}
}

func TestMutatingCommandsSendTheirCall(t *testing.T) {
	for _, tc := range []struct {
		args                     []string
		method, rawPath, body    string
		wantOut                  string
		wantAddress, wantBackend string
	}{
		{args: []string{"drain", "api", "10.0.1.1"}, method: "PATCH", rawPath: "/api/v1/services/api/backends/10.0.1.1",
			body: `{"drain":true}`, wantOut: "api 10.0.1.1: patched\n"},
		{args: []string{"undrain", "api", "10.0.1.1"}, method: "PATCH", rawPath: "/api/v1/services/api/backends/10.0.1.1",
			body: `{"drain":false}`, wantOut: "api 10.0.1.1: patched\n"},
		{args: []string{"weight", "web", "127.0.0.1:9001", "5"}, method: "PATCH", rawPath: "/api/v1/services/web/backends/127.0.0.1:9001",
			body: `{"weight":5}`, wantOut: "web 127.0.0.1:9001: patched\n"},
		{args: []string{"weight", "web", "[2001:db8::1]:9001", "0"}, method: "PATCH", rawPath: "/api/v1/services/web/backends/%5B2001:db8::1%5D:9001",
			body: `{"weight":0}`, wantOut: "web [2001:db8::1]:9001: patched\n"},
		{args: []string{"drain", "api", "fe80::1%eth0"}, method: "PATCH", rawPath: "/api/v1/services/api/backends/fe80::1%25eth0",
			body: `{"drain":true}`, wantOut: "api fe80::1%eth0: patched\n"},
		{args: []string{"add", "api", "10.0.1.9"}, method: "POST", rawPath: "/api/v1/services/api/backends",
			body: `{"address":"10.0.1.9"}`, wantOut: "api: posted\n"},
		{args: []string{"add", "api", "10.0.1.9", "4"}, method: "POST", rawPath: "/api/v1/services/api/backends",
			body: `{"address":"10.0.1.9","weight":4}`, wantOut: "api: posted\n"},
		{args: []string{"remove", "api", "2001:db8::1"}, method: "DELETE", rawPath: "/api/v1/services/api/backends/2001:db8::1",
			wantOut: "api 2001:db8::1: deleted\n"},
		{args: []string{"reload"}, method: "POST", rawPath: "/api/v1/reload", wantOut: "ok\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, url := newCanned(t)
			code, out, errOut := xlbctl(t, append([]string{"-admin", url}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			reqs := c.requests()
			if len(reqs) != 1 {
				t.Fatalf("requests %+v", reqs)
			}
			r := reqs[0]
			if r.method != tc.method || r.rawPath != tc.rawPath || r.body != tc.body {
				t.Errorf("sent %s %s %s, want %s %s %s", r.method, r.rawPath, r.body, tc.method, tc.rawPath, tc.body)
			}
			if !strings.HasPrefix(out, tc.wantOut) {
				t.Errorf("stdout %q, want %q first", out, tc.wantOut)
			}
			if tc.method != "POST" || tc.rawPath != "/api/v1/reload" {
				if !strings.Contains(out, "runtime change") {
					t.Errorf("a runtime change without its note: %q", out)
				}
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		key        string
		status     int
		body       string
		args       []string
		wantStderr string
	}{
		{"drain-unknown-service", "PATCH /api/v1/services/nope/backends/10.0.1.1", 404, `{"error":"service \"nope\" not found"}`,
			[]string{"drain", "nope", "10.0.1.1"}, "xlbctl: service \"nope\" not found\n"},
		{"weight-conflict", "PATCH /api/v1/services/api/backends/10.0.1.1", 409, `{"error":"backend is being removed"}`,
			[]string{"weight", "api", "10.0.1.1", "2"}, "xlbctl: backend is being removed\n"},
		{"reload-config-errors", "POST /api/v1/reload", 400,
			`{"error":"config has 2 errors","details":["/etc/xlb/xlb.yaml:7: services[0].port: 70000 is not a port","/etc/xlb/xlb.yaml:12: services[1].wieght: unknown key"]}`,
			[]string{"reload"},
			"xlbctl: config has 2 errors\n/etc/xlb/xlb.yaml:7: services[0].port: 70000 is not a port\n/etc/xlb/xlb.yaml:12: services[1].wieght: unknown key\n"},
		{"unauthorized-without-token", "POST /api/v1/reload", 401, `{"error":"missing or wrong bearer token"}`,
			[]string{"reload"}, "xlbctl: missing or wrong bearer token (give -token-file, set XLB_TOKEN, or -config naming xlbd's config)\n"},
		{"server-error", "GET /api/v1/stats", 500, `{"error":"read stat tx: map gone"}`,
			[]string{"stats"}, "xlbctl: read stat tx: map gone\n"},
		{"not-json", "GET /api/v1/stats", 502, "<html>Bad Gateway</html>",
			[]string{"stats"}, "/api/v1/stats: 502 Bad Gateway: <html>Bad Gateway</html>\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, url := newCanned(t)
			c.set(tc.key, tc.status, tc.body)
			code, out, errOut := xlbctl(t, append([]string{"-admin", url}, tc.args...)...)
			if code != 1 {
				t.Fatalf("exit %d, want 1 (stderr %q)", code, errOut)
			}
			if !strings.HasSuffix(errOut, tc.wantStderr) {
				t.Errorf("stderr\n%s\nwant\n%s", errOut, tc.wantStderr)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}

			// -o json: the raw error answer on stdout as well.
			code, out, _ = xlbctl(t, append([]string{"-admin", url, "-o", "json"}, tc.args...)...)
			if code != 1 {
				t.Fatalf("-o json: exit %d, want 1", code)
			}
			if json.Valid([]byte(tc.body)) && strings.TrimSpace(out) != tc.body {
				t.Errorf("-o json: stdout %q, want the answer %q", out, tc.body)
			}
		})
	}
}

func TestUnreachableAdmin(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	code, _, errOut := xlbctl(t, "-admin", url, "status")
	if code != 1 || !strings.HasPrefix(errOut, "xlbctl: GET "+url+"/api/v1/services: ") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	start := time.Now()
	code, _, errOut := xlbctl(t, "-admin", srv.URL, "-timeout", "50ms", "stats")
	if code != 1 || !strings.Contains(errOut, "Timeout") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no-command", nil, "usage: xlbctl"},
		{"unknown-command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown-flag", []string{"-frob", "status"}, "flag provided but not defined: -frob"},
		{"unknown-command-flag", []string{"status", "-frob"}, "usage: xlbctl status"},
		{"drain-one-arg", []string{"drain", "api"}, "usage: xlbctl drain SERVICE BACKEND"},
		{"drain-three-args", []string{"drain", "api", "a", "b"}, "usage: xlbctl drain SERVICE BACKEND"},
		{"weight-not-number", []string{"weight", "api", "10.0.1.1", "heavy"}, `weight "heavy"`},
		{"weight-negative", []string{"weight", "api", "10.0.1.1", "--", "-1"}, `weight "-1"`},
		{"weight-negative-bare", []string{"weight", "api", "10.0.1.1", "-1"}, `weight "-1": want a whole number, 0 or more`},
		{"weight-negative-after-flag", []string{"weight", "api", "10.0.1.1", "-o", "json", "-2"}, `weight "-2"`},
		{"add-negative", []string{"add", "api", "10.0.1.1", "-3"}, `weight "-3"`},
		{"watch-negative-count", []string{"watch", "-count", "-1"}, "-count -1: want 0 or more"},
		{"flag-needs-value", []string{"watch", "-interval"}, "flag needs an argument"},
		{"add-bad-weight", []string{"add", "api", "10.0.1.1", "x"}, `weight "x"`},
		{"status-two-services", []string{"status", "a", "b"}, "usage: xlbctl status [SERVICE]"},
		{"reload-arg", []string{"reload", "now"}, "usage: xlbctl reload"},
		{"bad-output", []string{"-o", "yaml", "status"}, `-o "yaml"`},
		{"bad-admin-scheme", []string{"-admin", "ftp://x", "status"}, "scheme must be http or https"},
		{"watch-bad-interval", []string{"watch", "-interval", "0s"}, "-interval 0s"},
		{"help-unknown", []string{"help", "frob"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, url := newCanned(t)
			code, out, errOut := xlbctl(t, append([]string{"-admin", url}, tc.args...)...)
			if tc.name == "bad-admin-scheme" {
				code, out, errOut = xlbctl(t, tc.args...)
			}
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, errOut)
			}
			if !strings.Contains(errOut, tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", errOut, tc.wantStderr)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			if r := c.requests(); len(r) != 0 {
				t.Errorf("a usage error reached the API: %+v", r)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"-help"}} {
		code, out, errOut := xlbctl(t, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%q: exit %d, stderr %q", args, code, errOut)
		}
		for _, c := range commands {
			if !strings.Contains(out, "\n  "+c.synopsis()+" ") {
				t.Errorf("%q: help lacks %q:\n%s", args, c.name, out)
			}
		}
	}
	code, out, _ := xlbctl(t, "help", "watch")
	if code != 0 || !strings.Contains(out, "-interval") {
		t.Errorf("help watch: exit %d:\n%s", code, out)
	}
	code, out, _ = xlbctl(t, "maps", "-h")
	if code != 0 || !strings.Contains(out, "-pin-path") {
		t.Errorf("maps -h: exit %d:\n%s", code, out)
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, url := newCanned(t)
	if code, _, errOut := xlbctl(t, "-admin", url, "-token-file", tokenFile, "reload"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	t.Setenv("XLB_TOKEN", "from-env")
	if code, _, errOut := xlbctl(t, "-admin", url, "reload"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// The file wins over the environment.
	if code, _, errOut := xlbctl(t, "-admin", url, "reload", "-token-file", tokenFile); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []string
	for _, r := range c.requests() {
		got = append(got, r.auth)
	}
	if want := []string{"Bearer from-file", "Bearer from-env", "Bearer from-file"}; !slices.Equal(got, want) {
		t.Errorf("Authorization %q, want %q", got, want)
	}

	for _, f := range []string{empty, filepath.Join(dir, "missing")} {
		code, _, errOut := xlbctl(t, "-admin", url, "-token-file", f, "reload")
		if code != 1 || !strings.HasPrefix(errOut, "xlbctl: token file") {
			t.Errorf("token file %s: exit %d, stderr %q", f, code, errOut)
		}
	}
}

func TestAdminFromEnvironment(t *testing.T) {
	c, url := newCanned(t)
	t.Setenv("XLB_ADMIN", strings.TrimPrefix(url, "http://")) // a bare host:port is fine
	if code, _, errOut := xlbctl(t, "stats"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if len(c.requests()) != 1 {
		t.Error("XLB_ADMIN not used")
	}
}

func TestWatch(t *testing.T) {
	c, url := newCanned(t)
	code, out, errOut := xlbctl(t, "-admin", url, "watch", "-interval", "10ms", "-count", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if n := strings.Count(out, clearScreen); n != 3 {
		t.Errorf("%d screens, want 3", n)
	}
	if n := strings.Count(out, "-> 10.0.1.1 "); n != 3 {
		t.Errorf("%d status tables, want 3:\n%s", n, out)
	}
	if n := len(c.requests()); n != 6 {
		t.Errorf("%d requests, want 6 (services and /healthz, three times)", n)
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("a warning while xlbd serves:\n%s", out)
	}

	// As status does, each screen says when xlbd does not serve.
	c.set("GET /healthz", 503, `{"status": "unavailable", "error": "interface eth0 is gone"}`)
	_, out, _ = xlbctl(t, "-admin", url, "watch", "-interval", "10ms", "-count", "2")
	if n := strings.Count(out, "WARNING: xlbd is not serving: interface eth0 is gone\n\n"); n != 2 {
		t.Errorf("%d warnings in 2 screens:\n%s", n, out)
	}
	c.set("GET /healthz", 200, `{"status": "ok"}`)

	// An error shows on the screen and watching goes on; once.
	c.set("GET /api/v1/services", 500, `{"error":"daemon restarting"}`)
	code, out, errOut = xlbctl(t, "-admin", url, "watch", "-interval", "10ms", "-count", "2")
	if code != 1 || strings.Count(out, "xlbctl: daemon restarting") != 2 || errOut != "" {
		t.Errorf("exit %d, stderr %q:\n%s", code, errOut, out)
	}
}

// TestWatchExitStatus: watch exits as its last refresh went, so a script
// learns that every fetch failed, or that xlbd went away at the end.
func TestWatchExitStatus(t *testing.T) {
	_, url := newCanned(t)
	if code, _, _ := xlbctl(t, "-admin", url, "watch", "nope", "-interval", "10ms", "-count", "2"); code != 1 {
		t.Errorf("unknown service: exit %d, want 1", code)
	}
	code, out, errOut := xlbctl(t, "-admin", url, "-o", "json", "watch", "nope", "-interval", "10ms", "-count", "1")
	if code != 1 || out != "" || errOut != "xlbctl: service \"nope\" not found\n" {
		t.Errorf("unknown service -o json: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	if code, _, _ := xlbctl(t, "-admin", down.URL, "watch", "-interval", "10ms", "-count", "2"); code != 1 {
		t.Errorf("xlbd down: exit %d, want 1", code)
	}

	// The answers of a daemon that fails on the service calls named.
	flaky := func(fail ...int) string {
		var mu sync.Mutex
		n := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				io.WriteString(w, `{"status": "ok"}`)
				return
			}
			mu.Lock()
			n++
			failed := slices.Contains(fail, n)
			mu.Unlock()
			if failed {
				w.WriteHeader(500)
				io.WriteString(w, `{"error":"daemon restarting"}`)
				return
			}
			io.WriteString(w, servicesJSON)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	if code, _, _ := xlbctl(t, "-admin", flaky(3), "watch", "-interval", "10ms", "-count", "3"); code != 1 {
		t.Errorf("last refresh failed: exit %d, want 1", code)
	}
	if code, _, errOut := xlbctl(t, "-admin", flaky(1, 2), "watch", "-interval", "10ms", "-count", "3"); code != 0 {
		t.Errorf("last refresh ok: exit %d, want 0 (%s)", code, errOut)
	}
	if _, out, _ := xlbctl(t, "help", "watch"); !strings.Contains(out, "exit status 1 if the last refresh failed") {
		t.Errorf("help watch does not say its exit status:\n%s", out)
	}
}

func TestPinnedHooks(t *testing.T) {
	t.Setenv("XLB_ADMIN", "http://127.0.0.1:1") // no xlbd: detach has nothing to withdraw
	saveMaps, saveDetach := pinnedMaps, detachAll
	t.Cleanup(func() { pinnedMaps, detachAll = saveMaps, saveDetach })

	pinnedMaps, detachAll = nil, nil
	for _, cmd := range []string{"maps", "detach"} {
		code, _, errOut := xlbctl(t, cmd)
		if code != 1 || !strings.Contains(errOut, "not available in this build") {
			t.Errorf("%s without hook: exit %d, stderr %q", cmd, code, errOut)
		}
	}

	var calls []string
	pinnedMaps = func(pinPath string, w io.Writer, asJSON bool) error {
		calls = append(calls, fmt.Sprintf("maps %s %t", pinPath, asJSON))
		fmt.Fprintln(w, "services: 2 entries")
		return nil
	}
	detachAll = func(pinPath string) error {
		calls = append(calls, "detach "+pinPath)
		if pinPath == "/nowhere" {
			return errors.New("no pins")
		}
		return nil
	}
	code, out, _ := xlbctl(t, "maps")
	if code != 0 || out != "services: 2 entries\n" {
		t.Errorf("maps: exit %d, stdout %q", code, out)
	}
	if code, _, _ := xlbctl(t, "-o", "json", "maps", "-pin-path", "/run/xlb"); code != 0 {
		t.Errorf("maps -o json: exit %d", code)
	}
	if code, out, _ := xlbctl(t, "detach", "-pin-path", "/run/xlb"); code != 0 || !strings.Contains(out, "/run/xlb") {
		t.Errorf("detach: exit %d, stdout %q", code, out)
	}
	if code, out, _ := xlbctl(t, "-o", "json", "detach"); code != 0 || !json.Valid([]byte(out)) {
		t.Errorf("detach -o json: exit %d, stdout %q", code, out)
	}
	if code, _, errOut := xlbctl(t, "detach", "-pin-path", "/nowhere"); code != 1 || errOut != "xlbctl: detach: no pins\n" {
		t.Errorf("failing detach: exit %d, stderr %q", code, errOut)
	}
	want := []string{"maps /sys/fs/bpf/xlb false", "maps /run/xlb true", "detach /run/xlb", "detach /sys/fs/bpf/xlb", "detach /nowhere"}
	if !slices.Equal(calls, want) {
		t.Errorf("hook calls %q, want %q", calls, want)
	}
}

// fakeController is a daemon for the round trip through the real admin
// server.
type fakeController struct {
	mu       sync.Mutex
	services []api.Service
}

func (f *fakeController) Services() []api.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.services)
	for i := range out {
		out[i].Backends = slices.Clone(out[i].Backends)
	}
	return out
}

func (f *fakeController) backend(service, address string) (*api.Backend, error) {
	for i := range f.services {
		if f.services[i].Name != service {
			continue
		}
		for j := range f.services[i].Backends {
			if b := &f.services[i].Backends[j]; b.Address == address {
				return b, nil
			}
		}
		return nil, fmt.Errorf("service %s has no backend %s: %w", service, address, api.ErrNotFound)
	}
	return nil, fmt.Errorf("service %q: %w", service, api.ErrNotFound)
}

func (f *fakeController) AddBackend(service string, add api.AddBackend) (api.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.backend(service, add.Address); err == nil {
		return api.Change{}, fmt.Errorf("backend %s exists: %w", add.Address, api.ErrConflict)
	}
	w := 1
	if add.Weight != nil {
		w = *add.Weight
	}
	for i := range f.services {
		if f.services[i].Name == service {
			f.services[i].Backends = append(f.services[i].Backends, api.Backend{Address: add.Address, Weight: w, Healthy: true, Source: "api"})
			return api.Change{Service: service, Backend: add.Address, Result: "added"}, nil
		}
	}
	return api.Change{}, fmt.Errorf("service %q: %w", service, api.ErrNotFound)
}

func (f *fakeController) RemoveBackend(service, address string) (api.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.backend(service, address); err != nil {
		return api.Change{}, err
	}
	for i := range f.services {
		f.services[i].Backends = slices.DeleteFunc(f.services[i].Backends, func(b api.Backend) bool {
			return f.services[i].Name == service && b.Address == address
		})
	}
	return api.Change{Service: service, Backend: address, Result: "removed"}, nil
}

func (f *fakeController) PatchBackend(service, address string, p api.PatchBackend) (api.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.backend(service, address)
	if err != nil {
		return api.Change{}, err
	}
	result := ""
	if p.Weight != nil {
		b.Weight = *p.Weight
		result = fmt.Sprintf("weight %d", b.Weight)
	}
	if p.Drain != nil {
		b.Draining = *p.Drain
		result = map[bool]string{true: "draining", false: "undrained"}[b.Draining]
	}
	b.Persisted = false
	return api.Change{Service: service, Backend: address, Result: result}, nil
}

// Reload fails as xlbd's does: with the config package's error list, whose
// message is every error, one a line, and which the API also sends as details.
func (f *fakeController) Reload() (api.Reload, error) {
	return api.Reload{}, config.ErrorList{
		{File: "xlb.yaml", Line: 3, Key: "admin.listen", Msg: "missing port"},
		{File: "xlb.yaml", Line: 9, Key: "services[0].scheduler", Msg: `unknown "fastest"`},
	}
}

func (f *fakeController) Stats() (api.Stats, error) {
	return api.Stats{L4: []api.Stat{{Name: "tx", Packets: 1, Bytes: 64}}}, nil
}

// tokenServer serves fake's admin API, whose changes need the token "tok",
// written to tokenFile.
func tokenServer(t *testing.T, fake *fakeController, tokenFile string) *httptest.Server {
	t.Helper()
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New(fake, admin.Options{TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func TestRoundTripThroughAdminServer(t *testing.T) {
	fake := &fakeController{services: []api.Service{{
		Name: "web", Layer: 7, Address: "0.0.0.0:8080", Protocol: "http", Scheduler: "round_robin",
		Backends: []api.Backend{
			{Address: "[2001:db8::7]:9001", Weight: 2, ConfigWeight: 2, Healthy: true, Source: "config", Persisted: true},
		},
	}}}
	tokenFile := filepath.Join(t.TempDir(), "token")
	ts := tokenServer(t, fake, tokenFile)
	ctl := func(args ...string) (int, string, string) {
		t.Helper()
		return xlbctl(t, append([]string{"-admin", ts.URL, "-token-file", tokenFile}, args...)...)
	}

	// Reads need no token; changes do.
	if code, _, errOut := xlbctl(t, "-admin", ts.URL, "status"); code != 0 {
		t.Fatalf("status without token: exit %d: %s", code, errOut)
	}
	if code, _, errOut := xlbctl(t, "-admin", ts.URL, "drain", "web", "[2001:db8::7]:9001"); code != 1 || !strings.Contains(errOut, "bearer token") {
		t.Errorf("drain without token: exit %d, stderr %q", code, errOut)
	}

	steps := []struct {
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{[]string{"drain", "web", "[2001:db8::7]:9001"}, 0, "web [2001:db8::7]:9001: draining", ""},
		{[]string{"weight", "web", "[2001:db8::7]:9001", "5"}, 0, "weight 5", ""},
		{[]string{"add", "web", "127.0.0.1:9002", "3"}, 0, "web 127.0.0.1:9002: added", ""},
		{[]string{"add", "web", "127.0.0.1:9002"}, 1, "", "xlbctl: backend 127.0.0.1:9002 exists: conflict\n"},
		{[]string{"weight", "nope", "127.0.0.1:9002", "1"}, 1, "", "xlbctl: service \"nope\": not found\n"},
		{[]string{"remove", "web", "127.0.0.1:9002"}, 0, "removed", ""},
		{[]string{"reload"}, 1, "", "xlbctl: xlb.yaml:3: admin.listen: missing port\nxlb.yaml:9: services[0].scheduler: unknown \"fastest\"\n"},
		{[]string{"stats"}, 0, "tx", ""},
	}
	for _, s := range steps {
		code, out, errOut := ctl(s.args...)
		if code != s.wantCode || !strings.Contains(out, s.wantOut) || errOut != s.wantErr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr %q",
				s.args, code, out, errOut, s.wantCode, s.wantOut, s.wantErr)
		}
	}

	code, out, _ := ctl("status", "web")
	if code != 0 {
		t.Fatalf("status web: exit %d", code)
	}
	want := []string{"->", "[2001:db8::7]:9001", "5", "2", "up", "draining", "config*"}
	found := false
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= len(want) && slices.Equal(f[:len(want)], want) {
			found = true
		}
	}
	if !found || strings.Contains(out, "9002") {
		t.Errorf("status after the changes:\n%s", out)
	}

	code, out, _ = ctl("-o", "json", "status", "web")
	var svc api.Service
	if code != 0 || json.Unmarshal([]byte(out), &svc) != nil || len(svc.Backends) != 1 || !svc.Backends[0].Draining {
		t.Errorf("status -o json: exit %d:\n%s", code, out)
	}
}

// TestReloadSaysWhatNeedsARestart: changes the daemon keeps its old values
// for are printed after "ok", not only logged by xlbd.
func TestReloadSaysWhatNeedsARestart(t *testing.T) {
	c, url := newCanned(t)
	c.set("POST /api/v1/reload", 200, `{"result": "ok", "services": 1, "at": "2026-12-03T05:00:00Z", "restart_needed": ["xdp.flow_table_size 1048576 -> 4096"]}`)
	code, out, errOut := xlbctl(t, "-admin", url, "reload")
	if code != 0 || out != "ok\nnot applied until xlbd restarts: xdp.flow_table_size 1048576 -> 4096\n" {
		t.Errorf("reload: exit %d, %q, %q", code, out, errOut)
	}
}
