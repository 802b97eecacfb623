package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/internal/syncbuf"
)

// fakeController records calls and answers from canned state.
type fakeController struct {
	mu       sync.Mutex
	services []api.Service
	calls    []string
	err      error // returned by every mutating call and Stats when set
}

func newFake() *fakeController {
	return &fakeController{services: []api.Service{
		{
			Name: "api", Layer: 4, Address: "10.0.0.10:80", Protocol: "tcp", Scheduler: "maglev", Forward: "ipip",
			Backends: []api.Backend{
				{Address: "10.0.1.1", Weight: 3, ConfigWeight: 3, Healthy: true, Source: "config", Persisted: true, Active: 12},
				{Address: "2001:db8::1", Weight: 1, ConfigWeight: 1, Healthy: true, Source: "config", Persisted: true},
			},
		},
		{Name: "web", Layer: 7, Address: "0.0.0.0:8080", Protocol: "http", Scheduler: "round_robin"},
	}}
}

func (f *fakeController) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeController) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeController) Services() []api.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.services)
}

func (f *fakeController) AddBackend(service string, b api.AddBackend) (api.Change, error) {
	w := -1
	if b.Weight != nil {
		w = *b.Weight
	}
	f.record("add %s %s %d", service, b.Address, w)
	if f.err != nil {
		return api.Change{}, f.err
	}
	return api.Change{Service: service, Backend: b.Address, Result: "added"}, nil
}

func (f *fakeController) RemoveBackend(service, address string) (api.Change, error) {
	f.record("remove %s %s", service, address)
	if f.err != nil {
		return api.Change{}, f.err
	}
	return api.Change{Service: service, Backend: address, Result: "removed"}, nil
}

func (f *fakeController) PatchBackend(service, address string, p api.PatchBackend) (api.Change, error) {
	var parts []string
	if p.Weight != nil {
		parts = append(parts, fmt.Sprintf("weight=%d", *p.Weight))
	}
	if p.Drain != nil {
		parts = append(parts, fmt.Sprintf("drain=%t", *p.Drain))
	}
	f.record("patch %s %s %s", service, address, strings.Join(parts, ","))
	if f.err != nil {
		return api.Change{}, f.err
	}
	return api.Change{Service: service, Backend: address, Result: "patched"}, nil
}

func (f *fakeController) Reload() (api.Reload, error) {
	f.record("reload")
	if f.err != nil {
		return api.Reload{}, f.err
	}
	return api.Reload{Result: "ok", Services: len(f.services), At: time.Unix(1700000000, 0).UTC()}, nil
}

func (f *fakeController) Stats() (api.Stats, error) {
	if f.err != nil {
		return api.Stats{}, f.err
	}
	return api.Stats{L4: []api.Stat{{Name: "tx", Packets: 10, Bytes: 1000}, {Name: "drop_malformed", Packets: 1, Bytes: 60}}}, nil
}

// configErrors is a config validation failure, as the daemon returns it.
type configErrors []string

func (e configErrors) Error() string     { return fmt.Sprintf("config: %d errors", len(e)) }
func (e configErrors) Details() []string { return e }

var _ api.Detailed = configErrors(nil)

const testToken = "s3cret-token"

func writeToken(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type harness struct {
	fake *fakeController
	srv  *Server
	logs *syncbuf.Buffer
}

func newHarness(t *testing.T, withToken bool) *harness {
	t.Helper()
	h := &harness{fake: newFake(), logs: &syncbuf.Buffer{}}
	o := Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(h.logs, nil))}
	if withToken {
		o.TokenFile = writeToken(t, t.TempDir(), testToken+"\n")
	}
	srv, err := New(h.fake, o)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	return h
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// do runs one request through the handler; token "" sends no header.
func (h *harness) do(t *testing.T, method, target, body, token string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return answer{rec.Code, rec.Header(), rec.Body.Bytes()}
}

// apiError decodes an error answer and checks its shape.
func (a answer) apiError(t *testing.T) api.Error {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e api.Error
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("error answer is not JSON: %v: %s", err, a.body)
	}
	if e.Error == "" {
		t.Errorf("error answer without an error: %s", a.body)
	}
	return e
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, a.body)
	}
}

func TestHealthz(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ready      func() error
		wantStatus int
		wantBody   string
		wantError  string
	}{
		{"nil-ready-is-ok", nil, 200, "ok", ""},
		{"ready", func() error { return nil }, 200, "ok", ""},
		{"not-ready", func() error { return errors.New("interface eth0 is gone") }, 503, "unavailable", "interface eth0 is gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := New(newFake(), Options{Ready: tc.ready})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			var got struct{ Status, Error string }
			answer{rec.Code, rec.Header(), rec.Body.Bytes()}.decode(t, &got)
			if got.Status != tc.wantBody || got.Error != tc.wantError {
				t.Errorf("answer %+v, want status %q, error %q", got, tc.wantBody, tc.wantError)
			}
		})
	}
}

func TestMetricsServesRegisteredCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "xlb_test_events_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	srv, err := New(newFake(), Options{Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), "xlb_test_events_total 3") {
		t.Errorf("metrics lack the test counter:\n%s", rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestListServices(t *testing.T) {
	h := newHarness(t, true)
	a := h.do(t, "GET", "/api/v1/services", "", "") // GETs need no token
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var got api.Services
	a.decode(t, &got)
	if len(got.Services) != 2 || got.Services[0].Name != "api" || len(got.Services[0].Backends) != 2 {
		t.Errorf("services = %+v", got)
	}
	// An L7 service without backends lists [] rather than null.
	if !bytes.Contains(a.body, []byte(`"backends": []`)) {
		t.Errorf("empty backends not []: %s", a.body)
	}
}

func TestGetService(t *testing.T) {
	h := newHarness(t, false)
	a := h.do(t, "GET", "/api/v1/services/api", "", "")
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var svc api.Service
	a.decode(t, &svc)
	if svc.Name != "api" || svc.Address != "10.0.0.10:80" {
		t.Errorf("service = %+v", svc)
	}

	a = h.do(t, "GET", "/api/v1/services/nope", "", "")
	if a.status != 404 {
		t.Fatalf("unknown service: status %d, want 404", a.status)
	}
	if e := a.apiError(t); !strings.Contains(e.Error, "nope") {
		t.Errorf("error %q does not name the service", e.Error)
	}
}

func TestStats(t *testing.T) {
	h := newHarness(t, true)
	a := h.do(t, "GET", "/api/v1/stats", "", "")
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var st api.Stats
	a.decode(t, &st)
	if len(st.L4) != 2 || st.L4[0].Name != "tx" || st.L4[0].Packets != 10 {
		t.Errorf("stats = %+v", st)
	}
	// The same counters by name, as SPEC has them.
	var byName map[string]json.RawMessage
	a.decode(t, &byName)
	var mal struct{ Packets, Bytes uint64 }
	if err := json.Unmarshal(byName["drop_malformed"], &mal); err != nil || mal.Packets != 1 || mal.Bytes != 60 {
		t.Errorf("drop_malformed by name = %s (%v), want packets 1, bytes 60", byName["drop_malformed"], err)
	}

	h.fake.err = errors.New("read stats: map gone")
	a = h.do(t, "GET", "/api/v1/stats", "", "")
	if a.status != 500 {
		t.Errorf("failing stats: status %d, want 500", a.status)
	}
	a.apiError(t)
}

// mutatingCalls is one valid request per mutating route.
var mutatingCalls = []struct {
	name, method, target, body string
	wantStatus                 int
	wantCall                   string
}{
	{"add", "POST", "/api/v1/services/api/backends", `{"address":"10.0.1.3","weight":2}`, 201, "add api 10.0.1.3 2"},
	{"add-default-weight", "POST", "/api/v1/services/api/backends", `{"address":"10.0.1.3"}`, 201, "add api 10.0.1.3 -1"},
	{"remove", "DELETE", "/api/v1/services/api/backends/10.0.1.1", "", 200, "remove api 10.0.1.1"},
	{"drain", "PATCH", "/api/v1/services/api/backends/10.0.1.1", `{"drain":true}`, 200, "patch api 10.0.1.1 drain=true"},
	{"weight", "PATCH", "/api/v1/services/api/backends/10.0.1.1", `{"weight":0}`, 200, "patch api 10.0.1.1 weight=0"},
	{"reload", "POST", "/api/v1/reload", "", 200, "reload"},
}

func TestMutatingCallsWithoutTokenConfigured(t *testing.T) {
	for _, tc := range mutatingCalls {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false)
			a := h.do(t, tc.method, tc.target, tc.body, "")
			if a.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", a.status, tc.wantStatus, a.body)
			}
			if got := h.fake.Calls(); len(got) != 1 || got[0] != tc.wantCall {
				t.Errorf("calls %q, want [%q]", got, tc.wantCall)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestMutatingCallsNeedToken(t *testing.T) {
	for _, tc := range mutatingCalls {
		for _, auth := range []struct {
			name   string
			header string
			ok     bool
		}{
			{"no-token", "", false},
			{"wrong-token", "Bearer nope", false},
			{"token-prefix", "Bearer " + testToken[:4], false},
			{"token-plus-suffix", "Bearer " + testToken + "x", false},
			{"basic-scheme", "Basic " + testToken, false},
			{"right-token", "Bearer " + testToken, true},
			{"lowercase-scheme", "bearer " + testToken, true},
		} {
			t.Run(tc.name+"/"+auth.name, func(t *testing.T) {
				h := newHarness(t, true)
				req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
				if auth.header != "" {
					req.Header.Set("Authorization", auth.header)
				}
				rec := httptest.NewRecorder()
				h.srv.Handler().ServeHTTP(rec, req)
				a := answer{rec.Code, rec.Header(), rec.Body.Bytes()}
				if !auth.ok {
					if a.status != 401 {
						t.Fatalf("status %d, want 401", a.status)
					}
					if got := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
						t.Errorf("WWW-Authenticate %q", got)
					}
					a.apiError(t)
					if calls := h.fake.Calls(); len(calls) != 0 {
						t.Errorf("controller called without auth: %q", calls)
					}
					return
				}
				if a.status != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", a.status, tc.wantStatus, a.body)
				}
				if calls := h.fake.Calls(); len(calls) != 1 || calls[0] != tc.wantCall {
					t.Errorf("calls %q, want [%q]", calls, tc.wantCall)
				}
			})
		}
	}
}

func TestMutatingCallsAreLoggedWithoutToken(t *testing.T) {
	h := newHarness(t, true)
	h.do(t, "PATCH", "/api/v1/services/api/backends/10.0.1.1", `{"drain":true}`, testToken)
	h.do(t, "POST", "/api/v1/reload", "", "wrong")
	logs := h.logs.String()
	for _, want := range []string{
		"method=PATCH path=/api/v1/services/api/backends/10.0.1.1 status=200 result=patched",
		"method=POST path=/api/v1/reload status=401 result=unauthorized",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, testToken) || strings.Contains(logs, "wrong") {
		t.Errorf("logs carry a token:\n%s", logs)
	}
}

func TestTokenRotation(t *testing.T) {
	dir := t.TempDir()
	path := writeToken(t, dir, "first\n")
	f := newFake()
	srv, err := New(f, Options{TokenFile: path})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{fake: f, srv: srv}
	reload := func(token string) int { return h.do(t, "POST", "/api/v1/reload", "", token).status }

	if got := reload("first"); got != 200 {
		t.Fatalf("first token: %d", got)
	}
	// Rotate by rename (a new inode), as config management tools do.
	tmp := filepath.Join(dir, "token.new")
	if err := os.WriteFile(tmp, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if got := reload("first"); got != 401 {
		t.Errorf("old token after rotation: %d, want 401", got)
	}
	if got := reload("second"); got != 200 {
		t.Errorf("new token after rotation: %d, want 200", got)
	}
	// In place, same size, with another mtime.
	if err := os.WriteFile(path, []byte("thirdd"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if got := reload("thirdd"); got != 200 {
		t.Errorf("token rewritten in place: %d, want 200", got)
	}
	// An emptied or removed file keeps the last good token: it neither
	// opens the API nor locks the operator out.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := reload(""); got != 401 {
		t.Errorf("no token with an emptied file: %d, want 401", got)
	}
	if got := reload("thirdd"); got != 200 {
		t.Errorf("last good token with an emptied file: %d, want 200", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got := reload("thirdd"); got != 200 {
		t.Errorf("last good token with a removed file: %d, want 200", got)
	}
}

func TestNewRejectsBadTokenFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, path string
	}{
		{"missing", filepath.Join(dir, "missing")},
		{"empty", writeToken(t, t.TempDir(), "")},
		{"whitespace", writeToken(t, t.TempDir(), " \n\t\n")},
		{"directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(newFake(), Options{TokenFile: tc.path}); err == nil {
				t.Error("New accepted the token file")
			}
		})
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New accepted a nil controller")
	}
}

func TestBadBodies(t *testing.T) {
	big := `{"address":"` + strings.Repeat("a", 2<<20) + `"}`
	for _, tc := range []struct {
		name, method, target, body string
		wantStatus                 int
	}{
		{"add-bad-json", "POST", "/api/v1/services/api/backends", `{"address":`, 400},
		{"add-not-object", "POST", "/api/v1/services/api/backends", `[1,2]`, 400},
		{"add-unknown-field", "POST", "/api/v1/services/api/backends", `{"address":"10.0.1.3","wieght":2}`, 400},
		{"add-empty-body", "POST", "/api/v1/services/api/backends", ``, 400},
		{"add-trailing-data", "POST", "/api/v1/services/api/backends", `{"address":"10.0.1.3"} {"address":"x"}`, 400},
		{"add-no-address", "POST", "/api/v1/services/api/backends", `{"weight":2}`, 400},
		{"add-negative-weight", "POST", "/api/v1/services/api/backends", `{"address":"10.0.1.3","weight":-1}`, 400},
		{"add-weight-string", "POST", "/api/v1/services/api/backends", `{"address":"10.0.1.3","weight":"2"}`, 400},
		{"add-field-case", "POST", "/api/v1/services/api/backends", `{"Address":"10.0.1.3"}`, 400},
		{"patch-field-twice", "PATCH", "/api/v1/services/api/backends/10.0.1.1", `{"weight":2,"weight":0}`, 400},
		{"add-too-large", "POST", "/api/v1/services/api/backends", big, 413},
		{"patch-bad-json", "PATCH", "/api/v1/services/api/backends/10.0.1.1", `{drain:true}`, 400},
		{"patch-unknown-field", "PATCH", "/api/v1/services/api/backends/10.0.1.1", `{"drained":true}`, 400},
		{"patch-nothing", "PATCH", "/api/v1/services/api/backends/10.0.1.1", `{}`, 400},
		{"patch-negative-weight", "PATCH", "/api/v1/services/api/backends/10.0.1.1", `{"weight":-3}`, 400},
		{"patch-too-large", "PATCH", "/api/v1/services/api/backends/10.0.1.1", big, 413},
		{"patch-no-address", "PATCH", "/api/v1/services/api/backends/", `{"drain":true}`, 400},
		{"remove-no-address", "DELETE", "/api/v1/services/api/backends/", "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true)
			a := h.do(t, tc.method, tc.target, tc.body, testToken)
			if a.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %.200s", a.status, tc.wantStatus, a.body)
			}
			a.apiError(t)
			if calls := h.fake.Calls(); len(calls) != 0 {
				t.Errorf("controller called with a bad body: %q", calls)
			}
		})
	}
}

func TestControllerErrors(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		wantStatus  int
		wantDetails []string
	}{
		{"not-found", fmt.Errorf("service %q: %w", "api", api.ErrNotFound), 404, nil},
		{"invalid", fmt.Errorf("address %q: %w", "x", api.ErrInvalid), 400, nil},
		{"conflict", fmt.Errorf("backend exists: %w", api.ErrConflict), 409, nil},
		{"other", errors.New("write map: no space left"), 500, nil},
		{"detailed", configErrors{"xlb.yaml:3: services[0].port: 70000 is not a port", "xlb.yaml:9: services[1]: unknown key \"wieght\""}, 400,
			[]string{"xlb.yaml:3: services[0].port: 70000 is not a port", "xlb.yaml:9: services[1]: unknown key \"wieght\""}},
		{"wrapped-detailed", fmt.Errorf("reload: %w", configErrors{"xlb.yaml:1: bad"}), 400, []string{"xlb.yaml:1: bad"}},
	} {
		for _, call := range mutatingCalls {
			t.Run(tc.name+"/"+call.name, func(t *testing.T) {
				h := newHarness(t, false)
				h.fake.err = tc.err
				a := h.do(t, call.method, call.target, call.body, "")
				if a.status != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", a.status, tc.wantStatus, a.body)
				}
				e := a.apiError(t)
				if e.Error != tc.err.Error() {
					t.Errorf("error %q, want %q", e.Error, tc.err.Error())
				}
				if !slices.Equal(e.Details, tc.wantDetails) {
					t.Errorf("details %q, want %q", e.Details, tc.wantDetails)
				}
			})
		}
	}
}

func TestBackendAddressesInPath(t *testing.T) {
	for _, tc := range []struct {
		name, target, want string
	}{
		{"ipv4", "/api/v1/services/api/backends/10.0.1.1", "10.0.1.1"},
		{"host-port", "/api/v1/services/web/backends/127.0.0.1:9001", "127.0.0.1:9001"},
		{"host-port-escaped", "/api/v1/services/web/backends/127.0.0.1%3A9001", "127.0.0.1:9001"},
		{"ipv6", "/api/v1/services/api/backends/2001:db8::1", "2001:db8::1"},
		{"ipv6-brackets-port", "/api/v1/services/web/backends/[2001:db8::1]:9001", "[2001:db8::1]:9001"},
		{"ipv6-brackets-escaped", "/api/v1/services/web/backends/%5B2001%3Adb8%3A%3A1%5D%3A9001", "[2001:db8::1]:9001"},
		{"ipv6-zone", "/api/v1/services/api/backends/fe80::1%25eth0", "fe80::1%eth0"},
		{"hostname-port", "/api/v1/services/web/backends/app-1.internal:8080", "app-1.internal:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false)
			svc := strings.Split(tc.target, "/")[4]
			a := h.do(t, "PATCH", tc.target, `{"weight":2}`, "")
			if a.status != 200 {
				t.Fatalf("PATCH status %d: %s", a.status, a.body)
			}
			a = h.do(t, "DELETE", tc.target, "", "")
			if a.status != 200 {
				t.Fatalf("DELETE status %d: %s", a.status, a.body)
			}
			want := []string{"patch " + svc + " " + tc.want + " weight=2", "remove " + svc + " " + tc.want}
			if got := h.fake.Calls(); !slices.Equal(got, want) {
				t.Errorf("calls %q, want %q", got, want)
			}
			var ch api.Change
			a.decode(t, &ch)
			if ch.Backend != tc.want {
				t.Errorf("answer names backend %q, want %q", ch.Backend, tc.want)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	for _, tc := range []struct {
		method, target, wantAllow string
	}{
		{"POST", "/healthz", "GET, HEAD"},
		{"DELETE", "/metrics", "GET, HEAD"},
		{"POST", "/api/v1/services", "GET, HEAD"},
		{"PUT", "/api/v1/services/api", "GET, HEAD"},
		{"GET", "/api/v1/services/api/backends", "POST"},
		{"GET", "/api/v1/services/api/backends/10.0.1.1", "DELETE, PATCH"},
		{"PUT", "/api/v1/services/api/backends/[::1]:80", "DELETE, PATCH"},
		{"GET", "/api/v1/reload", "POST"},
		{"POST", "/api/v1/stats", "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			h := newHarness(t, true)
			a := h.do(t, tc.method, tc.target, "", testToken)
			if a.status != 405 {
				t.Fatalf("status %d, want 405: %s", a.status, a.body)
			}
			if got := a.header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow %q, want %q", got, tc.wantAllow)
			}
			a.apiError(t)
			if calls := h.fake.Calls(); len(calls) != 0 {
				t.Errorf("controller called: %q", calls)
			}
		})
	}
}

func TestUnknownPath(t *testing.T) {
	for _, target := range []string{"/", "/nope", "/api/v1", "/api/v2/services", "/api/v1/services/api/nope", "/api/v1/reload/now"} {
		t.Run(target, func(t *testing.T) {
			h := newHarness(t, false)
			a := h.do(t, "GET", target, "", "")
			if a.status != 404 {
				t.Fatalf("status %d, want 404: %s", a.status, a.body)
			}
			a.apiError(t)
		})
	}
}

func TestStartServeShutdown(t *testing.T) {
	h := newHarness(t, true)
	if h.srv.Addr() != nil {
		t.Error("Addr before Start is not nil")
	}
	if err := h.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.srv.Shutdown(context.Background()) })
	if err := h.srv.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	base := "http://" + h.srv.Addr().String()

	resp, err := http.Get(base + "/api/v1/services")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET services: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/reload", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST reload: %d", resp.StatusCode)
	}

	// A second server on the same address fails at Start, synchronously.
	other, err := New(newFake(), Options{Listen: h.srv.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err == nil {
		other.Shutdown(context.Background())
		t.Error("Start on a busy address succeeded")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after Shutdown")
	}
}

// TestUncleanPath: a path with "..", "." or "//" is refused in JSON, where
// the mux would redirect (in HTML) to another resource than the one the
// client named, and a client following it would send its PATCH there.
func TestUncleanPath(t *testing.T) {
	for _, target := range []string{
		"/api/v1/services/api/backends/../../web2/backends/10.0.0.1",
		"/api/v1/services//api",
		"/api/v1/./reload",
	} {
		t.Run(target, func(t *testing.T) {
			h := newHarness(t, false)
			a := h.do(t, "PATCH", target, `{"weight": 2}`, "")
			if a.status != 400 {
				t.Fatalf("status %d, want 400: %s", a.status, a.body)
			}
			a.apiError(t)
		})
	}
}

// TestSetTokenFile: a reload's admin.token_file takes effect at once, and
// an empty path opens mutating calls again.
func TestSetTokenFile(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	srv, err := New(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{fake: f, srv: srv}
	reload := func(token string) int { return h.do(t, "POST", "/api/v1/reload", "", token).status }
	if got := reload(""); got != 200 {
		t.Fatalf("no token configured: %d", got)
	}
	if err := srv.SetTokenFile(writeToken(t, dir, "s3cret\n")); err != nil {
		t.Fatal(err)
	}
	if got := reload(""); got != 401 {
		t.Errorf("without the token after SetTokenFile: %d, want 401", got)
	}
	if got := reload("s3cret"); got != 200 {
		t.Errorf("with the token: %d, want 200", got)
	}
	if err := srv.SetTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("SetTokenFile(missing file) succeeded")
	}
	if got := reload("s3cret"); got != 200 {
		t.Errorf("a failed SetTokenFile changed the token: %d", got)
	}
	if err := srv.SetTokenFile(""); err != nil {
		t.Fatal(err)
	}
	if got := reload(""); got != 200 {
		t.Errorf("after SetTokenFile(\"\"): %d, want 200", got)
	}
}
