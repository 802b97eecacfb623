package health

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/xlbproject/xlb/internal/testpki"
)

// grpcBackend is a gRPC server on 127.0.0.1 with the standard health
// service, stopped at the end of the test.
func grpcBackend(t *testing.T, opts ...grpc.ServerOption) (addr string, srv *grpc.Server, hs *grpchealth.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = grpc.NewServer(opts...)
	hs = grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), srv, hs
}

// TestGRPCHealthFollowsServingStatus: a grpc check follows a real gRPC
// server's health service: SERVING is up, NOT_SERVING is down, and a
// server that stops answering is down.
func TestGRPCHealthFollowsServingStatus(t *testing.T) {
	t.Parallel()
	addr, srv, hs := grpcBackend(t)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	c := NewChecker(Options{})
	spec := Spec{Type: TypeGRPC, Interval: 50 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2}
	c.Set([]Target{{Key: "grpc/b", Addr: addr, Spec: spec}}, nil)
	run(t, c)

	waitFor(t, within(1, spec.Interval), "up while SERVING", up(c, "grpc/b"))
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, within(spec.UnhealthyThreshold, spec.Interval), "down when NOT_SERVING", down(c, "grpc/b"))
	if st, _ := c.State("grpc/b"); st.LastError != "NOT_SERVING" {
		t.Errorf("LastError = %q, want NOT_SERVING", st.LastError)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	waitFor(t, within(spec.HealthyThreshold, spec.Interval), "up again", up(c, "grpc/b"))
	srv.Stop()
	waitFor(t, within(spec.UnhealthyThreshold, spec.Interval), "down once stopped", down(c, "grpc/b"))
}

// TestGRPCHealthOfANamedService: with Spec.Service the check asks about
// that service, whose status is its own; an unknown service is down.
func TestGRPCHealthOfANamedService(t *testing.T) {
	t.Parallel()
	addr, _, hs := grpcBackend(t)
	// The server as a whole is not serving: only a check that names the
	// service finds it up.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("shop.Cart", healthpb.HealthCheckResponse_SERVING)

	c := NewChecker(Options{})
	spec := Spec{Type: TypeGRPC, Service: "shop.Cart", Interval: 50 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	unknown := spec
	unknown.Service = "shop.Nothing"
	c.Set([]Target{{Key: "grpc/cart", Addr: addr, Spec: spec}, {Key: "grpc/none", Addr: addr, Spec: unknown}}, nil)
	run(t, c)
	waitFor(t, within(2, spec.Interval), "the named service up while SERVING", up(c, "grpc/cart"))
	hs.SetServingStatus("shop.Cart", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, within(2, spec.Interval), "the named service down once NOT_SERVING", down(c, "grpc/cart"))
	waitFor(t, within(2, spec.Interval), "an unknown service down with a reason", func() bool {
		st, _ := c.State("grpc/none")
		return !st.Up && st.LastError != ""
	})
}

// TestGRPCHealthOverTLS: with Spec.TLS (backend_protocol h2) a grpc check
// speaks HTTP/2 over TLS, verified as the https check verifies: the CA,
// the server name (Addr's host, or TLS.ServerName) and the client
// certificate the backend asks for. A cleartext check of the same server
// fails, and so does a TLS backend that does not speak HTTP/2.
func TestGRPCHealthOverTLS(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "grpc backends")
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.Pair(t, "127.0.0.1", "cart.internal")},
		ClientCAs:    ca.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	addr, _, hs := grpcBackend(t, grpc.Creds(creds))
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	https, _ := tlsBackend(t) // HTTP/1.1 only

	client := ca.Pair(t, "xlb")
	spec := Spec{Type: TypeGRPC, Interval: 50 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	with := func(c *tls.Config) Spec { s := spec; s.TLS = c; return s }
	c := NewChecker(Options{})
	c.Set([]Target{
		{Key: "tls", Addr: addr, Spec: with(&tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{client}})},
		{Key: "named", Addr: addr, Spec: with(&tls.Config{RootCAs: ca.Pool, ServerName: "cart.internal", Certificates: []tls.Certificate{client}})},
		{Key: "plain", Addr: addr, Spec: spec},
		{Key: "no-client-cert", Addr: addr, Spec: with(&tls.Config{RootCAs: ca.Pool})},
		{Key: "wrong-name", Addr: addr, Spec: with(&tls.Config{RootCAs: ca.Pool, ServerName: "other.internal", Certificates: []tls.Certificate{client}})},
		{Key: "http1-only", Addr: https.Listener.Addr().String(), Spec: with(&tls.Config{RootCAs: roots(https)})},
	}, nil)
	run(t, c)

	for _, key := range []string{"tls", "named"} {
		waitFor(t, within(1, spec.Interval), key+" up", up(c, key))
	}
	for _, tt := range []struct{ key, reason string }{
		// The server ends these connections; what the probe sees first
		// (EOF, a reset, the TLS alert) is a race.
		{"plain", ""},
		{"no-client-cert", ""},
		{"wrong-name", "tls handshake: tls: failed to verify certificate"},
		{"http1-only", "tls handshake"},
	} {
		waitFor(t, within(1, spec.Interval), tt.key+" down", down(c, tt.key))
		if st, _ := c.State(tt.key); st.LastError == "" || !strings.Contains(st.LastError, tt.reason) {
			t.Errorf("%s: LastError %q, want it to contain %q", tt.key, st.LastError, tt.reason)
		}
	}
}

func TestHealthStatusFrame(t *testing.T) {
	for _, tc := range []struct {
		frame []byte
		want  int
	}{
		{[]byte{0, 0, 0, 0, 2, 0x08, 1}, 1},
		{[]byte{0, 0, 0, 0, 2, 0x08, 2}, 2},
		{[]byte{0, 0, 0, 0, 0}, 0},
		{[]byte{1, 0, 0, 0, 2, 0x08, 1}, 0}, // compressed
		{[]byte{0, 0, 0, 0, 9, 0x08, 1}, 0}, // short
		{[]byte{0, 0, 0, 0, 2, 0x10, 1}, 0}, // another field
		{[]byte{0, 0, 0, 0, 3, 0x08, 0x81, 0x01}, 129},
	} {
		if got := healthStatus(tc.frame); got != tc.want {
			t.Errorf("healthStatus(%x) = %d, want %d", tc.frame, got, tc.want)
		}
	}
}
