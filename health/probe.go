package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
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
