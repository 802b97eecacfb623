package l7_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// keepAliveBackend answers every request on a connection with the same
// fixed response, reading into a fixed buffer: it allocates nothing per
// request, so the process's allocation count measures the proxy's.
func keepAliveBackend(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				out := []byte(resp)
				buf := make([]byte, 8192)
				var pending []byte
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					pending = append(pending, buf[:n]...)
					for {
						i := bytes.Index(pending, []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						pending = pending[:copy(pending, pending[i+4:])]
						if _, err := c.Write(out); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestEngineAllocatesNothingPerRequest: a keep-alive request through the
// HTTP/1.1 engine, in cleartext and over TLS, allocates nothing on the
// proxy's side (the pipeline's scratch space lives with the connection).
// An allocation per request is garbage collector work that NGINX does not
// have; this test finds one the moment it creeps in.
func TestEngineAllocatesNothingPerRequest(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	const resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	for _, withTLS := range []bool{false, true} {
		name := map[bool]string{false: "cleartext", true: "tls"}[withTLS]
		t.Run(name, func(t *testing.T) {
			svc := "backends: [{address: \"" + keepAliveBackend(t, resp) + "\"}]\n"
			if withTLS {
				svc += "tls: {cert_file: \"" + cert + "\", key_file: \"" + key + "\"}\n"
			}
			p := startProxy(t, svc, "")
			c, err := net.Dial("tcp", p.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if withTLS {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				c = tc
			}
			req := []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: fixed-id\r\n\r\n")
			buf := make([]byte, 4096)
			round := func() {
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
				got := 0
				for !bytes.HasSuffix(buf[:got], []byte("\r\n\r\nok")) {
					n, err := c.Read(buf[got:])
					if err != nil {
						t.Fatal(err)
					}
					got += n
				}
			}
			for range 200 { // warm: pools, metric children, buffers
				round()
			}
			const n = 2000
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range n {
				round()
			}
			runtime.ReadMemStats(&after)
			// The test's own client allocates nothing per round either,
			// except that crypto/tls makes a 24-byte reader each time it
			// reads the socket: once in the client, twice in the proxy (the
			// read that gets the request, and the one that finds the socket
			// empty, which costs no system call: see sessionConn). A little
			// slack for the runtime's own work.
			want := 0.0
			if withTLS {
				want = 3
			}
			if per := float64(after.Mallocs-before.Mallocs) / n; per > want+0.2 {
				t.Errorf("%.2f allocations per request (client included), want %.0f", per, want)
			}
		})
	}
}

// batchConn holds a TLS client's records until flush, so that a test can
// put several records in one TCP write.
type batchConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (c *batchConn) Write(p []byte) (int, error) {
	if c.hold {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *batchConn) flush() error {
	b := c.buf
	c.buf, c.hold = nil, false
	_, err := c.Conn.Write(b)
	return err
}

// TestTLSRequestsAcrossRecords: over TLS the engine skips the read that
// would find the socket empty, so requests that crypto/tls already holds
// (several records in one segment) or that span records arriving apart
// must still be served, never left waiting in a buffer.
func TestTLSRequestsAcrossRecords(t *testing.T) {
	const resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	p := startProxy(t, "backends: [{address: \""+keepAliveBackend(t, resp)+"\"}]\ntls: {cert_file: \""+cert+"\", key_file: \""+key+"\"}\n", "")
	raw, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	bc := &batchConn{Conn: raw}
	c := tls.Client(bc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	expect := func(n int) {
		t.Helper()
		got := 0
		for bytes.Count(buf[:got], []byte("\r\n\r\nok")) < n {
			m, err := c.Read(buf[got:])
			if err != nil {
				t.Fatalf("waiting for %d answers, got %q: %v", n, buf[:got], err)
			}
			got += m
		}
	}
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	// Three requests, each its own record, in one TCP segment.
	bc.hold = true
	for range 3 {
		io.WriteString(c, req)
	}
	if err := bc.flush(); err != nil {
		t.Fatal(err)
	}
	expect(3)
	// One head in two records that arrive 50 ms apart.
	io.WriteString(c, req[:10])
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, req[10:])
	expect(1)
	// A whole request and the start of the next in one segment, the rest
	// later.
	bc.hold = true
	io.WriteString(c, req)
	io.WriteString(c, req[:5])
	bc.flush()
	expect(1)
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, req[5:])
	expect(1)
}

// TestH2AllocationsPerStream: a stream through the HTTP/2 engine (h2c, one
// at a time on a warm connection) allocates one object on the proxy's
// side, the HEADERS frame x/net's Framer makes for each (the stream record,
// its goroutine and the pipeline's scratch space are reused). The test's
// own client allocates one HEADERS frame per answer too; the backend
// allocates nothing.
func TestH2AllocationsPerStream(t *testing.T) {
	const resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
	p := startProxy(t, "backends: [{address: \""+keepAliveBackend(t, resp)+"\"}]\n", "")
	h := dialH2Raw(t, p.listen)
	h.fr.ReadMetaHeaders = nil
	h.fr.SetReuseFrames()
	id := uint32(1)
	round := func() {
		// Encoded afresh each time, as a client's encoder does: after the
		// first request every field is an index into the dynamic table.
		h.hbuf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}, {"x-request-id", "fixed-id"}} {
			h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if f.Header().StreamID == id && f.Header().Flags.Has(http2.FlagDataEndStream) && f.Header().Type == http2.FrameData {
				break
			}
		}
		id += 2
	}
	for range 200 {
		round()
	}
	const n = 2000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		round()
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.2f allocations per stream, client included (%d bytes)", per, (after.TotalAlloc-before.TotalAlloc)/n)
	if per > 2.2 {
		t.Errorf("%.2f allocations per stream (client included), want 2", per)
	}
}
