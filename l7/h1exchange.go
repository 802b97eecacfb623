package l7

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/l7/h1"
)

var _ exchange = (*fastConn)(nil)

// serveOne takes the request just read on fc through its service's
// pipeline; it reports whether the connection may carry another one.
func (fc *fastConn) serveOne() bool {
	req := &fc.head
	fc.in.Pin()
	defer fc.in.Unpin()
	r := &fc.r
	r.start = time.Now()
	r.method, r.target, r.host = bstr(req.Method), bstr(req.Target), bstr(req.Host)
	r.id, r.close = req.RequestID, req.Close
	r.body, r.stream, r.read, r.length, fc.pathS = nil, false, false, -1, ""

	// The body: whole in the buffer (replayable), or still to be streamed.
	fc.in.Discard(req.Len)
	switch {
	case req.Chunked:
		r.stream = true
	case req.ContentLength >= 0:
		r.length = req.ContentLength
		if b := fc.in.Buffered(); int64(len(b)) >= req.ContentLength {
			if req.ContentLength > 0 {
				r.body = b[:req.ContentLength]
			}
			fc.in.Discard(int(req.ContentLength))
		} else {
			r.stream = true
		}
	}
	return fc.l.handler.Load().serve(fc)
}

func (fc *fastConn) req() *request { return &fc.r }

func (fc *fastConn) header(lower, _ string) string { return bstr(fc.head.Get(lower)) }

func (fc *fastConn) cookie(name string) string { return bstr(cookieValue(&fc.head, name)) }

func (fc *fastConn) remote() string { return fc.c.RemoteAddr().String() }

// path is the request's path as net/http's URL.Path would have it.
func (fc *fastConn) path() string {
	if fc.pathS != "" {
		return fc.pathS
	}
	t := fc.head.Target
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	fc.pathS = bstr(t)
	if bytes.IndexByte(t, '%') >= 0 {
		if p, err := url.PathUnescape(string(t)); err == nil {
			fc.pathS = p
		}
	}
	return fc.pathS
}

func (fc *fastConn) appendFields(b []byte) []byte {
	req := &fc.head
	for i := range req.Fields {
		f := &req.Fields[i]
		switch f.Kind {
		case h1.XRequestID, h1.XForwardedProto, h1.XForwardedHost, h1.XForwardedFor, h1.Forwarded:
			continue // the pipeline writes its own
		}
		if f.Kind.Hop() || (req.ConnNames && f.Kind == h1.Other && req.Named(f.Name)) {
			continue
		}
		b = appendField(b, f.Name, f.Value)
	}
	return b
}

func (fc *fastConn) appendPrior(b []byte, forwarded bool) []byte {
	kind := h1.XForwardedFor
	if forwarded {
		kind = h1.Forwarded
	}
	for i := range fc.head.Fields {
		if f := &fc.head.Fields[i]; f.Kind == kind {
			b = append(b, f.Value...)
			b = append(b, ", "...)
		}
	}
	return b
}

func (fc *fastConn) sendBody(w *wbuf) (werr, cerr error) {
	fc.setDeadline(time.Time{})
	src := &clientReader{fc: fc}
	if fc.head.Chunked {
		_, werr, cerr = copyChunked(w, fc.in, src.fill)
	} else {
		_, werr, cerr = copyLength(w, fc.in, fc.head.ContentLength, src.fill)
	}
	return werr, cerr
}

// clientReader refills a client's buffer while a body streams, each read
// bounded by idle_timeout so a stalled upload does not hold a backend.
type clientReader struct{ fc *fastConn }

func (r *clientReader) fill() error {
	if idle := r.fc.lim.idle; idle > 0 {
		r.fc.setDeadline(time.Now().Add(idle))
	}
	return r.fc.in.Fill()
}

// gone looks at the client's socket without reading it: a reset, or a FIN
// with nothing left to read, means the client went away. (A TLS client's
// FIN usually follows a close_notify record, so there a FIN alone counts.)
func (fc *fastConn) idleLimit() time.Duration { return fc.lim.idle }

func (fc *fastConn) gone() bool {
	if fc.sock == nil {
		return false
	}
	gone := false
	fc.sock.Control(func(fd uintptr) {
		pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		if n, err := unix.Poll(pfd[:], 0); err != nil || n == 0 {
			return
		}
		switch ev := pfd[0].Revents; {
		case ev&(unix.POLLHUP|unix.POLLERR) != 0:
			gone = true
		case ev&unix.POLLRDHUP != 0:
			if fc.tls {
				gone = true
				return
			}
			var b [1]byte
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			gone = n == 0 && err == nil
		}
	})
	return gone
}

// abort ends the connection when a drain's time is up, without waiting
// for the request it serves: shutting the socket down makes the client see
// the end at once, makes the pipeline see the client gone (it cancels the
// backend request, logged 499) and fails any further write of the answer;
// the connection's own goroutine then closes it.
func (fc *fastConn) abort() {
	if fc.sock == nil || fc.sock.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) }) != nil {
		go fc.c.Close()
	}
}

// reply answers the request itself (429, 503, 502...). The connection stays
// open only if the request's body is not left unread on it.
func (fc *fastConn) reply(status int, msg string, id []byte, retryAfter int) bool {
	closing := fc.r.stream || fc.head.Close || fc.l.draining.Load()
	fc.out.b = appendReply(fc.out.b[:0], status, msg, id, retryAfter, closing)
	if fc.r.method == http.MethodHead {
		// The length a GET would get, and no body: one would be read as
		// the start of the next answer on this connection.
		fc.out.b = fc.out.b[:len(fc.out.b)-len(msg)-1]
	}
	fc.linger = fc.r.stream // the body may still be coming
	return fc.out.flush() == nil && !closing
}

func (fc *fastConn) replyGRPC(code int, msg string, id []byte) bool {
	closing := fc.r.stream || fc.head.Close || fc.l.draining.Load()
	b := append(fc.out.b[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nGrpc-Status: "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, "\r\nGrpc-Message: "...)
	b = appendGRPCMessage(b, msg)
	b = append(b, "\r\n"...)
	if len(id) > 0 {
		b = append(b, "X-Request-Id: "...)
		b = append(b, id...)
		b = append(b, "\r\n"...)
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	fc.out.b = append(b, "Content-Length: 0\r\n\r\n"...)
	fc.linger = fc.r.stream
	return fc.out.flush() == nil && !closing
}

func appendReply(b []byte, status int, msg string, id []byte, retryAfter int, closing bool) []byte {
	b = h1.AppendStatus(b, status, []byte(http.StatusText(status)))
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	if len(id) > 0 {
		b = append(b, "X-Request-Id: "...)
		b = append(b, id...)
		b = append(b, "\r\n"...)
	}
	if retryAfter > 0 {
		b = append(b, "Retry-After: "...)
		b = strconv.AppendInt(b, int64(retryAfter), 10)
		b = append(b, "\r\n"...)
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(msg)+1), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, msg...)
	return append(b, '\n')
}

func appendField(b, name, value []byte) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// respond writes the response head to the client, then the body as it
// comes, re-framed where the client needs it. It reports whether the
// client connection stays open.
func (fc *fastConn) respond(a *answer) bool {
	pc := a.pc
	resp := &pc.head
	closing := fc.head.Close || fc.l.draining.Load()
	chunked := !pc.noBody && resp.ContentLength < 0 // chunked, or until close: re-framed as chunked
	b := h1.AppendStatus(fc.out.b[:0], resp.Status, resp.Reason)
	ownID := true
	for i := range resp.Fields {
		f := &resp.Fields[i]
		if f.Kind == h1.XRequestID {
			ownID = false
		}
		if f.Kind.Hop() && !(f.Kind == h1.Trailer && chunked) || (resp.ConnNames && f.Kind == h1.Other && resp.Named(f.Name)) {
			continue
		}
		b = appendField(b, f.Name, f.Value)
	}
	if ownID {
		b = append(b, "X-Request-Id: "...)
		b = append(b, a.id...)
		b = append(b, "\r\n"...)
	}
	if a.setCookie != "" {
		b = append(b, "Set-Cookie: "...)
		b = append(b, a.setCookie...)
		b = append(b, "\r\n"...)
	}
	switch {
	case chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case resp.ContentLength >= 0 && (!pc.noBody || a.headReq || resp.Status == http.StatusNotModified):
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, resp.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	fc.out.b = append(b, "\r\n"...)

	var n int64
	var rerr, werr error
	reusable := !resp.Close
	switch {
	case pc.noBody:
	case resp.Chunked:
		n, werr, rerr = copyChunked(&fc.out, pc.in, pc.bodyFill)
	case resp.ContentLength >= 0:
		n, werr, rerr = copyLength(&fc.out, pc.in, resp.ContentLength, pc.bodyFill)
	default:
		n, werr, rerr = copyUntilClose(&fc.out, pc.in, pc.bodyFill)
		reusable = false
	}
	if werr == nil {
		werr = fc.out.flush()
	}
	a.bytes = n
	if rerr != nil || werr != nil {
		pc.c.Close()
		if rerr != nil {
			a.err = "reading the backend's body: " + rerr.Error()
		} else {
			a.err = "writing to the client: " + werr.Error()
		}
		return false // the client sees a broken transfer, not a short one
	}
	pc.release(reusable, a.now)
	return !closing
}

// cookieValue finds a cookie in the request's Cookie fields, or nil.
func cookieValue(h *h1.Head, name string) []byte {
	for i := range h.Fields {
		if h.Fields[i].Kind != h1.Cookie {
			continue
		}
		v := h.Fields[i].Value
		for len(v) > 0 {
			var pair []byte
			if j := bytes.IndexByte(v, ';'); j >= 0 {
				pair, v = v[:j], v[j+1:]
			} else {
				pair, v = v, nil
			}
			for len(pair) > 0 && (pair[0] == ' ' || pair[0] == '\t') {
				pair = pair[1:]
			}
			if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
				val := pair[len(name)+1:]
				if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
					val = val[1 : len(val)-1]
				}
				return val
			}
		}
	}
	return nil
}

// bstr views b as a string without copying. Only for lookups and
// comparisons during the request: the bytes change when the buffer is
// read into again, so the string must not be kept.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// saneID accepts a client's X-Request-Id: printable ASCII, at most 128 bytes.
func saneID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
