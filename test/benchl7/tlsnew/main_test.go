package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tlsServer serves "hello\n" over TLS with session tickets on (Go's default)
// and counts the connections it accepted and the handshakes that resumed.
func tlsServer(t *testing.T) (url string, accepted, resumed *atomic.Int64) {
	t.Helper()
	accepted, resumed = new(atomic.Int64), new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS.DidResume {
			resumed.Add(1)
		}
		w.Write([]byte("hello\n"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + "/", accepted, resumed
}

func TestRunMakesOneConnectionAndFullHandshakePerRequest(t *testing.T) {
	url, accepted, resumed := tlsServer(t)
	tg, err := newTarget(url, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	r := tg.run(4, 300*time.Millisecond, 5*time.Second)
	n := int64(len(r.lat))
	if n < 10 {
		t.Fatalf("%d requests in 300ms", n)
	}
	if r.errs != [errKinds]int64{} || r.non2xx != 0 {
		t.Fatalf("errors %v, non-2xx %d, first %v", r.errs, r.non2xx, r.firstErr)
	}
	if r.full != n || r.resumed != 0 || resumed.Load() != 0 {
		t.Errorf("%d requests: client saw %d full and %d resumed handshakes, server %d resumed", n, r.full, r.resumed, resumed.Load())
	}
	if got := accepted.Load(); got != n {
		t.Errorf("%d requests on %d connections, want one each", n, got)
	}
	if r.bytes != 6*n {
		t.Errorf("%d body bytes for %d requests of 6", r.bytes, n)
	}
}

func TestCheckReportsTLS13AndHTTP11(t *testing.T) {
	url, _, _ := tlsServer(t)
	tg, err := newTarget(url, "")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := tg.check(&out, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "TLS: TLS 1.3 ") || !strings.Contains(s, "X25519, ALPN http/1.1, resumed false") || !strings.Contains(s, `"hello\n"`) {
		t.Errorf("check printed %q", s)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct{ p, want int }{{50, 50}, {99, 99}, {100, 100}, {1, 1}} {
		if got := percentile(d, c.p); got != time.Duration(c.want) {
			t.Errorf("p%d = %d, want %d", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("p50 of nothing is not 0")
	}
}
