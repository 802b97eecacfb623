package l7

import (
	"errors"
	"io"
	"strconv"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/l7/balance"
)

// roundTrip writes the request to u and reads the response head. A
// kept-alive connection that the backend had closed is replaced by a new
// one, once, when the request can be sent again.
func (s *service) roundTrip(x exchange, u *balance.Upstream, id []byte, sent time.Time, headReq, safe bool) (*upConn, error) {
	r := x.req()
	cp := s.conns[u]
	if cp.h2 != nil {
		return s.roundTripH2(x, cp, id, sent, headReq)
	}
	pc := cp.get(sent)
	reused := pc != nil
	for {
		if pc == nil {
			var err error
			if pc, err = cp.dial(); err != nil {
				return nil, err
			}
		}
		r.waitFrom = sent
		if !reused {
			r.waitFrom = time.Now() // after the dial
		}
		wrote, err := s.writeRequest(x, pc, id)
		if err == nil {
			// A streamed body went out at the client's pace in
			// writeRequest: the backend's response_header time starts once
			// it is sent whole (see awaitHead).
			from := sent
			if r.stream {
				from = time.Now()
				r.waitFrom = from
			}
			var w bool
			w, err = pc.roundTrip(from, s.headTimeout(r, from), headReq, r.upgrade != "", x)
			wrote = wrote || w
		}
		if err == nil {
			return pc, nil
		}
		pc.c.Close()
		var cerr clientError
		if errors.As(err, &cerr) || err == errClientGone || !reused || !stale(err) || r.read || !(safe || !wrote) {
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

// writeRequest puts the request head (with the forwarding fields) and a
// whole body in pc.out, for pc.roundTrip to send; a streamed body is sent
// at once after the head. wrote reports whether the head went out.
func (s *service) writeRequest(x exchange, pc *upConn, id []byte) (wrote bool, err error) {
	r := x.req()
	b := appendHead(pc.out.b[:0], x, id, pc.pool.addr)
	pc.out.b = append(b, r.body...)
	if !r.stream {
		return false, nil
	}
	// A streamed body: what came with the head goes with it, the rest as
	// it arrives.
	r.read = true
	// A backend that stops reading the body holds the client no longer
	// than a client that stops sending it would hold the backend.
	pc.out.wt = x.idleLimit()
	werr, cerr := x.sendBody(&pc.out)
	if cerr != nil {
		return true, clientError{cerr}
	}
	if werr == nil {
		werr = pc.out.flush()
	}
	return true, werr
}

// appendHead appends the request head as a backend gets it, in HTTP/1.1
// form: the client's end-to-end fields, the forwarding fields, the request
// id and the body's framing. It is the one place that decides what is
// forwarded, whatever protocol the backend speaks.
func appendHead(b []byte, x exchange, id []byte, backend string) []byte {
	r := x.req()
	proto := "http"
	if r.tls {
		proto = "https"
	}
	b = append(b, r.method...)
	b = append(b, ' ')
	b = append(b, r.target...)
	b = append(b, " HTTP/1.1\r\n"...)
	if len(r.host) == 0 {
		// An HTTP/1.0 client may send no Host; an HTTP/1.1 request must
		// have one (RFC 9112 3.2), or the backend answers 400: the
		// backend's own address, as NGINX's proxy_pass sends.
		b = append(b, "Host: "...)
		b = append(b, backend...)
		b = append(b, "\r\n"...)
	}
	b = x.appendFields(b)
	b = append(b, "X-Forwarded-For: "...)
	b = x.appendPrior(b, false)
	b = append(b, r.ip...)
	b = append(b, "\r\nX-Forwarded-Proto: "...)
	b = append(b, proto...)
	if len(r.host) > 0 {
		b = append(b, "\r\nX-Forwarded-Host: "...)
		b = append(b, r.host...)
	}
	b = append(b, "\r\nForwarded: "...)
	b = x.appendPrior(b, true)
	b = append(b, "for="...)
	if r.addr.Is6() {
		b = append(b, `"[`...)
		b = append(b, r.ip...)
		b = append(b, `]"`...)
	} else {
		b = append(b, r.ip...)
	}
	b = append(b, ";proto="...)
	b = append(b, proto...)
	if len(r.host) > 0 {
		// Hosts are validated by the transports: no quote can forge a
		// parameter here.
		b = append(b, `;host="`...)
		b = append(b, r.host...)
		b = append(b, '"')
	}
	b = append(b, "\r\nX-Request-Id: "...)
	b = append(b, id...)
	b = append(b, "\r\n"...)
	if r.upgrade != "" {
		b = append(b, "Connection: Upgrade\r\nUpgrade: "...)
		b = append(b, r.upgrade...)
		b = append(b, "\r\n"...)
	}
	switch {
	case r.stream && r.length < 0:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case r.length >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.length, 10)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}
