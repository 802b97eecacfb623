package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/xlbproject/xlb/l7/h1"
)

// HTTP/2 to backends (backend_protocol: h2c; h2, over TLS, is ready here
// but waits in config for the backend TLS configuration). Each backend's connections
// are x/net's HTTP/2 client (one Transport per backend: a few connections,
// each multiplexing streams up to the backend's SETTINGS_MAX_CONCURRENT_STREAMS,
// a new one opened when they are full; streams the backend refuses
// (REFUSED_STREAM) or that a GOAWAY left unprocessed are sent again by it
// when their body can be replayed). Every request is one stream, balanced
// on its own by the service's scheduler like any other request.
//
// The pipeline's transports read a backend's answer as HTTP/1.1 from an
// upConn (head in pc.head, body from pc.in): an HTTP/2 answer is presented
// the same way, its head and body (chunked, trailers included, when the
// length is unknown or trailers are announced) re-encoded as HTTP/1.1
// bytes, so that every transport, its body copies and its trailers work
// unchanged. That costs a copy of the body; this path allocates per
// request (x/net's client does), the HTTP/1.1 one does not.

// newH2Transport is the HTTP/2 client for one backend: in cleartext (h2c)
// when tc is nil, else over TLS with tc (h2), ALPN h2 required.
func newH2Transport(connect time.Duration, tc *tls.Config) *http2.Transport {
	if tc != nil {
		tc = tc.Clone()
		tc.NextProtos = []string{"h2"}
	}
	return &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			d := net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || tc == nil {
				return c, err
			}
			t := tls.Client(c, tc)
			hctx, cancel := context.WithTimeout(ctx, connect)
			defer cancel()
			if err := t.HandshakeContext(hctx); err != nil {
				c.Close()
				// The backend's fault, as a refused connection is: retried
				// and counted the same way.
				return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: fmt.Errorf("tls handshake: %w", err)}
			}
			if p := t.ConnectionState().NegotiatedProtocol; p != "h2" {
				c.Close()
				return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: fmt.Errorf("backend chose ALPN %q, not h2", p)}
			}
			return t, nil
		},
		// A quiet connection is pinged, and dropped if the backend does
		// not answer: a dead backend's connection is not kept for the
		// next requests.
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     5 * time.Second,
		// As HTTP/1.1 backend connections: an unused one is closed.
		IdleConnTimeout: upstreamIdleTimeout,
	}
}

// h2Scratch is what one call to an HTTP/2 backend needs besides x/net's
// own: pooled, so that a call does not allocate its buffers. The pipeline
// holds its upConn until the call ends (h2Call.end), never after.
type h2Scratch struct {
	pc   upConn
	in   *h1.Reader
	head []byte  // the request head in HTTP/1.1 form
	req  h1.Head // and parsed back
}

var h2Scratches = sync.Pool{New: func() any { return &h2Scratch{in: h1.NewReader(nil, 4<<10, maxResponseHead)} }}

// h2Call is one request's stream to a backend, behind the upConn the
// pipeline sees.
type h2Call struct {
	cancel context.CancelFunc
	body   io.ReadCloser
	closed atomic.Bool
	up     *upBody // the request body still being sent, if any
	x      exchange
	answer *h2AnswerStream
	sc     *h2Scratch
}

// upBody is a request body on its way to an HTTP/2 backend: the pipe it
// goes through and the goroutine that fills it.
type upBody struct {
	pr       *io.PipeReader
	done     chan struct{} // closed when the goroutine has returned
	err      atomic.Value  // a failure of the client while it sent
	stopping atomic.Bool   // stop was called: what fails now is not the client's doing
}

// stop ends the body's goroutine and waits for it: the exchange (and, on
// HTTP/2, the stream record) is not used after the call.
func (u *upBody) stop(x exchange) {
	u.stopping.Store(true)
	u.pr.CloseWithError(errStreamGone)
	if s, ok := x.(*h2Stream); ok {
		s.stopBody()
	}
	<-u.done
}

func (u *upBody) clientErr() error {
	if err, ok := u.err.Load().(error); ok {
		return err
	}
	return nil
}

// end ends the stream: after a whole answer it only frees it; before, it
// resets it (the client went away, or the answer is not wanted).
func (c *h2Call) end() {
	if c.closed.Swap(true) {
		return
	}
	if c.body != nil {
		c.body.Close()
	}
	c.cancel()
	if c.up != nil {
		c.up.stop(c.x)
	}
	if a := c.answer; a != nil && a.bp != nil {
		// The answer's reader is done with it: the call ends on the
		// goroutine that read it.
		bufPool.Put(a.bp)
		a.bp, a.buf = nil, nil
	}
	if c.sc != nil {
		c.sc.pc = upConn{}
		c.sc.in.Reset(nil)
		h2Scratches.Put(c.sc)
		c.sc = nil
	}
}

// h2CallConn stands for the backend connection in an upConn whose answer
// comes over HTTP/2: closing it ends the stream, not a connection.
type h2CallConn struct {
	net.Conn // nil: only the methods below are used
	call     *h2Call
	addr     net.Addr
}

func (c h2CallConn) Close() error                     { c.call.end(); return nil }
func (c h2CallConn) SetDeadline(time.Time) error      { return nil }
func (c h2CallConn) SetReadDeadline(time.Time) error  { return nil }
func (c h2CallConn) SetWriteDeadline(time.Time) error { return nil }
func (c h2CallConn) RemoteAddr() net.Addr             { return c.addr }

// errH2Timeout is a response-header timeout on an HTTP/2 backend.
type errH2Timeout struct{}

func (errH2Timeout) Error() string   { return "timeout awaiting the backend's response headers" }
func (errH2Timeout) Timeout() bool   { return true }
func (errH2Timeout) Temporary() bool { return true }

// roundTripH2 sends the request to an h2c backend as one stream and
// returns its answer, presented as an HTTP/1.1 one.
func (s *service) roundTripH2(x exchange, cp *connPool, id []byte, sent time.Time, headReq bool) (*upConn, error) {
	r := x.req()
	sc := h2Scratches.Get().(*h2Scratch)
	req, up, err := s.h2Request(x, cp, id, sc)
	if err != nil {
		h2Scratches.Put(sc)
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	req = req.WithContext(ctx)

	// The wait for the answer's head is bounded by response_header and
	// cut short when the client leaves, as on HTTP/1.1 backends.
	var gone, timedOut atomic.Bool
	done := make(chan struct{})
	headTimeout := s.headTimeout(r, sent) // r is not the goroutine's to read
	go func() {
		tick := time.NewTicker(clientCheck)
		defer tick.Stop()
		var limit <-chan time.Time
		if t := headTimeout; t > 0 {
			tm := time.NewTimer(time.Until(sent.Add(t)))
			defer tm.Stop()
			limit = tm.C
		}
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if x.gone() {
					gone.Store(true)
					cancel()
					return
				}
			case <-limit:
				timedOut.Store(true)
				cancel()
				return
			}
		}
	}()
	resp, err := cp.h2.RoundTrip(req)
	close(done)
	if err != nil {
		cancel()
		h2Scratches.Put(sc)
		if up != nil {
			up.stop(x)
			if cerr := up.clientErr(); cerr != nil {
				return nil, clientError{cerr}
			}
		}
		switch {
		case gone.Load():
			return nil, errClientGone
		case timedOut.Load():
			return nil, errH2Timeout{}
		}
		return nil, fmt.Errorf("h2c backend %s: %w", cp.addr, err)
	}
	if r.stream {
		if _, ok := x.(*h2Stream); !ok {
			// Only an HTTP/2 client's body may still flow while its
			// answer does: an HTTP/1.1 connection reads its next request
			// after this one's body, so the body ends first.
			<-up.done
		}
	}
	call := &h2Call{cancel: cancel, body: resp.Body, up: up, x: x, answer: newH2AnswerStream(resp, headReq), sc: sc}
	pc := &sc.pc
	*pc = upConn{c: h2CallConn{call: call, addr: cp.tcpAddr}, call: call}
	sc.in.Reset(call.answer)
	pc.in = sc.in
	if err := pc.readHead(&roundTrip{headReq: headReq}); err != nil {
		call.end()
		return nil, fmt.Errorf("h2c backend %s: %w", cp.addr, err)
	}
	return pc, nil
}

// h2Request builds the backend's request: the head the pipeline forwards
// to any backend, read back into fields; the body decoded from what the
// client's transport sends. bodyErr reports a failure of the client while
// its body streamed.
func (s *service) h2Request(x exchange, cp *connPool, id []byte, sc *h2Scratch) (_ *http.Request, up *upBody, err error) {
	r := x.req()
	sc.head = appendHead(sc.head[:0], x, id)
	h := &sc.req
	if err := h1.ParseRequest(sc.head, h); err != nil {
		return nil, nil, fmt.Errorf("request for an h2c backend: %w", err)
	}
	u, err := url.ParseRequestURI(r.target)
	if err != nil {
		return nil, nil, fmt.Errorf("request for an h2c backend: %w", err)
	}
	u.Scheme, u.Host = "http", cp.addr
	if cp.tls.Load() != nil {
		u.Scheme = "https"
	}
	hdr := make(http.Header, len(h.Fields)+1)
	for i := range h.Fields {
		f := &h.Fields[i]
		if f.Kind.Hop() || f.Kind == h1.Host {
			continue
		}
		hdr.Add(string(f.Name), string(f.Value))
	}
	if strings.HasPrefix(hdr.Get("Content-Type"), "application/grpc") {
		// gRPC servers want it; it is hop-by-hop, so it was dropped above.
		hdr.Set("Te", "trailers")
	}
	req := &http.Request{Method: r.method, URL: u, Host: r.host, Header: hdr, Proto: "HTTP/2.0", ProtoMajor: 2}
	switch {
	case r.stream:
		r.read = true // it cannot be sent again, even if this attempt fails
		up = streamBody(x)
		req.Body, req.ContentLength = up.reader(r.length), r.length
	case len(r.body) > 0:
		b := r.body
		req.ContentLength = int64(len(b))
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	default:
		req.Body = http.NoBody
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	}
	return req, up, nil
}

// streamBody sends a client's streamed body towards an HTTP/2 backend:
// the client's transport writes it, as for an HTTP/1.1 backend (raw, or
// chunked when its length is unknown), into a pipe from a goroutine of
// its own, so that the body can flow while the answer does (gRPC's
// bidirectional streams).
func streamBody(x exchange) *upBody {
	pr, pw := io.Pipe()
	u := &upBody{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		w := wbuf{w: pipeConn{pw}, fd: -1}
		werr, err := x.sendBody(&w)
		if err == nil && werr == nil {
			werr = w.flush()
		}
		if err != nil {
			if !u.stopping.Load() {
				u.err.Store(err)
			}
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(werr)
	}()
	return u
}

// reader decodes what the client's transport wrote.
func (u *upBody) reader(length int64) io.ReadCloser {
	if length >= 0 {
		return u.pr
	}
	pc := &upConn{in: h1.NewReader(u.pr, 4<<10, 64<<10)}
	return &chunkedBody{br: bodyReader{pc: pc, left: -1, chunked: true}, pr: u.pr}
}

type chunkedBody struct {
	br bodyReader
	pr *io.PipeReader
}

func (b *chunkedBody) Read(p []byte) (int, error) { return b.br.Read(p) }
func (b *chunkedBody) Close() error               { return b.pr.Close() }

// pipeConn lets a wbuf write into a pipe.
type pipeConn struct{ w *io.PipeWriter }

func (p pipeConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (p pipeConn) Write(b []byte) (int, error)      { return p.w.Write(b) }
func (p pipeConn) Close() error                     { return p.w.Close() }
func (p pipeConn) LocalAddr() net.Addr              { return nil }
func (p pipeConn) RemoteAddr() net.Addr             { return nil }
func (p pipeConn) SetDeadline(time.Time) error      { return nil }
func (p pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p pipeConn) SetWriteDeadline(time.Time) error { return nil }

// h2Addr is a backend's address as a net.Addr, for error messages, as
// written (no name is looked up for it).
type h2Addr string

func (a h2Addr) Network() string { return "tcp" }
func (a h2Addr) String() string  { return string(a) }

// h2AnswerStream is an HTTP/2 answer as HTTP/1.1 bytes: the head, then
// the body, chunked with the trailers at the end when the length is
// unknown or the backend announced trailers (gRPC always does).
type h2AnswerStream struct {
	resp    *http.Response
	pending []byte
	chunked bool
	noBody  bool
	ended   bool
	buf     []byte
	bp      *[]byte // buf's pooled backing
}

func newH2AnswerStream(resp *http.Response, headReq bool) *h2AnswerStream {
	a := &h2AnswerStream{resp: resp}
	code := resp.StatusCode
	a.noBody = headReq || code == http.StatusNoContent || code == http.StatusNotModified
	b := h1.AppendStatus(nil, code, []byte(http.StatusText(code)))
	for k, vv := range resp.Header {
		if k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" {
			continue
		}
		for _, v := range vv {
			if validFieldValue(v) {
				b = append(b, k...)
				b = append(b, ": "...)
				b = append(b, v...)
				b = append(b, "\r\n"...)
			}
		}
	}
	switch {
	case a.noBody:
		if resp.ContentLength >= 0 && (headReq || code == http.StatusNotModified) {
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, resp.ContentLength, 10)
			b = append(b, "\r\n"...)
		}
	case resp.ContentLength >= 0 && len(resp.Trailer) == 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, resp.ContentLength, 10)
		b = append(b, "\r\n"...)
	default:
		a.chunked = true
		if len(resp.Trailer) > 0 {
			names := make([]string, 0, len(resp.Trailer))
			for k := range resp.Trailer {
				names = append(names, k)
			}
			b = append(b, "Trailer: "...)
			b = append(b, strings.Join(names, ", ")...)
			b = append(b, "\r\n"...)
		}
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	a.pending = append(b, "\r\n"...)
	return a
}

func (a *h2AnswerStream) Read(p []byte) (int, error) {
	for len(a.pending) == 0 {
		if a.ended || a.noBody {
			return 0, io.EOF
		}
		if err := a.next(len(p)); err != nil {
			return 0, err
		}
	}
	n := copy(p, a.pending)
	a.pending = a.pending[n:]
	return n, nil
}

// next reads the next piece of the body into pending.
func (a *h2AnswerStream) next(room int) error {
	if a.buf == nil {
		a.bp = bufPool.Get().(*[]byte)
		a.buf = (*a.bp)[:16<<10]
	}
	n, err := a.resp.Body.Read(a.buf[:max(min(room-32, len(a.buf)), 1)])
	if n > 0 {
		if a.chunked {
			a.pending = strconv.AppendInt(a.pending[:0], int64(n), 16)
			a.pending = append(a.pending, "\r\n"...)
			a.pending = append(a.pending, a.buf[:n]...)
			a.pending = append(a.pending, "\r\n"...)
		} else {
			a.pending = append(a.pending[:0], a.buf[:n]...)
		}
	}
	if errors.Is(err, io.EOF) {
		a.ended = true
		if a.chunked {
			a.pending = append(a.pending, "0\r\n"...)
			for k, vv := range a.resp.Trailer {
				for _, v := range vv {
					if validFieldValue(v) {
						a.pending = append(a.pending, k...)
						a.pending = append(a.pending, ": "...)
						a.pending = append(a.pending, v...)
						a.pending = append(a.pending, "\r\n"...)
					}
				}
			}
			a.pending = append(a.pending, "\r\n"...)
		}
		return nil
	}
	return err
}
