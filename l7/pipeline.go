package l7

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/l7/balance"
	"github.com/xlbproject/xlb/l7/h1"
)

// statusClientClosed is what the access log and metrics say of a request
// whose client went away before its answer (NGINX's 499).
const statusClientClosed = 499

// errClientGone ends a backend exchange whose client went away while it
// waited for the answer: the backend request is cancelled (its connection
// closed) and the backend is not blamed.
var errClientGone = errors.New("the client went away before the answer")

// clientError is a failure reading the client's request body.
type clientError struct{ error }

// serve takes one request through the pipeline. It reports whether the
// client connection may carry another request.
func (s *service) serve(x exchange) bool {
	r := x.req()
	s.active.Add(1)
	s.mActive.Inc()
	defer func() {
		s.active.Add(-1)
		s.mActive.Dec()
	}()
	id := r.id
	if !saneID(id) {
		id = appendRequestID(r.idBuf[:0])
	}
	rec := logRecord{start: r.start}
	defer s.finish(x, &rec, id)

	if s.limiter != nil {
		key := r.ip
		if s.limitHeader != "" {
			// A request without the header is limited by its address:
			// not one bucket that every such client shares (one noisy one
			// would throttle them all), nor no limit at all (leaving the
			// header out would escape it).
			if v := x.header(s.limitHeader, s.limitCanon); v != "" {
				key = "h:" + v
			}
		}
		if ok, wait := s.limiter.allow(key, r.start); !ok {
			rec.status = http.StatusTooManyRequests
			return s.reply(x, &rec, http.StatusTooManyRequests, "rate limit exceeded", id, max(int((wait+time.Second-1)/time.Second), 1))
		}
	}
	if r.upgrade != "" && (s.cfg.BackendProtocol == "h2c" || s.cfg.BackendProtocol == "h2") {
		// HTTP/2 has no Upgrade: sent on as a plain request, the backend
		// would answer it as one and the client's next bytes would be
		// taken for a request.
		rec.status = http.StatusNotImplemented
		r.close = true
		return s.reply(x, &rec, http.StatusNotImplemented, "upgrades (WebSocket) need backend_protocol http1 or https; service "+s.name+" speaks "+s.cfg.BackendProtocol+" to its backends", id, 0)
	}
	p := s.pool
	for i := range s.routes {
		if s.routes[i].matches(x) {
			p = s.routes[i].pool
			break
		}
	}
	s.budget.earn()
	return s.forward(x, p, id, &rec)
}

// abandoned records a request whose client gave up before it could be
// served (an HTTP/2 stream reset before its turn): 499, no backend asked.
func (s *service) abandoned(x exchange) {
	r := x.req()
	id := r.id
	if !saneID(id) {
		id = appendRequestID(r.idBuf[:0])
	}
	rec := logRecord{start: r.start, status: statusClientClosed, err: "the client left before the request was served"}
	s.finish(x, &rec, id)
}

// forward sends the request to a backend, retrying elsewhere where the
// config and the method allow, and hands the answer to the transport.
func (s *service) forward(x exchange, p *pool, id []byte, rec *logRecord) bool {
	r := x.req()
	pick := &r.pick
	pick.Tried = pick.Tried[:0]
	pick.ClientIP = r.addr
	pick.Key = s.hashKey(x)
	// Only an idempotent request may be sent again (SPEC: retries are for
	// idempotent requests only, even after a connect error), and only while
	// its body is whole in the buffer: a streamed one cannot be replayed.
	r.kept = false
	safe := idempotent(r.method) && !r.stream
	headReq := r.method == http.MethodHead
	grpc := strings.HasPrefix(x.header("content-type", "Content-Type"), "application/grpc")
	r.deadline = time.Time{}
	if v := x.header("grpc-timeout", "Grpc-Timeout"); v != "" {
		if d, ok := parseGRPCTimeout(v); ok {
			r.deadline = r.start.Add(d)
		}
	}
	var cookie string
	if st := s.cfg.Sticky; st != nil {
		cookie = x.cookie(st.Cookie)
	}
	attempts := 1 + s.cfg.Retries.Attempts
	for attempt := 0; ; attempt++ {
		sent := rec.start
		if attempt > 0 {
			sent = time.Now()
		}
		u := s.choose(x, p, pick, cookie, sent)
		if u == nil {
			if x.gone() {
				rec.status = statusClientClosed
				return false
			}
			rec.status = http.StatusServiceUnavailable
			return s.reply(x, rec, http.StatusServiceUnavailable, s.noBackend, id, 0)
		}
		rec.backend = u.Addr
		pc, err := s.roundTrip(x, u, id, sent, headReq, safe)
		if err != nil {
			u.Release()
			var cerr clientError
			var bad *h1.Error
			if errors.As(err, &cerr) && errors.As(cerr.error, &bad) && !x.gone() {
				// The client sent a body whose framing is broken: it waits
				// for an answer, and its connection cannot carry another
				// request. The backend did nothing wrong.
				rec.status, rec.err = bad.Status, "malformed request body: "+bad.Msg
				r.close = true
				return s.reply(x, rec, bad.Status, "malformed request body: "+bad.Msg, id, 0)
			}
			if errors.Is(err, errClientGone) || errors.As(err, &cerr) || x.gone() {
				// Nobody waits for an answer, and the backend did nothing
				// wrong: no passive-health failure, no retry.
				rec.status, rec.err = statusClientClosed, err.Error()
				return false
			}
			if !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
				// The call's own deadline (grpc-timeout) passed: whoever
				// reset the stream, the backend is not to blame (SPEC).
				rec.status, rec.err = statusClientClosed, "the call's deadline (grpc-timeout) passed: "+err.Error()
				return s.reply(x, rec, http.StatusGatewayTimeout, "deadline exceeded", id, 0)
			}
			// A streamed body the attempt read whole was kept: it can go
			// again (roundTripH2).
			safe = idempotent(r.method) && (!r.stream || r.kept)
			status, retryable := s.upstreamFailure(err, u, safe)
			if grpc && (!r.stream || r.kept) && s.retryOn[retryGRPCUnavailable] && !answerTimedOut(err) {
				// A backend that failed before answering (reset, closed,
				// killed) is what a gRPC client calls UNAVAILABLE: with
				// grpc_unavailable in retries.on the operator says such
				// calls may be sent again, and its body is whole. Not one
				// whose answer timed out: that backend may still be running
				// the call, and the client sees DEADLINE_EXCEEDED, which
				// gRPC's own retry policies never retry.
				retryable = true
			}
			if retryable && attempt+1 < attempts && p.untried(pick, u, time.Now()) && s.budget.spend() {
				pick.Tried = append(pick.Tried, u)
				rec.retries++
				continue
			}
			rec.status, rec.err = status, err.Error()
			return s.reply(x, rec, status, http.StatusText(status), id, 0)
		}
		if s.answered(u, pc, sent, safe, grpc, !r.stream || r.kept) && attempt+1 < attempts && p.untried(pick, u, time.Now()) && s.budget.spend() {
			pc.discard()
			u.Release()
			pick.Tried = append(pick.Tried, u)
			rec.retries++
			continue
		}
		now := time.Now()
		u.ObserveLatency(now.Sub(r.waitFrom), now)
		rec.status = pc.head.Status
		// inTrailers: a gRPC answer whose status comes after its messages
		// (answered left it unjudged).
		inTrailers := false
		if grpc {
			// A trailers-only answer's status is in its head; read now,
			// the head is gone once the answer is.
			rec.grpc = string(pc.head.Get("grpc-status"))
			inTrailers = pc.head.Status == http.StatusOK && rec.grpc == ""
		}
		a := &r.ans
		*a = answer{pc: pc, id: id, headReq: headReq, now: now}
		if s.cfg.Sticky != nil {
			if tok := p.tokenOf[u]; cookie != tok {
				a.setCookie = p.cookieFor(u, r.tls)
			}
		}
		keep := x.respond(a)
		rec.bytes, rec.err = a.bytes, a.err
		if a.gone {
			rec.status = statusClientClosed
		}
		if a.grpc != "" {
			rec.grpc = a.grpc
		}
		if inTrailers && !a.gone {
			// The call's status came in the trailers, after answered: an
			// UNAVAILABLE there is the backend's fault too, and only a call
			// that ended otherwise is a success (counted at the head, it
			// would reset the count of failures before each one).
			if a.grpc == "14" {
				s.passiveFail(u)
			} else if a.err == "" {
				u.Succeed(sent)
			}
		}
		u.Release()
		return keep
	}
}

// reply answers without a backend. A gRPC client gets the answer as a
// gRPC status in an HTTP 200 trailers-only response, which is what its
// library understands (an HTTP error page is only "unknown" to it): 429 is
// RESOURCE_EXHAUSTED, 502 and 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED.
func (s *service) reply(x exchange, rec *logRecord, status int, msg string, id []byte, retryAfter int) bool {
	if !strings.HasPrefix(x.header("content-type", "Content-Type"), "application/grpc") {
		return x.reply(status, msg, id, retryAfter)
	}
	code := grpcUnavailable
	switch status {
	case http.StatusTooManyRequests:
		code = grpcResourceExhausted
	case http.StatusGatewayTimeout:
		code = grpcDeadlineExceeded
	case http.StatusBadGateway, http.StatusServiceUnavailable:
	default:
		code = grpcInternal
	}
	rec.grpc = strconv.Itoa(code)
	return x.replyGRPC(code, msg, id)
}

// headTimeout is how long an attempt sent at sent waits for the answer's
// head: timeouts.response_header, or less when the call's own deadline
// comes first.
func (s *service) headTimeout(r *request, sent time.Time) time.Duration {
	t := s.cfg.Timeouts.ResponseHeader
	if !r.deadline.IsZero() {
		if left := r.deadline.Sub(sent); t <= 0 || left < t {
			t = max(left, time.Millisecond)
		}
	}
	return t
}

// parseGRPCTimeout reads a grpc-timeout value: at most 8 digits and a
// unit (H, M, S, m, u, n).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// gRPC status codes xlb answers with itself.
const (
	grpcDeadlineExceeded  = 4
	grpcResourceExhausted = 8
	grpcInternal          = 13
	grpcUnavailable       = 14
)

// appendGRPCMessage percent-encodes a grpc-message value (gRPC's HTTP/2
// protocol: bytes outside printable ASCII, and '%').
func appendGRPCMessage(b []byte, msg string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return b
}

// choose picks a backend: the one the sticky cookie names if it is
// usable, else the scheduler's; when every usable backend is at max_conns,
// it waits briefly for a slot.
func (s *service) choose(x exchange, p *pool, pick *balance.Pick, cookie string, now time.Time) *balance.Upstream {
	if u := s.tryPick(p, pick, cookie, now); u != nil {
		return u
	}
	if !p.anyFull(time.Now()) {
		return s.panicPick(p, pick, time.Now())
	}
	// max_conns is an overload guard: polling only costs when a service
	// is saturated.
	deadline := time.Now().Add(queueWait)
	for time.Now().Before(deadline) && !x.gone() {
		time.Sleep(2 * time.Millisecond)
		if u := s.tryPick(p, pick, cookie, time.Now()); u != nil {
			return u
		}
	}
	return nil
}

// panicPick is the last resort when no backend is available: one that
// only passive health ejected (balance.PanicSelect), logged at most once
// per second per service.
func (s *service) panicPick(p *pool, pick *balance.Pick, now time.Time) *balance.Upstream {
	for range 4 {
		u := balance.PanicSelect(p.ups, pick, now)
		if u == nil {
			return nil
		}
		if u.TryAcquire() {
			if last := s.panicLogged.Load(); now.UnixNano()-last >= int64(time.Second) && s.panicLogged.CompareAndSwap(last, now.UnixNano()) {
				s.srv.log.Warn("no backend available; trying one that passive health ejected", "service", s.name, "pool", p.name, "backend", u.Addr)
			}
			return u
		}
	}
	return nil
}

func (s *service) tryPick(p *pool, pick *balance.Pick, cookie string, now time.Time) *balance.Upstream {
	if cookie != "" {
		if u := p.byToken[cookie]; u != nil && u.Bound(now) && !tried(pick, u) && u.TryAcquire() {
			return u
		}
	}
	for range 4 {
		u := p.sel.Select(p.ups, pick, now)
		if u == nil {
			return nil
		}
		if u.TryAcquire() {
			return u
		}
		// Lost a race for its last slot: pick again.
	}
	return nil
}

func tried(p *balance.Pick, u *balance.Upstream) bool {
	for _, t := range p.Tried {
		if t == u {
			return true
		}
	}
	return false
}

// failure kinds, as retries.on names them.
const (
	failConnect = "connect_error"
	failTimeout = "timeout"
)

// unreachable reports whether err is a TCP connection that could not be
// made.
func unreachable(err error) bool {
	var refused errRefused
	if errors.As(err, &refused) {
		return true // the backend took nothing: refused, or going away
	}
	for _, e := range []error{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func classify(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return failTimeout
		}
		return failConnect
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failTimeout
	}
	return "error"
}

// upstreamFailure handles an exchange with u that failed before any answer,
// through the backend's fault (the client's were handled before): it counts
// for passive health, and the request may go to another backend if
// retries.on names the kind of failure and the request can be sent again.
// status is the answer if it is not retried: 504 for a timeout, 503 when
// the backend could not be reached at all (refused, unreachable: the
// request reached no backend, as when every backend is down; Envoy and
// HAProxy answer so too), else 502 (a backend that took the connection and
// then failed: reset, bad TLS, not speaking HTTP/2).
func (s *service) upstreamFailure(err error, u *balance.Upstream, safe bool) (status int, retryable bool) {
	kind := classify(err)
	retry := s.retryOn[kind]
	switch kind {
	case failTimeout:
		status = http.StatusGatewayTimeout
		if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
			// A connect that timed out (a dead or firewalled host) is a
			// connect error too: nothing was sent, and NGINX's
			// proxy_next_upstream error and Envoy's connect-failure both
			// send it elsewhere.
			retry = retry || s.retryOn[failConnect]
		}
	case failConnect:
		status = http.StatusBadGateway
		if unreachable(err) {
			status = http.StatusServiceUnavailable
		}
	default:
		status = http.StatusBadGateway
		if safe {
			// A reset or close before any response: an idempotent request
			// may go elsewhere as if it never connected.
			retry = s.retryOn[failConnect]
		}
	}
	s.passiveFail(u)
	return status, retry && safe
}

// answerTimedOut: the backend took the request and did not answer in time
// (a response-header timeout), not a connect that timed out.
func answerTimedOut(err error) bool {
	if classify(err) != failTimeout {
		return false
	}
	op := (*net.OpError)(nil)
	return !errors.As(err, &op) || op.Op != "dial"
}

// answered counts a backend's answer for passive health (a 5xx, or a
// gRPC call answered UNAVAILABLE, is a failure) and reports whether the
// config wants it retried elsewhere. A gRPC status is seen here when the
// answer is trailers-only (the status in its head, no message): then the
// call was not served, and it may go elsewhere if its body is whole.
func (s *service) answered(u *balance.Upstream, pc *upConn, sent time.Time, safe, grpc, whole bool) (retry bool) {
	status := pc.head.Status
	if status >= 500 {
		s.passiveFail(u)
		return safe && s.retryOn[strconv.Itoa(status)]
	}
	if grpc && status == http.StatusOK {
		switch string(pc.head.Get("grpc-status")) {
		case "14":
			s.passiveFail(u)
			return whole && s.retryOn[retryGRPCUnavailable]
		case "8":
			u.Succeed(sent)
			return whole && s.retryOn[retryGRPCExhausted]
		case "":
			return false // the status comes in the trailers (forward judges)
		}
	}
	u.Succeed(sent)
	return false
}

// retries.on names for gRPC statuses.
const (
	retryGRPCUnavailable = "grpc_unavailable"
	retryGRPCExhausted   = "grpc_resource_exhausted"
)

// passiveFail counts a backend's fault and ejects it at max_fails, unless
// it is the last backend one of its pools can use: ejecting that one turns
// a few failed requests (which any client can cause where an endpoint
// answers 500) into a 503 for every client until fail_timeout. Envoy's
// panic threshold does the same; active health checks still take a dead
// last backend out.
func (s *service) passiveFail(u *balance.Upstream) {
	ph := s.cfg.PassiveHealth
	if ph.MaxFails <= 0 {
		u.Fail(time.Now(), 0, 0)
		return
	}
	now := time.Now()
	s.ejectMu.Lock()
	ejected, spared := u.FailSparing(now, ph.MaxFails, ph.FailTimeout, func() bool { return s.lastOfAPool(u, now) })
	s.ejectMu.Unlock()
	switch {
	case ejected:
		s.srv.log.Warn("backend ejected by passive health", "service", s.name, "backend", u.Addr,
			"max_fails", ph.MaxFails, "fail_timeout", ph.FailTimeout)
	case spared:
		s.srv.log.Warn("backend reached max_fails but is the last one available; not ejected", "service", s.name, "backend", u.Addr,
			"max_fails", ph.MaxFails)
	}
}

// lastOfAPool says whether u is the only backend available in the
// service's pool or in a route's pool that holds it.
func (s *service) lastOfAPool(u *balance.Upstream, now time.Time) bool {
	last := func(p *pool) bool {
		holds, other := false, false
		for _, v := range p.ups {
			if v == u {
				holds = true
			} else if v.Available(now) {
				other = true
			}
		}
		return holds && !other
	}
	if last(s.pool) {
		return true
	}
	for i := range s.routes {
		if last(s.routes[i].pool) {
			return true
		}
	}
	return false
}

// hashKey is the consistent_hash key of the request.
func (s *service) hashKey(x exchange) string {
	switch s.hashKind {
	case "header":
		return x.header(s.hashLower, s.hashName)
	case "cookie":
		return x.cookie(s.hashName)
	case "path":
		return x.path()
	}
	return x.req().ip
}

// idempotent methods may be sent twice (RFC 9110 9.2.2).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// logRecord is what the access log and metrics say of one request.
type logRecord struct {
	grpc    string // the gRPC status of the answer, when it carried one
	start   time.Time
	backend string
	status  int
	retries int
	bytes   int64
	err     string
}

type codeKey struct {
	backend string
	code    int
}

// requestsCounter is xlb_l7_requests_total's child for a backend and status.
func (s *service) requestsCounter(backend string, code int) counter {
	k := codeKey{backend, code}
	if c, ok := s.codes.Load(k); ok {
		return c.(counter)
	}
	c := s.srv.met.requests.WithLabelValues(s.name, backend, strconv.Itoa(code))
	s.codes.Store(k, c)
	return c
}

type counter interface{ Inc() }

// refused records a request that xlb's parser answered itself (400, 431,
// 505: a malformed or oversized head, a smuggling attempt) before it could
// reach the pipeline, with backend none, as NGINX logs its 400s: an
// operator must see header-size limits hit and smuggling tried.
func (s *service) refused(client string, status int, why string) {
	s.requestsCounter("none", status).Inc()
	if al := s.srv.access; al != nil {
		al.LogAttrs(context.Background(), slog.LevelInfo, "request",
			slog.String("service", s.name), slog.String("client", client),
			slog.Int("status", status), slog.String("backend", "none"), slog.String("error", why))
	}
}

// finish records a request in metrics and the access log.
func (s *service) finish(x exchange, rec *logRecord, id []byte) {
	end := time.Now()
	d := end.Sub(rec.start)
	backend := rec.backend
	if backend == "" {
		backend = "none"
	}
	if cut := s.srv.cutAt.Load(); rec.status == statusClientClosed && cut != 0 && end.UnixNano() >= cut {
		// Still in flight when the shutdown's drain ran out: xlbd cut it
		// (logged 499 as NGINX does), its client did not leave.
		rec.err = "cut by the shutdown at the end of l7.drain_timeout"
	}
	if rec.status == statusClientClosed && rec.grpc == "" && strings.HasPrefix(x.header("content-type", "Content-Type"), "application/grpc") {
		// A call its client cancelled (or gave up on) ended CANCELLED
		// for it: counted so, every call has its status in the metric.
		rec.grpc = "1"
	}
	s.requestsCounter(backend, rec.status).Inc()
	s.mDuration.Observe(d.Seconds())
	if rec.retries > 0 {
		s.mRetries.Add(float64(rec.retries))
	}
	if rec.grpc != "" {
		s.srv.met.grpc.WithLabelValues(s.name, backend, rec.grpc).Inc()
	}
	r := x.req()
	if al := s.srv.access; al != nil {
		attrs := []slog.Attr{
			slog.String("request_id", string(id)), slog.String("service", s.name), slog.String("client", x.remote()),
			slog.String("method", r.method), slog.String("host", r.host), slog.String("path", x.path()),
			slog.Int("status", rec.status), slog.String("backend", backend), slog.Int("retries", rec.retries),
			slog.Int64("bytes", rec.bytes), slog.Duration("duration", d),
		}
		if rec.grpc != "" {
			attrs = append(attrs, slog.String("grpc_status", rec.grpc))
		}
		if rec.err != "" {
			attrs = append(attrs, slog.String("error", rec.err))
		}
		al.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
	}
	if s.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		s.srv.log.Debug("request", "service", s.name, "backend", backend, "status", rec.status, "duration", d)
	}
	r.end = end
}
