package l7_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testpki"
	"github.com/xlbproject/xlb/l7"
)

// tlsGet makes one HTTP/1.1 request over a new TLS connection with conf.
func tlsGet(t *testing.T, addr string, conf *tls.Config) (*http.Response, string, error) {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{TLSClientConfig: conf, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(b)), nil
}

// TestTLSCertificatesBySNI: a listener with several certificates answers
// each client with the one its SNI names (exact, then *.wildcard), and
// with the first when nothing matches.
func TestTLSCertificatesBySNI(t *testing.T) {
	ca := testpki.NewCA(t, "sni")
	c1, k1 := ca.Issue(t, "api.example.com")
	c2, k2 := ca.Issue(t, "*.apps.example.com")
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a)+fmt.Sprintf("tls:\n  certificates:\n    - {cert_file: %q, key_file: %q}\n    - {cert_file: %q, key_file: %q}\n", c1, k1, c2, k2), "")
	for _, tc := range []struct{ sni, want string }{
		{"api.example.com", "api.example.com"},
		{"shop.apps.example.com", "*.apps.example.com"},
		{"a.b.apps.example.com", "api.example.com"}, // a wildcard covers one label
		{"unknown.test", "api.example.com"},
	} {
		resp, body, err := tlsGet(t, p.listen, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("SNI %s: %v", tc.sni, err)
		}
		if got := resp.TLS.PeerCertificates[0].DNSNames[0]; got != tc.want || body != "a" {
			t.Errorf("SNI %s: certificate for %s and body %q, want %s and a", tc.sni, got, body, tc.want)
		}
	}
}

// TestTLSClientCertificates: with client_ca_file, a client without a
// certificate, or with one from another CA, is refused; one signed by the
// CA is served. min_version 1.3 refuses a TLS 1.2 client.
func TestTLSClientCertificates(t *testing.T) {
	ca, other := testpki.NewCA(t, "clients"), testpki.NewCA(t, "other")
	cert, key := ca.Issue(t, "127.0.0.1")
	a := newBackend(t, "a", nil)
	p := startProxy(t, backendsYAML(a)+fmt.Sprintf("tls: {cert_file: %q, key_file: %q, client_ca_file: %q, min_version: \"1.3\"}\n", cert, key, ca.File), "")
	base := &tls.Config{RootCAs: ca.Pool}
	if _, _, err := tlsGet(t, p.listen, base); err == nil {
		t.Error("a client without a certificate was served")
	}
	bad := base.Clone()
	bad.Certificates = []tls.Certificate{other.Pair(t, "client")}
	if _, _, err := tlsGet(t, p.listen, bad); err == nil {
		t.Error("a client with another CA's certificate was served")
	}
	good := base.Clone()
	good.Certificates = []tls.Certificate{ca.Pair(t, "client")}
	if _, body, err := tlsGet(t, p.listen, good); err != nil || body != "a" {
		t.Errorf("a client with the CA's certificate: %q, %v", body, err)
	}
	old := good.Clone()
	old.MaxVersion = tls.VersionTLS12
	if _, _, err := tlsGet(t, p.listen, old); err == nil {
		t.Error("a TLS 1.2 client was served with min_version 1.3")
	}
}

// TestTLSResumptionAcrossReload: session tickets are issued under keys
// kept per service, so a client resumes its session after a reload (which
// builds the TLS configuration anew) instead of paying a full handshake.
func TestTLSResumptionAcrossReload(t *testing.T) {
	ca := testpki.NewCA(t, "resume")
	cert, key := ca.Issue(t, "127.0.0.1")
	a := newBackend(t, "a", nil)
	svc := backendsYAML(a) + fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", cert, key)
	p := startProxy(t, svc, "")
	conf := &tls.Config{RootCAs: ca.Pool, ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	resumed := func() bool {
		resp, body, err := tlsGet(t, p.listen, conf)
		if err != nil || body != "a" {
			t.Fatalf("request: %q, %v", body, err)
		}
		return resp.TLS.DidResume
	}
	if resumed() {
		t.Fatal("the first connection resumed a session")
	}
	if !resumed() {
		t.Error("the second connection did not resume")
	}
	p.apply(t, svc, "")
	if !resumed() {
		t.Error("after a reload the client could not resume its session")
	}
}

// TestHTTPSBackends: backend_protocol https speaks TLS to the backends,
// verified against backend_tls.ca_file: a backend whose certificate that
// CA did not sign gets no request (502), and the backend is named by its
// address for verification.
func TestHTTPSBackends(t *testing.T) {
	ca, other := testpki.NewCA(t, "backends"), testpki.NewCA(t, "impostor")
	serve := func(ca *testpki.CA) *httptest.Server {
		b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "tls=%v proto=%s", r.TLS != nil, r.Header.Get("X-Forwarded-Proto"))
		}))
		b.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Pair(t, "127.0.0.1")}}
		b.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
		b.StartTLS()
		t.Cleanup(b.Close)
		return b
	}
	good, bad := serve(ca), serve(other)
	for _, tc := range []struct {
		name, addr string
		status     int
		body       string
	}{
		{"trusted", strings.TrimPrefix(good.URL, "https://"), 200, "tls=true proto=http"},
		{"untrusted", strings.TrimPrefix(bad.URL, "https://"), 502, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, fmt.Sprintf("backends: [{address: %q}]\nbackend_protocol: https\nbackend_tls: {ca_file: %q}\nretries: {attempts: 0}\n", tc.addr, ca.File), "")
			resp, body := get(t, p.url+"/", nil)
			if resp.StatusCode != tc.status || (tc.body != "" && body != tc.body) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
		})
	}
}

// TestHTTP2BackendsOverTLS: backend_protocol h2 speaks HTTP/2 over TLS to
// the backends (ALPN h2), verified against backend_tls.ca_file, whatever
// the client speaks; a backend the CA did not sign gets no request.
func TestHTTP2BackendsOverTLS(t *testing.T) {
	ca, other := testpki.NewCA(t, "h2 backends"), testpki.NewCA(t, "impostor")
	serve := func(ca *testpki.CA) string {
		b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil)
		}))
		b.EnableHTTP2 = true
		b.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Pair(t, "127.0.0.1")}}
		b.Config.ErrorLog = log.New(io.Discard, "", 0)
		b.StartTLS()
		t.Cleanup(b.Close)
		return strings.TrimPrefix(b.URL, "https://")
	}
	for _, tc := range []struct {
		name, addr string
		status     int
		body       string
	}{
		{"trusted", serve(ca), 200, "HTTP/2.0 tls=true"},
		{"untrusted", serve(other), 502, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, fmt.Sprintf("backends: [{address: %q}]\nbackend_protocol: h2\nbackend_tls: {ca_file: %q}\nretries: {attempts: 0}\n", tc.addr, ca.File), "")
			// A trusted backend serves every request on its multiplexed
			// connection; an untrusted one fails the first (then passive
			// health ejects it).
			n := 1
			if tc.status == 200 {
				n = 3
			}
			for range n {
				resp, body := get(t, p.url+"/", nil)
				if resp.StatusCode != tc.status || (tc.body != "" && body != tc.body) {
					t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
				}
			}
		})
	}
}

// TestSetBackendsKeepsBackendTLS: a runtime change of backends keeps the
// service's backend TLS client (its CA as read at the last Apply, its
// session caches): it does not read the files again, so a CA file that is
// being replaced cannot fail an autoscaler's add.
func TestSetBackendsKeepsBackendTLS(t *testing.T) {
	ca := testpki.NewCA(t, "backends")
	serve := func() string {
		b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		b.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Pair(t, "127.0.0.1")}}
		b.StartTLS()
		t.Cleanup(b.Close)
		return strings.TrimPrefix(b.URL, "https://")
	}
	a1, a2 := serve(), serve()
	dir := t.TempDir()
	caFile := dir + "/ca.pem"
	b, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(caFile, b, 0o600)
	p := startProxy(t, fmt.Sprintf("backends: [{address: %q}]\nbackend_protocol: https\nbackend_tls: {ca_file: %q}\n", a1, caFile), "")
	before := p.srv.BackendTLS("web", a1)
	os.Remove(caFile)
	if err := p.srv.SetBackends("web", []l7.BackendSpec{{Address: a1, Weight: 1}, {Address: a2, Weight: 1}}); err != nil {
		t.Fatalf("SetBackends with the CA file gone: %v", err)
	}
	if after := p.srv.BackendTLS("web", a1); after != before {
		t.Error("SetBackends replaced a kept backend's TLS configuration (and its session cache)")
	}
	if p.srv.BackendTLS("web", a2) == nil {
		t.Error("the added backend has no TLS configuration")
	}
	if resp, body := get(t, p.url+"/", nil); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("after SetBackends: %d %q", resp.StatusCode, body)
	}
}

// TestLeastTimeLeavesOutTheHandshake: least_time averages how long a
// backend takes to answer a request sent to it, not the dial and TLS
// handshake of a new connection: counted in, the first request to each of
// two equal backends was many times slower than the next ones, and the
// backend that got its second request first took every request until the
// other's sample went stale. The backend here spends 50ms on each
// handshake and answers at once: the first request's sample, which the
// handshake delays by 50ms, must not hold them.
func TestLeastTimeLeavesOutTheHandshake(t *testing.T) {
	const handshake = 50 * time.Millisecond
	ca := testpki.NewCA(t, "backends")
	pair := ca.Pair(t, "127.0.0.1")
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		time.Sleep(handshake)
		return nil, nil // the Config as it is
	}}
	b.StartTLS()
	t.Cleanup(b.Close)
	addr := strings.TrimPrefix(b.URL, "https://")
	p := startProxy(t, fmt.Sprintf("backends: [{address: %q}]\nscheduler: least_time\nbackend_protocol: https\nbackend_tls: {ca_file: %q}\n", addr, ca.File), "")
	start := time.Now()
	if resp, body := get(t, p.url+"/", nil); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if took := time.Since(start); took < handshake {
		t.Fatalf("the first request took %v: it did not wait for a handshake of %v", took, handshake)
	}
	st, _ := p.srv.Status("web")
	if len(st) != 1 || st[0].Latency <= 0 || st[0].Latency >= handshake {
		t.Errorf("after one request on a new connection: %+v, want a latency above 0 and below the handshake's %v", st, handshake)
	}
}
