package l7

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/xlbproject/xlb/l7/h1"
)

// HTTP/2 to backends (backend_protocol h2c, and h2 over TLS), on xlb's own
// client (h2client.go). Every request is one stream, balanced on its own by
// the service's scheduler like any other request; streams the backend
// refuses (REFUSED_STREAM) or that a GOAWAY left unprocessed are sent again
// on another of its connections when their body can be replayed.
//
// The pipeline's transports read a backend's answer as HTTP/1.1 from an
// upConn (head in pc.head, body from pc.in): the client's reader decodes an
// HTTP/2 answer straight into that form, its head then its body (chunked,
// trailers included, when the length is unknown, trailers are announced or
// the answer is gRPC's), so that every transport, its body copies and its
// trailers work unchanged.

// h2Call is one request's stream to a backend, behind the upConn the
// pipeline sees. Pooled: a call allocates nothing once the pool is warm.
type h2Call struct {
	conn *h2Up
	id   uint32
	wake chan struct{} // a token when the stream's state changed

	// Under conn.mu.
	gotHead, ended, reset bool // the answer's head came; its end came; the stream was reset
	sending               bool // waiting for window to send
	noBody, chunked       bool // how the answer's body is framed in buf
	err                   error
	buf                   []byte // the answer in HTTP/1.1 form, from off on not yet read
	off                   int
	sendWindow            int64
	recvWindow            int64
	uncredited            int64 // DATA taken in but not yet given back as window
	left                  int64 // body bytes its content-length still allows (length framing)

	// The pipeline's (and the body sender's, which end joins).
	x       exchange
	headReq bool
	sentEnd bool // END_STREAM went out
	whole   bool // the streamed body ended, and all of it is in the request's keep
	closed  atomic.Bool
	up      *upBody
	sender  chan struct{} // closed when the body sender returned
	pc      upConn
	in      *h1.Reader
	headB   []byte  // the request head in HTTP/1.1 form
	req     h1.Head // and parsed back
	timer   *time.Timer
}

var h2Calls = sync.Pool{New: func() any {
	s := &h2Call{wake: make(chan struct{}, 1), in: h1.NewReader(nil, 4<<10, maxResponseHead)}
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	return s
}}

func newH2Call(x exchange, headReq bool) *h2Call {
	s := h2Calls.Get().(*h2Call)
	s.x, s.headReq = x, headReq
	return s
}

// unlink readies s for another stream (a refused one sent again).
func (s *h2Call) unlink() {
	if s.conn != nil {
		s.conn.close(s)
	}
	s.conn, s.id = nil, 0
	s.gotHead, s.ended, s.reset, s.sending, s.noBody, s.chunked = false, false, false, false, false, false
	s.err, s.buf, s.off, s.uncredited, s.sentEnd, s.whole = nil, s.buf[:0], 0, 0, false, false
	select {
	case <-s.wake:
	default:
	}
}

func (s *h2Call) recycle() {
	s.unlink()
	s.x, s.up, s.sender = nil, nil, nil
	fields := s.pc.head.Fields[:0]
	s.pc = upConn{}
	s.pc.head.Fields = fields
	s.in.Reset(nil)
	if cap(s.buf) > 64<<10 {
		s.buf = nil
	}
	s.closed.Store(false)
	h2Calls.Put(s)
}

// wakeUp tells the stream's goroutines its state changed; conn.mu is held.
func (s *h2Call) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// await waits for the stream's state to change, checking every
// clientCheck whether the client is still there.
func (s *h2Call) await(x exchange) error {
	s.timer.Reset(clientCheck)
	select {
	case <-s.wake:
		s.timer.Stop()
	case <-s.timer.C:
		if x.gone() {
			return errClientGone
		}
	}
	return nil
}

// head takes the answer's head; conn.mu is held.
func (s *h2Call) head(hd *h2UpHeaders) {
	st := hd.status
	b := h1.AppendStatus(s.buf[:0], st, []byte(http.StatusText(st)))
	b = append(b, hd.fields...)
	s.noBody = s.headReq || st == http.StatusNoContent || st == http.StatusNotModified
	switch {
	case hd.endStream || s.noBody:
		if hd.length >= 0 {
			b = appendLength(b, hd.length)
		} else if !s.noBody {
			b = appendLength(b, 0)
		}
		s.noBody = true
		s.ended = hd.endStream
	case hd.length >= 0 && !hd.grpc && !hd.trailer:
		b = appendLength(b, hd.length)
		s.left = hd.length
	default:
		s.chunked = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	s.buf = append(b, "\r\n"...)
	s.gotHead = true
}

func appendLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// body takes a DATA frame's payload; conn.mu is held. It reports DATA past
// the answer's content-length, which is malformed (RFC 9113 8.1.1): the
// client gets the bytes the length announced, and the backend's stream is
// reset.
func (s *h2Call) body(p []byte, end bool) (excess bool) {
	s.uncredited += int64(len(p))
	if !s.noBody && !s.chunked {
		if int64(len(p)) > s.left {
			p, excess, end = p[:s.left], true, true
		}
		s.left -= int64(len(p))
	}
	switch {
	case s.noBody:
	case s.chunked:
		if len(p) > 0 {
			s.buf = strconv.AppendInt(s.buf, int64(len(p)), 16)
			s.buf = append(s.buf, "\r\n"...)
			s.buf = append(s.buf, p...)
			s.buf = append(s.buf, "\r\n"...)
		}
		if end {
			s.buf = append(s.buf, "0\r\n\r\n"...)
		}
	default:
		s.buf = append(s.buf, p...)
	}
	s.ended = end
	return excess
}

// trailers takes the answer's trailers: the end of a chunked body.
func (s *h2Call) trailers(hd *h2UpHeaders) {
	if s.chunked {
		s.buf = append(s.buf, "0\r\n"...)
		s.buf = append(s.buf, hd.fields...)
		s.buf = append(s.buf, "\r\n"...)
	}
	s.ended = true
}

// Read gives the answer, in HTTP/1.1 form, to the pipeline's reader, and
// the window back to the backend as the answer leaves.
func (s *h2Call) Read(p []byte) (int, error) {
	c := s.conn
	var quietAt time.Time
	var idle time.Duration
	c.mu.Lock()
	for s.off == len(s.buf) {
		if s.ended {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if s.err != nil {
			err := s.err
			c.mu.Unlock()
			return 0, err
		}
		c.mu.Unlock()
		// A backend silent mid-answer for idle_timeout is cut, as over
		// HTTP/1.1 (upConn.bodyFill); not a gRPC call, whose stream may
		// idle as long as its deadline allows (a watch).
		if quietAt.IsZero() {
			quietAt = time.Now()
			if !strings.HasPrefix(s.x.header("content-type", "Content-Type"), "application/grpc") {
				idle = s.x.idleLimit()
			}
		} else if idle > 0 && time.Since(quietAt) >= idle {
			return 0, fmt.Errorf("the backend sent nothing for %v (l7.idle_timeout) in the middle of its answer", idle)
		}
		if err := s.await(s.x); err != nil {
			return 0, err
		}
		c.mu.Lock()
	}
	n := copy(p, s.buf[s.off:])
	s.off += n
	if s.off == len(s.buf) {
		s.buf, s.off = s.buf[:0], 0
	}
	var credit int64
	if s.uncredited >= h2UpStreamWindow/4 && len(s.buf)-s.off <= h2UpStreamWindow/2 && !s.ended {
		credit, s.uncredited = s.uncredited, 0
		s.recvWindow += credit
	}
	c.mu.Unlock()
	if credit > 0 {
		c.credit(s, credit)
	}
	return n, nil
}

// end ends the stream: after a whole answer it only frees it; before, it
// resets it (the client went away, or the answer is not wanted).
func (s *h2Call) end() {
	if s.closed.Swap(true) {
		return
	}
	s.stopSender()
	s.recycle()
}

// stopSender ends the body sender, if there is one, and waits for it.
func (s *h2Call) stopSender() {
	if s.up == nil {
		return
	}
	if c := s.conn; c != nil {
		c.mu.Lock()
		if s.err == nil {
			s.err = errCallEnded
		}
		s.wakeUp()
		c.mu.Unlock()
	}
	s.up.stop(s.x)
	<-s.sender
}

var errCallEnded = errors.New("the call ended")

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

// h2Refusals is how many times a stream the backend refused
// (REFUSED_STREAM) is sent again to it before the pipeline hears of it;
// h2Resends how many times one a closing connection left unprocessed is.
// Those meet a new connection each time: a backend that ends every
// connection after a few streams (NGINX's keepalive_requests) still makes
// progress on each, and only a burst of them costs a stream a few resends.
const (
	h2Refusals = 2
	h2Resends  = 8
)

// roundTripH2 sends the request to an HTTP/2 backend as one stream and
// returns its answer, presented as an HTTP/1.1 one.
func (s *service) roundTripH2(x exchange, cp *connPool, id []byte, sent time.Time, headReq bool) (*upConn, error) {
	r := x.req()
	call := newH2Call(x, headReq)
	call.headB = appendHead(call.headB[:0], x, id, cp.addr)
	if err := h1.ParseRequest(call.headB, &call.req); err != nil {
		call.recycle()
		return nil, fmt.Errorf("request for an HTTP/2 backend: %w", err)
	}
	scheme := "http"
	if cp.tls.Load() != nil {
		scheme = "https"
	}
	authority := r.host
	if authority == "" {
		authority = cp.addr
	}
	grpc := isGRPCType(bstr(call.req.Get("content-type")))
	for refusals, resends := 0, 0; ; {
		err := s.openH2(call, cp, r, scheme, authority, grpc)
		if err == nil {
			r.waitFrom = time.Now() // the stream is open, on a connection that was, or was dialed
			var bodyDone <-chan struct{}
			if call.up != nil {
				bodyDone = call.up.done
			}
			err = call.awaitHead(r.deadline, s.cfg.Timeouts.ResponseHeader, sent, bodyDone)
		}
		if err == nil {
			break
		}
		if call.up != nil {
			call.stopSender()
			if cerr := call.up.clientErr(); cerr != nil {
				err = clientError{cerr}
			} else if call.whole {
				// The body ended and is whole in r.keep: this attempt's
				// failure does not make it unsendable.
				r.kept = true
			}
			call.up, call.sender = nil, nil
		}
		var refused errRefused
		if errors.As(err, &refused) && (!r.read || r.kept) {
			if refused.gone && resends < h2Resends {
				resends++
				call.unlink()
				continue
			}
			if !refused.gone && refusals < h2Refusals {
				refusals++
				call.unlink()
				continue
			}
		}
		call.recycle()
		var cerr clientError
		switch {
		case errors.As(err, &cerr), err == errClientGone:
			return nil, err
		case errors.As(err, &refused):
			// Never processed: as safe to send elsewhere as a refused
			// connection.
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: cp.tcpAddr, Err: err}
		}
		var op *net.OpError
		var to errH2Timeout
		if errors.As(err, &op) && op.Op == "dial" || errors.As(err, &to) {
			return nil, err
		}
		return nil, fmt.Errorf("HTTP/2 backend %s: %w", cp.addr, err)
	}
	if r.stream && call.up != nil {
		if _, ok := x.(*h2Stream); !ok {
			// Only an HTTP/2 client's body may still flow while its
			// answer does: an HTTP/1.1 connection reads its next request
			// after this one's body, so the body ends first.
			<-call.up.done
		}
	}
	pc := &call.pc
	fields := pc.head.Fields[:0]
	*pc = upConn{c: h2CallConn{call: call, addr: cp.tcpAddr}, call: call}
	pc.head.Fields = fields
	call.in.Reset(call)
	pc.in = call.in
	if err := pc.readHead(&roundTrip{headReq: headReq}); err != nil {
		call.end()
		return nil, fmt.Errorf("HTTP/2 backend %s: %w", cp.addr, err)
	}
	return pc, nil
}

// openH2 opens the call's stream on one of the backend's connections and
// sends the request, or starts sending its streamed body.
func (s *service) openH2(call *h2Call, cp *connPool, r *request, scheme, authority string, grpc bool) error {
	conn, err := cp.h2.conn()
	if err != nil {
		return err
	}
	if !r.stream || r.kept {
		body := r.body
		if r.kept {
			body = r.keep
		}
		err = conn.open(call, r.method, scheme, authority, r.target, grpc, body, true)
		if call.conn == nil {
			conn.done()
		}
		if err == nil {
			call.sentEnd = true
		}
		return err
	}
	err = conn.open(call, r.method, scheme, authority, r.target, grpc, nil, false)
	if call.conn == nil {
		conn.done()
	}
	if err != nil {
		return err
	}
	r.read = true // it cannot be sent again, even if this attempt fails (unless kept whole)
	r.keep = r.keep[:0]
	call.up = streamBody(call.x)
	call.sender = make(chan struct{})
	go call.sendBody(r.length)
	return nil
}

// sendBody sends a streamed request body on the call's stream as the
// client's transport delivers it, then its end (with trailers, if the
// client sent some). Up to h2WholeBody of it is kept in the request's
// keep, and s.whole says that all of it is there: if the attempt fails the
// request can be sent again. A stream that fails while the body still
// comes is read on into keep (nothing more is sent), so that a small body
// that was on its way is kept whole too; the pipeline's stopSender ends
// that read.
func (s *h2Call) sendBody(length int64) {
	defer close(s.sender)
	c := s.conn
	defer contain("an HTTP/2 backend upload", c.c)
	rd := s.up.reader(length)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:16<<10]
	r := s.x.req()
	keep := true // r.keep holds the whole body so far
	var werr error
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			if keep = keep && len(r.keep)+n <= h2WholeBody; keep {
				r.keep = append(r.keep, buf[:n]...)
			}
			if werr == nil {
				werr = c.sendData(s, buf[:n], false)
			}
			if werr != nil && (!keep || werr == errBodyNotWanted || werr == errClientGone) {
				rd.Close()
				return
			}
		}
		if err == nil {
			continue
		}
		if err != io.EOF {
			// The client failed (the pipeline hears of it from s.up): the
			// backend's stream is reset.
			rd.Close()
			c.mu.Lock()
			if s.err == nil {
				s.err = clientError{err}
			}
			reset := !s.reset
			s.reset = true
			s.wakeUp()
			c.mu.Unlock()
			if reset {
				c.wmu.Lock()
				c.wfr.WriteRSTStream(s.id, http2.ErrCodeCancel)
				c.flushUnlock()
			}
			return
		}
		trailers := false
		if cb, ok := rd.(*chunkedBody); ok && len(cb.br.trailers) > 0 {
			trailers = true
		}
		s.whole = keep && !trailers
		if werr != nil {
			return // the stream failed: the body is only kept
		}
		if trailers {
			werr = c.sendTrailers(s, rd.(*chunkedBody).br.trailers)
		} else {
			werr = c.sendData(s, nil, true)
		}
		if werr == nil {
			s.sentEnd = true
		}
		return
	}
}

// awaitHead waits for the answer's head: until deadline (the call's
// grpc-timeout; zero: none), and for timeout (response_header; 0: none)
// from when the request was sent whole. A streamed body (bodyDone, closed
// once it is sent) is the client's pace, not the backend's: a slow upload
// or a long client stream must not end in a 504 that blames a healthy
// backend. NGINX too times the backend from the request's end. The
// client is looked at every clientCheck.
func (s *h2Call) awaitHead(deadline time.Time, timeout time.Duration, sent time.Time, bodyDone <-chan struct{}) error {
	c := s.conn
	from := sent
	for {
		c.mu.Lock()
		got, err := s.gotHead, s.err
		c.mu.Unlock()
		if got {
			return nil
		}
		if err != nil {
			return err
		}
		limit := deadline
		if timeout > 0 && bodyDone == nil {
			if l := from.Add(timeout); limit.IsZero() || l.Before(limit) {
				limit = l
			}
		}
		wait := clientCheck
		if !limit.IsZero() {
			d := time.Until(limit)
			if d <= 0 {
				return errH2Timeout{}
			}
			wait = min(wait, d)
		}
		s.timer.Reset(wait)
		select {
		case <-s.wake:
			s.timer.Stop()
		case <-bodyDone:
			s.timer.Stop()
			bodyDone, from = nil, time.Now()
		case <-s.timer.C:
			if s.x.gone() {
				return errClientGone
			}
		}
	}
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

// h2Addr is a backend's address as a net.Addr, for error messages, as
// written (no name is looked up for it).
type h2Addr string

func (a h2Addr) Network() string { return "tcp" }
func (a h2Addr) String() string  { return string(a) }
