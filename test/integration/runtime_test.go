//go:build linux

package integration

// Runtime changes through the admin API, and what survives what: an API
// weight survives other API changes; a config backend deleted through the
// API stays gone until the next reload; a reload drops API changes. Each
// for L4 (namespaces, the real data plane) and L7 (loopback).

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/api"
)

// removedNote is what the API says when it removes a backend the file lists.
const removedNote = "removed until the next reload; the config file still lists it"

// l7lab is the real xlbd with one layer 7 service "web" on loopback, in
// front of backends that answer their name.
type l7lab struct {
	admin, listen string
	dir, cfgPath  string
	backends      []*httptest.Server
	names         map[string]string // backend address -> name
	scheme        string
	client        *http.Client
	logs          *bytes.Buffer
}

// newL7Lab starts n backends and xlbd; svcExtra is YAML added to the
// service (indented by four spaces), backends lists which of the n the
// file names, by index.
func newL7Lab(t *testing.T, n int, backends []int, svcExtra string) *l7lab {
	t.Helper()
	buildBinaries(t)
	l := &l7lab{admin: freeAddr(t), listen: freeAddr(t), dir: t.TempDir(), names: map[string]string{}, scheme: "http", logs: &bytes.Buffer{}}
	for i := range n {
		name := fmt.Sprintf("b%d", i+1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		l.backends = append(l.backends, srv)
		l.names[hostport(srv)] = name
	}
	l.cfgPath = filepath.Join(l.dir, "xlb.yaml")
	l.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true,
	}}
	if strings.Contains(svcExtra, "tls:") {
		l.scheme = "https"
	}
	l.writeConfig(t, backends, svcExtra)
	cmd := exec.Command(bins.xlbd, "-config", l.cfgPath, "-log-level", "debug")
	cmd.Stdout, cmd.Stderr = l.logs, l.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("xlbd log:\n%s", l.logs.String())
		}
	})
	waitFor(t, "xlbd ready", 10*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatal("xlbd exited")
		default:
		}
		resp, err := l.client.Get("http://" + l.admin + api.PathHealthz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return l
}

func (l *l7lab) writeConfig(t *testing.T, backends []int, svcExtra string) {
	t.Helper()
	var bs strings.Builder
	for _, i := range backends {
		fmt.Fprintf(&bs, "      - {address: %q}\n", l.addr(i))
	}
	cfg := fmt.Sprintf(`admin: {listen: %q}
l7: {drain_timeout: 2s}
services:
  - name: web
    layer: 7
    listen: %q
    health_check: {type: http, path: /health, interval: 150ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 2}
%s    backends:
%s`, l.admin, l.listen, svcExtra, bs.String())
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (l *l7lab) addr(i int) string { return hostport(l.backends[i]) }

// call makes an admin API request and checks the status.
func (l *l7lab) call(t *testing.T, method, path string, body any, want int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+l.admin+path, rd)
	resp, err := l.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

// backend is the API's view of one backend of web; ok false when absent.
func (l *l7lab) backend(t *testing.T, addr string) (api.Backend, bool) {
	t.Helper()
	var s api.Service
	l.call(t, "GET", api.PathServices+"/web", nil, 200, &s)
	for _, b := range s.Backends {
		if b.Address == addr {
			return b, true
		}
	}
	return api.Backend{}, false
}

// count sends n requests and counts the answers by backend name.
func (l *l7lab) count(t *testing.T, n int) map[string]int {
	t.Helper()
	c := map[string]int{}
	for range n {
		resp, err := l.client.Get(l.scheme + "://" + l.listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %q", resp.StatusCode, b)
		}
		c[string(b)]++
	}
	return c
}

func (l *l7lab) waitHealthy(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, addr+" healthy", 5*time.Second, func() bool {
		b, ok := l.backend(t, addr)
		return ok && b.Healthy
	})
}

func TestRuntimeAPIWeightSurvivesAdd(t *testing.T) {
	t.Run("l4", func(t *testing.T) {
		l := newDaemonLab(t, "ipip", "")
		l.writeConfig(t, "ipip", []string{"10.0.0.11: 1", "10.0.0.12: 1"}, "")
		l.call(t, "POST", api.PathReload, nil, 200, nil)
		waitFor(t, "10.0.0.13 gone after the reload", 5*time.Second, func() bool {
			for _, s := range l.services(t).Services {
				for _, b := range s.Backends {
					if b.Address == "10.0.0.13" {
						return false
					}
				}
			}
			return true
		})
		l.call(t, "PATCH", api.PathServices+"/api/backends/10.0.0.11", api.PatchBackend{Weight: ptr(3)}, 200, nil)
		l.call(t, "POST", api.PathServices+"/api/backends", api.AddBackend{Address: "10.0.0.13", Weight: ptr(2)}, 201, nil)
		waitFor(t, "added backend healthy", 5*time.Second, func() bool { return l.backend(t, "10.0.0.13").Healthy })
		if b := l.backend(t, "10.0.0.11"); b.Weight != 3 || b.Persisted {
			t.Errorf("after an add, the API-set weight: %+v, want weight 3, not persisted", b)
		}
		checkShares(t, l.shares(t, 4000), []uint32{3, 1, 2})
	})
	t.Run("l7", func(t *testing.T) {
		l := newL7Lab(t, 3, []int{0, 1}, "")
		l.call(t, "PATCH", api.PathServices+"/web/backends/"+l.addr(0), api.PatchBackend{Weight: ptr(3)}, 200, nil)
		l.call(t, "POST", api.PathServices+"/web/backends", api.AddBackend{Address: l.addr(2)}, 201, nil)
		l.waitHealthy(t, l.addr(2))
		if b, _ := l.backend(t, l.addr(0)); b.Weight != 3 || b.Persisted {
			t.Errorf("after an add, the API-set weight: %+v, want weight 3, not persisted", b)
		}
		// Smooth weighted round robin: exact shares over whole cycles.
		if c := l.count(t, 100); c["b1"] != 60 || c["b2"] != 20 || c["b3"] != 20 {
			t.Errorf("weights 3:1:1 after an add gave %v, want b1 60, b2 20, b3 20", c)
		}
		// A drain of another backend and its end leave the weight too.
		l.call(t, "PATCH", api.PathServices+"/web/backends/"+l.addr(1), api.PatchBackend{Drain: ptr(true)}, 200, nil)
		l.call(t, "PATCH", api.PathServices+"/web/backends/"+l.addr(1), api.PatchBackend{Drain: ptr(false)}, 200, nil)
		if c := l.count(t, 100); c["b1"] != 60 {
			t.Errorf("after a drain and undrain of b2, b1 (weight 3 of 5) got %v", c)
		}
	})
}

func TestRuntimeDeletedConfigBackendGoneUntilReload(t *testing.T) {
	t.Run("l4", func(t *testing.T) {
		l := newDaemonLab(t, "ipip", "")
		var ch api.Change
		l.call(t, "DELETE", api.PathServices+"/api/backends/10.0.0.13", nil, 200, &ch)
		if ch.Persisted || ch.Note != removedNote {
			t.Errorf("deleting a config backend answered %+v, want the note %q", ch, removedNote)
		}
		gone := func() bool {
			for _, s := range l.services(t).Services {
				for _, b := range s.Backends {
					if b.Address == "10.0.0.13" {
						return false
					}
				}
			}
			return true
		}
		waitFor(t, "10.0.0.13 removed after its drain (2s)", 5*time.Second, gone)
		time.Sleep(time.Second) // passing checks must not bring it back
		if !gone() {
			t.Fatal("removed config backend came back before a reload")
		}
		if c := l.shares(t, 300); c["b3"] != 0 {
			t.Errorf("removed backend got new connections: %v", c)
		}
		l.call(t, "POST", api.PathReload, nil, 200, nil)
		waitFor(t, "10.0.0.13 back and healthy after the reload", 5*time.Second, func() bool {
			return !gone() && l.backend(t, "10.0.0.13").Healthy
		})
		if b := l.backend(t, "10.0.0.13"); b.Source != "config" || !b.Persisted || b.Weight != 2 {
			t.Errorf("after the reload: %+v, want config, persisted, weight 2", b)
		}
		checkShares(t, l.shares(t, 4000), []uint32{1, 1, 2})
	})
	t.Run("l7", func(t *testing.T) {
		l := newL7Lab(t, 3, []int{0, 1, 2}, "")
		var ch api.Change
		l.call(t, "DELETE", api.PathServices+"/web/backends/"+l.addr(2), nil, 200, &ch)
		if ch.Persisted || ch.Note != removedNote {
			t.Errorf("deleting a config backend answered %+v, want the note %q", ch, removedNote)
		}
		if c := l.count(t, 20); c["b3"] != 0 {
			t.Errorf("draining backend got requests: %v", c)
		}
		waitFor(t, "b3 removed after its drain (2s)", 5*time.Second, func() bool { _, ok := l.backend(t, l.addr(2)); return !ok })
		time.Sleep(time.Second)
		if _, ok := l.backend(t, l.addr(2)); ok {
			t.Fatal("removed config backend came back before a reload")
		}
		if c := l.count(t, 20); c["b3"] != 0 {
			t.Errorf("removed backend got requests: %v", c)
		}
		l.call(t, "POST", api.PathReload, nil, 200, nil)
		l.waitHealthy(t, l.addr(2))
		if b, _ := l.backend(t, l.addr(2)); b.Source != "config" || !b.Persisted || b.Draining {
			t.Errorf("after the reload: %+v, want config, persisted, not draining", b)
		}
		if c := l.count(t, 30); c["b3"] != 10 {
			t.Errorf("b3 back after the reload should get a third: %v", c)
		}
	})
}

func TestRuntimeAPIAddedGoneAfterReload(t *testing.T) {
	t.Run("l4", func(t *testing.T) {
		l := newDaemonLab(t, "ipip", "")
		l.writeConfig(t, "ipip", []string{"10.0.0.11: 1", "10.0.0.12: 1"}, "")
		l.call(t, "POST", api.PathReload, nil, 200, nil)
		waitFor(t, "10.0.0.13 gone after the reload", 5*time.Second, func() bool {
			for _, b := range l.services(t).Services[0].Backends {
				if b.Address == "10.0.0.13" {
					return false
				}
			}
			return true
		})
		l.call(t, "POST", api.PathServices+"/api/backends", api.AddBackend{Address: "10.0.0.13"}, 201, nil)
		waitFor(t, "added backend healthy", 5*time.Second, func() bool { return l.backend(t, "10.0.0.13").Healthy })
		l.call(t, "POST", api.PathReload, nil, 200, nil)
		// Listed while it drains, or already gone: with no flows it goes
		// as soon as it is idle (a second after the reload at the soonest).
		for _, b := range l.services(t).Services[0].Backends {
			if b.Address == "10.0.0.13" && (!b.Draining || b.Weight != 0) {
				t.Errorf("API-added backend after a reload: %+v, want draining", b)
			}
		}
		if c := l.shares(t, 300); c["b3"] != 0 {
			t.Errorf("API-added backend got new connections after a reload: %v", c)
		}
		waitFor(t, "API-added backend gone after its drain", 5*time.Second, func() bool {
			for _, b := range l.services(t).Services[0].Backends {
				if b.Address == "10.0.0.13" {
					return false
				}
			}
			return true
		})
	})
	t.Run("l7", func(t *testing.T) {
		l := newL7Lab(t, 3, []int{0, 1}, "")
		l.call(t, "POST", api.PathServices+"/web/backends", api.AddBackend{Address: l.addr(2)}, 201, nil)
		l.waitHealthy(t, l.addr(2))
		if c := l.count(t, 30); c["b3"] != 10 {
			t.Errorf("added backend should get a third: %v", c)
		}
		l.call(t, "POST", api.PathReload, nil, 200, nil)
		// Listed while it drains, or already gone once idle.
		if b, ok := l.backend(t, l.addr(2)); ok && (!b.Draining || b.Source != "api") {
			t.Errorf("API-added backend right after a reload: %+v, want draining", b)
		}
		if c := l.count(t, 20); c["b3"] != 0 {
			t.Errorf("API-added backend got requests after a reload: %v", c)
		}
		waitFor(t, "API-added backend gone after its drain (2s)", 5*time.Second, func() bool { _, ok := l.backend(t, l.addr(2)); return !ok })
	})
}

// TestRuntimeL7AddKeepsCountersAndCertificates: an API add changes the
// service's backends only. The other backends' counters stay, and the
// certificate is not read again (a rotation half done on disk must not make
// an autoscaler's add fail).
func TestRuntimeL7AddKeepsCountersAndCertificates(t *testing.T) {
	buildBinaries(t)
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	l := newL7Lab(t, 3, []int{0, 1}, fmt.Sprintf("    tls: {cert_file: %q, key_file: %q}\n", cert, key))
	l.count(t, 20)
	before, _ := l.backend(t, l.addr(0))
	if before.Counters.Requests == 0 {
		t.Fatalf("b1 counted no requests: %+v", before)
	}
	// Mid-rotation: the new certificate is written, its key not yet.
	if err := os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nrotating\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.call(t, "POST", api.PathServices+"/web/backends", api.AddBackend{Address: l.addr(2)}, 201, nil)
	after, _ := l.backend(t, l.addr(0))
	if after.Counters.Requests != before.Counters.Requests {
		t.Errorf("b1's request counter went from %d to %d across an unrelated add", before.Counters.Requests, after.Counters.Requests)
	}
	l.waitHealthy(t, l.addr(2))
	if c := l.count(t, 30); c["b3"] != 10 {
		t.Errorf("added backend should get a third over TLS: %v", c)
	}
	if b, _ := l.backend(t, l.addr(0)); b.Counters.Requests != before.Counters.Requests+10 {
		t.Errorf("b1's counter: %d, want %d + 10", b.Counters.Requests, before.Counters.Requests)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xlb test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestRuntimeRestartDrainsAPIAddedL4Backend: a restart applies the file as a
// reload does. A backend the API added before the restart is not in the new
// table, keeps its established flows while it drains, and then goes.
func TestRuntimeRestartDrainsAPIAddedL4Backend(t *testing.T) {
	l := newDaemonLab(t, "ipip", "")
	l.writeConfig(t, "ipip", []string{"10.0.0.11: 1", "10.0.0.12: 1"}, "")
	l.call(t, "POST", api.PathReload, nil, 200, nil)
	listed := func() bool {
		for _, b := range l.services(t).Services[0].Backends {
			if b.Address == "10.0.0.13" {
				return true
			}
		}
		return false
	}
	waitFor(t, "10.0.0.13 gone after the reload", 5*time.Second, func() bool { return !listed() })
	l.call(t, "POST", api.PathServices+"/api/backends", api.AddBackend{Address: "10.0.0.13", Weight: ptr(8)}, 201, nil)
	waitFor(t, "added backend healthy", 5*time.Second, func() bool { return l.backend(t, "10.0.0.13").Healthy })
	var lc *longConn
	for range 30 {
		if c := l.openLong(t); c.backend == "b3" {
			lc = c
			break
		}
	}
	if lc == nil {
		t.Fatal("no connection reached the added backend (weight 8 of 10) in 30 tries")
	}
	l.stopDaemon(t)
	l.startDaemon(t)
	if b := l.backend(t, "10.0.0.13"); b.Source != "api" || !b.Draining || b.Weight != 0 {
		t.Errorf("API-added backend after a restart: %+v, want listed as api, draining", b)
	}
	lc.echo(t, "draining after the restart")
	if c := l.shares(t, 300); c["b3"] != 0 {
		t.Errorf("API-added backend got new connections after a restart: %v", c)
	}
	waitFor(t, "API-added backend gone after its drain (2s)", 5*time.Second, func() bool { return !listed() })
}
