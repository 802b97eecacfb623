package health

import (
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCHealthFollowsServingStatus: a grpc check follows a real gRPC
// server's health service: SERVING is up, NOT_SERVING is down, and a
// server that stops answering is down.
func TestGRPCHealthFollowsServingStatus(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	c := NewChecker(Options{})
	spec := Spec{Type: TypeGRPC, Interval: 50 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2}
	c.Set([]Target{{Key: "grpc/b", Addr: ln.Addr().String(), Spec: spec}}, nil)
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	// The server as a whole is not serving: only a check that names the
	// service finds it up.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("shop.Cart", healthpb.HealthCheckResponse_SERVING)

	c := NewChecker(Options{})
	spec := Spec{Type: TypeGRPC, Service: "shop.Cart", Interval: 50 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	unknown := spec
	unknown.Service = "shop.Nothing"
	c.Set([]Target{{Key: "grpc/cart", Addr: ln.Addr().String(), Spec: spec}, {Key: "grpc/none", Addr: ln.Addr().String(), Spec: unknown}}, nil)
	run(t, c)
	waitFor(t, within(2, spec.Interval), "the named service up while SERVING", up(c, "grpc/cart"))
	hs.SetServingStatus("shop.Cart", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, within(2, spec.Interval), "the named service down once NOT_SERVING", down(c, "grpc/cart"))
	waitFor(t, within(2, spec.Interval), "an unknown service down with a reason", func() bool {
		st, _ := c.State("grpc/none")
		return !st.Up && st.LastError != ""
	})
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
