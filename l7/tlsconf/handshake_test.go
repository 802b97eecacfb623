package tlsconf

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// handshake connects to addr with cc and reads the server's byte, so that
// a TLS 1.3 client sees both the tickets the server sends after the
// handshake and a refusal of its certificate, which also comes then.
func handshake(addr string, cc *tls.Config) (tls.ConnectionState, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(conn, cc)
	if err := tc.Handshake(); err != nil {
		return tls.ConnectionState{}, fmt.Errorf("handshake: %w", err)
	}
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		return tc.ConnectionState(), fmt.Errorf("read: %w", err)
	}
	return tc.ConnectionState(), nil
}
