package l7

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/xlbproject/xlb/l7/balance"
	"github.com/xlbproject/xlb/l7/h1"
)

// serveFast proxies the request just read on fc; it reports whether the
// connection may carry another one.
func (s *service) serveFast(fc *fastConn) bool {
	req := &fc.req
	fc.in.Pin()
	defer fc.in.Unpin()
	start := time.Now()
	s.active.Add(1)
	s.mActive.Inc()
	defer func() {
		s.active.Add(-1)
		s.mActive.Dec()
	}()

	// The body: whole in the buffer (replayable), or still to be streamed.
	fc.body, fc.stream, fc.read, fc.path = nil, false, false, ""
	fc.in.Discard(req.Len)
	switch {
	case req.Chunked:
		fc.stream = true
	case req.ContentLength > 0:
		if b := fc.in.Buffered(); int64(len(b)) >= req.ContentLength {
			fc.body = b[:req.ContentLength]
			fc.in.Discard(int(req.ContentLength))
		} else {
			fc.stream = true
		}
	}

	id := req.RequestID
	if !saneID(id) {
		id = appendRequestID(fc.idBuf[:0])
	}
	rec := logRecord{start: start}
	defer s.finishFast(fc, &rec, id)

	if s.limiter != nil {
		key := fc.ip
		if s.limitHeader != "" {
			key = "h:" + string(req.Get(s.limitHeader))
		}
		if ok, wait := s.limiter.allow(key, start); !ok {
			rec.status = http.StatusTooManyRequests
			return fc.reply(http.StatusTooManyRequests, "rate limit exceeded", id, retryAfter(wait))
		}
	}
	p := s.pool
	if len(s.routes) > 0 {
		host, path, method := bstr(req.Host), fc.decodedPath(), bstr(req.Method)
		get := func(lower, _ string) string { return bstr(req.Get(lower)) }
		for i := range s.routes {
			if s.routes[i].matches(host, path, method, get) {
				p = s.routes[i].pool
				break
			}
		}
	}
	s.budget.earn()
	return s.forwardFast(fc, p, id, &rec)
}

// reply answers the request itself (429, 503, 502...). The connection stays
// open only if the request's body is not left unread on it.
func (fc *fastConn) reply(status int, msg string, id []byte, extra string) bool {
	closing := fc.stream || fc.req.Close || fc.l.draining.Load()
	fc.out.b = appendReply(fc.out.b[:0], status, msg, id, extra, closing)
	fc.linger = fc.stream // the body may still be coming
	return fc.out.flush() == nil && !closing
}

func appendReply(b []byte, status int, msg string, id []byte, extra string, closing bool) []byte {
	b = h1.AppendStatus(b, status, []byte(http.StatusText(status)))
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	if len(id) > 0 {
		b = append(b, "X-Request-Id: "...)
		b = append(b, id...)
		b = append(b, "\r\n"...)
	}
	b = append(b, extra...)
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(msg)+1), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, msg...)
	return append(b, '\n')
}

func retryAfter(wait time.Duration) string {
	secs := max(int((wait+time.Second-1)/time.Second), 1)
	return "Retry-After: " + strconv.Itoa(secs) + "\r\n"
}

// forwardFast sends the request to a backend, retrying elsewhere where the
// config and the method allow, and copies the answer back.
func (s *service) forwardFast(fc *fastConn, p *pool, id []byte, rec *logRecord) bool {
	req := &fc.req
	pick := &fc.pick
	pick.Tried = pick.Tried[:0]
	pick.ClientIP = fc.addr
	pick.Key = s.fastHashKey(fc)
	safe := idempotent(bstr(req.Method)) && !fc.stream && fc.body == nil
	head := bstr(req.Method) == http.MethodHead
	var cookie string
	if st := s.cfg.Sticky; st != nil {
		cookie = bstr(cookieValue(req, st.Cookie))
	}
	attempts := 1 + s.cfg.Retries.Attempts
	for attempt := 0; ; attempt++ {
		sent := rec.start
		if attempt > 0 {
			sent = time.Now()
		}
		u := s.choose(context.Background(), p, pick, cookie, sent)
		if u == nil {
			rec.status = http.StatusServiceUnavailable
			return fc.reply(http.StatusServiceUnavailable, "no backend available for service "+s.name, id, "")
		}
		rec.backend = u.Addr
		pc, err := s.exchange(fc, u, id, sent, head, safe)
		if err != nil {
			u.Release()
			var werr clientError
			if errors.As(err, &werr) {
				// The client's body broke off: nobody to answer.
				rec.status, rec.err = 499, err.Error()
				return false
			}
			status, retryable := s.upstreamFailure(err, u, safe, !fc.read)
			if retryable && attempt+1 < attempts && s.budget.spend() {
				pick.Tried = append(pick.Tried, u)
				rec.retries++
				continue
			}
			rec.status, rec.err = status, err.Error()
			return fc.reply(status, http.StatusText(status), id, "")
		}
		resp := &pc.head
		if s.answered(u, resp.Status, safe) && attempt+1 < attempts && s.budget.spend() {
			pc.discard()
			u.Release()
			pick.Tried = append(pick.Tried, u)
			rec.retries++
			continue
		}
		now := time.Now()
		u.ObserveLatency(now.Sub(sent), now)
		rec.status = resp.Status
		keep := s.respondFast(fc, p, u, pc, id, head, cookie, rec, now)
		u.Release()
		return keep
	}
}

// clientError is a failure reading the client's request body.
type clientError struct{ error }

// exchange writes the request to u and reads the response head. A kept-alive
// connection that the backend had closed is replaced by a new one, once.
func (s *service) exchange(fc *fastConn, u *balance.Upstream, id []byte, sent time.Time, head, safe bool) (*upConn, error) {
	cp := s.conns[u]
	pc := cp.get(sent)
	reused := pc != nil
	for {
		if pc == nil {
			var err error
			if pc, err = cp.dial(context.Background()); err != nil {
				return nil, err
			}
		}
		wrote, err := s.send(fc, pc, id)
		if err == nil {
			var w bool
			w, err = pc.roundTrip(sent, s.cfg.Timeouts.ResponseHeader, head)
			wrote = wrote || w
		}
		if err == nil {
			return pc, nil
		}
		pc.c.Close()
		var cerr clientError
		if errors.As(err, &cerr) || !reused || !stale(err) || fc.read || !(safe || !wrote) {
			return nil, err
		}
		pc, reused = nil, false
	}
}

// stale reports whether err is how a kept-alive connection the backend had
// already closed fails: nothing of an answer came back.
func stale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// send writes the request head and body to the backend, or, when the body
// came whole, leaves them in pc.out for roundTrip to send; wrote reports
// whether the head went out.
func (s *service) send(fc *fastConn, pc *upConn, id []byte) (wrote bool, err error) {
	req := &fc.req
	b := pc.out.b[:0]
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.Target...)
	b = append(b, " HTTP/1.1\r\n"...)
	// Prior proxies' X-Forwarded-For and Forwarded values, kept in order.
	var xffBuf, fwdBuf [4]h1.Field
	xff, fwd := xffBuf[:0], fwdBuf[:0]
	for i := range req.Fields {
		f := &req.Fields[i]
		switch f.Kind {
		case h1.XRequestID, h1.XForwardedProto, h1.XForwardedHost:
			continue // replaced below
		case h1.XForwardedFor:
			xff = append(xff, *f)
			continue
		case h1.Forwarded:
			fwd = append(fwd, *f)
			continue
		}
		if f.Kind.Hop() || (req.ConnNames && f.Kind == h1.Other && req.Named(f.Name)) {
			continue
		}
		b = appendField(b, f.Name, f.Value)
	}
	b = append(b, "X-Forwarded-For: "...)
	for _, f := range xff {
		b = append(b, f.Value...)
		b = append(b, ", "...)
	}
	b = append(b, fc.ip...)
	b = append(b, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\nForwarded: "...)
	for _, f := range fwd {
		b = append(b, f.Value...)
		b = append(b, ", "...)
	}
	b = append(b, "for="...)
	if fc.addr.Is6() {
		b = append(b, `"[`...)
		b = append(b, fc.ip...)
		b = append(b, `]"`...)
	} else {
		b = append(b, fc.ip...)
	}
	b = append(b, ";proto=http"...)
	if len(req.Host) > 0 {
		b = append(b, `;host="`...)
		b = append(b, req.Host...)
		b = append(b, '"')
	}
	b = append(b, "\r\nX-Request-Id: "...)
	b = append(b, id...)
	b = append(b, "\r\n"...)
	switch {
	case req.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case req.ContentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	pc.out.b = append(b, fc.body...)
	if !fc.stream {
		return false, nil
	}
	// A streamed body: what came with the head goes with it, the rest as
	// it arrives.
	fc.read = true
	fc.setDeadline(time.Time{})
	var cerr error
	src := &clientReader{fc: fc}
	if req.Chunked {
		_, err, cerr = copyChunked(&pc.out, fc.in, src.fill)
	} else {
		_, err, cerr = copyLength(&pc.out, fc.in, req.ContentLength, src.fill)
	}
	if cerr != nil {
		return true, clientError{cerr}
	}
	if err == nil {
		err = pc.out.flush()
	}
	return true, err
}

// clientReader refills a client's buffer while a body streams, each read
// bounded by idle_timeout so a stalled upload does not hold a backend.
type clientReader struct{ fc *fastConn }

func (r *clientReader) fill() error {
	if idle := r.fc.l.idle; idle > 0 {
		r.fc.setDeadline(time.Now().Add(idle))
	}
	return r.fc.in.Fill()
}

func appendField(b, name, value []byte) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// respondFast writes the response head to the client, then the body as it
// comes. It reports whether the client connection stays open.
func (s *service) respondFast(fc *fastConn, p *pool, u *balance.Upstream, pc *upConn, id []byte, headReq bool, cookie string, rec *logRecord, now time.Time) bool {
	resp := &pc.head
	closing := fc.req.Close || fc.l.draining.Load()
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
		b = append(b, id...)
		b = append(b, "\r\n"...)
	}
	if s.cfg.Sticky != nil {
		if tok := p.tokenOf[u]; cookie != tok {
			b = append(b, p.setCookie[u]...)
		}
	}
	switch {
	case chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case resp.ContentLength >= 0 && (!pc.noBody || headReq || resp.Status == http.StatusNotModified):
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
	rec.bytes = n
	if rerr != nil || werr != nil {
		pc.c.Close()
		if rerr != nil {
			rec.err = "reading the backend's body: " + rerr.Error()
		} else {
			rec.err = "writing to the client: " + werr.Error()
		}
		return false // the client sees a broken transfer, not a short one
	}
	if reusable {
		pc.pool.put(pc, now)
	} else {
		pc.c.Close()
	}
	return !closing
}

// fastHashKey is the consistent_hash key of the request on fc.
func (s *service) fastHashKey(fc *fastConn) string {
	switch s.hashKind {
	case "header":
		return bstr(fc.req.Get(s.hashLower))
	case "cookie":
		return bstr(cookieValue(&fc.req, s.hashName))
	case "path":
		return fc.decodedPath()
	}
	return fc.ip
}

// decodedPath is the request's path as net/http's URL.Path would have it.
func (fc *fastConn) decodedPath() string {
	if fc.path != "" {
		return fc.path
	}
	t := fc.req.Target
	if i := bytesIndexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	fc.path = bstr(t)
	if bytesIndexByte(t, '%') >= 0 {
		if p, err := url.PathUnescape(string(t)); err == nil {
			fc.path = p
		}
	}
	return fc.path
}

func bytesIndexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }

// cookieValue finds a cookie in the request's Cookie fields, or nil.
func cookieValue(h *h1.Head, name string) []byte {
	for i := range h.Fields {
		if h.Fields[i].Kind != h1.Cookie {
			continue
		}
		v := h.Fields[i].Value
		for len(v) > 0 {
			var pair []byte
			if j := bytesIndexByte(v, ';'); j >= 0 {
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

// finishFast records the request in metrics and the access log.
func (s *service) finishFast(fc *fastConn, rec *logRecord, id []byte) {
	if s.srv.access != nil {
		rec.id = string(id)
		rec.client = fc.c.RemoteAddr().String()
		rec.method = string(fc.req.Method)
		rec.host = string(fc.req.Host)
		rec.path = strings.Clone(fc.decodedPath())
	}
	fc.now = s.finish(rec)
}
