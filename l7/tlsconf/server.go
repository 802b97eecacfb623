package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/xlbproject/xlb/config"
)

// Server returns the TLS configuration of a service's listener: its
// certificates chosen by SNI, client certificate verification when
// t.ClientCAFile is set, t.MinVersion, ALPN from protocols (config
// Service.Protocols), and session tickets under keys.
//
// Every file is read now, so that a caller can prepare every service before
// committing any; an error names the file that failed. keys, one per
// service and kept across reloads, lets a ticket issued under one
// configuration of the service resume on another; nil leaves tickets to
// crypto/tls's own per-configuration keys.
//
// Use the result as it is, or a Clone of it (http.Server.ServeTLS makes
// one): its GetConfigForClient refuses a client whose ALPN offer has none
// of protocols, and with keys hands every other handshake back to the
// configuration keys keeps current, so a copy never serves stale keys,
// but settings changed on a copy are not used either. A caller that
// chooses the configuration in a GetConfigForClient of its own should
// return what this one's returns (nil: this one).
func Server(t *config.TLS, protocols []string, keys *TicketKeys) (*tls.Config, error) {
	if t == nil || len(t.Certificates) == 0 {
		return nil, errors.New("tls: no certificate")
	}
	certs := make([]*tls.Certificate, 0, len(t.Certificates))
	for _, p := range t.Certificates {
		c, err := loadPair(p.CertFile, p.KeyFile)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	sel := newSelector(certs)
	c := &tls.Config{
		GetCertificate: sel.certificate,
		NextProtos:     ALPN(protocols),
	}
	switch t.MinVersion {
	case "", "1.2":
		c.MinVersion = tls.VersionTLS12
	case "1.3":
		c.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls: min_version %q is not 1.2 or 1.3", t.MinVersion)
	}
	if t.ClientCAFile != "" {
		pool, err := loadPool(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	var self *tls.Config // nil: the configuration the handshake started with
	if keys != nil {
		keys.attach(c)
		// Returning c itself (not nil) makes a Clone serve with c, whose
		// keys attach keeps current, rather than with the copy's.
		self = c
	}
	refuse := refusing(c)
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if len(hello.SupportedProtos) > 0 && len(c.NextProtos) > 0 && !offersAny(hello.SupportedProtos, c.NextProtos) {
			return refuse, nil
		}
		return self, nil
	}
	return c, nil
}

// refusing returns a copy of c that fails every handshake that offers ALPN
// with no_application_protocol. crypto/tls sends that alert when the
// offer has nothing in common with NextProtos, except when NextProtos has
// h2 and the offer http/1.1: then it goes on with no protocol (Go issue
// 46310), which would let an HTTP/1.1-only client through to an h2-only
// listener (and a 505) instead of the refusal the README promises. An
// empty protocol name is one no client can offer (RFC 7301 forbids it and
// crypto/tls rejects a hello with one), and it is not h2.
func refusing(c *tls.Config) *tls.Config {
	r := c.Clone()
	r.NextProtos = []string{""}
	return r
}

// offersAny reports whether the client's ALPN offer holds one of ours,
// without allocating: it runs on every handshake.
func offersAny(offer, ours []string) bool {
	for _, p := range offer {
		if slices.Contains(ours, p) {
			return true
		}
	}
	return false
}

// ALPN returns the ALPN protocol IDs for a service's protocols (http1,
// h2), h2 first: a client that offers both gets HTTP/2.
func ALPN(protocols []string) []string {
	var out []string
	if slices.Contains(protocols, "h2") {
		out = append(out, "h2")
	}
	if slices.Contains(protocols, "http1") {
		out = append(out, "http/1.1")
	}
	return out
}

func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s (key %s): %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("load certificate %s: %w", certFile, err)
		}
	}
	return &c, nil
}

// loadPool reads a PEM file of CA certificates.
func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("load CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("load CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// selector picks a certificate by SNI: an exact name first, then a
// wildcard, then the default (NGINX's order). Names are lower case without a
// trailing dot; wild is keyed by what follows "*.", so a lookup needs no
// new string.
type selector struct {
	def   *tls.Certificate
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate
}

func newSelector(certs []*tls.Certificate) *selector {
	s := &selector{def: certs[0], exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for _, c := range certs {
		for _, n := range certNames(c.Leaf) {
			n = strings.TrimSuffix(strings.ToLower(n), ".")
			m := s.exact
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				m, n = s.wild, rest
			}
			if n == "" || strings.Contains(n, "*") {
				continue // no client sends such a name
			}
			if _, dup := m[n]; !dup {
				m[n] = c // the first certificate listed wins
			}
		}
	}
	return s
}

// certNames are the names a certificate serves: its DNS SANs, or its CN
// when it has no SAN at all (as old certificates do).
func certNames(leaf *x509.Certificate) []string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames
	}
	if len(leaf.IPAddresses) == 0 && len(leaf.EmailAddresses) == 0 && len(leaf.URIs) == 0 && leaf.Subject.CommonName != "" {
		return []string{leaf.Subject.CommonName}
	}
	return nil
}

// certificate is the GetCertificate callback. It runs on every full
// handshake, so it lower-cases into a stack buffer and looks maps up with
// string(bytes) keys, which the compiler does without allocating.
func (s *selector) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	var buf [256]byte
	if name == "" || len(name) > len(buf) {
		return s.def, nil
	}
	b := buf[:copy(buf[:], name)]
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	if c, ok := s.exact[string(b)]; ok {
		return c, nil
	}
	for i, ch := range b {
		if ch == '.' {
			// A wildcard covers one label: "*.example.com" serves
			// a.example.com, not example.com or a.b.example.com.
			if i > 0 {
				if c, ok := s.wild[string(b[i+1:])]; ok {
					return c, nil
				}
			}
			break
		}
	}
	return s.def, nil
}
