package l7_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// reloadTransports are the ways a client connection is served: xlb's
// HTTP/1.1 engine in cleartext and over TLS, its HTTP/2 engine likewise,
// and net/http for a connection the engine hands off.
var reloadTransports = []string{"http1", "https", "h2c", "h2", "handoff"}

// startReloadProxy runs the proxy for one transport with l7keys and
// returns it and the service's YAML, for a reload with other l7 keys.
func startReloadProxy(t *testing.T, transport, l7keys string) (*proxy, string) {
	t.Helper()
	svc := backendsYAML(newBackend(t, "a", nil))
	if transport == "https" || transport == "h2" {
		cert, key := writeSelfSigned(t, t.TempDir())
		svc += fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", cert, key)
	}
	return startProxy(t, svc, l7keys), svc
}

// openConn opens a new client connection the way transport does and
// takes it to where the limits apply: after the TLS handshake, and for
// handoff after a first request that made the engine hand the connection
// to net/http, whose next request net/http reads itself.
func openConn(t *testing.T, transport, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	switch transport {
	case "https", "h2":
		proto := map[string]string{"https": "http/1.1", "h2": "h2"}[transport]
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c = tc
	}
	br := bufio.NewReader(c)
	if transport == "handoff" {
		// An absolute-form target is net/http's; the connection stays
		// with it.
		io.WriteString(c, "GET http://x/first HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("the request handed off: %d, close %v", resp.StatusCode, resp.Close)
		}
	}
	return c, br
}

// reloadClient sends requests on one client connection.
type reloadClient struct {
	transport string
	c         net.Conn
	br        *bufio.Reader
	h2        *h2Raw // HTTP/2: the connection's framer
	evs       <-chan h2Event
	stream    uint32
}

// newReloadClient opens a client connection; an HTTP/2 one sends its
// preface and SETTINGS at once.
func newReloadClient(t *testing.T, transport, addr string) *reloadClient {
	t.Helper()
	rc := &reloadClient{transport: transport}
	rc.c, rc.br = openConn(t, transport, addr)
	if transport == "h2c" || transport == "h2" {
		h := &h2Raw{t: t, c: rc.c}
		h.fr = http2.NewFramer(rc.c, rc.br)
		h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		h.enc = hpack.NewEncoder(&h.hbuf)
		io.WriteString(rc.c, http2.ClientPreface)
		if err := h.fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		rc.h2, rc.evs, rc.stream = h, h.events(), 1
	}
	return rc
}

// statusWithHeader sends a GET with a header field of n bytes and returns
// the answer's status. (HTTP/2 by hand: a client library would refuse to
// send a field over the limit the proxy advertised.)
func (rc *reloadClient) statusWithHeader(t *testing.T, n int) int {
	t.Helper()
	big := strings.Repeat("x", n)
	if rc.h2 != nil {
		id := rc.stream
		rc.stream += 2
		if err := rc.h2.get(id, "/", "x-big", big); err != nil {
			t.Fatal(err)
		}
		ev, ok := until(rc.evs, 5*time.Second, func(ev h2Event) bool { return ev.stream == id && ev.status != "" })
		if !ok {
			t.Fatalf("a %d-byte field: no answer (%+v)", n, ev)
		}
		status, _ := strconv.Atoi(ev.status)
		return status
	}
	fmt.Fprintf(rc.c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big)
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("a %d-byte field: %v", n, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestReloadAppliesMaxHeaderBytes: a reload that lowers max_header_bytes
// applies to the connections accepted after it, on every transport, and
// HTTP/2 advertises the new MAX_HEADER_LIST_SIZE; a connection already
// open keeps the limit it was accepted with.
func TestReloadAppliesMaxHeaderBytes(t *testing.T) {
	for _, transport := range reloadTransports {
		t.Run(transport, func(t *testing.T) {
			p, svc := startReloadProxy(t, transport, "max_header_bytes: 8192")
			n := 7000
			if transport == "handoff" {
				// net/http reads up to MaxHeaderBytes + 8 KiB of a
				// kept-alive connection's next head: a 4 KiB peek while
				// idle, then its 4 KiB of slop.
				n = 14000
			}
			old := newReloadClient(t, transport, p.listen)
			if got := old.statusWithHeader(t, n); got != 200 {
				t.Fatalf("a %d-byte field with max_header_bytes 8192: %d, want 200", n, got)
			}

			p.apply(t, svc, "max_header_bytes: 4096")
			if got := newReloadClient(t, transport, p.listen).statusWithHeader(t, n); got != 431 {
				t.Errorf("a %d-byte field on a new connection after a reload to max_header_bytes 4096: %d, want 431", n, got)
			}
			if got := old.statusWithHeader(t, n); got != 200 {
				t.Errorf("a %d-byte field on a connection opened before the reload: %d, want 200 (its limit stays)", n, got)
			}
		})
	}
	t.Run("h2-settings", func(t *testing.T) {
		p, svc := startReloadProxy(t, "h2c", "max_header_bytes: 8192")
		p.apply(t, svc, "max_header_bytes: 4096")
		fr := http2.NewFramer(nil, dialH2Raw(t, p.listen).c)
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok {
			t.Fatalf("first frame %v, want SETTINGS", f)
		}
		if v, ok := sf.Value(http2.SettingMaxHeaderListSize); !ok || v != 4096 {
			t.Errorf("MAX_HEADER_LIST_SIZE after a reload to max_header_bytes 4096: %d (sent %v)", v, ok)
		}
	})
}

// TestReloadAppliesTimeouts: a reload that shortens idle_timeout or
// read_header_timeout applies to the connections accepted after it, on
// every transport.
func TestReloadAppliesTimeouts(t *testing.T) {
	for _, tt := range []struct {
		key string
		// start is what the client sends: nothing more (idle), or the
		// start of a request head it never finishes.
		start func(transport string, c net.Conn)
	}{
		{"idle_timeout", func(transport string, c net.Conn) {
			if transport == "h2c" || transport == "h2" {
				io.WriteString(c, http2.ClientPreface)
				http2.NewFramer(c, nil).WriteSettings()
			}
		}},
		{"read_header_timeout", func(transport string, c net.Conn) {
			if transport == "h2c" || transport == "h2" {
				io.WriteString(c, http2.ClientPreface[:10])
				return
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		}},
	} {
		for _, transport := range reloadTransports {
			t.Run(tt.key+"/"+transport, func(t *testing.T) {
				p, svc := startReloadProxy(t, transport, "idle_timeout: 30s\nread_header_timeout: 30s")
				p.apply(t, svc, strings.Replace("idle_timeout: 30s\nread_header_timeout: 30s", tt.key+": 30s", tt.key+": 300ms", 1))
				c, br := openConn(t, transport, p.listen)
				start := time.Now()
				tt.start(transport, c)
				c.SetReadDeadline(start.Add(5 * time.Second))
				_, err := io.Copy(io.Discard, br) // until the proxy closes
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the connection is still open after 5 s, with %s reloaded from 30s to 300ms", tt.key)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("the connection was closed after %v, with %s reloaded to 300ms", d, tt.key)
				}
			})
		}
	}
}
