package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for names and its key as
// dir/base.pem and dir/base-key.pem, and returns their paths.
func writeCert(t *testing.T, dir, base string, names ...string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// tlsDir returns a folder holding the certificates a.pem (a-key.pem), b.pem
// (b-key.pem) and ca.pem, and junk.pem, which holds no PEM.
func tlsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeCert(t, dir, "a", "a.example.com")
	writeCert(t, dir, "b", "b.example.com", "*.b.example.com")
	writeCert(t, dir, "ca", "ca.example.com")
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestParseTLSErrors checks the errors of the keys for TLS and for the
// protocols on both sides. $D in an input or message is the folder of
// tlsDir; the config file lives there too, so relative names resolve in it.
func TestParseTLSErrors(t *testing.T) {
	dir := tlsDir(t)
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"both-forms", l7 + `    tls:
      cert_file: a.pem
      key_file: a-key.pem
      certificates: [{cert_file: b.pem, key_file: b-key.pem}]
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:8: services[0].tls.certificates: give either cert_file and key_file (one certificate) or certificates (several), not both`}},
		{"certificates-items", l7 + `    tls:
      certificates:
        - {cert_file: a.pem}
        - {}
        -
        - {cert: b.pem, key_file: b-key.pem}
        - {cert_file: a.pem, key_file: a-key.pem}
        - {cert_file: b.pem, key_file: b-key.pem}
        - {cert_file: $D/a.pem, key_file: a-key.pem}
        - a.pem
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:7: services[0].tls.certificates[0].key_file: missing; cert_file needs its private key (key_file)`,
			`xlb.yaml:8: services[0].tls.certificates[1]: empty; give cert_file and key_file`,
			`xlb.yaml:9: services[0].tls.certificates[2]: empty; give cert_file and key_file`,
			`xlb.yaml:10: services[0].tls.certificates[3].cert_file: missing; key_file needs its certificate (cert_file)`,
			`xlb.yaml:10: services[0].tls.certificates[3].cert: unknown key; did you mean "cert_file"?`,
			`xlb.yaml:13: services[0].tls.certificates[6].cert_file: certificate $D/a.pem is listed twice (first on line 11)`,
			`xlb.yaml:14: services[0].tls.certificates[7]: expected a mapping like {cert_file: api.crt, key_file: api.key}, got "a.pem"`,
		}},
		{"files-that-are-not-certificates", l7 + `    tls:
      certificates:
        - {cert_file: junk.pem, key_file: a-key.pem}
        - {cert_file: a.pem, key_file: b-key.pem}
        - {cert_file: a.pem, key_file: junk.pem}
        - {cert_file: nope.pem, key_file: nope-key.pem}
      client_ca_file: junk.pem
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:7: services[0].tls.certificates[0].cert_file: $D/junk.pem holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
			`xlb.yaml:8: services[0].tls.certificates[1].key_file: $D/b-key.pem is not the private key of $D/a.pem: private key does not match public key`,
			`xlb.yaml:9: services[0].tls.certificates[2].key_file: $D/junk.pem is not the private key of $D/a.pem: failed to find any PEM data in key input`,
			`xlb.yaml:10: services[0].tls.certificates[3].cert_file: file $D/nope.pem does not exist`,
			`xlb.yaml:10: services[0].tls.certificates[3].key_file: file $D/nope-key.pem does not exist`,
			`xlb.yaml:11: services[0].tls.client_ca_file: $D/junk.pem holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
		}},
		{"min-version", l7 + `    tls: {cert_file: a.pem, key_file: a-key.pem, min_version: 1.1}
    backends: [{address: 127.0.0.1:9001}]
  - name: web2
    layer: 7
    listen: 0.0.0.0:8081
    tls: {cert_file: a.pem, key_file: a-key.pem, min_version: "1.4"}
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:5: services[0].tls.min_version: TLS 1.1 is not offered (it is deprecated, RFC 8996); use "1.2" or "1.3"`,
			`xlb.yaml:10: services[1].tls.min_version: must be "1.2" or "1.3", got "1.4"`,
		}},
		{"settings-without-certificate", l7 + `    tls: {cert_file: "", client_ca_file: ca.pem}
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:5: services[0].tls: no certificate: give cert_file and key_file, or certificates; without one the service serves plain HTTP`}},
		// Only cert_file and key_file written empty leave TLS off (a
		// template's way); any other block without a certificate asks for
		// TLS and would get cleartext.
		{"certificates-empty", l7 + `    tls: {certificates: []}
    backends: [{address: 127.0.0.1:9001}]
  - name: web2
    layer: 7
    listen: 0.0.0.0:8081
    tls:
      cert_file: ""
      key_file: ""
      certificates: []
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:5: services[0].tls.certificates: empty: list at least one {cert_file, key_file}; without a certificate the service serves plain HTTP (to mean that, remove tls)`,
			`xlb.yaml:13: services[1].tls.certificates: empty: list at least one {cert_file, key_file}; without a certificate the service serves plain HTTP (to mean that, remove tls)`,
		}},
		{"block-without-certificate", l7 + `    tls: {}
    backends: [{address: 127.0.0.1:9001}]
  - name: web2
    layer: 7
    listen: 0.0.0.0:8081
    tls: {certificates: ~}
    backends: [{address: 127.0.0.1:9001}]
  - name: web3
    layer: 7
    listen: 0.0.0.0:8082
    tls: {certificates: [], min_version: "1.3"}
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:5: services[0].tls: no certificate: give cert_file and key_file, or certificates; without one the service serves plain HTTP`,
			`xlb.yaml:10: services[1].tls: no certificate: give cert_file and key_file, or certificates; without one the service serves plain HTTP`,
			`xlb.yaml:15: services[2].tls: no certificate: give cert_file and key_file, or certificates; without one the service serves plain HTTP`,
		}},
		{"certificates-not-a-list", l7 + `    tls: {certificates: a.pem}
    backends: [{address: 127.0.0.1:9001}]
`, []string{`xlb.yaml:5: services[0].tls.certificates: expected a list like [{cert_file: api.crt, key_file: api.key}], got "a.pem"`}},
		{"protocols", l7 + `    protocols: []
    backends: [{address: 127.0.0.1:9001}]
  - name: web2
    layer: 7
    listen: 0.0.0.0:8081
    protocols: [h2, http3, h2, HTTP1]
    backends: [{address: 127.0.0.1:9001}]
  - name: web3
    layer: 7
    listen: 0.0.0.0:8082
    protocols: h2
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:5: services[0].protocols: empty; list what clients may speak: http1, h2 or both`,
			`xlb.yaml:10: services[1].protocols[1]: must be http1 or h2, got "http3"; did you mean http1?`,
			`xlb.yaml:10: services[1].protocols[2]: h2 is listed twice (first on line 10)`,
			`xlb.yaml:10: services[1].protocols[3]: must be http1 or h2, got "HTTP1"; did you mean http1?`,
			`xlb.yaml:15: services[2].protocols: expected a list like [http1, h2], got "h2"`,
		}},
		{"backend-protocol", l7 + `    backend_protocol: h2c
    backends: [{address: 127.0.0.1:9001}]
  - name: web2
    layer: 7
    listen: 0.0.0.0:8081
    backend_protocol: h2
    backend_tls: {server_name: api.internal}
    backends: [{address: 127.0.0.1:9001}]
  - name: web3
    layer: 7
    listen: 0.0.0.0:8082
    backend_protocol: grpc
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:16: services[2].backend_protocol: must be http1, https, h2c or h2, got "grpc"`,
		}},
		{"backend-tls", l7 + `    backend_tls: {ca_file: ca.pem}
    backends: [{address: 127.0.0.1:9001}]
  - name: web2
    layer: 7
    listen: 0.0.0.0:8081
    backend_protocol: https
    backend_tls: {ca_file: missing.pem, server_name: "a b", cert_file: a.pem, cafile: x}
    backends: [{address: 127.0.0.1:9001}]
  - name: web3
    layer: 7
    listen: 0.0.0.0:8082
    backend_protocol: https
    backend_tls: {key_file: a-key.pem}
    backends: [{address: 127.0.0.1:9001}]
`, []string{
			`xlb.yaml:5: services[0].backend_tls: applies to backends spoken to over TLS only, and this service's backend_protocol is http1; set backend_protocol: https`,
			`xlb.yaml:11: services[1].backend_tls.key_file: missing; cert_file needs its private key (key_file)`,
			`xlb.yaml:11: services[1].backend_tls.ca_file: file $D/missing.pem does not exist`,
			`xlb.yaml:11: services[1].backend_tls.server_name: "a b" is neither a host name nor an IP address`,
			`xlb.yaml:11: services[1].backend_tls.cafile: unknown key; did you mean "ca_file"?`,
			`xlb.yaml:17: services[2].backend_tls.cert_file: missing; key_file needs its certificate (cert_file)`,
		}},
		{"layer-4", l4 + `    protocols: [http1]
    backend_protocol: https
    backends: [{address: 10.0.1.1}]
`, []string{
			`xlb.yaml:6: services[0].protocols: applies to layer 7 services only, and this one is layer 4; layer 4 forwards packets whatever they carry; protocol (tcp or udp) names the transport`,
			`xlb.yaml:7: services[0].backend_protocol: applies to layer 7 services only, and this one is layer 4; layer 4 backends get the clients' packets as they are`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.ReplaceAll(strings.TrimPrefix(tt.in, "\n"), "$D", dir)
			c, err := Parse(filepath.Join(dir, "xlb.yaml"), []byte(in))
			if err == nil {
				t.Fatalf("Parse succeeded (warnings %q); want errors:\n%s", c.Warnings, strings.Join(tt.want, "\n"))
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList: %v", err, err)
			}
			var got []string
			for _, e := range list {
				e.File = "xlb.yaml"
				got = append(got, strings.ReplaceAll(e.Error(), dir, "$D"))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseTLSValid(t *testing.T) {
	dir := tlsDir(t)
	in := strings.ReplaceAll(`
services:
  - name: plain
    layer: 7
    listen: 0.0.0.0:8080
    tls: {cert_file: "", key_file: ""}
    backend_tls: {ca_file: "", server_name: "", cert_file: "", key_file: ""}
    backends: [{address: 127.0.0.1:9001}]
  - name: one
    layer: 7
    listen: 0.0.0.0:8443
    tls: {cert_file: a.pem, key_file: a-key.pem}
    backend_protocol: https
    backends: [{address: 127.0.0.1:9001}]
  - name: many
    layer: 7
    listen: 0.0.0.0:8444
    protocols: [h2]
    tls:
      cert_file: ""
      key_file: ""
      certificates:
        - {cert_file: b.pem, key_file: b-key.pem}
        - {cert_file: $D/a.pem, key_file: $D/a-key.pem}
      client_ca_file: ca.pem
      min_version: 1.3
    backend_protocol: https
    backend_tls: {ca_file: ca.pem, server_name: api.internal, cert_file: a.pem, key_file: a-key.pem}
    backends: [{address: 127.0.0.1:9001}]
`, "$D", dir)
	c, err := Parse(filepath.Join(dir, "xlb.yaml"), []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }

	plain := c.Service("plain")
	if plain.TLS != nil || plain.BackendTLS != nil || plain.BackendProtocol != "http1" || !slices.Equal(plain.Protocols, []string{"http1", "h2"}) {
		t.Errorf("plain: tls %+v backend_tls %+v backend_protocol %q protocols %q", plain.TLS, plain.BackendTLS, plain.BackendProtocol, plain.Protocols)
	}

	one := c.Service("one")
	wantOne := &TLS{Certificates: []CertPair{{f("a.pem"), f("a-key.pem")}}, CertFile: f("a.pem"), KeyFile: f("a-key.pem"), MinVersion: "1.2"}
	if !reflect.DeepEqual(one.TLS, wantOne) {
		t.Errorf("one: tls %+v, want %+v", one.TLS, wantOne)
	}
	if one.BackendProtocol != "https" || one.BackendTLS != nil {
		t.Errorf("one: backend_protocol %q backend_tls %+v", one.BackendProtocol, one.BackendTLS)
	}

	many := c.Service("many")
	wantMany := &TLS{
		Certificates: []CertPair{{f("b.pem"), f("b-key.pem")}, {f("a.pem"), f("a-key.pem")}},
		CertFile:     f("b.pem"), KeyFile: f("b-key.pem"),
		ClientCAFile: f("ca.pem"), MinVersion: "1.3",
	}
	if !reflect.DeepEqual(many.TLS, wantMany) {
		t.Errorf("many: tls %+v, want %+v", many.TLS, wantMany)
	}
	if !slices.Equal(many.Protocols, []string{"h2"}) {
		t.Errorf("many: protocols %q", many.Protocols)
	}
	wantBT := BackendTLS{CAFile: f("ca.pem"), ServerName: "api.internal", CertFile: f("a.pem"), KeyFile: f("a-key.pem")}
	if many.BackendTLS == nil || *many.BackendTLS != wantBT {
		t.Errorf("many: backend_tls %+v, want %+v", many.BackendTLS, wantBT)
	}
}

func TestDiffTLS(t *testing.T) {
	dir := tlsDir(t)
	base := `
services:
  - name: web
    layer: 7
    listen: ":8443"
    tls: {cert_file: a.pem, key_file: a-key.pem}
    backends: [{address: "127.0.0.1:9001"}]
  - name: plain
    layer: 7
    listen: ":8080"
    backends: [{address: "127.0.0.1:9001"}]
`
	parse := func(in string) *Config {
		t.Helper()
		c, err := Parse(filepath.Join(dir, "xlb.yaml"), []byte(strings.TrimPrefix(in, "\n")))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		return c
	}
	old := parse(base)
	new := parse(edit(t, base,
		`    tls: {cert_file: a.pem, key_file: a-key.pem}`, `    tls:
      certificates: [{cert_file: a.pem, key_file: a-key.pem}, {cert_file: b.pem, key_file: b-key.pem}]
      client_ca_file: ca.pem
      min_version: "1.3"
    protocols: [http1]
    backend_protocol: https
    backend_tls: {server_name: api.internal}`,
		`    listen: ":8080"`, `    listen: ":8080"
    tls: {cert_file: b.pem, key_file: b-key.pem}`,
	))
	f := func(name string) string { return filepath.Join(dir, name) }
	want := []string{
		"service web: tls.certificates [" + f("a.pem") + " " + f("a-key.pem") + "] -> [" + f("a.pem") + " " + f("a-key.pem") + ", " + f("b.pem") + " " + f("b-key.pem") + "]",
		`service web: tls.client_ca_file "" -> ` + f("ca.pem"),
		"service web: tls.min_version 1.2 -> 1.3",
		"service web: protocols [http1, h2] -> [http1]",
		"service web: backend_protocol http1 -> https",
		"service web: backend_tls default -> server_name api.internal",
		"service plain: tls added ([" + f("b.pem") + " " + f("b-key.pem") + "])",
	}
	if got := Diff(old, new); !slices.Equal(got, want) {
		t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := Diff(new, old), "service plain: tls removed"; !slices.Contains(got, want) {
		t.Errorf("Diff back: %q lacks %q", got, want)
	}
}

func TestGRPCHealthCheckAtLayer7(t *testing.T) {
	cfg, err := Parse("xlb.yaml", []byte(`services:
  - name: api
    layer: 7
    listen: 127.0.0.1:8080
    backend_protocol: h2c
    backends: [{address: 127.0.0.1:9001}]
    health_check: {type: grpc, interval: 1s, timeout: 500ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	if hc := cfg.Service("api").HealthCheck; hc == nil || hc.Type != "grpc" {
		t.Errorf("health_check = %+v, want type grpc", hc)
	}
	cfg, err = Parse("xlb.yaml", []byte(`services:
  - name: api
    layer: 7
    listen: 127.0.0.1:8080
    backend_protocol: h2c
    backends: [{address: 127.0.0.1:9001}]
    health_check: {type: grpc, path: /health}
`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "xlb.yaml:7: services[0].health_check.path: ignored with type grpc: only http checks use it"; !slices.Contains(cfg.Warnings, want) {
		t.Errorf("a grpc check with a path: warnings %q lack %q", cfg.Warnings, want)
	}
}
