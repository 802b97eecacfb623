package tlsconf

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/config"
)

// TestServerALPNRefusesDisjointOffers: a client whose ALPN offer has
// nothing in common with the listener's protocols fails the handshake
// with no_application_protocol, including an http/1.1-only client of an
// h2-only listener (which crypto/tls alone lets through with no protocol);
// a client that offers no ALPN at all still connects, its first bytes
// telling the listener what it speaks.
func TestServerALPNRefusesDisjointOffers(t *testing.T) {
	ca := newCA(t, "ca")
	pair := ca.issue(t, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})
	for _, tt := range []struct {
		name      string
		protocols []string
		offer     []string
		want      string // the protocol negotiated; "refused": the handshake fails
	}{
		{"h2-only/http1-client", []string{"h2"}, []string{"http/1.1"}, "refused"},
		{"h2-only/http1-and-other", []string{"h2"}, []string{"http/1.1", "spdy/3"}, "refused"},
		{"h2-only/unknown", []string{"h2"}, []string{"spdy/3"}, "refused"},
		{"h2-only/both", []string{"h2"}, []string{"http/1.1", "h2"}, "h2"},
		{"h2-only/no-alpn", []string{"h2"}, nil, ""},
		{"http1-only/h2-client", []string{"http1"}, []string{"h2"}, "refused"},
		{"http1-only/both", []string{"http1"}, []string{"h2", "http/1.1"}, "http/1.1"},
		{"http1-only/no-alpn", []string{"http1"}, nil, ""},
		{"both/h2-client", []string{"http1", "h2"}, []string{"h2"}, "h2"},
		{"both/http1-client", []string{"http1", "h2"}, []string{"http/1.1"}, "http/1.1"},
		{"both/unknown", []string{"http1", "h2"}, []string{"spdy/3"}, "refused"},
		{"none/http1-client", nil, []string{"http/1.1"}, ""}, // no ALPN configured: none negotiated
	} {
		for _, keys := range []bool{false, true} {
			name := tt.name
			var k *TicketKeys
			if keys {
				name += "/tickets"
				k = NewTicketKeys(0, 0)
				t.Cleanup(k.Stop)
			}
			t.Run(name, func(t *testing.T) {
				cfg, err := Server(&config.TLS{Certificates: []config.CertPair{pair}}, tt.protocols, k)
				if err != nil {
					t.Fatal(err)
				}
				addr := serve(t, cfg)
				for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
					st, err := handshake(addr, &tls.Config{ServerName: "api.example.com", RootCAs: ca.pool(), NextProtos: tt.offer, MaxVersion: v})
					switch {
					case tt.want == "refused":
						if err == nil || !strings.Contains(err.Error(), "no application protocol") {
							t.Errorf("TLS %x, offering %q: %v (negotiated %q), want the no_application_protocol alert", v, tt.offer, err, st.NegotiatedProtocol)
						}
					case err != nil:
						t.Errorf("TLS %x, offering %q: %v", v, tt.offer, err)
					case st.NegotiatedProtocol != tt.want:
						t.Errorf("TLS %x, offering %q: negotiated %q, want %q", v, tt.offer, st.NegotiatedProtocol, tt.want)
					}
				}
			})
		}
	}
}
