//go:build linux

package integration

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/internal/testpki"
)

// TestDaemonL7HTTPS runs xlbd with an HTTPS listener in front of HTTPS
// backends: requests are served over TLS on both sides, the health checks
// speak TLS with backend_tls too (a backend whose certificate the CA did
// not sign is marked down by them and gets no request), and SIGHUP takes a
// renewed listener certificate without a restart.
func TestDaemonL7HTTPS(t *testing.T) {
	buildBinaries(t)
	front, backCA, impostor := testpki.NewCA(t, "front"), testpki.NewCA(t, "backends"), testpki.NewCA(t, "impostor")
	backend := func(name string, ca *testpki.CA) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil {
				http.Error(w, "cleartext", 400)
				return
			}
			io.WriteString(w, name)
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Pair(t, "127.0.0.1")}}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "https://")
	}
	b1, b2, bad := backend("b1", backCA), backend("b2", backCA), backend("bad", impostor)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "front.crt"), filepath.Join(dir, "front.key")
	install := func() {
		c, k := front.Issue(t, "127.0.0.1")
		for src, dst := range map[string]string{c: certFile, k: keyFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(dst, b, 0o600)
		}
	}
	install()
	listen, admin := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`admin: {listen: %q}
services:
  - name: secure
    layer: 7
    listen: %q
    tls: {cert_file: %q, key_file: %q, min_version: "1.3"}
    backend_protocol: https
    backend_tls: {ca_file: %q}
    health_check: {type: http, path: /health, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 1}
    backends: [{address: %q}, {address: %q}, {address: %q}]
`, admin, listen, certFile, keyFile, backCA.File, b1, b2, bad)
	path := filepath.Join(dir, "xlb.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	cmd := startXlbd(t, path, admin)
	hc := &http.Client{Timeout: 5 * time.Second}
	healthy := func() map[string]bool {
		resp, err := hc.Get("http://" + admin + "/api/v1/services/secure")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s api.Service
		json.NewDecoder(resp.Body).Decode(&s)
		m := map[string]bool{}
		for _, b := range s.Backends {
			m[b.Address] = b.Healthy
		}
		return m
	}
	waitFor(t, "the impostor marked down by its TLS health check", 5*time.Second, func() bool {
		h := healthy()
		return h[b1] && h[b2] && !h[bad]
	})
	client := func() (*http.Client, *http.Transport) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: front.Pool}}
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}, tr
	}
	c, tr := client()
	seen := map[string]int{}
	var serial string
	for range 40 {
		resp, err := c.Get("https://" + listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(body)]++
		serial = resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	tr.CloseIdleConnections()
	if seen["b1"] != 20 || seen["b2"] != 20 {
		t.Errorf("requests per backend %v, want 20 each on b1 and b2 and none elsewhere", seen)
	}

	install() // a renewed certificate, then SIGHUP
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the renewed certificate served", 5*time.Second, func() bool {
		c, tr := client()
		defer tr.CloseIdleConnections()
		resp, err := c.Get("https://" + listen + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String() != serial
	})
}
