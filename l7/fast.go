package l7

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/xlbproject/xlb/l7/balance"
	"github.com/xlbproject/xlb/l7/h1"
)

// The plain-HTTP listeners are served by xlb's own HTTP/1.1 engine: one
// goroutine per client connection reads a request in place, writes it to a
// pooled backend connection and copies the answer back, with no goroutine
// hand-offs and no allocation per request. net/http's server costs about as
// much CPU per request as NGINX spends proxying one, so it only takes the
// connections this engine hands it: protocol upgrades (WebSocket),
// Expect: 100-continue, HTTP/1.0, and absolute-form or asterisk targets.
// TLS listeners (and so HTTP/2) are net/http's.

// Client connection states, for drain: an idle connection waits for a
// request with nothing buffered and may be closed at once.
const (
	connIdle int32 = iota
	connActive
)

// fastConn is one client connection of a plain-HTTP listener.
type fastConn struct {
	l      *listener
	c      net.Conn
	in     *h1.Reader
	req    h1.Head
	out    wbuf
	ip     string // client address without port
	addr   netip.Addr
	state  atomic.Int32
	dl     time.Time // read deadline last set; zero: none
	pick   balance.Pick
	idBuf  [32]byte
	body   []byte // a request body that arrived whole with its head
	stream bool   // the body is still on the wire: streamed to the backend
	read   bool   // bytes of a streamed body were consumed: no replay
	path   string // decoded path, when something needed it

	raw     syscall.RawConn // nil: plain reads only
	drained bool            // the last read left the socket empty
	now     time.Time       // when the last request ended; zero before one
	linger  bool            // an answer went out with input left unread
}

// Lingering close: how long, and how much, unread input is drained.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// lingerClose closes a connection whose client may still be sending (a
// refused request, an unread body) without losing the answer: closing a
// socket with unread input makes Linux send a reset, which can destroy the
// answer before the client reads it. So: shut the sending side, drain what
// comes for a short while, then close (as NGINX's lingering_close).
func (fc *fastConn) lingerClose() {
	defer fc.c.Close()
	if cw, ok := fc.c.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	fc.c.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, fc.c, lingerBytes)
}

func newFastConn(l *listener, c net.Conn) *fastConn {
	fc := &fastConn{l: l, c: c, in: h1.NewReader(c, 4<<10, l.maxHeader)}
	fc.out.w, fc.out.fd = c, -1
	if sc, ok := c.(syscall.Conn); ok {
		fc.raw, _ = sc.SyscallConn()
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		fc.addr = ap.Addr().Unmap()
		fc.ip = fc.addr.String()
	} else {
		fc.ip = c.RemoteAddr().String()
	}
	return fc
}

// serveFast accepts on a plain-HTTP listener until it is closed.
func (l *listener) serveFast(s *Server) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("l7 accept failed", "addr", l.addr, "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		fc := newFastConn(l, c)
		if !l.add(fc) {
			c.Close()
			continue
		}
		go fc.serve()
	}
}

// What the connection does after a read session.
type step int

const (
	stepClose   step = iota
	stepHandOff      // to net/http
	stepStream       // serve a request whose body is still on the wire
)

func (fc *fastConn) serve() {
	handedOff := false
	defer func() {
		switch {
		case handedOff:
		case fc.linger:
			fc.lingerClose()
		default:
			fc.c.Close()
		}
		fc.l.remove(fc)
	}()
	for {
		switch fc.session() {
		case stepClose:
			return
		case stepHandOff:
			handedOff = fc.handOff()
			return
		case stepStream:
			if !fc.l.handler.Load().serveFast(fc) {
				return
			}
		}
	}
}

// handedOff reports whether the request just read is one for net/http.
func (fc *fastConn) handedOff() bool {
	return fc.req.Minor == 0 || fc.req.Upgrade || fc.req.Expect || fc.req.Target[0] != '/'
}

// streamed reports whether the request just read has a body that did not
// come whole with its head.
func (fc *fastConn) streamed() bool {
	r := &fc.req
	return r.Chunked || r.ContentLength > int64(len(fc.in.Buffered())-r.Len)
}

// session reads and serves requests until one needs something else: a
// hand-off, a streamed body, or the end of the connection.
//
// The requests are served inside one RawConn.Read session, which lets the
// connection wait for the client's next request without first trying a
// read that would only say EAGAIN (a plain Read always tries first): from
// the session's start the poller records every readiness edge, so after a
// read that drained the socket, waiting cannot miss data. NGINX skips that
// read the same way. Inside the session every read of this connection is
// a raw one: a plain Read would deadlock on the read lock the session
// holds, which is why streamed bodies are served outside.
func (fc *fastConn) session() step {
	if fc.raw == nil {
		return fc.plainSession()
	}
	next := stepClose
	var headStart time.Time
	defer func() { fc.out.fd = -1 }()
	err := fc.raw.Read(func(fd uintptr) bool {
		fc.out.fd = int(fd)
		// Called at the start and after each wake-up: both read first.
		skipRead := false
		for {
			if b := fc.in.Buffered(); len(b) > 0 {
				err := h1.ParseRequest(b, &fc.req)
				if err == nil {
					headStart = time.Time{}
					fc.state.Store(connActive)
					switch {
					case fc.handedOff():
						next = stepHandOff
						return true
					case fc.streamed():
						next = stepStream
						return true
					}
					if !fc.l.handler.Load().serveFast(fc) {
						return true
					}
					skipRead = fc.drained
					continue
				}
				if err == h1.ErrIncomplete && len(b) > fc.l.maxHeader {
					err = errHeadTooLarge
				}
				if err != h1.ErrIncomplete {
					fc.refuse(err)
					return true
				}
				if headStart.IsZero() {
					fc.state.Store(connActive)
					headStart = time.Now()
					fc.setDeadline(headStart.Add(fc.l.readHeader))
				}
			} else if !fc.waitIdle() {
				return true
			}
			if skipRead {
				return false // wait for the poller
			}
			n, full, err := fc.in.FillWith(func(p []byte) (int, error) { return readFD(fd, p) })
			switch {
			case err == syscall.EAGAIN:
				fc.drained = true
				return false
			case err == h1.ErrFull:
				fc.refuse(errHeadTooLarge)
				return true
			case err != nil || n == 0:
				return true // reset or closed by the client
			}
			// After a short read the socket is empty: parse, then wait.
			fc.drained = !full
			skipRead = !full
		}
	})
	if err != nil {
		return stepClose // idle or header timeout, drain, closed
	}
	return next
}

// waitIdle prepares to wait for a request with nothing buffered: the
// connection counts as idle (a drain closes it) and idle_timeout runs. It
// reports false when the connection should close instead.
func (fc *fastConn) waitIdle() bool {
	fc.state.Store(connIdle)
	if fc.l.draining.Load() {
		return false
	}
	if idle := fc.l.idle; idle > 0 {
		// Moving a deadline costs a timer update; a deadline up to a
		// second short of idle_timeout is good enough to keep. The end
		// of the last request is "now" enough.
		now := fc.now
		if now.IsZero() {
			now = time.Now()
		}
		if left := fc.dl.Sub(now); left < idle-time.Second || left > idle {
			fc.setDeadline(now.Add(idle))
		}
	} else if !fc.dl.IsZero() {
		fc.setDeadline(time.Time{})
	}
	// Re-checked after the deadline is set: a drain that kicked this
	// connection before then would otherwise be undone.
	return !fc.l.draining.Load()
}

// plainSession is session for connections without raw access: plain reads.
func (fc *fastConn) plainSession() step {
	for {
		if err := fc.readHead(); err != nil {
			fc.refuse(err)
			return stepClose
		}
		fc.state.Store(connActive)
		switch {
		case fc.handedOff():
			return stepHandOff
		case fc.streamed():
			return stepStream
		}
		if !fc.l.handler.Load().serveFast(fc) {
			return stepClose
		}
	}
}

// readHead waits for the next request head: idle_timeout while nothing
// has come, read_header_timeout from its first byte.
func (fc *fastConn) readHead() error {
	var headStart time.Time
	for {
		b := fc.in.Buffered()
		if len(b) > 0 {
			err := h1.ParseRequest(b, &fc.req)
			if err == nil {
				return nil
			}
			if err != h1.ErrIncomplete {
				return err
			}
			if len(b) > fc.l.maxHeader {
				return errHeadTooLarge
			}
			if headStart.IsZero() {
				fc.state.Store(connActive)
				headStart = time.Now()
				fc.setDeadline(headStart.Add(fc.l.readHeader))
			}
		} else if !fc.waitIdle() {
			return io.EOF
		}
		if err := fc.in.Fill(); err != nil {
			if err == h1.ErrFull {
				return errHeadTooLarge
			}
			return err
		}
	}
}

func (fc *fastConn) setDeadline(t time.Time) {
	fc.dl = t
	fc.c.SetReadDeadline(t)
}

var errHeadTooLarge = errors.New("request head too large")

// refuse answers a request that cannot be read, when it can be answered.
func (fc *fastConn) refuse(err error) {
	var pe *h1.Error
	switch {
	case errors.As(err, &pe):
		fc.replyClose(pe.Status, pe.Msg)
	case errors.Is(err, errHeadTooLarge):
		fc.replyClose(http.StatusRequestHeaderFieldsTooLarge, "request header fields too large")
	}
}

func (fc *fastConn) replyClose(status int, msg string) {
	fc.out.b = appendReply(fc.out.b[:0], status, msg, nil, "", true)
	fc.out.flush()
	fc.linger = true
}

// handOff gives the connection, with what was read of it, to net/http.
func (fc *fastConn) handOff() bool {
	pending := append([]byte(nil), fc.in.Buffered()...)
	fc.setDeadline(time.Time{})
	return fc.l.handoff.push(&prefixConn{Conn: fc.c, pending: pending})
}

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
			kind := classify(err)
			if kind == "error" && safe {
				kind = failConnect // reset before any answer: as if never connected
			}
			s.passiveFail(u)
			untouched := !fc.read
			retryable := s.retryOn[kind] && (safe || (kind == failConnect && untouched))
			if retryable && attempt+1 < attempts && s.budget.spend() {
				pick.Tried = append(pick.Tried, u)
				rec.retries++
				continue
			}
			status := http.StatusBadGateway
			if kind == failTimeout {
				status = http.StatusGatewayTimeout
			}
			rec.status, rec.err = status, err.Error()
			return fc.reply(status, http.StatusText(status), id, "")
		}
		resp := &pc.head
		if resp.Status >= 500 {
			s.passiveFail(u)
			if safe && s.retryOn[strconv.Itoa(resp.Status)] && attempt+1 < attempts && s.budget.spend() {
				pc.discard(head)
				u.Release()
				pick.Tried = append(pick.Tried, u)
				rec.retries++
				continue
			}
		} else {
			u.Succeed()
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

// roundTrip sends what pc.out holds and reads the response head, within
// the response_header timeout from when the request was sent; interim 1xx
// answers are skipped.
//
// Both happen in one RawConn.Read session, so that the read which would
// only say EAGAIN is skipped, as NGINX does: the poller records readiness
// edges from the session's start, and the request is written after it, so
// the answer's edge cannot be missed. A plain Read tries the system call
// first each time, one wasted call per request.
func (pc *upConn) roundTrip(sent time.Time, timeout time.Duration, headReq bool) (wrote bool, err error) {
	if timeout > 0 {
		pc.c.SetReadDeadline(sent.Add(timeout))
		pc.dl = true
	} else if pc.dl {
		pc.c.SetReadDeadline(time.Time{})
		pc.dl = false
	}
	if pc.raw == nil {
		if err := pc.out.flush(); err != nil {
			return false, err
		}
		return true, pc.readHead(headReq)
	}
	rt := &pc.rt
	*rt = roundTrip{pending: len(pc.out.b) > 0, headReq: headReq}
	rerr := pc.raw.Read(pc.readable)
	wrote = rt.wrote || !rt.pending
	if rerr != nil {
		return wrote, rerr
	}
	return wrote, rt.err
}

// roundTrip is the state of one exchange on an upConn, kept in it so that
// the session's callback is made once per connection, not per request.
type roundTrip struct {
	pending, wrote, headReq bool
	err                     error
}

// readable is the roundTrip session's callback: first it sends, then it
// reads until the head is whole.
func (pc *upConn) readable(fd uintptr) bool {
	rt := &pc.rt
	if rt.pending {
		rt.pending = false
		pc.out.fd = int(fd)
		rt.err = pc.out.flush()
		pc.out.fd = -1
		if rt.err != nil {
			return true
		}
		rt.wrote = true
		return false // wait for the answer
	}
	for {
		if rt.err = pc.parse(rt.headReq); rt.err != h1.ErrIncomplete {
			return true
		}
		n, full, err := pc.in.FillWith(func(p []byte) (int, error) { return readFD(fd, p) })
		switch {
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			rt.err = &net.OpError{Op: "read", Net: "tcp", Addr: pc.c.RemoteAddr(), Err: os.NewSyscallError("read", err)}
			return true
		case n == 0:
			rt.err = io.EOF
			if len(pc.in.Buffered()) > 0 {
				rt.err = io.ErrUnexpectedEOF
			}
			return true
		case !full:
			// The socket is drained: parse, then wait for the rest.
			if rt.err = pc.parse(rt.headReq); rt.err != h1.ErrIncomplete {
				return true
			}
			return false
		}
	}
}

// readFD reads a non-blocking socket inside a RawConn session (which keeps
// fd open). RawSyscall skips the scheduler's system-call bookkeeping, a
// tenth of the call's cost here; a non-blocking read cannot block, which
// is what that bookkeeping is for.
func readFD(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		}
		return -1, e
	}
}

// readHead reads the response head with plain reads (connections that
// offer no raw access).
func (pc *upConn) readHead(headReq bool) error {
	for {
		err := pc.parse(headReq)
		if err != h1.ErrIncomplete {
			return err
		}
		if err := pc.in.Fill(); err != nil {
			if err == io.EOF && len(pc.in.Buffered()) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

// parse parses the buffered response head, skipping 1xx answers; it
// returns h1.ErrIncomplete until the head is whole.
func (pc *upConn) parse(headReq bool) error {
	for {
		b := pc.in.Buffered()
		if len(b) == 0 {
			return h1.ErrIncomplete
		}
		err := h1.ParseResponse(b, &pc.head)
		if err == h1.ErrIncomplete {
			if len(b) >= maxResponseHead {
				return errors.New("response head from backend too large")
			}
			return err
		}
		if err != nil {
			return errors.New("malformed response from backend: " + err.Error())
		}
		pc.in.Discard(pc.head.Len)
		switch st := pc.head.Status; {
		case st == http.StatusSwitchingProtocols:
			return errors.New("backend switched protocols unasked")
		case st < 200:
			continue
		}
		pc.noBody = headReq || pc.head.Status == http.StatusNoContent || pc.head.Status == http.StatusNotModified
		return nil
	}
}

// bodyFill refills the backend's buffer for its body, with no deadline:
// response_header bounds the wait for the head only (a stream may idle).
func (pc *upConn) bodyFill() error {
	if pc.dl {
		pc.c.SetReadDeadline(time.Time{})
		pc.dl = false
	}
	return pc.in.Fill()
}

// discard skips a response that will not be used, keeping the connection
// when the body is small and already here.
func (pc *upConn) discard(headReq bool) {
	h := &pc.head
	n := int64(len(pc.in.Buffered()))
	if pc.noBody || (h.ContentLength >= 0 && h.ContentLength <= n) {
		if !pc.noBody {
			pc.in.Discard(int(h.ContentLength))
		}
		if !h.Close {
			pc.pool.put(pc, time.Now())
			return
		}
	}
	pc.c.Close()
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

// wbuf batches writes to a connection.
type wbuf struct {
	w  net.Conn
	b  []byte
	fd int // the socket, inside a RawConn session on it (which keeps it open); else -1
}

// flush writes what is batched. Inside a session the first attempt is a
// raw non-blocking write (see readFD); what does not fit goes through the
// connection, whose poller waits for room.
func (w *wbuf) flush() error {
	if len(w.b) == 0 {
		return nil
	}
	b := w.b
	w.b = w.b[:0]
	if w.fd >= 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(w.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			b = b[n:]
		case syscall.EAGAIN, syscall.EINTR:
		default:
			return &net.OpError{Op: "write", Net: "tcp", Addr: w.w.RemoteAddr(), Err: os.NewSyscallError("write", e)}
		}
		if len(b) == 0 {
			return nil
		}
	}
	_, err := w.w.Write(b)
	return err
}

// copyBatch is how much a body copy gathers before writing.
const copyBatch = 32 << 10

// copyLength copies an n-byte body from src to w. It writes out whenever
// src has nothing more buffered, so that what arrived leaves at once.
// werr is a failure of w, rerr one of src.
func copyLength(w *wbuf, src *h1.Reader, n int64, fill func() error) (copied int64, werr, rerr error) {
	for n > 0 {
		b := src.Buffered()
		if len(b) == 0 {
			if werr = w.flush(); werr != nil {
				return
			}
			if rerr = fill(); rerr != nil {
				if rerr == io.EOF {
					rerr = io.ErrUnexpectedEOF
				}
				return
			}
			continue
		}
		take := int(min(int64(len(b)), n))
		w.b = append(w.b, b[:take]...)
		src.Discard(take)
		n -= int64(take)
		copied += int64(take)
		if len(w.b) >= copyBatch {
			if werr = w.flush(); werr != nil {
				return
			}
		}
	}
	return
}

// copyUntilClose copies a body delimited by the backend closing the
// connection, chunk-framed for the client.
func copyUntilClose(w *wbuf, src *h1.Reader, fill func() error) (copied int64, werr, rerr error) {
	for {
		b := src.Buffered()
		if len(b) > 0 {
			w.b = strconv.AppendInt(w.b, int64(len(b)), 16)
			w.b = append(w.b, "\r\n"...)
			w.b = append(w.b, b...)
			w.b = append(w.b, "\r\n"...)
			src.Discard(len(b))
			copied += int64(len(b))
		}
		if werr = w.flush(); werr != nil {
			return
		}
		if err := fill(); err != nil {
			if err == io.EOF {
				w.b = append(w.b, "0\r\n\r\n"...)
				return
			}
			rerr = err
			return
		}
	}
}

// maxChunkLine bounds a chunk-size or trailer line.
const maxChunkLine = 4 << 10

// copyChunked copies a chunked body, trailer fields included, re-framing
// each chunk; like copyLength it writes whenever src runs dry.
func copyChunked(w *wbuf, src *h1.Reader, fill func() error) (copied int64, werr, rerr error) {
	line := func() ([]byte, error) {
		for {
			ln, n, err := h1.Line(src.Buffered())
			if err == nil {
				src.Discard(n)
				return ln, nil
			}
			if err != h1.ErrIncomplete {
				return nil, err
			}
			if len(src.Buffered()) > maxChunkLine {
				return nil, errors.New("chunk line too long")
			}
			if werr = w.flush(); werr != nil {
				return nil, nil
			}
			if err := fill(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
		}
	}
	for {
		ln, err := line()
		if werr != nil {
			return
		}
		if err != nil {
			rerr = err
			return
		}
		size, err := h1.ChunkSize(ln)
		if err != nil {
			rerr = err
			return
		}
		if size == 0 {
			w.b = append(w.b, "0\r\n"...)
			for {
				ln, err := line()
				if werr != nil {
					return
				}
				if err != nil {
					rerr = err
					return
				}
				if len(ln) == 0 {
					break
				}
				if validTrailer(ln) {
					w.b = append(w.b, ln...)
					w.b = append(w.b, "\r\n"...)
				}
			}
			w.b = append(w.b, "\r\n"...)
			return
		}
		w.b = strconv.AppendInt(w.b, size, 16)
		w.b = append(w.b, "\r\n"...)
		var n int64
		if n, werr, rerr = copyLength(w, src, size, fill); werr != nil || rerr != nil {
			copied += n
			return
		}
		copied += n
		ln, err = line()
		if werr != nil {
			return
		}
		if err != nil || len(ln) != 0 {
			rerr = errors.New("malformed chunk: no line end after its data")
			return
		}
		w.b = append(w.b, "\r\n"...)
	}
}

// validTrailer accepts a trailer line that is a well-formed field; the
// others are dropped rather than passed on.
func validTrailer(ln []byte) bool {
	var h h1.Head
	b := make([]byte, 0, len(ln)+20)
	b = append(b, "HTTP/1.1 200 OK\r\n"...)
	b = append(b, ln...)
	b = append(b, "\r\n\r\n"...)
	return h1.ParseResponse(b, &h) == nil && len(h.Fields) == 1 && !h.Fields[0].Kind.Hop()
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

// handoffListener is the listener net/http serves the handed-off
// connections from.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// push gives c to net/http; false if the listener is closed.
func (h *handoffListener) push(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.done:
		return false
	}
}

func (h *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoffListener) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	return nil
}

func (h *handoffListener) Addr() net.Addr { return h.addr }

// prefixConn is a connection with bytes already read from it.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
