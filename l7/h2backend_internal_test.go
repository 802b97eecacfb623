package l7

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestH2TransportOverTLS: the HTTP/2 backend client speaks TLS when given
// a configuration (backend_protocol h2), and a backend that does not choose
// h2 by ALPN fails as a connect error would (retried elsewhere, counted
// against it). tls_test.go sends requests through it.
func TestH2TransportOverTLS(t *testing.T) {
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	h1 := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer h1.Close()

	roots := x509.NewCertPool()
	roots.AddCert(h2.Certificate())
	roots.AddCert(h1.Certificate())
	tc := &tls.Config{RootCAs: roots, ServerName: "example.com"}
	dial := func(srv *httptest.Server) error {
		cp := newConnPool(srv.Listener.Addr().String(), 2*time.Second, tc, 1)
		cp.h2 = newH2Backend(cp)
		defer cp.close()
		c, err := cp.h2.conn()
		if err == nil {
			c.done()
		}
		return err
	}
	if err := dial(h2); err != nil {
		t.Errorf("an h2 backend over TLS: %v", err)
	}
	err := dial(h1)
	var op *net.OpError
	// Go's server refuses the handshake (no_application_protocol); others
	// complete it without ALPN, which the client refuses.
	if !errors.As(err, &op) || op.Op != "dial" || !(strings.Contains(err.Error(), "not h2") || strings.Contains(err.Error(), "no application protocol")) {
		t.Errorf("a TLS backend without h2: %v, want a dial error saying it speaks no h2", err)
	}
}
