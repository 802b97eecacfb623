package tlsconf

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
)

// BenchmarkHandshake measures a server's cost per TLS 1.3 handshake, full
// and resumed by ticket, over net.Pipe (both ends in this process).
func BenchmarkHandshake(b *testing.B) {
	ca := newCA(b, "ca")
	tc := &config.TLS{Certificates: []config.CertPair{ca.issue(b, "server", leaf{cn: "api.example.com", dns: []string{"api.example.com"}})}}
	keys := NewTicketKeys(time.Hour, 3)
	defer keys.Stop()
	sc, err := Server(tc, []string{"http1", "h2"}, keys)
	if err != nil {
		b.Fatal(err)
	}
	for _, resume := range []bool{false, true} {
		name := "full"
		if resume {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			cc := &tls.Config{ServerName: "api.example.com", RootCAs: ca.pool(), NextProtos: []string{"http/1.1"}}
			if resume {
				cc.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				pipeHandshake(b, sc, cc)
			}
			b.ReportAllocs()
			for b.Loop() {
				if st := pipeHandshake(b, sc, cc); st.DidResume != resume {
					b.Fatalf("resumed %v", st.DidResume)
				}
			}
		})
	}
}

func pipeHandshake(b *testing.B, sc, cc *tls.Config) tls.ConnectionState {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(c2, sc)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{'x'})
		}
		done <- err
	}()
	c := tls.Client(c1, cc)
	var buf [1]byte
	if _, err := c.Read(buf[:]); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return c.ConnectionState()
}
