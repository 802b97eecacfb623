package l7_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/l7"
)

// TestImpatientClientsBlameNoBackend: clients that give up before a slow
// answer (a timeout, a cancelled HTTP/2 stream) are logged as 499, their
// backend requests are cancelled, and no backend is ejected by passive
// health, on every transport: the HTTP/1.1 engine in cleartext and over
// TLS, and HTTP/2. With max_fails 1, counting one such client as a backend
// fault ejects its backend and the fast requests after it get 503s.
func TestImpatientClientsBlameNoBackend(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	cases := []struct {
		name   string
		tls    bool
		client func() *http.Transport
		proto  int
	}{
		{"http1", false, func() *http.Transport { return &http.Transport{} }, 1},
		{"https-http1", true, func() *http.Transport {
			return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		}, 1},
		{"h2", true, func() *http.Transport {
			return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var started, cancelled atomic.Int64
			slow := func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/slow" {
					fmt.Fprintln(w, "ok")
					return
				}
				started.Add(1)
				select {
				case <-r.Context().Done():
					cancelled.Add(1)
				case <-time.After(5 * time.Second):
					fmt.Fprintln(w, "late")
				}
			}
			bs := []*backend{newBackend(t, "a", slow), newBackend(t, "b", slow), newBackend(t, "c", slow)}
			var access syncbuf.Buffer
			srv := must(l7.New(l7.Options{AccessLog: slog.New(slog.NewJSONHandler(&access, nil)), StickySecret: make([]byte, 32)}))
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			})
			listen := freePort(t)
			svc := backendsYAML(bs...) + "passive_health: {max_fails: 1, fail_timeout: 30s}\nretries: {attempts: 0}\n"
			scheme := "http"
			if tc.tls {
				svc += fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", cert, key)
				scheme = "https"
			}
			yaml := fmt.Sprintf("services:\n  - name: web\n    layer: 7\n    listen: %q\n%s\n", listen, indent(svc, "    "))
			cfg, err := config.Parse("test.yaml", []byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			tr := tc.client()
			defer tr.CloseIdleConnections()
			impatient := &http.Client{Transport: tr, Timeout: 300 * time.Millisecond}
			const n = 6
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := impatient.Get(scheme + "://" + listen + "/slow")
					if err == nil {
						resp.Body.Close()
						t.Errorf("a slow request answered %s before the client's timeout", resp.Status)
					}
				}()
			}
			wg.Wait()
			// The backend requests are cancelled soon after the clients
			// left, not when the backends would have answered (5 s).
			deadline := time.Now().Add(2 * time.Second)
			for cancelled.Load() < n && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := cancelled.Load(); got != n {
				t.Errorf("%d of %d backend requests cancelled within 2s of their clients leaving (%d reached a backend)", got, n, started.Load())
			}

			patient := &http.Client{Transport: tc.client(), Timeout: 5 * time.Second}
			for i := range 30 {
				resp, err := patient.Get(scheme + "://" + listen + "/")
				if err != nil {
					t.Fatalf("request %d after the impatient clients: %v", i, err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != tc.proto {
					t.Fatalf("request %d after the impatient clients: %s %s, want 200 over HTTP/%d", i, resp.Proto, resp.Status, tc.proto)
				}
			}
			st, _ := srv.Status("web")
			for _, b := range st {
				if b.Ejected || b.Failures != 0 {
					t.Errorf("backend %s: ejected %v, %d passive-health failures; a client that gave up is not a backend fault", b.Address, b.Ejected, b.Failures)
				}
			}
			if got := strings.Count(access.String(), `"status":499`); got != n {
				t.Errorf("%d requests logged with status 499, want %d:\n%s", got, n, access.String())
			}
		})
	}
}

// TestApplyWithBadCertificateChangesNothing: Apply prepares every service,
// certificate and listener before it changes anything, so a config whose
// certificate cannot be read (or whose listen address is taken) leaves the
// running services, their backends' weights and their listeners as they
// were.
func TestApplyWithBadCertificateChangesNothing(t *testing.T) {
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := startProxy(t, backendsYAML(a), "")
	good := p.cfg
	bad := fmt.Sprintf("services:\n  - name: web\n    layer: 7\n    listen: %q\n    backends:\n      - {address: %q, weight: 7}\n      - {address: %q}\n"+
		"  - name: secure\n    layer: 7\n    listen: %q\n    backends: [{address: %q}]\n    tls: {cert_file: %q, key_file: %q}\n",
		p.listen, a.addr(), b.addr(), freePort(t), a.addr(), "/nonexistent/cert.pem", "/nonexistent/key.pem")
	// config.Parse checks that the files exist; Apply must not rely on it
	// (a file can change between -check and the reload), so the certificate
	// goes missing after the config parsed.
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	cfg, err := config.Parse("test.yaml", []byte(strings.NewReplacer("/nonexistent/cert.pem", cert, "/nonexistent/key.pem", key).Replace(bad)))
	if err != nil {
		t.Fatal(err)
	}
	secure := cfg.Service("secure")
	tlsc := *secure.TLS
	tlsc.Certificates = []config.CertPair{{CertFile: dir + "/missing.pem", KeyFile: key}}
	secure.TLS = &tlsc
	for i := range cfg.Services {
		if cfg.Services[i].Name == "secure" {
			cfg.Services[i] = *secure
		}
	}
	if err := p.srv.Apply(cfg); err == nil || !strings.Contains(err.Error(), "secure") {
		t.Fatalf("Apply with a missing certificate: %v, want an error naming the service", err)
	}
	st, _ := p.srv.Status("web")
	if len(st) != 1 || st[0].Address != a.addr() || st[0].Weight != 1 {
		t.Errorf("after a failed Apply the backends are %+v, want only %s with weight 1", st, a.addr())
	}
	if p.srv.Addr(secure.Listen) != nil {
		t.Errorf("a failed Apply left %s listening", secure.Listen)
	}
	for range 5 {
		if _, body := get(t, p.url+"/", nil); body != "a" {
			t.Fatalf("after a failed Apply a request reached %q, want a", body)
		}
	}
	if err := p.srv.Apply(good); err != nil {
		t.Fatal(err)
	}
}
