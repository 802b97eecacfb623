package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"golang.org/x/net/http2"
)

const (
	userAgent = "xlb-health/1"
	// maxBody is how much of a response body a probe reads: enough to let
	// a small health page finish cleanly, not enough to make a probe a
	// download.
	maxBody = 64 << 10
)

var defaultDialer net.Dialer

// probe runs one check of t. s is t.Spec with defaults applied; ctx
// carries the probe's deadline.
func probe(ctx context.Context, t Target, s Spec) error {
	switch s.Type {
	case TypeTCP:
		return probeTCP(ctx, t)
	case TypeHTTP:
		return probeHTTP(ctx, t, s)
	case TypeGRPC:
		return probeGRPC(ctx, t, s)
	default:
		return fmt.Errorf("unknown health check type %q", s.Type)
	}
}

func dial(ctx context.Context, t Target) (net.Conn, error) {
	d := t.Dial
	if d == nil {
		d = defaultDialer.DialContext
	}
	return d(ctx, "tcp", t.Addr)
}

func probeTCP(ctx context.Context, t Target) error {
	conn, err := dial(ctx, t)
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// probeHTTP speaks HTTP/1.1, over TLS with s.TLS, on one connection of its
// own rather than through an http.Client: no pooling, no proxy from the
// environment, no redirects, and the connection comes from t.Dial.
func probeHTTP(ctx context.Context, t Target, s Spec) error {
	scheme := "http://"
	if s.TLS != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+t.Addr+s.Path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if s.Host != "" {
		req.Host = s.Host
	}
	req.Header.Set("User-Agent", userAgent)
	req.Close = true // "Connection: close"

	conn, err := dial(ctx, t)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The deadline bounds every read and write; closing on cancellation
	// also ends a probe whose target Set removed.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if s.TLS != nil {
		tc := tls.Client(conn, clientConfig(s.TLS, t.Addr))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}

	if err := req.Write(conn); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	// No resp.Body.Close: outside a Transport it drains the whole body.
	// Closing the connection (deferred above) frees everything.
	if resp.StatusCode < s.ExpectMin || resp.StatusCode > s.ExpectMax {
		return fmt.Errorf("status %d not in %d-%d", resp.StatusCode, s.ExpectMin, s.ExpectMax)
	}
	// A backend that cannot finish its answer in time is not healthy.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)); err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	return nil
}

// clientConfig is c with a server name: c's own, else addr's host, which
// crypto/tls needs to verify the backend.
func clientConfig(c *tls.Config, addr string) *tls.Config {
	if c.ServerName != "" || c.InsecureSkipVerify {
		return c
	}
	c = c.Clone()
	c.ServerName = addr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		c.ServerName = host
	}
	return c
}

// probeGRPC asks grpc.health.v1.Health/Check about s.Service (empty: the
// server as a whole), over HTTP/2 on a connection of its own, as the
// proxy speaks to the backend: over TLS (ALPN h2) with s.TLS, else in
// cleartext. SERVING is up, anything else (NOT_SERVING, an error status,
// no answer) down. The request and answer are built by hand (a gRPC frame
// around a protobuf message of at most one field), so the checker needs
// no generated code.
func probeGRPC(ctx context.Context, t Target, s Spec) error {
	scheme := "http://"
	if s.TLS != nil {
		scheme = "https://"
	}
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			conn, err := dial(ctx, t)
			if err != nil || s.TLS == nil {
				return conn, err
			}
			return handshakeH2(ctx, conn, clientConfig(s.TLS, t.Addr))
		},
	}
	defer tr.CloseIdleConnections()
	// A HealthCheckRequest: a gRPC frame (uncompressed, 4-byte length)
	// around field 1, the service name, when there is one.
	var ask []byte
	if name := s.Service; name != "" {
		ask = append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(name)))...)
		ask = append(ask, name...)
	}
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(ask)))
	body = append(body, ask...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+t.Addr+"/grpc.health.v1.Health/Check", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", userAgent)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	msg, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	code := resp.Trailer.Get("Grpc-Status")
	if code == "" {
		code = resp.Header.Get("Grpc-Status") // a trailers-only answer
	}
	if code != "0" {
		m := resp.Trailer.Get("Grpc-Message")
		if m == "" {
			m = resp.Header.Get("Grpc-Message")
		}
		return fmt.Errorf("grpc status %s %s", code, m)
	}
	switch st := healthStatus(msg); st {
	case 1:
		return nil
	case 2:
		return errors.New("NOT_SERVING")
	default:
		return fmt.Errorf("health status %d, want SERVING", st)
	}
}

// handshakeH2 runs a TLS handshake on conn that must agree on HTTP/2: a
// backend that settles for HTTP/1.1 cannot answer a gRPC call. c is not
// modified (it may be shared with the proxy's connections).
func handshakeH2(ctx context.Context, conn net.Conn, c *tls.Config) (net.Conn, error) {
	c = c.Clone()
	c.NextProtos = []string{"h2"}
	tc := tls.Client(conn, c)
	err := tc.HandshakeContext(ctx)
	if err == nil && tc.ConnectionState().NegotiatedProtocol != "h2" {
		err = fmt.Errorf("backend chose ALPN %q, not h2", tc.ConnectionState().NegotiatedProtocol)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// healthStatus reads HealthCheckResponse.status (field 1, a varint) from
// one gRPC frame; 0 (UNKNOWN) when it is absent or malformed.
func healthStatus(frame []byte) int {
	if len(frame) < 5 || frame[0] != 0 {
		return 0
	}
	n := int(frame[1])<<24 | int(frame[2])<<16 | int(frame[3])<<8 | int(frame[4])
	m := frame[5:]
	if n > len(m) {
		return 0
	}
	m = m[:n]
	if len(m) < 2 || m[0] != 0x08 { // field 1, varint: HealthCheckResponse's only field
		return 0
	}
	v, shift := 0, 0
	for i := 1; i < len(m) && shift < 32; i++ {
		v |= int(m[i]&0x7f) << shift
		if m[i] < 0x80 {
			return v
		}
		shift += 7
	}
	return 0
}
