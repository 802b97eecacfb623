package tlsconf

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
)

// sniCerts issues the certificates of TestServerSNI, the default first.
func sniCerts(t *testing.T, ca *testCA) []config.CertPair {
	return []config.CertPair{
		ca.issue(t, "a", leaf{cn: "a.example.com", dns: []string{"a.example.com"}}),
		ca.issue(t, "b", leaf{cn: "b", dns: []string{"*.b.example.com", "B.Example.COM"}}),
		ca.issue(t, "legacy", leaf{cn: "Legacy.Example.com"}),                                                        // no SAN: its CN counts
		ca.issue(t, "cn-ignored", leaf{cn: "cn.example.com", dns: []string{"san.example.com"}}),                      // a SAN: its CN does not
		ca.issue(t, "ip-only", leaf{cn: "ip.example.com", ips: []net.IP{net.IPv4(127, 0, 0, 1)}}),                    // a SAN too
		ca.issue(t, "a-again", leaf{cn: "a2", dns: []string{"a.example.com", "x.b.example.com", "*.c.example.com"}}), // loses to earlier ones
	}
}

func TestServerSNI(t *testing.T) {
	ca := newCA(t, "ca")
	pairs := sniCerts(t, ca)
	cfg, err := Server(&config.TLS{Certificates: pairs}, []string{"http1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sni  string
		want string // the certificate's base name
	}{
		{"a.example.com", "a"},
		{"A.EXAMPLE.com", "a"},
		{"a.example.com.", "a"},
		{"x.b.example.com", "a-again"}, // an exact name beats a wildcard, as in NGINX, whatever the order
		{"w.b.example.com", "b"},
		{"b.example.com", "b"},     // exact, with the case of the certificate ignored
		{"y.x.b.example.com", "a"}, // a wildcard covers one label only
		{".b.example.com", "a"},
		{"z.c.example.com", "a-again"},
		{"legacy.example.com", "legacy"},
		{"cn.example.com", "a"},
		{"san.example.com", "cn-ignored"},
		{"ip.example.com", "a"},
		{"", "a"},
		{"unknown.org", "a"},
		{strings.Repeat("a", 300), "a"},
	}
	byFile := map[string]string{}
	for _, p := range pairs {
		byFile[p.CertFile] = strings.TrimSuffix(filepath.Base(p.CertFile), ".pem")
	}
	leafs := map[string]string{} // base name -> leaf CN, to name what was picked
	for _, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		leafs[c.Leaf.Subject.CommonName] = byFile[p.CertFile]
	}
	for _, tt := range tests {
		got, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
		if err != nil {
			t.Fatalf("GetCertificate(%q): %v", tt.sni, err)
		}
		if name := leafs[got.Leaf.Subject.CommonName]; name != tt.want {
			t.Errorf("SNI %q: certificate %s, want %s", tt.sni, name, tt.want)
		}
	}

	// Over a real handshake too: the listener's configuration is the one
	// that chooses.
	addr := serve(t, cfg)
	for _, sni := range []string{"w.b.example.com", "legacy.example.com", "nothing.example.org"} {
		// crypto/tls verifies SANs only, so the CN-only certificate and
		// the default one are not checked here.
		st, err := handshake(addr, &tls.Config{ServerName: sni, RootCAs: ca.pool(), InsecureSkipVerify: sni != "w.b.example.com"})
		if err != nil {
			t.Fatalf("handshake for %q: %v", sni, err)
		}
		want := map[string]string{"w.b.example.com": "b", "legacy.example.com": "Legacy.Example.com", "nothing.example.org": "a.example.com"}[sni]
		if cn := st.PeerCertificates[0].Subject.CommonName; cn != want {
			t.Errorf("handshake for %q: certificate %q, want %q", sni, cn, want)
		}
	}
}

func TestServerSNINoAllocs(t *testing.T) {
	cfg, err := Server(&config.TLS{Certificates: sniCerts(t, newCA(t, "ca"))}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, sni := range []string{"A.Example.COM", "x.b.example.com", "y.x.b.example.com", "unknown.org"} {
		hello := &tls.ClientHelloInfo{ServerName: sni}
		if n := testing.AllocsPerRun(100, func() { cfg.GetCertificate(hello) }); n != 0 {
			t.Errorf("SNI %q: %v allocations per selection, want 0", sni, n)
		}
	}
}

func TestServerClientCA(t *testing.T) {
	ca, other := newCA(t, "ca"), newCA(t, "other")
	server := ca.issue(t, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})
	cfg, err := Server(&config.TLS{Certificates: []config.CertPair{server}, ClientCAFile: ca.pemFile}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	client := func(p *config.CertPair) *tls.Config {
		cc := &tls.Config{ServerName: "api.example.com", RootCAs: ca.pool()}
		if p != nil {
			c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			cc.Certificates = []tls.Certificate{c}
		}
		return cc
	}
	good := ca.issue(t, "client", leaf{cn: "client", client: true})
	bad := other.issue(t, "stranger", leaf{cn: "stranger", client: true})
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if _, err := handshake(addr, withMax(client(nil), version)); err == nil {
			t.Errorf("TLS %x: a client without a certificate got in", version)
		}
		if _, err := handshake(addr, withMax(client(&bad), version)); err == nil {
			t.Errorf("TLS %x: a client certificate from another CA got in", version)
		}
		st, err := handshake(addr, withMax(client(&good), version))
		if err != nil {
			t.Fatalf("TLS %x: a client certificate signed by the CA: %v", version, err)
		}
		if st.Version != version {
			t.Errorf("version %x, want %x", st.Version, version)
		}
	}
}

func withMax(c *tls.Config, v uint16) *tls.Config {
	c.MaxVersion = v
	return c
}

func TestServerMinVersion(t *testing.T) {
	ca := newCA(t, "ca")
	pair := ca.issue(t, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})
	for _, tt := range []struct {
		min    string
		client uint16
		ok     bool
	}{
		{"1.3", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, true},
		{"1.2", tls.VersionTLS12, true},
		{"", tls.VersionTLS12, true},
		{"", tls.VersionTLS11, false},
	} {
		cfg, err := Server(&config.TLS{Certificates: []config.CertPair{pair}, MinVersion: tt.min}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		addr := serve(t, cfg)
		_, err = handshake(addr, &tls.Config{ServerName: "api.example.com", RootCAs: ca.pool(), MinVersion: tls.VersionTLS10, MaxVersion: tt.client})
		if (err == nil) != tt.ok {
			t.Errorf("min_version %q, client up to %x: error %v, want success %v", tt.min, tt.client, err, tt.ok)
		}
	}
	if _, err := Server(&config.TLS{Certificates: []config.CertPair{pair}, MinVersion: "1.1"}, nil, nil); err == nil {
		t.Error("min_version 1.1 accepted")
	}
}

func TestServerALPN(t *testing.T) {
	for _, tt := range []struct {
		protocols []string
		want      []string
	}{
		{[]string{"http1", "h2"}, []string{"h2", "http/1.1"}},
		{[]string{"h2", "http1"}, []string{"h2", "http/1.1"}},
		{[]string{"http1"}, []string{"http/1.1"}},
		{[]string{"h2"}, []string{"h2"}},
	} {
		if got := ALPN(tt.protocols); !slices.Equal(got, tt.want) {
			t.Errorf("ALPN(%q) = %q, want %q", tt.protocols, got, tt.want)
		}
	}
	ca := newCA(t, "ca")
	pair := ca.issue(t, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})
	cfg, err := Server(&config.TLS{Certificates: []config.CertPair{pair}}, []string{"http1", "h2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := handshake(serve(t, cfg), &tls.Config{ServerName: "api.example.com", RootCAs: ca.pool(), NextProtos: []string{"http/1.1", "h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.NegotiatedProtocol != "h2" {
		t.Errorf("negotiated %q, want h2", st.NegotiatedProtocol)
	}
}

func TestServerBadFiles(t *testing.T) {
	ca := newCA(t, "ca")
	good := ca.issue(t, "good", leaf{cn: "a", dns: []string{"a"}})
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tt := range []struct {
		name string
		tls  config.TLS
		file string // the error must name it
	}{
		{"missing-cert", config.TLS{Certificates: []config.CertPair{good, {CertFile: missing, KeyFile: good.KeyFile}}}, missing},
		{"junk-key", config.TLS{Certificates: []config.CertPair{{CertFile: good.CertFile, KeyFile: junk}}}, junk},
		{"junk-client-ca", config.TLS{Certificates: []config.CertPair{good}, ClientCAFile: junk}, junk},
		{"missing-client-ca", config.TLS{Certificates: []config.CertPair{good}, ClientCAFile: missing}, missing},
	} {
		cfg, err := Server(&tt.tls, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tt.file) {
			t.Errorf("%s: Server = %v, %v; want an error naming %s", tt.name, cfg, err, tt.file)
		}
	}
	if _, err := Server(nil, nil, nil); err == nil {
		t.Error("Server(nil) succeeded")
	}
}

// ticketClient returns a client of api.example.com with its own session
// cache.
func ticketClient(ca *testCA, version uint16) *tls.Config {
	return &tls.Config{ServerName: "api.example.com", RootCAs: ca.pool(), MaxVersion: version, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
}

func resumes(t *testing.T, addr string, cc *tls.Config) bool {
	t.Helper()
	st, err := handshake(addr, cc)
	if err != nil {
		t.Fatal(err)
	}
	return st.DidResume
}

func TestTicketsAcrossConfigs(t *testing.T) {
	ca := newCA(t, "ca")
	pair := ca.issue(t, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})
	tc := &config.TLS{Certificates: []config.CertPair{pair}}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		keys := NewTicketKeys(time.Hour, 3)
		t.Cleanup(keys.Stop)
		build := func(k *TicketKeys) string {
			cfg, err := Server(tc, []string{"http1"}, k)
			if err != nil {
				t.Fatal(err)
			}
			return serve(t, cfg)
		}
		one, two := build(keys), build(keys)
		stranger := build(NewTicketKeys(time.Hour, 3)) // another service

		cc := ticketClient(ca, version)
		if resumes(t, one, cc) {
			t.Fatalf("TLS %x: the first handshake resumed", version)
		}
		if !resumes(t, two, cc) {
			t.Errorf("TLS %x: a ticket from one configuration of the service did not resume on another", version)
		}
		if resumes(t, stranger, ticketClient(ca, version)) {
			t.Fatalf("TLS %x: a fresh client resumed", version)
		}
		if resumes(t, stranger, cc) {
			t.Errorf("TLS %x: a ticket of one service resumed on another", version)
		}

		// A ticket lives through keep-1 rotations, not keep.
		cc = ticketClient(ca, version)
		resumes(t, one, cc)
		keys.Rotate()
		keys.Rotate()
		if !resumes(t, two, cc) {
			t.Errorf("TLS %x: a ticket two rotations old (keep 3) did not resume", version)
		}
		cc = ticketClient(ca, version)
		resumes(t, one, cc)
		keys.Rotate()
		keys.Rotate()
		keys.Rotate()
		if resumes(t, two, cc) {
			t.Errorf("TLS %x: a ticket three rotations old (keep 3) resumed", version)
		}
	}
}

func TestTicketsRotateOnTime(t *testing.T) {
	ca := newCA(t, "ca")
	pair := ca.issue(t, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})
	keys := NewTicketKeys(20*time.Millisecond, 2)
	t.Cleanup(keys.Stop)
	cfg, err := Server(&config.TLS{Certificates: []config.CertPair{pair}}, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	cc := ticketClient(ca, tls.VersionTLS13)
	keys.mu.Lock()
	first := keys.keys[0]
	keys.mu.Unlock()
	resumes(t, addr, cc)
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys.mu.Lock()
		gone := !slices.Contains(keys.keys, first)
		keys.mu.Unlock()
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first key is still kept after 10s of 20ms rotations")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if resumes(t, addr, cc) {
		t.Error("a ticket resumed after its key rotated out")
	}
}

// TestTicketsNotAcrossClientCAs guards the promise of TicketKeys that
// shared keys do not let a session verified under old client CAs resume
// under new ones.
func TestTicketsNotAcrossClientCAs(t *testing.T) {
	ca, other := newCA(t, "ca"), newCA(t, "other")
	pair := ca.issue(t, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})
	client := ca.issue(t, "client", leaf{cn: "client", client: true})
	keys := NewTicketKeys(time.Hour, 3)
	t.Cleanup(keys.Stop)
	build := func(clientCA string) string {
		cfg, err := Server(&config.TLS{Certificates: []config.CertPair{pair}, ClientCAFile: clientCA}, nil, keys)
		if err != nil {
			t.Fatal(err)
		}
		return serve(t, cfg)
	}
	before, same := build(ca.pemFile), build(ca.pemFile)
	after := build(other.pemFile) // a reload that trusts other clients
	cc := ticketClient(ca, tls.VersionTLS13)
	c, err := tls.LoadX509KeyPair(client.CertFile, client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cc.Certificates = []tls.Certificate{c}
	resumes(t, before, cc)
	if !resumes(t, same, cc) {
		t.Error("a ticket did not resume under the same client CAs")
	}
	if st, err := handshake(after, cc); err == nil && st.DidResume {
		t.Error("a ticket issued under the old client CAs resumed under the new ones")
	}
}

// TestTicketsClone covers a caller that serves a Clone, as
// http.Server.ServeTLS does: the copy must not keep the keys of the moment
// it was made.
func TestTicketsClone(t *testing.T) {
	ca := newCA(t, "ca")
	pair := ca.issue(t, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})
	keys := NewTicketKeys(time.Hour, 3)
	t.Cleanup(keys.Stop)
	cfg, err := Server(&config.TLS{Certificates: []config.CertPair{pair}}, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	clone := cfg.Clone()
	for range 3 {
		keys.Rotate()
	}
	orig, copied := serve(t, cfg), serve(t, clone)
	cc := ticketClient(ca, tls.VersionTLS13)
	resumes(t, orig, cc)
	if !resumes(t, copied, cc) {
		t.Error("a clone made before three rotations did not resume a ticket of the current key")
	}
}

// TestTicketKeysForgetCollectedConfigs checks that configurations a reload
// dropped do not pile up in the keys.
func TestTicketKeysForgetCollectedConfigs(t *testing.T) {
	ca := newCA(t, "ca")
	tc := &config.TLS{Certificates: []config.CertPair{ca.issue(t, "server", leaf{cn: "a", dns: []string{"a"}})}}
	keys := NewTicketKeys(time.Hour, 3)
	t.Cleanup(keys.Stop)
	kept, err := Server(tc, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := Server(tc, nil, keys); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	keys.Rotate()
	keys.mu.Lock()
	n := len(keys.configs)
	keys.mu.Unlock()
	if n > 5 { // the collector may keep a few
		t.Errorf("%d configurations remembered after a collection, want about 1", n)
	}
	runtime.KeepAlive(kept)
}
