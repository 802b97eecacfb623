package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/netip"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// backendProtocolsNotYet are the backend protocols the file may name but
// xlb cannot speak yet, with the reason given to the user. Delete an entry
// when its support lands; nothing else rejects these names.
var backendProtocolsNotYet = map[string]string{}

var (
	backendProtocols    = []string{"http1", "https", "h2c", "h2"}
	tlsBackendProtocols = []string{"https", "h2"} // those backend_tls applies to
)

func (p *parser) tls(n *yaml.Node, path string) *TLS {
	f, ok := p.fields(n, path, "a mapping with keys cert_file and key_file, or certificates", tlsKeys)
	if !ok {
		return nil
	}
	at := p.resolve(n)
	t := &TLS{MinVersion: DefaultTLSMinVersion}
	valid := true

	single, singleWritten, ok := p.certPair(f, at, path)
	valid = valid && ok
	if singleWritten && ok {
		t.Certificates = []CertPair{single}
	}
	listWritten := false
	listKey := false         // certificates is written, if only as a mistake
	var emptyList *yaml.Node // the certificates key of an empty list
	if e := f.get("certificates"); e != nil {
		listKey = true
		lpath := join(path, "certificates")
		items, isList := p.seq(e.v, lpath, "[{cert_file: api.crt, key_file: api.key}]")
		listWritten = len(items) > 0
		if isList && !listWritten {
			emptyList = e.k
		}
		if singleWritten && listWritten {
			p.errorf(e.k, lpath, "give either cert_file and key_file (one certificate) or certificates (several), not both")
			valid = false
		}
		seen := map[string]int{}
		for i, it := range items {
			ipath := index(lpath, i)
			r := p.resolve(it)
			pf, ok := p.fields(it, ipath, "a mapping like {cert_file: api.crt, key_file: api.key}", certPairKeys)
			cp, written, ok2 := p.certPair(pf, r, ipath)
			switch {
			case !ok && !isNull(r):
				valid = false // reported by fields
				continue
			case !written:
				p.errorf(it, ipath, "empty; give cert_file and key_file")
				valid = false
				continue
			case !ok2:
				valid = false
				continue
			}
			if line, dup := seen[cp.CertFile]; dup {
				p.errorf(pf.m["cert_file"].v, join(ipath, "cert_file"), "certificate %s is listed twice (first on line %d)", cp.CertFile, line)
				valid = false
				continue
			}
			seen[cp.CertFile] = pf.m["cert_file"].v.Line
			t.Certificates = append(t.Certificates, cp)
		}
	}

	var settings *yaml.Node // a key that needs a certificate
	if e := f.get("client_ca_file"); e != nil {
		if v, ok := p.str(e.v, join(path, "client_ca_file")); ok && v != "" {
			settings = e.k
			if t.ClientCAFile, ok = p.caFile(e.v, join(path, "client_ca_file"), v); !ok {
				valid = false
			}
		}
	}
	if e := f.get("min_version"); e != nil {
		settings = cmpOrNode(settings, e.k)
		if v, ok := p.tlsVersion(e.v, join(path, "min_version")); ok {
			t.MinVersion = v
		} else {
			valid = false
		}
	}

	if !singleWritten && !listWritten {
		// tls: {cert_file: "", key_file: ""} is plain HTTP, so that a
		// template can leave TLS off. Any other block without a certificate
		// ({}, an empty certificates list, settings alone) asks for TLS
		// and would silently serve cleartext.
		_, certKey := f.m["cert_file"]
		_, keyKey := f.m["key_file"]
		switch {
		case settings != nil || (!listKey && !certKey && !keyKey):
			p.errorf(at, path, "no certificate: give cert_file and key_file, or certificates; without one the service serves plain HTTP")
		case emptyList != nil:
			p.errorf(emptyList, join(path, "certificates"), "empty: list at least one {cert_file, key_file}; without a certificate the service serves plain HTTP (to mean that, remove tls)")
		}
		return nil
	}
	if !valid || len(t.Certificates) == 0 {
		return nil
	}
	t.CertFile, t.KeyFile = t.Certificates[0].CertFile, t.Certificates[0].KeyFile
	return t
}

func cmpOrNode(a, b *yaml.Node) *yaml.Node {
	if a != nil {
		return a
	}
	return b
}

// certPair reads the cert_file and key_file keys of f: written is false
// when both are absent or empty; ok is false when something is wrong
// (reported). Both files must exist and hold a certificate chain and its
// private key, so that -check finds what the listener would refuse.
func (p *parser) certPair(f fields, at *yaml.Node, path string) (cp CertPair, written, ok bool) {
	var certNode, keyNode *yaml.Node
	if e := f.get("cert_file"); e != nil {
		cp.CertFile, _ = p.str(e.v, join(path, "cert_file"))
		certNode = e.v
	}
	if e := f.get("key_file"); e != nil {
		cp.KeyFile, _ = p.str(e.v, join(path, "key_file"))
		keyNode = e.v
	}
	switch {
	case cp.CertFile == "" && cp.KeyFile == "":
		return CertPair{}, false, true
	case cp.CertFile == "":
		p.errorf(f.at("cert_file", at), join(path, "cert_file"), "missing; key_file needs its certificate (cert_file)")
		return CertPair{}, true, false
	case cp.KeyFile == "":
		p.errorf(f.at("key_file", at), join(path, "key_file"), "missing; cert_file needs its private key (key_file)")
		return CertPair{}, true, false
	}
	cert, ok1 := p.existingFile(certNode, join(path, "cert_file"), cp.CertFile)
	key, ok2 := p.existingFile(keyNode, join(path, "key_file"), cp.KeyFile)
	if !ok1 || !ok2 {
		return CertPair{}, true, false
	}
	certPEM, ok1 := p.readCerts(certNode, join(path, "cert_file"), cert)
	if !ok1 {
		return CertPair{}, true, false
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		p.errorf(keyNode, join(path, "key_file"), "cannot read %s: %v", key, errors.Unwrap(err))
		return CertPair{}, true, false
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		// The chain parsed, so what is left is the key's fault.
		p.errorf(keyNode, join(path, "key_file"), "%s is not the private key of %s: %s", key, cert, strings.TrimPrefix(err.Error(), "tls: "))
		return CertPair{}, true, false
	}
	return CertPair{CertFile: cert, KeyFile: key}, true, true
}

// readCerts reads a PEM file that must hold at least one certificate, all
// of them parseable, and returns its contents.
func (p *parser) readCerts(n *yaml.Node, path, name string) ([]byte, bool) {
	data, err := os.ReadFile(name)
	if err != nil {
		p.errorf(n, path, "cannot read %s: %v", name, errors.Unwrap(err))
		return nil, false
	}
	found := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			p.errorf(n, path, "certificate %d of %s cannot be parsed: %v", found+1, name, err)
			return nil, false
		}
		found++
	}
	if found == 0 {
		p.errorf(n, path, "%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", name)
		return nil, false
	}
	return data, true
}

// caFile resolves a file of CA certificates and checks that it holds some.
func (p *parser) caFile(n *yaml.Node, path, name string) (string, bool) {
	name, ok := p.existingFile(n, path, name)
	if !ok {
		return "", false
	}
	if _, ok := p.readCerts(n, path, name); !ok {
		return "", false
	}
	return name, true
}

func (p *parser) tlsVersion(n *yaml.Node, path string) (string, bool) {
	s, ok := p.scalar(n, path, `a TLS version, "1.2" or "1.3"`)
	if !ok {
		return "", false
	}
	v := strings.TrimSpace(s.Value)
	if contains(tlsVersions, v) {
		return v, true
	}
	if v == "1.0" || v == "1.1" || v == "1" {
		p.errorf(s, path, "TLS %s is not offered (it is deprecated, RFC 8996); use \"1.2\" or \"1.3\"", v)
	} else {
		p.errorf(s, path, "must be \"1.2\" or \"1.3\", got %s", describe(s))
	}
	return "", false
}

// protocols decodes what clients may speak: a non-empty list of http1 and
// h2, each once.
func (p *parser) protocols(n *yaml.Node, path string) []string {
	items, ok := p.seq(n, path, "[http1, h2]")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.errorf(n, path, "empty; list what clients may speak: http1, h2 or both")
		return nil
	}
	out := []string{}
	seen := map[string]int{}
	for i, it := range items {
		ipath := index(path, i)
		v, ok := p.oneOf(it, ipath, protocolNames...)
		if !ok {
			continue
		}
		if line, dup := seen[v]; dup {
			p.errorf(it, ipath, "%s is listed twice (first on line %d)", v, line)
			continue
		}
		seen[v] = it.Line
		out = append(out, v)
	}
	return out
}

func (p *parser) backendProtocol(n *yaml.Node, path string) (string, bool) {
	v, ok := p.oneOf(n, path, backendProtocols...)
	if !ok {
		return "", false
	}
	if why, no := backendProtocolsNotYet[v]; no {
		p.errorf(n, path, "%s: %s", v, why)
		return "", false
	}
	return v, true
}

func (p *parser) backendTLS(n *yaml.Node, path string) *BackendTLS {
	f, ok := p.fields(n, path, "a mapping like {ca_file: ca.pem, server_name: api.internal}", backendTLSKeys)
	if !ok {
		return nil
	}
	at := p.resolve(n)
	var bt BackendTLS
	valid := true
	if e := f.get("ca_file"); e != nil {
		if v, ok := p.str(e.v, join(path, "ca_file")); ok && v != "" {
			if bt.CAFile, ok = p.caFile(e.v, join(path, "ca_file"), v); !ok {
				valid = false
			}
		}
	}
	if e := f.get("server_name"); e != nil {
		if v, ok := p.str(e.v, join(path, "server_name")); ok && v != "" {
			if _, err := netip.ParseAddr(v); err != nil && (!validHostname(v) || strings.HasSuffix(v, ".")) {
				p.errorf(e.v, join(path, "server_name"), "%q is neither a host name nor an IP address", v)
				valid = false
			} else {
				bt.ServerName = v
			}
		}
	}
	cp, _, ok := p.certPair(f, at, path)
	valid = valid && ok
	bt.CertFile, bt.KeyFile = cp.CertFile, cp.KeyFile
	if !valid || bt == (BackendTLS{}) {
		// backend_tls: {ca_file: ""} says nothing, as tls: {cert_file: ""}.
		return nil
	}
	return &bt
}
