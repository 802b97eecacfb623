package l7_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/xlbproject/xlb/l7"
)

// grpcBackend is a real gRPC server (grpc-go, HTTP/2 in cleartext) with
// the interop TestService: it names itself in unary answers, streams what
// it is asked, and fails a call with the status the request asks for,
// with trailing metadata.
type grpcBackend struct {
	testgrpc.UnimplementedTestServiceServer
	name      string
	addr      string
	calls     atomic.Int64
	cancelled atomic.Int64
	down      atomic.Bool // answer every unary call UNAVAILABLE
}

func newGRPCBackend(t *testing.T, name string) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &grpcBackend{name: name, addr: ln.Addr().String()}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, b)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return b
}

// dialGRPC is a cleartext gRPC client connection to addr (xlb's listener),
// closed when the test ends.
func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func (b *grpcBackend) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.calls.Add(1)
	if b.down.Load() {
		return nil, status.Error(codes.Unavailable, "overloaded")
	}
	if st := req.GetResponseStatus(); st != nil && st.Code != 0 {
		grpc.SetTrailer(ctx, metadata.Pairs("x-detail", "from "+b.name))
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	if string(req.GetPayload().GetBody()) == "slow" {
		select {
		case <-ctx.Done():
			b.cancelled.Add(1)
			return nil, ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: []byte(b.name)}}, nil
}

func (b *grpcBackend) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	for i, rp := range req.GetResponseParameters() {
		if us := rp.GetIntervalUs(); us > 0 {
			select {
			case <-stream.Context().Done():
				return stream.Context().Err()
			case <-time.After(time.Duration(us) * time.Microsecond):
			}
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: fmt.Appendf(nil, "%d", i)}}); err != nil {
			return err
		}
	}
	if st := req.GetResponseStatus(); st != nil && st.Code != 0 {
		return status.Error(codes.Code(st.Code), st.Message) // in the trailers, after the messages
	}
	return nil
}

func (b *grpcBackend) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// recvStream reads a server stream to its end: the messages' payloads,
// and the error that ended it early (nil at the stream's end).
func recvStream(ss grpc.ServerStreamingClient[testgrpc.StreamingOutputCallResponse]) ([]string, error) {
	var got []string
	for {
		m, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, string(m.GetPayload().GetBody()))
	}
}

// TestGRPCThroughXLB: real gRPC clients (grpc-go, h2c and TLS) through
// xlb to real gRPC servers (backend_protocol h2c): unary calls over one
// client connection spread over every backend; server streaming and
// bidirectional streaming deliver every message in order; an error status
// with trailing metadata reaches the client unchanged; a call the client
// gives up on (its deadline) cancels the backend's and ejects nothing.
func TestGRPCThroughXLB(t *testing.T) {
	bs := []*grpcBackend{newGRPCBackend(t, "a"), newGRPCBackend(t, "b"), newGRPCBackend(t, "c")}
	svc := addrYAML(bs[0].addr, bs[1].addr, bs[2].addr) + "backend_protocol: h2c\npassive_health: {max_fails: 1, fail_timeout: 30s}\n"
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2c", true: "tls"}[withTLS], func(t *testing.T) {
			for _, b := range bs {
				b.calls.Store(0)
				b.cancelled.Store(0)
			}
			p, _, _ := startH2Proxy(t, withTLS, svc, "")
			creds := insecure.NewCredentials()
			if withTLS {
				creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
			}
			cc, err := grpc.NewClient("passthrough:///"+p.listen, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			c := testgrpc.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			got := map[string]int{}
			for range 30 {
				resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				if err != nil {
					t.Fatalf("unary call: %v", err)
				}
				got[string(resp.GetPayload().GetBody())]++
			}
			if got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
				t.Errorf("30 unary calls on one client connection went %v, want 10 to each backend", got)
			}

			params := make([]*testgrpc.ResponseParameters, 50)
			for i := range params {
				params[i] = &testgrpc.ResponseParameters{}
			}
			ss, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := recvStream(ss)
			if err != nil {
				t.Fatalf("server streaming, message %d: %v", len(msgs), err)
			}
			if len(msgs) != 50 {
				t.Errorf("server streaming: %d messages, want 50", len(msgs))
			}
			for i, m := range msgs {
				if m != fmt.Sprint(i) {
					t.Fatalf("server streaming: message %d is %q", i, m)
				}
			}

			bidi, err := c.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				msg := fmt.Sprintf("ping %d", i)
				if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
					t.Fatal(err)
				}
				m, err := bidi.Recv()
				if err != nil || string(m.GetPayload().GetBody()) != msg {
					t.Fatalf("bidi message %d: %q, %v", i, m.GetPayload().GetBody(), err)
				}
			}
			bidi.CloseSend()
			if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
				t.Errorf("bidi end: %v", err)
			}

			var trailer metadata.MD
			_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not now"}}, grpc.Trailer(&trailer))
			if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || st.Message() != "not now" || !strings.HasPrefix(strings.Join(trailer.Get("x-detail"), ""), "from ") {
				t.Errorf("an error status: %v, trailer %v; want FailedPrecondition \"not now\" with x-detail", err, trailer)
			}

			for range 3 {
				short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
				_, err := c.UnaryCall(short, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("slow")}})
				cancelShort()
				if status.Code(err) != codes.DeadlineExceeded {
					t.Errorf("a call past its deadline: %v", err)
				}
			}
			deadline := time.Now().Add(2 * time.Second)
			var n int64
			for time.Now().Before(deadline) {
				n = bs[0].cancelled.Load() + bs[1].cancelled.Load() + bs[2].cancelled.Load()
				if n == 3 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n != 3 {
				t.Errorf("%d of 3 backend calls cancelled after their clients gave up", n)
			}
			st, _ := p.srv.Status("web")
			for _, s := range st {
				if s.Ejected || s.Failures != 0 {
					t.Errorf("backend %s: ejected %v, %d failures after calls the clients gave up on", s.Address, s.Ejected, s.Failures)
				}
			}
		})
	}
}

// TestGRPCStatusWhenNoBackend: a gRPC call xlb answers itself gets a gRPC
// status its client understands (HTTP 200, trailers-only), not an HTTP
// error page (which gRPC reports as UNKNOWN or UNIMPLEMENTED): no usable
// backend is UNAVAILABLE with xlb's message, a backend that refuses
// connections is UNAVAILABLE too, a rate limit is RESOURCE_EXHAUSTED.
func TestGRPCStatusWhenNoBackend(t *testing.T) {
	b := newGRPCBackend(t, "a")
	cases := []struct {
		name, svc, msg string
		want           codes.Code
	}{
		{"drained", "backends: [{address: \"" + b.addr + "\", weight: 0}]\n", "no backend available for service web", codes.Unavailable},
		{"refused", "backends: [{address: \"" + freePort(t) + "\"}]\nretries: {attempts: 0}\n", "Service Unavailable", codes.Unavailable},
		{"rate-limited", "backends: [{address: \"" + b.addr + "\"}]\nrate_limit: {rate: 1/m, burst: 1}\n", "rate limit exceeded", codes.ResourceExhausted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, tc.svc+"backend_protocol: h2c\n", "")
			cc := dialGRPC(t, p.listen)
			c := testgrpc.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tc.name == "rate-limited" {
				if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
					t.Fatalf("the call within the limit: %v", err)
				}
			}
			_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			if st, _ := status.FromError(err); st.Code() != tc.want || st.Message() != tc.msg {
				t.Errorf("got %v, want %v %q", err, tc.want, tc.msg)
			}
		})
	}
}

// TestGRPCRetriesOnUnavailable: with retries.on [grpc_unavailable], a call
// a backend answers UNAVAILABLE (trailers-only: it was not served) goes to
// another backend, and passive health counts the answer against the
// backend that gave it; without it, the client sees the status.
func TestGRPCRetriesOnUnavailable(t *testing.T) {
	for _, retry := range []bool{true, false} {
		t.Run(fmt.Sprintf("retry-%v", retry), func(t *testing.T) {
			good, bad := newGRPCBackend(t, "good"), newGRPCBackend(t, "bad")
			bad.down.Store(true)
			on := "[connect_error]"
			if retry {
				on = "[connect_error, grpc_unavailable]"
			}
			p := startProxy(t, addrYAML(good.addr, bad.addr)+"backend_protocol: h2c\nretries: {attempts: 1, on: "+on+"}\npassive_health: {max_fails: 3, fail_timeout: 30s}\n", "")
			cc := dialGRPC(t, p.listen)
			c := testgrpc.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			failed := 0
			for range 20 {
				if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil {
					if status.Code(err) != codes.Unavailable {
						t.Fatalf("a call: %v", err)
					}
					failed++
				}
			}
			// A call whose body arrived after its head was streamed to the
			// backend and cannot be sent again: grpc-go usually sends both
			// at once, not always, so a retried call is counted, not all.
			badAnswers := int(bad.calls.Load())
			if retry && (badAnswers == 0 || failed >= badAnswers) {
				t.Errorf("%d of 20 calls failed UNAVAILABLE, %d answered by the bad backend: none was sent to the good one", failed, badAnswers)
			}
			if !retry && (failed == 0 || failed != badAnswers) {
				t.Errorf("without retries %d calls failed, %d answered UNAVAILABLE by the bad backend: want the same", failed, badAnswers)
			}
			st, _ := p.srv.Status("web")
			for _, s := range st {
				if s.Address == bad.addr && !s.Ejected {
					t.Errorf("the backend answering UNAVAILABLE was not ejected (%d failures)", s.Failures)
				}
				if s.Address == good.addr && (s.Ejected || s.Failures != 0) {
					t.Errorf("the good backend: ejected %v, %d failures", s.Ejected, s.Failures)
				}
			}
		})
	}
}

// TestGRPCTimedOutCallNotRetried: grpc_unavailable sends again a call
// whose backend failed before answering, not one whose answer timed out:
// that backend may still be running it, and the client sees
// DEADLINE_EXCEEDED, which gRPC clients do not retry either.
func TestGRPCTimedOutCallNotRetried(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	p := startProxy(t, addrYAML(a.addr, b.addr)+"backend_protocol: h2c\ntimeouts: {response_header: 300ms}\nretries: {attempts: 1, on: [connect_error, grpc_unavailable]}\npassive_health: {max_fails: 0}\n", "")
	cc := dialGRPC(t, p.listen)
	c := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("slow")}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a call whose answer timed out: %v, want DEADLINE_EXCEEDED", err)
	}
	if n := a.calls.Load() + b.calls.Load(); n != 1 {
		t.Errorf("the call reached the backends %d times, want once", n)
	}
}

// TestGRPCStatusInLogAndMetrics: the access log and
// xlb_l7_grpc_calls_total carry each call's gRPC status: from the
// backend's trailers, from a trailers-only answer, or xlb's own.
func TestGRPCStatusInLogAndMetrics(t *testing.T) {
	b := newGRPCBackend(t, "a")
	p, access, reg := startLoggedProxy(t, addrYAML(b.addr)+"backend_protocol: h2c\n", "")
	cc := dialGRPC(t, p.listen)
	c := testgrpc.NewTestServiceClient(cc)
	ctx := t.Context()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "no"}})
	// A call its client cancels is counted CANCELLED.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	c.UnaryCall(cctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("slow")}})
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(access.String(), `"status":499`) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	p.apply(t, "backends: [{address: \""+b.addr+"\", weight: 0}]\nbackend_protocol: h2c\n", "")
	c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	time.Sleep(50 * time.Millisecond)
	for _, want := range []string{`"grpc_status":"0"`, `"grpc_status":"9"`, `"grpc_status":"14"`, `"grpc_status":"1"`} {
		if !strings.Contains(access.String(), want) {
			t.Errorf("the access log has no %s:\n%s", want, access.String())
		}
	}
	if got := grpcCallsByStatus(t, reg); got["0"] != 1 || got["9"] != 1 || got["14"] != 1 || got["1"] != 1 {
		t.Errorf("xlb_l7_grpc_calls_total by status: %v, want one each of 0, 9, 14 and 1", got)
	}
}

// TestGRPCStreamedBodyToRefusedBackend: a call whose body comes after its
// head (so it streams to the backend) and whose backend refuses the
// connection still gets UNAVAILABLE, not a reset: stopping the body's
// sender is not the client failing.
func TestGRPCStreamedBodyToRefusedBackend(t *testing.T) {
	p := startProxy(t, "backends: [{address: \""+freePort(t)+"\"}]\nbackend_protocol: h2c\nretries: {attempts: 0}\n", "")
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	block := h.block("/grpc.testing.TestService/UnaryCall", "content-type", "application/grpc", "te", "trailers")
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	h.fr.WriteData(1, true, []byte{0, 0, 0, 0, 0})
	ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 })
	if !ok || ev.typ != http2.FrameHeaders || ev.status != "200" || !ev.end || ev.grpc != "14" {
		t.Errorf("got %+v, want a trailers-only answer with grpc-status 14", ev)
	}
}

// TestGRPCUnavailableInTrailersCountsForPassiveHealth: a backend that
// ends a call UNAVAILABLE after its messages (the status in real trailers,
// not a trailers-only answer) is at fault as much as one that answers
// UNAVAILABLE at once: passive health counts it and, at max_fails, ejects
// it. Such calls add up to max_fails: the head before them is no success
// that clears the count. With round robin over two backends each fails
// its share; the first to reach max_fails is ejected, the other is spared
// as the last one.
func TestGRPCUnavailableInTrailersCountsForPassiveHealth(t *testing.T) {
	for _, maxFails := range []int{1, 2} {
		t.Run(fmt.Sprintf("max_fails-%d", maxFails), func(t *testing.T) {
			a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
			p, _, _ := startH2Proxy(t, false, addrYAML(a.addr, b.addr)+fmt.Sprintf("backend_protocol: h2c\npassive_health: {max_fails: %d, fail_timeout: 30s}\nretries: {attempts: 0}\n", maxFails), "")
			cc := dialGRPC(t, p.listen)
			c := testgrpc.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range 2*maxFails - 1 {
				ss, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
					ResponseParameters: []*testgrpc.ResponseParameters{{}},
					ResponseStatus:     &testgrpc.EchoStatus{Code: int32(codes.Unavailable), Message: "draining"},
				})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ss.Recv(); err != nil {
					t.Fatalf("the message before the status: %v", err)
				}
				if _, err := ss.Recv(); status.Code(err) != codes.Unavailable {
					t.Fatalf("the call ended with %v, want UNAVAILABLE", err)
				}
			}
			// The pipeline counts the call once its last frame went out:
			// the client may see the status a moment before.
			var st []l7.BackendStatus
			ejected := 0
			for deadline := time.Now().Add(2 * time.Second); ejected == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				st, _ = p.srv.Status("web")
				for _, be := range st {
					if be.Ejected {
						ejected++
					}
				}
			}
			if ejected != 1 {
				t.Errorf("%d backends ejected after UNAVAILABLE in the trailers (max_fails %d), want 1: %+v", ejected, maxFails, st)
			}
		})
	}
}

// stoppable is a gRPC backend whose server-streaming call sends one
// message, then waits: the test stops the server under it.
type stoppable struct {
	testgrpc.UnimplementedTestServiceServer
	started chan struct{}
}

func (b *stoppable) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte("first")}}); err != nil {
		return err
	}
	close(b.started)
	<-stream.Context().Done()
	return stream.Context().Err()
}

// TestGRPCBackendGoneMidStream: a streaming call whose backend goes away
// after its first message ends UNAVAILABLE for its client (what it would
// see without xlb, and what retry policies key on), not INTERNAL, and the
// call is in the log, the metric and passive health.
func TestGRPCBackendGoneMidStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	impl := &stoppable{started: make(chan struct{})}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, impl)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	p, access, reg := startLoggedProxy(t, addrYAML(ln.Addr().String())+"backend_protocol: h2c\npassive_health: {max_fails: 1, fail_timeout: 1m}\n", "")
	cc := dialGRPC(t, p.listen)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ss, err := testgrpc.NewTestServiceClient(cc).StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := ss.Recv(); err != nil || string(m.GetPayload().GetBody()) != "first" {
		t.Fatalf("first message: %v, %v", m, err)
	}
	<-impl.started
	srv.Stop()
	for err == nil {
		_, err = ss.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("the call after its backend went away: %v, want UNAVAILABLE", err)
	}
	for deadline := time.Now().Add(2 * time.Second); !strings.Contains(access.String(), `"grpc_status":"14"`) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(access.String(), `"grpc_status":"14"`) {
		t.Errorf("the access log has no grpc_status 14:\n%s", access.String())
	}
	if st, _ := p.srv.Status("web"); len(st) != 1 || st[0].Failures != 1 {
		t.Errorf("passive health after the call: %+v, want 1 failure", st)
	}
	if got := grpcCallsByStatus(t, reg); got["14"] != 1 {
		t.Errorf("xlb_l7_grpc_calls_total by status: %v, want one call ended 14", got)
	}
}

// grpcCallsByStatus sums xlb_l7_grpc_calls_total by grpc_status.
func grpcCallsByStatus(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "xlb_l7_grpc_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "grpc_status" {
					got[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}
