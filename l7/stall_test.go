package l7_test

// A peer that goes quiet in the middle of an answer must not hold the
// other side's connection for ever: a backend silent mid-body, a client
// gone while the backend is silent, a client that stops reading.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/xlbproject/xlb/internal/testpki"
)

// stallBackend serves an answer of which it sends the first 2 of 10
// bytes, then one more byte every beat, beats times (8: the whole answer),
// then nothing; it reports on ended when the request's context ended (xlb
// closed the backend connection) or the handler finished.
type stallBackend struct {
	addr     string
	protocol string // backend_protocol
	tlsCA    string
	ended    chan string
}

func newStallBackend(t *testing.T, protocol string, beats int, beat time.Duration) *stallBackend {
	t.Helper()
	sb := &stallBackend{protocol: protocol, ended: make(chan string, 4)}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(2+max(beats, 8)))
		io.WriteString(w, "ab")
		w.(http.Flusher).Flush()
		for range beats {
			select {
			case <-r.Context().Done():
				sb.ended <- "cancelled"
				return
			case <-time.After(beat):
			}
			io.WriteString(w, ".")
			w.(http.Flusher).Flush()
		}
		if beats > 0 {
			sb.ended <- "finished"
			return
		}
		select {
		case <-r.Context().Done():
			sb.ended <- "cancelled"
		case <-time.After(20 * time.Second):
			sb.ended <- "still held after 20 s"
		}
	})
	if protocol == "h2c" {
		h = h2c.NewHandler(h, &http2.Server{})
	}
	srv := httptest.NewUnstartedServer(h)
	if protocol == "https" {
		ca := testpki.NewCA(t, "backends")
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Pair(t, "127.0.0.1")}}
		sb.tlsCA = ca.File
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	sb.addr = srv.Listener.Addr().String()
	return sb
}

func (sb *stallBackend) yaml() string {
	y := fmt.Sprintf("backend_protocol: %s\nbackends: [{address: %q}]\ntimeouts: {connect: 1s, response_header: 1s}\nretries: {attempts: 0}\n",
		sb.protocol, sb.addr)
	if sb.tlsCA != "" {
		y += fmt.Sprintf("backend_tls: {ca_file: %q}\n", sb.tlsCA)
	}
	return y
}

func (sb *stallBackend) waitEnded(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case s := <-sb.ended:
		return s
	case <-time.After(within):
		return fmt.Sprintf("not ended %v on", within)
	}
}

func stallClient(t *testing.T, proto string) *http.Client {
	if proto == "h2" {
		c, _ := h2Client(t, false)
		return c
	}
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// TestClientGoneWhileBackendSilent: a client that gives up while its
// backend sends nothing mid-answer frees the backend connection (HTTP/1.1)
// or stream (HTTP/2) within about a second, not when the backend writes
// again. Before, an HTTP/1.1 backend's request stayed open until it wrote
// (here: 20 s).
func TestClientGoneWhileBackendSilent(t *testing.T) {
	for _, bp := range []string{"http1", "https", "h2c"} {
		for _, cp := range []string{"h1", "h2"} {
			t.Run(bp+"/"+cp, func(t *testing.T) {
				sb := newStallBackend(t, bp, 0, 0)
				p := startProxy(t, sb.yaml(), "idle_timeout: 60s")
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/", nil)
				resp, err := stallClient(t, cp).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 2)
				if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "ab" {
					t.Fatalf("the answer's start: %q %v", buf, err)
				}
				cancel()
				gave := time.Now()
				if s := sb.waitEnded(t, 5*time.Second); s != "cancelled" {
					t.Fatalf("the backend's request: %s", s)
				}
				t.Logf("the backend's request ended %v after the client left", time.Since(gave).Round(time.Millisecond))
			})
		}
	}
}

// TestBackendSilentMidAnswerCut: a backend that sends nothing for
// l7.idle_timeout in the middle of an answer has it cut (the client sees
// a broken answer, not a short one, and the backend connection or stream
// is closed), while one that sends a byte more often than that is served
// to the end however long it takes. Before, the silent answer was held
// until the client gave up.
func TestBackendSilentMidAnswerCut(t *testing.T) {
	for _, bp := range []string{"http1", "https", "h2c"} {
		for _, cp := range []string{"h1", "h2"} {
			t.Run(bp+"/"+cp+"/silent", func(t *testing.T) {
				t.Parallel()
				sb := newStallBackend(t, bp, 0, 0)
				p := startProxy(t, sb.yaml(), "idle_timeout: 2s")
				start := time.Now()
				resp, err := stallClient(t, cp).Get(p.url + "/")
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				took := time.Since(start)
				if err == nil || string(b) != "ab" {
					t.Fatalf("got %q, %v after %v: want \"ab\" and a broken answer", b, err, took)
				}
				if took < 2*time.Second || took > 5*time.Second {
					t.Errorf("cut after %v: want idle_timeout (2s) to about a second more", took)
				}
				if s := sb.waitEnded(t, 3*time.Second); s != "cancelled" {
					t.Errorf("the backend's request: %s", s)
				}
			})
			t.Run(bp+"/"+cp+"/heartbeat", func(t *testing.T) {
				t.Parallel()
				sb := newStallBackend(t, bp, 8, 500*time.Millisecond)
				p := startProxy(t, sb.yaml(), "idle_timeout: 2s")
				resp, err := stallClient(t, cp).Get(p.url + "/")
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil || string(b) != "ab........" {
					t.Fatalf("got %q, %v: want the whole answer (4 s, a byte every 0.5 s, under an idle_timeout of 2s)", b, err)
				}
			})
		}
	}
}

// TestClientNotReadingCut: an HTTP/1.1 client that stops reading a large
// answer is cut after l7.idle_timeout without room in its socket, and the
// backend connection with it (NGINX's send_timeout). Before, the proxy's
// write waited for ever and held the backend. (What the kernel had
// accepted into the closed socket's buffer still trickles to the client.)
func TestClientNotReadingCut(t *testing.T) {
	// HTTP/1.1 goes through xlb's own engine, HTTP/1.0 through net/http's
	// (the hand-off).
	for _, version := range []string{"1.1", "1.0"} {
		t.Run("HTTP/"+version, func(t *testing.T) { clientNotReadingCut(t, version) })
	}
}

func clientNotReadingCut(t *testing.T, version string) {
	wrote := make(chan error, 1)
	be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		w.Header().Set("Content-Length", fmt.Sprint(1024*len(chunk)))
		for range 1024 {
			if _, err := w.Write(chunk); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	})
	p, access, _ := startLoggedProxy(t, backendsYAML(be), "idle_timeout: 2s")
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	// start is read before the request goes: the proxy's write deadline
	// cannot be set before the request reaches it, while a time read after
	// the write can come late (the test's goroutine preempted in between)
	// and make a cut exactly on time look early.
	start := time.Now()
	io.WriteString(c, "GET /big HTTP/"+version+"\r\nHost: x\r\n\r\n")
	// Read nothing: the answer (64 MiB) fills the sockets' buffers.
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("the backend wrote all 64 MiB to a client that read nothing")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the backend's write still waits 15 s after the client stopped reading (idle_timeout 2s)")
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("the backend connection was closed after %v, before idle_timeout (2s)", took)
	}
	for end := time.Now().Add(5 * time.Second); !strings.Contains(access.String(), `"path":"/big"`) && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if log := access.String(); !strings.Contains(log, "writing to the client") || !strings.Contains(log, "i/o timeout") {
		t.Errorf("access log: %s", log)
	}
}

// TestGRPCStreamMayIdle: a gRPC server stream is not cut by idle_timeout
// when its backend is silent for longer (a watch that waits for events):
// its deadline bounds it instead.
func TestGRPCStreamMayIdle(t *testing.T) {
	b := newGRPCBackend(t, "a")
	p, _, _ := startH2Proxy(t, false, addrYAML(b.addr)+"backend_protocol: h2c\n", "idle_timeout: 1s")
	cc := dialGRPC(t, p.listen)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	params := []*testgrpc.ResponseParameters{{}, {IntervalUs: 2_500_000}}
	ss, err := testgrpc.NewTestServiceClient(cc).StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvStream(ss)
	if err != nil {
		t.Fatalf("message %d, after 2.5 s of silence under an idle_timeout of 1s: %v", len(got), err)
	}
	if len(got) != 2 {
		t.Errorf("%d messages, want 2", len(got))
	}
}

// TestBackendNotReadingUploadCut: a backend that takes a request's head
// and then reads none of its streamed body holds the client no longer
// than l7.idle_timeout: the upload is cut, logged as 504 (NGINX's
// proxy_send_timeout answers so), and the backend connection closed.
// Before, the proxy's write to the backend waited for ever. (What the
// kernel had taken into the closed socket still trickles to the backend.)
func TestBackendNotReadingUploadCut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		// Read the head, then nothing.
		c.Read(make([]byte, 512))
		time.Sleep(20 * time.Second)
	}()
	p, access, _ := startLoggedProxy(t, fmt.Sprintf("backends: [{address: %q}]\ntimeouts: {connect: 1s, response_header: 30s}\nretries: {attempts: 0}\n", ln.Addr()), "idle_timeout: 1s")
	req, _ := http.NewRequest("POST", p.url+"/up", io.LimitReader(zeros{}, 256<<20))
	req.ContentLength = 256 << 20
	start := time.Now()
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the upload to a backend that does not read it was not cut in 15 s (idle_timeout 1s)")
	}
	if err == nil {
		resp.Body.Close()
	}
	t.Logf("the client: %v after %v", err, time.Since(start))
	for end := time.Now().Add(5 * time.Second); !strings.Contains(access.String(), `"path":"/up"`) && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	log := access.String()
	if !strings.Contains(log, `"status":504`) || !strings.Contains(log, "i/o timeout") {
		t.Errorf("access log: %s", log)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
