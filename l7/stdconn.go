package l7

import (
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xlbproject/xlb/l7/h1"
)

// stdExchange is a request that Go's net/http server read: the HTTP/1.x
// requests the engine hands off. It allocates per request; the cleartext
// and TLS HTTP/1.1 traffic and HTTP/2 do not come this way.
type stdExchange struct {
	l     *listener
	w     http.ResponseWriter
	hr    *http.Request
	r     request
	abort bool // the answer broke off after its head: reset the stream
}

var _ exchange = (*stdExchange)(nil)

// connTLS marks a handed-off connection that was TLS: net/http sees it
// through a prefixConn, not as a *tls.Conn.
type connTLS struct{}

func (l *listener) serveStd(w http.ResponseWriter, hr *http.Request) {
	// Counted until it is logged: net/http forgets a connection it closed
	// or that was hijacked, and Shutdown waits for the requests it cut.
	l.stdReqs.Add(1)
	defer l.stdReqs.Add(-1)
	e := &stdExchange{l: l, w: w, hr: hr}
	r := &e.r
	r.start = time.Now()
	r.method, r.host = hr.Method, hr.Host
	r.target = hr.RequestURI
	if r.target != "*" {
		r.target = hr.URL.RequestURI() // origin-form, also for absolute-form requests
	}
	r.tls = hr.TLS != nil || hr.Context().Value(connTLS{}) != nil
	if ap, err := netip.ParseAddrPort(hr.RemoteAddr); err == nil {
		r.addr = ap.Addr().Unmap()
		r.ip = r.addr.String()
	} else {
		r.ip = hr.RemoteAddr
	}
	if id := hr.Header.Get("X-Request-Id"); id != "" {
		r.id = []byte(id)
	}
	r.close = hr.Close
	r.length = -1
	if hr.Body != nil && hr.Body != http.NoBody {
		r.stream = true
		r.length = hr.ContentLength
	} else if hr.ContentLength == 0 && hr.Header.Get("Content-Length") != "" {
		r.length = 0
	}
	r.upgrade = upgradeType(hr.Header)
	l.handler.Load().serve(e)
	if e.abort {
		// The status line is gone: abort, so the client sees a broken
		// transfer, not a short but complete one.
		panic(http.ErrAbortHandler)
	}
}

func (e *stdExchange) req() *request { return &e.r }

func (e *stdExchange) path() string { return e.hr.URL.Path }

func (e *stdExchange) header(_, canon string) string { return e.hr.Header.Get(canon) }

func (e *stdExchange) cookie(name string) string {
	if c, err := e.hr.Cookie(name); err == nil {
		return c.Value
	}
	return ""
}

func (e *stdExchange) remote() string { return e.hr.RemoteAddr }

func (e *stdExchange) gone() bool { return e.hr.Context().Err() != nil }

func (e *stdExchange) idleLimit() time.Duration { return e.l.lim.Load().idle }

// skipStd are the request fields not forwarded as they are: hop-by-hop,
// framing (the pipeline writes its own), those the pipeline replaces, and
// Expect (net/http answers 100-continue itself when the body is read).
var skipStd = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Host": true, "Expect": true,
	"X-Request-Id": true, "X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true, "Forwarded": true,
}

func (e *stdExchange) appendFields(b []byte) []byte {
	h := e.hr.Header
	named := connectionNames(h)
	if e.r.host != "" {
		b = append(b, "Host: "...)
		b = append(b, e.r.host...)
		b = append(b, "\r\n"...)
	}
	for k, vv := range h {
		if skipStd[k] || named[k] {
			continue
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				continue // HTTP/2 allows what HTTP/1.1 must not carry
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// validFieldValue refuses the bytes that would split a header on the wire.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func (e *stdExchange) appendPrior(b []byte, forwarded bool) []byte {
	name := "X-Forwarded-For"
	if forwarded {
		name = "Forwarded"
	}
	for _, v := range e.hr.Header.Values(name) {
		if validFieldValue(v) {
			b = append(b, v...)
			b = append(b, ", "...)
		}
	}
	return b
}

func (e *stdExchange) sendBody(w *wbuf) (werr, cerr error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	chunked := e.r.length < 0
	left := e.r.length
	for {
		n, rerr := e.hr.Body.Read(buf)
		if n > 0 {
			if !chunked {
				if int64(n) > left {
					return nil, errors.New("request body longer than its Content-Length")
				}
				left -= int64(n)
				w.b = append(w.b, buf[:n]...)
			} else {
				w.b = strconv.AppendInt(w.b, int64(n), 16)
				w.b = append(w.b, "\r\n"...)
				w.b = append(w.b, buf[:n]...)
				w.b = append(w.b, "\r\n"...)
			}
			// Each piece goes out as it comes: a streaming client (gRPC,
			// uploads of unknown length) must not wait for a batch.
			if werr = w.flush(); werr != nil {
				return werr, nil
			}
		}
		if rerr == io.EOF {
			if chunked {
				w.b = append(w.b, "0\r\n\r\n"...)
			} else if left > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, nil
		}
		if rerr != nil {
			return nil, rerr
		}
	}
}

func (e *stdExchange) reply(status int, msg string, id []byte, retryAfter int) bool {
	h := e.w.Header()
	if len(id) > 0 {
		h.Set("X-Request-Id", string(id))
	}
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if e.r.close {
		h.Set("Connection", "close") // net/http closes after it
	}
	http.Error(e.w, msg, status)
	return !e.r.close
}

func (e *stdExchange) replyGRPC(code int, msg string, id []byte) bool {
	h := e.w.Header()
	if len(id) > 0 {
		h.Set("X-Request-Id", string(id))
	}
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", string(appendGRPCMessage(nil, msg)))
	h.Set("Content-Length", "0")
	e.w.WriteHeader(http.StatusOK)
	return true
}

func (e *stdExchange) respond(a *answer) bool {
	pc := a.pc
	resp := &pc.head
	if resp.Status == http.StatusSwitchingProtocols {
		e.upgrade(a)
		return false
	}
	h := e.w.Header()
	ownID := true
	var trailers []string
	for i := range resp.Fields {
		f := &resp.Fields[i]
		switch {
		case f.Kind == h1.XRequestID:
			ownID = false
		case f.Kind == h1.Trailer:
			for _, name := range strings.Split(string(f.Value), ",") {
				if name = textproto.TrimString(name); name != "" {
					trailers = append(trailers, textproto.CanonicalMIMEHeaderKey(name))
				}
			}
			continue
		}
		if f.Kind.Hop() || (resp.ConnNames && f.Kind == h1.Other && resp.Named(f.Name)) {
			continue
		}
		h.Add(string(f.Name), string(f.Value))
	}
	if ownID {
		h.Set("X-Request-Id", string(a.id))
	}
	if a.setCookie != "" {
		h.Add("Set-Cookie", a.setCookie)
	}
	if len(trailers) > 0 {
		h.Set("Trailer", strings.Join(trailers, ", "))
	}
	if resp.ContentLength >= 0 && (!pc.noBody || a.headReq) {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	e.w.WriteHeader(resp.Status)
	if pc.noBody {
		pc.release(!resp.Close, a.now)
		return !e.r.close
	}
	stream := resp.ContentLength < 0 || strings.HasPrefix(string(resp.Get("content-type")), "text/event-stream")
	br := bodyReader{pc: pc, left: resp.ContentLength, chunked: resp.Chunked}
	n, werr, rerr := copyStd(e.w, &br, stream, e.idleLimit())
	a.bytes = n
	if rerr != nil || werr != nil {
		pc.c.Close()
		if rerr != nil {
			a.err = "reading the backend's body: " + rerr.Error()
		} else {
			a.err = "writing to the client: " + werr.Error()
		}
		e.abort = true
		return false
	}
	for _, t := range br.trailers {
		h[http.TrailerPrefix+t[0]] = append(h[http.TrailerPrefix+t[0]], t[1])
		if t[0] == "Grpc-Status" {
			a.grpc = t[1]
		}
	}
	pc.release(!resp.Close && !br.untilClose(), a.now)
	return !e.r.close
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyStd streams a decoded body to a net/http answer; a stream (SSE,
// chunked) is flushed after every read so that events reach the client as
// they happen. A write that waits for room more than wt fails (a client
// that stopped reading); the deadline moves only when less than half of
// wt is left. It is not cleared after: net/http's last flush, after the
// handler, is bounded by it too, and the next answer moves it.
func copyStd(w http.ResponseWriter, body io.Reader, stream bool, wt time.Duration) (total int64, werr, rerr error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	var wdl time.Time
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if now := time.Now(); wt > 0 && wdl.Sub(now) < wt/2 {
				wdl = now.Add(wt)
				rc.SetWriteDeadline(wdl)
			}
			if _, werr = w.Write(buf[:n]); werr != nil {
				return total, werr, nil
			}
			total += int64(n)
			if stream {
				rc.Flush()
			}
		}
		if err == io.EOF {
			return total, nil, nil
		}
		if err != nil {
			return total, nil, err
		}
	}
}

// upgrade joins the client's connection to the backend's after a protocol
// switch (WebSocket and friends) and copies both ways until either closes.
func (e *stdExchange) upgrade(a *answer) {
	pc := a.pc
	defer pc.c.Close() // a switched connection is never reused
	conn, brw, err := http.NewResponseController(e.w).Hijack()
	if err != nil {
		a.err = "cannot switch protocols on this connection: " + err.Error()
		return
	}
	defer conn.Close()
	untrack := e.l.owner.track(conn)
	defer untrack()
	resp := &pc.head
	b := h1.AppendStatus(nil, resp.Status, resp.Reason)
	for i := range resp.Fields {
		f := &resp.Fields[i]
		if f.Kind == h1.Connection || f.Kind == h1.Upgrade || !f.Kind.Hop() && !(resp.ConnNames && f.Kind == h1.Other && resp.Named(f.Name)) {
			b = appendField(b, f.Name, f.Value)
		}
	}
	b = append(b, "\r\n"...)
	b = append(b, pc.in.Buffered()...) // what the backend sent after its head
	pc.in.Discard(len(pc.in.Buffered()))
	if _, err := conn.Write(b); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() {
		// Bytes the client sent after its request are in brw's buffer.
		io.Copy(pc.c, brw.Reader)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(conn, pc.c)
		done <- struct{}{}
	}()
	<-done
}

// connectionNames is the set of fields a request's Connection header names.
func connectionNames(h http.Header) map[string]bool {
	var m map[string]bool
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				if m == nil {
					m = map[string]bool{}
				}
				m[textproto.CanonicalMIMEHeaderKey(name)] = true
			}
		}
	}
	return m
}

// upgradeType returns the protocol a request asks to switch to.
func upgradeType(h http.Header) string {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if strings.EqualFold(textproto.TrimString(name), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}
