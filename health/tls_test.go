package health

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tlsBackend is an HTTPS server on 127.0.0.1 (httptest's certificate, for
// example.com and 127.0.0.1) answering 200 and counting requests that
// came over TLS.
func tlsBackend(t *testing.T) (srv *httptest.Server, overTLS *atomic.Int64) {
	t.Helper()
	overTLS = new(atomic.Int64)
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			overTLS.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, overTLS
}

func roots(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

func TestHTTPOverTLS(t *testing.T) {
	t.Parallel()
	srv, overTLS := tlsBackend(t)
	addr := srv.Listener.Addr().String()
	spec := httpSpec(50*time.Millisecond, 1, 1)
	withTLS := spec
	withTLS.TLS = &tls.Config{RootCAs: roots(srv)} // server name: Addr's host, an IP the certificate carries
	named := spec
	named.TLS = &tls.Config{RootCAs: roots(srv), ServerName: "example.com"}
	wrongCA := spec
	wrongCA.TLS = &tls.Config{RootCAs: x509.NewCertPool()}
	wrongName := spec
	wrongName.TLS = &tls.Config{RootCAs: roots(srv), ServerName: "other.test"}

	c := NewChecker(Options{})
	c.Set([]Target{
		{Key: "tls", Addr: addr, Spec: withTLS},
		{Key: "named", Addr: addr, Spec: named},
		{Key: "plain", Addr: addr, Spec: spec}, // cleartext to an HTTPS port: 400
		{Key: "wrong-ca", Addr: addr, Spec: wrongCA},
		{Key: "wrong-name", Addr: addr, Spec: wrongName},
	}, map[string]bool{"plain": true, "wrong-ca": true, "wrong-name": true})
	run(t, c)

	for _, key := range []string{"tls", "named"} {
		waitFor(t, within(1, spec.Interval), key+" up", up(c, key))
	}
	if overTLS.Load() == 0 {
		t.Error("the server saw no request over TLS")
	}
	for _, tt := range []struct{ key, reason string }{
		{"plain", "status 400"},
		{"wrong-ca", "tls handshake: tls: failed to verify certificate"},
		{"wrong-name", "tls handshake: tls: failed to verify certificate"},
	} {
		waitFor(t, within(1, spec.Interval), tt.key+" down", down(c, tt.key))
		if st, _ := c.State(tt.key); !strings.Contains(st.LastError, tt.reason) {
			t.Errorf("%s: LastError %q, want it to contain %q", tt.key, st.LastError, tt.reason)
		}
	}
}

// TestSetTakesNewTLSConfig checks that a reload's new but equivalent TLS
// configuration keeps the target's state, and that turning TLS off is a
// new check.
func TestSetTakesNewTLSConfig(t *testing.T) {
	t.Parallel()
	srv, _ := tlsBackend(t)
	addr := srv.Listener.Addr().String()
	spec := httpSpec(50*time.Millisecond, 1, 1)
	spec.TLS = &tls.Config{RootCAs: x509.NewCertPool()} // trusts nothing: down
	c := NewChecker(Options{})
	c.Set([]Target{{Key: "k", Addr: addr, Spec: spec}}, map[string]bool{"k": true})
	stop := run(t, c)
	waitFor(t, within(1, spec.Interval), "down with no roots", down(c, "k"))

	before, _ := c.State("k")
	spec.TLS = &tls.Config{RootCAs: roots(srv)}
	c.Set([]Target{{Key: "k", Addr: addr, Spec: spec}}, nil)
	if st, _ := c.State("k"); !st.Checked || st.Failures < before.Failures {
		t.Errorf("a new TLS configuration restarted the target: before %+v, after %+v", before, st)
	}
	waitFor(t, within(1, spec.Interval), "up with the new roots", up(c, "k"))

	stop()
	spec.TLS = nil
	c.Set([]Target{{Key: "k", Addr: addr, Spec: spec}}, nil)
	if st, _ := c.State("k"); st.Checked {
		t.Errorf("turning TLS off kept the old results: %+v", st)
	}
}
