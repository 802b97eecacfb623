package l7_test

// The known HTTP/2 attacks, each against the bound that defeats it; each
// test checks that other clients are still served while it runs.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/l7"
)

// servedMeanwhile checks that a well-behaved HTTP/2 client is answered.
func servedMeanwhile(t *testing.T, addr string) {
	t.Helper()
	c, _ := h2Client(t, false)
	resp, err := c.Get("http://" + addr + "/ok")
	if err != nil {
		t.Errorf("another client during the attack: %v", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("another client during the attack: %s", resp.Status)
	}
}

// startLoggedProxy is startProxy with an access log and a metrics
// registry the test reads.
func startLoggedProxy(t *testing.T, service, l7keys string) (*proxy, *syncbuf.Buffer, *prometheus.Registry) {
	t.Helper()
	var access syncbuf.Buffer
	reg := prometheus.NewRegistry()
	p := &proxy{listen: freePort(t)}
	p.srv = must(l7.New(l7.Options{AccessLog: slog.New(slog.NewJSONHandler(&access, nil)), Registry: reg, StickySecret: make([]byte, 32)}))
	p.apply(t, service, l7keys)
	p.url = "http://" + p.listen
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
	})
	return p, &access, reg
}

// TestH2RapidResetBounded (CVE-2023-44487): a client that opens streams
// and resets each at once makes the proxy start backend work it throws
// away, as fast as it can send two frames; at most h2MaxStreams of them
// run at once (the stream is counted until its work stops, not until the
// client reset it), and a connection resetting more than 256 unanswered
// streams a second is closed with ENHANCE_YOUR_CALM. Without the bound
// the flood below makes thousands of requests.
func TestH2RapidResetBounded(t *testing.T) {
	be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "ok")
	})
	p, access, _ := startLoggedProxy(t, backendsYAML(be)+"passive_health: {max_fails: 1, fail_timeout: 30s}\n", "")
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	block := h.block("/")
	start := time.Now()
	var sent int
	var werr error
	for id := uint32(1); time.Since(start) < 2*time.Second && id < 1<<20; id += 2 {
		werr = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
		if werr == nil {
			werr = h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if werr != nil {
			break
		}
		sent++
		if sent%64 == 0 {
			// Paced a little, so that the streams' work has time to start:
			// the attack costs the server most that way.
			time.Sleep(time.Millisecond)
		}
	}
	ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway })
	if !ok || ev.code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("after %d open-and-reset streams: %+v, want GOAWAY ENHANCE_YOUR_CALM (write error %v)", sent, ev, werr)
	}
	servedMeanwhile(t, p.listen)
	time.Sleep(300 * time.Millisecond) // the cancelled streams' log lines
	logged := strings.Count(access.String(), `"status":499`)
	if logged > 2*256+128 {
		t.Errorf("%d streams of one connection were worked on and thrown away (of %d sent)", logged, sent)
	}
	st, _ := p.srv.Status("web")
	if len(st) != 1 || st[0].Ejected || st[0].Failures != 0 {
		t.Errorf("the backend after the flood: %+v; resets are not backend faults", st)
	}
	t.Logf("%d open-and-reset streams sent, %d logged as 499, %d reached the backend", sent, logged, be.hits.Load()-1)
}

// TestH2ContinuationFloodBounded (CVE-2024-27316 and kin): a header block
// that never ends, in CONTINUATION frames, is decoded as it comes (never
// buffered) and cut once its compressed bytes pass twice max_header_bytes:
// GOAWAY ENHANCE_YOUR_CALM after a bounded number of bytes. Without the
// bound the connection reads (and decodes) forever.
func TestH2ContinuationFloodBounded(t *testing.T) {
	be := newBackend(t, "be", nil)
	p := startProxy(t, backendsYAML(be), "max_header_bytes: 16384")
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("/"), EndHeaders: false, EndStream: true}); err != nil {
		t.Fatal(err)
	}
	// Distinct literal fields that are never indexed: each costs the
	// server its full size.
	var frag bytes.Buffer
	enc := hpack.NewEncoder(&frag)
	for i := 0; frag.Len() < 15000; i++ {
		enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-flood-%d", i), Value: strings.Repeat("v", 100), Sensitive: true})
	}
	var sent int64
	done := make(chan error, 1)
	go func() {
		h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for sent < 200<<20 {
			if err := h.fr.WriteContinuation(1, false, frag.Bytes()); err != nil {
				done <- err
				return
			}
			atomic.AddInt64(&sent, int64(frag.Len()))
		}
		done <- nil
	}()
	ev, ok := until(evs, 10*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameGoAway })
	if !ok || ev.code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("an endless header block (%d bytes sent): %+v, want GOAWAY ENHANCE_YOUR_CALM", atomic.LoadInt64(&sent), ev)
	}
	h.c.Close()
	<-done
	servedMeanwhile(t, p.listen)
	if be.hits.Load() != 1 {
		t.Errorf("the flood's request reached the backend")
	}
}

// TestH2ControlFloodBounded: a client that floods PING or SETTINGS (each
// asking for an answer), with a stream open, and never reads the answers
// holds its connection,
// and the answers buffered for it, only until a write has been stuck for
// idle_timeout; then the connection is closed. Memory stays bounded and
// other clients are served. Without a write deadline the connection's
// reader would wait in that write forever.
func TestH2ControlFloodBounded(t *testing.T) {
	for _, kind := range []string{"ping", "settings"} {
		t.Run(kind, func(t *testing.T) {
			g := newGate(t)
			be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/hold" {
					g.wait()
				}
				io.WriteString(w, "ok")
			})
			p := startProxy(t, backendsYAML(be), "idle_timeout: 1s")
			h := dialH2Raw(t, p.listen)
			// A stream held open: the connection is busy, not idle, so
			// only the stuck write can end it.
			h.get(1, "/hold")
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			h.c.SetWriteDeadline(start.Add(15 * time.Second))
			var err error
			frames := 0
			for ; frames < 5_000_000; frames++ {
				if kind == "ping" {
					err = h.fr.WritePing(false, [8]byte{1})
				} else {
					err = h.fr.WriteSettings()
				}
				if err != nil {
					break
				}
				if frames == 50_000 {
					servedMeanwhile(t, p.listen)
				}
			}
			took := time.Since(start)
			g.open()
			runtime.ReadMemStats(&after)
			var ne net.Error
			switch {
			case err == nil:
				t.Errorf("%d %s frames never read back: the connection is still open after %v", frames, kind, took)
			case errors.As(err, &ne) && ne.Timeout():
				t.Errorf("the flooding connection was still open after %v (%d frames): the proxy waits on a client that does not read", took, frames)
			}
			if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 64<<20 {
				t.Errorf("the heap grew by %d MiB during the flood", grown>>20)
			}
			servedMeanwhile(t, p.listen)
			t.Logf("%d %s frames, connection closed after %v: %v", frames, kind, took.Round(time.Millisecond), err)
		})
	}
}

// TestH2ZeroWindowStallBounded: a client that never opens its
// flow-control window holds its stream, and the backend connection
// behind it, for idle_timeout at most: then the stream is reset and,
// idle, the connection is closed. Without the bound both stay forever.
func TestH2ZeroWindowStallBounded(t *testing.T) {
	big := pattern(1 << 20)
	be := newCountedBackend(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.WriteString(w, "ok")
	})
	p := startProxy(t, addrYAML(be.addr()), "idle_timeout: 1s")
	h := dialH2Raw(t, p.listen, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	evs := h.events()
	start := time.Now()
	h.get(1, "/big")
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 && ev.typ == http2.FrameHeaders }); !ok || ev.status != "200" {
		t.Fatalf("no answer head: %+v", ev)
	}
	servedMeanwhile(t, p.listen)
	ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == 1 })
	if !ok || ev.typ != http2.FrameRSTStream {
		t.Errorf("a stream whose window never opens: %+v after %v, want RST_STREAM", ev, time.Since(start))
	}
	if ev, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.err != nil }); !ok {
		t.Errorf("the stalled connection was not closed once idle: %+v", ev)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the stall lasted %v with idle_timeout 1s", d)
	}
}

// TestH2TooManyStreamsRefused: streams beyond SETTINGS_MAX_CONCURRENT_STREAMS
// (128) are refused with REFUSED_STREAM (safe for the client to retry)
// and never reach a backend; those within the limit are answered.
func TestH2TooManyStreamsRefused(t *testing.T) {
	g := newGate(t)
	var arrived atomic.Int64
	be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived.Add(1)
			g.wait()
		}
		io.WriteString(w, "ok")
	})
	p := startProxy(t, backendsYAML(be), "")
	h := dialH2Raw(t, p.listen)
	evs := h.events()
	const n = 140
	for i := range n {
		if err := h.get(uint32(2*i+1), "/hold"); err != nil {
			t.Fatal(err)
		}
	}
	refused := map[uint32]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for len(refused) < n-128 && time.Now().Before(deadline) {
		ev, ok := until(evs, time.Until(deadline), func(ev h2Event) bool { return ev.typ == http2.FrameRSTStream })
		if !ok {
			break
		}
		if ev.code == http2.ErrCodeRefusedStream {
			refused[ev.stream] = true
		}
	}
	for arrived.Load() < 128 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if len(refused) != n-128 || arrived.Load() != 128 {
		t.Errorf("%d streams at once: %d refused, %d reached the backend; want %d and 128", n, len(refused), arrived.Load(), n-128)
	}
	for id := range refused {
		if id < 2*128 {
			t.Errorf("stream %d refused though it was within the first 128", id)
		}
	}
	g.open()
	answered := 0
	for answered < 128 {
		_, ok := until(evs, 5*time.Second, func(ev h2Event) bool { return ev.typ == http2.FrameData && ev.end })
		if !ok {
			break
		}
		answered++
	}
	if answered != 128 {
		t.Errorf("%d of the 128 admitted streams answered", answered)
	}
}
