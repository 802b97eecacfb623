package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/l7/balance"
)

// service is one layer 7 service: its routes, pools and protections. It is
// immutable once built; a reload builds a new one and swaps it in.
type service struct {
	srv       *Server
	name      string
	cfg       config.Service
	pool      *pool
	routes    []route
	transport *http.Transport
	limiter   *limiter
	budget    *retryBudget
	retryOn   map[string]bool
	hashKind  string // consistent_hash key: header, cookie, path, source_ip
	hashName  string
	hashLower string // hashName in lower case, for the HTTP/1.1 engine
	// limitHeader is the lower-case header a rate limit is keyed on; empty:
	// the client address.
	limitHeader string
	active      *atomic.Int64
	// conns are the kept-alive connections to each backend (HTTP/1.1 engine).
	conns map[*balance.Upstream]*connPool

	// Metric children resolved once, not per request.
	mActive   prometheus.Gauge
	mDuration prometheus.Observer
	mRetries  prometheus.Counter
	codes     sync.Map // codeKey -> prometheus.Counter
}

type codeKey struct {
	backend string
	code    int
}

// requestsCounter is xlb_l7_requests_total's child for a backend and status.
func (s *service) requestsCounter(backend string, code int) prometheus.Counter {
	k := codeKey{backend, code}
	if c, ok := s.codes.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := s.srv.met.requests.WithLabelValues(s.name, backend, strconv.Itoa(code))
	s.codes.Store(k, c)
	return c
}

// idempotent methods may be sent twice (RFC 9110 9.2.2).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// countingBody lets the proxy tell whether a request body was touched: the
// transport closes bodies even on a failed dial, and a body nobody read may
// still be sent to another backend.
type countingBody struct {
	r io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return nil } // the server closes the original

// failure kinds, as retries.on names them.
const (
	failConnect = "connect_error"
	failTimeout = "timeout"
)

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

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.active.Add(1)
	defer s.active.Add(-1)
	s.mActive.Inc()
	defer s.mActive.Dec()

	id := requestID(r)
	w.Header().Set("X-Request-Id", id)
	ip := clientIP(r)
	rec := &logRecord{id: id, start: start, client: r.RemoteAddr, method: r.Method, host: r.Host, path: r.URL.Path}
	defer s.finish(rec)

	if s.limiter != nil {
		key := ip
		if name, ok := strings.CutPrefix(s.cfg.RateLimit.Key, "header:"); ok {
			key = "h:" + r.Header.Get(name)
		}
		if ok, wait := s.limiter.allow(key, start); !ok {
			secs := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			rec.status = http.StatusTooManyRequests
			http.Error(w, "rate limit exceeded", http.StatusTooManyRequests)
			return
		}
	}

	p := s.pool
	for i := range s.routes {
		if s.routes[i].matches(r.Host, r.URL.Path, r.Method, func(_, canon string) string { return r.Header.Get(canon) }) {
			p = s.routes[i].pool
			break
		}
	}
	s.budget.earn()
	s.forward(w, r, p, id, ip, rec)
}

// forward sends the request to a backend, retrying on another backend
// where the config and the method allow, and streams the answer back.
func (s *service) forward(w http.ResponseWriter, r *http.Request, p *pool, id, ip string, rec *logRecord) {
	pick := &balance.Pick{Key: s.hashKey(r, ip)}
	if a, err := netip.ParseAddr(ip); err == nil {
		pick.ClientIP = a
	}
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{r: r.Body}
	}
	safe := idempotent(r.Method) && body == nil
	attempts := 1 + s.cfg.Retries.Attempts

	var cookie string
	if st := s.cfg.Sticky; st != nil {
		if c, err := r.Cookie(st.Cookie); err == nil {
			cookie = c.Value
		}
	}
	for attempt := 0; ; attempt++ {
		u := s.choose(r.Context(), p, pick, cookie, time.Now())
		if u == nil {
			rec.status = http.StatusServiceUnavailable
			http.Error(w, fmt.Sprintf("no backend available for service %s", s.name), http.StatusServiceUnavailable)
			return
		}
		rec.backend = u.Addr
		out := s.outgoing(r, u, ip, id, body)
		sent := time.Now()
		resp, err := s.transport.RoundTrip(out)
		if err != nil {
			u.Release()
			status, retryable := s.upstreamFailure(err, u, safe, body == nil || body.n.Load() == 0)
			if retryable && attempt+1 < attempts && r.Context().Err() == nil && s.budget.spend() {
				pick.Tried = append(pick.Tried, u)
				rec.retries++
				continue
			}
			if r.Context().Err() != nil {
				status = 499 // the client went away; nothing is written
				rec.status = status
				return
			}
			rec.status, rec.err = status, err.Error()
			http.Error(w, http.StatusText(status), status)
			return
		}
		if s.answered(u, resp.StatusCode, safe) && attempt+1 < attempts && s.budget.spend() {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			u.Release()
			pick.Tried = append(pick.Tried, u)
			rec.retries++
			continue
		}
		u.ObserveLatency(time.Since(sent), time.Now())
		rec.status = resp.StatusCode
		s.respond(w, r, p, u, resp, rec)
		u.Release()
		return
	}
}

// choose picks a backend: the one the sticky cookie names if it is
// usable, else the scheduler's; when every usable backend is at max_conns,
// it waits briefly for a slot.
func (s *service) choose(ctx context.Context, p *pool, pick *balance.Pick, cookie string, now time.Time) *balance.Upstream {
	if u := s.tryPick(p, pick, cookie, now); u != nil {
		return u
	}
	if !p.anyFull(time.Now()) {
		return nil
	}
	// max_conns is an overload guard: polling only costs when a service
	// is saturated.
	deadline := time.Now().Add(queueWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
		if u := s.tryPick(p, pick, cookie, time.Now()); u != nil {
			return u
		}
	}
	return nil
}

func (s *service) tryPick(p *pool, pick *balance.Pick, cookie string, now time.Time) *balance.Upstream {
	if cookie != "" {
		if u := p.byToken[cookie]; u != nil && u.Available(now) && !tried(pick, u) && u.TryAcquire() {
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

// upstreamFailure handles an exchange with u that failed before any
// answer: it counts for passive health, and the request may go to another
// backend if retries.on names the kind of failure and the request can be
// sent again. status is the answer if it is not retried: 504 for a
// timeout, else 502.
func (s *service) upstreamFailure(err error, u *balance.Upstream, safe, untouched bool) (status int, retryable bool) {
	kind := classify(err)
	if kind == "error" && safe {
		// A reset or close before any response: an idempotent request may
		// go elsewhere as if it never connected.
		kind = failConnect
	}
	s.passiveFail(u)
	status = http.StatusBadGateway
	if kind == failTimeout {
		status = http.StatusGatewayTimeout
	}
	return status, s.retryOn[kind] && (safe || (kind == failConnect && untouched))
}

// answered counts a backend's answer for passive health (a 5xx is a
// failure) and reports whether the config wants a 5xx retried elsewhere.
func (s *service) answered(u *balance.Upstream, status int, safe bool) (retry bool) {
	if status < 500 {
		u.Succeed()
		return false
	}
	s.passiveFail(u)
	return safe && s.retryOn[strconv.Itoa(status)]
}

func (s *service) passiveFail(u *balance.Upstream) {
	ph := s.cfg.PassiveHealth
	if ph.MaxFails > 0 && u.Fail(time.Now(), ph.MaxFails, ph.FailTimeout) {
		s.srv.log.Warn("backend ejected by passive health", "service", s.name, "backend", u.Addr,
			"max_fails", ph.MaxFails, "fail_timeout", ph.FailTimeout)
	}
}

func (s *service) hashKey(r *http.Request, ip string) string {
	switch s.hashKind {
	case "header":
		return r.Header.Get(s.hashName)
	case "cookie":
		if c, err := r.Cookie(s.hashName); err == nil {
			return c.Value
		}
		return ""
	case "path":
		return r.URL.Path
	}
	return ip
}

// outgoing builds the request to the backend.
func (s *service) outgoing(r *http.Request, u *balance.Upstream, ip, id string, body *countingBody) *http.Request {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.Host = u.Addr
	out.Close = false
	if body != nil {
		out.Body = body
	} else {
		out.Body = nil
	}
	up := upgradeType(r.Header)
	removeHopHeaders(out.Header)
	if up != "" {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", up)
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // Go would add its own
	}
	out.Header.Set("X-Request-Id", id)
	setForwarded(out, r, ip)
	return out
}

// respond writes the backend's answer: headers, a sticky cookie, then the
// body, flushed as it comes for streams, or the raw connection after a
// protocol switch.
func (s *service) respond(w http.ResponseWriter, r *http.Request, p *pool, u *balance.Upstream, resp *http.Response, rec *logRecord) {
	defer resp.Body.Close()
	h := w.Header()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		s.upgrade(w, r, resp, rec)
		return
	}
	removeHopHeaders(resp.Header)
	for k, vv := range resp.Header {
		h[k] = vv
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h.Set("Trailer", strings.Join(names, ", "))
	}
	if st := s.cfg.Sticky; st != nil {
		tok := p.tokenOf[u]
		if c, err := r.Cookie(st.Cookie); err != nil || c.Value != tok {
			http.SetCookie(w, stickyCookie(st, tok, r.TLS != nil))
		}
	}
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	n, err := copyBody(w, resp.Body, stream)
	rec.bytes = n
	if err != nil && !errors.Is(err, context.Canceled) {
		rec.err = err.Error()
		// The status line is gone; abort the response so the client
		// sees a broken transfer, not a short but complete one.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams a body; a stream (SSE, chunked) is flushed after every
// read so that events reach the client as they happen.
func copyBody(w http.ResponseWriter, body io.Reader, stream bool) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	var total int64
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
			if stream {
				rc.Flush()
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// upgrade joins the client's connection to the backend's after a protocol
// switch (WebSocket and friends) and copies both ways until either closes.
func (s *service) upgrade(w http.ResponseWriter, r *http.Request, resp *http.Response, rec *logRecord) {
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		rec.status = http.StatusBadGateway
		http.Error(w, "backend switched protocols without a usable connection", http.StatusBadGateway)
		return
	}
	defer backend.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		rec.status = http.StatusInternalServerError
		http.Error(w, "cannot switch protocols on this connection", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	untrack := s.srv.track(conn)
	defer untrack()
	removeHopHeaders(resp.Header)
	resp.Header.Set("Connection", "Upgrade")
	resp.Header.Set("Upgrade", upgradeType(r.Header))
	fmt.Fprintf(brw, "HTTP/1.1 101 %s\r\n", http.StatusText(http.StatusSwitchingProtocols))
	resp.Header.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		// Bytes the client sent after its request are in brw's buffer.
		io.Copy(backend, brw.Reader)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(conn, backend)
		done <- struct{}{}
	}()
	<-done
}

// logRecord is what the access log and metrics say of one request. The
// request's own fields (id, client, method, host, path) are filled only
// when an access log is written.
type logRecord struct {
	id      string
	start   time.Time
	client  string
	method  string
	host    string
	path    string
	backend string
	status  int
	retries int
	bytes   int64
	err     string
}

// finish records a request in metrics and the access log; it returns the
// time it ended.
func (s *service) finish(rec *logRecord) time.Time {
	end := time.Now()
	d := end.Sub(rec.start)
	backend := rec.backend
	if backend == "" {
		backend = "none"
	}
	s.requestsCounter(backend, rec.status).Inc()
	s.mDuration.Observe(d.Seconds())
	if rec.retries > 0 {
		s.mRetries.Add(float64(rec.retries))
	}
	if al := s.srv.access; al != nil {
		attrs := []slog.Attr{
			slog.String("request_id", rec.id), slog.String("service", s.name), slog.String("client", rec.client),
			slog.String("method", rec.method), slog.String("host", rec.host), slog.String("path", rec.path),
			slog.Int("status", rec.status), slog.String("backend", backend), slog.Int("retries", rec.retries),
			slog.Int64("bytes", rec.bytes), slog.Duration("duration", d),
		}
		if rec.err != "" {
			attrs = append(attrs, slog.String("error", rec.err))
		}
		al.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
	}
	if s.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		s.srv.log.Debug("request", "service", s.name, "backend", backend, "status", rec.status, "duration", d)
	}
	return end
}
