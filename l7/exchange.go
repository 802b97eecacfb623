package l7

import (
	"net/netip"
	"time"

	"github.com/xlbproject/xlb/l7/balance"
)

// The L7 tier is one request pipeline (pipeline.go: rate limit, route,
// sticky, select, retry, passive health, forwarding headers, request id,
// metrics, access log) over transports that only turn bytes into requests
// and answers back into bytes, as Envoy's codecs do:
//
//   - h1conn.go: xlb's own HTTP/1.1 engine, for cleartext and TLS clients;
//   - h2conn.go: xlb's own HTTP/2 engine (TLS by ALPN, and h2c with prior
//     knowledge), one exchange per stream;
//   - stdconn.go: Go's net/http server, for the few HTTP/1.x requests the
//     HTTP/1.1 engine hands it (protocol upgrades, Expect: 100-continue,
//     HTTP/1.0, absolute-form targets).
//
// Every transport reaches backends the same way: one connection pool per
// backend (upconn.go), HTTP/1.1 or, for h2c and h2 backends, xlb's own
// HTTP/2 client (h2client.go, h2backend.go), the request head built once
// (outgoing.go).
//
// Where later features attach: an answer served without a backend (a cache
// hit) is a reply made before forward picks a backend, through the same
// exchange.reply every local answer (429, 503) takes; a response body is
// tapped where each transport's respond copies it (copyLength, copyChunked
// and copyUntilClose for the HTTP/1.1 engine, copyLength and copyDecoded
// in h2stream.go, bodyReader for net/http).

// request is what the pipeline knows of a request, whatever its transport.
// Its strings may be views of the transport's read buffer (see bstr): they
// are valid until the exchange ends and must not be kept.
type request struct {
	method, target, host string
	start                time.Time
	ip                   string     // client address without port
	addr                 netip.Addr // the same, parsed; invalid if it is not an IP
	tls                  bool       // the client connection is TLS
	id                   []byte     // the X-Request-Id the client sent, if any
	close                bool       // the client closes after this answer
	upgrade              string     // the protocol the client asks to switch to (net/http transport only)

	// The body: whole (it came with the head, so it can be sent again), or
	// still on the wire (stream), framed chunked when length is -1.
	body   []byte
	length int64
	stream bool
	read   bool // bytes of a streamed body were consumed: it cannot be replayed
	// kept: a streamed body that an HTTP/2 backend's attempt read to its
	// end, at most h2WholeBody and without trailers, is whole in keep, and
	// can be sent again as if it had come with the head. Whether a small
	// body streams at all depends on whether its DATA frame was already
	// read when its HEADERS were (h2Conn.requestDone): a gRPC unary call
	// must not lose its retry to that timing.
	keep []byte
	kept bool

	end      time.Time // when the last request on the connection ended
	deadline time.Time // the call's own deadline (grpc-timeout); zero: none
	// waitFrom is when the attempt's request was on an open backend
	// connection, whole: its answer's wait, which least_time averages,
	// counts from there. A dial or TLS handshake, or a client's slow
	// upload, is no measure of how fast the backend answers, and a first
	// sample that held one would keep a backend as fast as the others
	// from being chosen again for as long as samples count.
	waitFrom time.Time

	// Per-request scratch space kept with the connection, so that a
	// request allocates nothing.
	pick  balance.Pick
	idBuf [32]byte
	ans   answer
}

// exchange is one request on a transport and the way to answer it.
type exchange interface {
	req() *request
	// path is the request's decoded path (net/http's URL.Path).
	path() string
	// header returns the first value of a request field, by its lower-case
	// and its canonical name.
	header(lower, canon string) string
	cookie(name string) string
	// remote is the client's address and port, for the access log.
	remote() string

	// appendFields appends the end-to-end request fields in HTTP/1.1 form:
	// no hop-by-hop or framing fields, and none of those the pipeline
	// writes itself (X-Request-Id, X-Forwarded-*, Forwarded).
	appendFields(b []byte) []byte
	// appendPrior appends the values of prior proxies' X-Forwarded-For
	// (forwarded false) or Forwarded (true) fields, each followed by ", ".
	appendPrior(b []byte, forwarded bool) []byte
	// sendBody writes a streamed body to the backend in the framing the
	// request head announced; cerr is a failure of the client, werr one of
	// the backend.
	sendBody(w *wbuf) (werr, cerr error)

	// reply answers without a backend (429, 502, 503, 504, and later cached
	// answers). It reports whether the connection may carry another request.
	reply(status int, msg string, id []byte, retryAfter int) bool
	// replyGRPC answers a gRPC request without a backend: HTTP 200 with
	// the gRPC status code and message, trailers-only.
	replyGRPC(code int, msg string, id []byte) bool
	// respond writes a backend's answer: its head (with the pipeline's
	// additions in a) and its body, streamed from a.pc as it comes.
	respond(a *answer) bool
	// gone reports whether the client has gone away (closed, reset, or
	// cancelled the request): then nobody waits for the answer.
	gone() bool
	// idleLimit is the client connection's idle_timeout (0: none), which
	// also bounds a backend's silence in the middle of an answer.
	idleLimit() time.Duration
}

// answer is a backend's answer on its way to the client.
type answer struct {
	pc        *upConn // the head is pc.head; the body is read from pc
	id        []byte
	setCookie string // a Set-Cookie value to add, or ""
	headReq   bool
	now       time.Time

	// Set by respond.
	bytes int64
	err   string
	gone  bool   // the client left before the answer started: logged as 499
	grpc  string // the gRPC status the answer's trailers carried, if the transport read them
}
