package tlsconf

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/config"
)

// backendServer serves TLS on loopback with a certificate of ca for
// backend.test and 127.0.0.1; clientCA, if set, must sign the client's.
func backendServer(t *testing.T, ca *testCA, clientCA *testCA) string {
	t.Helper()
	p := ca.issue(t, "backend", leaf{cn: "backend.test", dns: []string{"backend.test"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{c}}
	if clientCA != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCA.pool(), tls.RequireAndVerifyClientCert
	}
	return serve(t, cfg)
}

func TestBackendVerifiesServer(t *testing.T) {
	ca, other := newCA(t, "ca"), newCA(t, "other")
	addr := backendServer(t, ca, nil)
	for _, tt := range []struct {
		name string
		bt   *config.BackendTLS
		ok   bool
	}{
		{"right-ca", &config.BackendTLS{CAFile: ca.pemFile}, true},
		{"other-ca", &config.BackendTLS{CAFile: other.pemFile}, false},
		{"system-roots", nil, false},
		{"server-name", &config.BackendTLS{CAFile: ca.pemFile, ServerName: "backend.test"}, true},
		{"wrong-server-name", &config.BackendTLS{CAFile: ca.pemFile, ServerName: "other.test"}, false},
	} {
		cl, err := Backend(tt.bt)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		_, err = handshake(addr, cl.For(addr))
		if (err == nil) != tt.ok {
			t.Errorf("%s: handshake error %v, want success %v", tt.name, err, tt.ok)
		}
	}
}

func TestBackendConfig(t *testing.T) {
	ca := newCA(t, "ca")
	cl, err := Backend(&config.BackendTLS{CAFile: ca.pemFile})
	if err != nil {
		t.Fatal(err)
	}
	a, b := cl.For("10.0.0.1:443"), cl.For("api.internal:8443")
	if a.ServerName != "10.0.0.1" || b.ServerName != "api.internal" || cl.For("api.internal").ServerName != "api.internal" {
		t.Errorf("server names %q %q, want each backend's host", a.ServerName, b.ServerName)
	}
	if a.MinVersion != tls.VersionTLS12 || a.RootCAs == nil || a.ClientSessionCache == nil || a.ClientSessionCache == b.ClientSessionCache {
		t.Errorf("config %+v: want TLS 1.2 at least, the CA file's roots, a session cache of its own", a)
	}
	if cl.For("10.0.0.1:443") != a {
		t.Error("For gave another configuration for the same backend")
	}
	cl.Forget("10.0.0.1:443")
	if cl.For("10.0.0.1:443") == a {
		t.Error("For kept the configuration of a forgotten backend")
	}
	named, err := Backend(&config.BackendTLS{ServerName: "api.internal"})
	if err != nil {
		t.Fatal(err)
	}
	if c := named.For("10.0.0.1:443"); c.ServerName != "api.internal" || c.RootCAs != nil {
		t.Errorf("server name %q roots %v, want api.internal and the system's", c.ServerName, c.RootCAs)
	}
}

func TestBackendClientCertificate(t *testing.T) {
	ca, clients := newCA(t, "ca"), newCA(t, "clients")
	addr := backendServer(t, ca, clients)
	p := clients.issue(t, "proxy", leaf{cn: "xlb", client: true})
	without, err := Backend(&config.BackendTLS{CAFile: ca.pemFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(addr, without.For(addr)); err == nil {
		t.Error("a backend that wants a client certificate accepted none")
	}
	with, err := Backend(&config.BackendTLS{CAFile: ca.pemFile, CertFile: p.CertFile, KeyFile: p.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(addr, with.For(addr)); err != nil {
		t.Errorf("with the client certificate: %v", err)
	}
}

func TestBackendResumes(t *testing.T) {
	ca := newCA(t, "ca")
	addr := backendServer(t, ca, nil)
	cl, err := Backend(&config.BackendTLS{CAFile: ca.pemFile})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, true} {
		st, err := handshake(addr, cl.For(addr))
		if err != nil {
			t.Fatal(err)
		}
		if st.DidResume != want {
			t.Errorf("connection %d: resumed %v, want %v", i, st.DidResume, want)
		}
	}
}

func TestBackendBadFiles(t *testing.T) {
	ca := newCA(t, "ca")
	p := ca.issue(t, "proxy", leaf{cn: "xlb", client: true})
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		bt   config.BackendTLS
		file string
	}{
		{config.BackendTLS{CAFile: junk}, junk},
		{config.BackendTLS{CAFile: filepath.Join(ca.dir, "missing.pem")}, "missing.pem"},
		{config.BackendTLS{CertFile: p.CertFile, KeyFile: junk}, junk},
		{config.BackendTLS{CertFile: junk, KeyFile: p.KeyFile}, junk},
	} {
		if _, err := Backend(&tt.bt); err == nil || !strings.Contains(err.Error(), tt.file) {
			t.Errorf("Backend(%+v) = %v, want an error naming %s", tt.bt, err, tt.file)
		}
	}
}
