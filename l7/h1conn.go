package l7

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/l7/h1"
)

// xlb's own HTTP/1.1 engine serves every listener, cleartext and TLS: one
// goroutine per client connection reads a request in place, writes it to a
// pooled backend connection and copies the answer back, with no goroutine
// hand-offs and no allocation per request. net/http's server costs about as
// much CPU per request as NGINX spends proxying one, so it only takes the
// connections this engine hands it: protocol upgrades (WebSocket),
// Expect: 100-continue, HTTP/1.0, and absolute-form or asterisk targets.
// HTTP/2 goes to xlb's HTTP/2 engine (h2conn.go): by ALPN over TLS, or
// when a connection opens with the HTTP/2 preface.
//
// h1conn.go: the client connection and its read sessions; h1exchange.go:
// the connection as the pipeline's exchange; handoff.go: the way to
// net/http.

// Client connection states, for drain: an idle connection waits for a
// request with nothing buffered and may be closed at once.
const (
	connIdle int32 = iota
	connActive
)

// fastConn is one client connection of a listener.
type fastConn struct {
	l     *listener
	c     net.Conn // what requests are read from: tcp, or TLS over it
	in    *h1.Reader
	head  h1.Head
	r     request
	out   wbuf
	state atomic.Int32
	lim   *limits
	dl    time.Time // read deadline last set; zero: none
	pathS string    // decoded path, when something needed it
	tls   bool

	raw     syscall.RawConn // read sessions on the socket; nil: plain reads
	sock    syscall.RawConn // the TCP socket, to see whether the client left
	tc      *tls.Conn       // TLS: c, and sc under it
	sc      *sessionConn
	drained bool // the last read left the socket empty
	linger  bool // an answer went out with input left unread
	fresh   bool // no request read yet: the bytes may be an HTTP/2 preface
	toH2    bool // they were: the connection goes to the HTTP/2 engine
	looked  bool // drainLook ran
	granted bool // and gave the connection one more request to read
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

// newFastConn makes a client connection on tcp, read under lim; tc is the
// TLS connection over it (through sc), or nil.
func newFastConn(l *listener, lim *limits, tcp net.Conn, tc *tls.Conn, sc *sessionConn) *fastConn {
	var c net.Conn = tcp
	if tc != nil {
		c = tc
	}
	fc := &fastConn{l: l, lim: lim, c: c, tc: tc, sc: sc, in: h1.NewReader(c, 4<<10, lim.maxHeader), fresh: true}
	fc.out.w, fc.out.fd, fc.out.wt = c, -1, lim.idle
	if fc.out.wt <= 0 {
		fc.out.wt = h2DefaultWriteTimeout
	}
	if rc, ok := tcp.(syscall.Conn); ok {
		fc.sock, _ = rc.SyscallConn()
	}
	fc.raw = fc.sock
	if tc != nil {
		fc.tls, fc.r.tls = true, true
	}
	r := &fc.r
	if ap, err := netip.ParseAddrPort(tcp.RemoteAddr().String()); err == nil {
		r.addr = ap.Addr().Unmap()
		r.ip = r.addr.String()
	} else {
		r.ip = tcp.RemoteAddr().String()
	}
	return fc
}

// serveFast accepts on a plain-HTTP listener until it is closed.
func (l *listener) serveFast(s *Server) {
	defer close(l.acceptDone)
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
		l.arriving.Add(1)
		go l.serveConn(c)
	}
}

// serveConn serves one accepted connection, under the limits in force
// now: after the TLS handshake, if the listener has TLS, on this engine,
// or on the HTTP/2 engine.
func (l *listener) serveConn(c net.Conn) {
	defer contain("a client connection", c)
	arriving := true // counted in l.arriving until added
	defer func() {
		if arriving {
			l.arriving.Add(-1)
		}
	}()
	lim := l.lim.Load()
	var t *tls.Conn
	var sc *sessionConn
	if conf := l.tlsConf.Load(); conf != nil {
		sc = newSessionConn(c)
		t = tls.Server(sc, conf)
		c.SetDeadline(time.Now().Add(lim.readHeader))
		if err := t.Handshake(); err != nil {
			c.Close()
			return
		}
		c.SetDeadline(time.Time{})
		if t.ConnectionState().NegotiatedProtocol == "h2" {
			l.serveH2(t, c, nil, lim)
			return
		}
	}
	fc := newFastConn(l, lim, c, t, sc)
	l.add(fc)
	l.arriving.Add(-1)
	arriving = false
	fc.serve()
	if fc.toH2 {
		arriving = true
		var conn net.Conn = c
		if t != nil {
			conn = t
		}
		l.serveH2(conn, c, append([]byte(nil), fc.in.Buffered()...), lim)
	}
}

// What the connection does after a read session.
type step int

const (
	stepClose   step = iota
	stepHandOff      // to net/http
	stepStream       // serve a request whose body is still on the wire
	stepH2           // the client opened with the HTTP/2 preface
)

func (fc *fastConn) serve() {
	handedOff := false
	defer func() {
		switch {
		case handedOff:
		case fc.toH2:
		case fc.linger:
			fc.lingerClose()
		default:
			fc.c.Close()
		}
		if fc.toH2 {
			// Counted until serveH2 adds it, so a drain does not end in
			// between.
			fc.l.arriving.Add(1)
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
		case stepH2:
			fc.setDeadline(time.Time{})
			fc.toH2 = true
			return
		case stepStream:
			if !fc.serveOne() {
				return
			}
		}
	}
}

// handedOff reports whether the request just read is one for net/http.
func (fc *fastConn) handedOff() bool {
	return fc.head.Minor == 0 || fc.head.Upgrade || fc.head.Expect || fc.head.Target[0] != '/'
}

// streamed reports whether the request just read has a body that did not
// come whole with its head.
func (fc *fastConn) streamed() bool {
	r := &fc.head
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
		read := func(p []byte) (int, error) { return readFD(fd, p) }
		if fc.tc != nil {
			// Writes go through TLS; reads skip EAGAIN in sessionConn.
			fc.sc.drained = false
			read = func(p []byte) (int, error) { return fc.tlsRead(fd, p) }
		} else {
			fc.out.fd = int(fd)
		}
		// Called at the start and after each wake-up: both read first.
		skipRead := false
		for {
			if b := fc.in.Buffered(); len(b) > 0 {
				err := fc.parse(b)
				if err == errPreface {
					next = fc.preface()
					return true
				}
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
					if !fc.serveOne() {
						return true
					}
					// Over TLS, crypto/tls may hold the next request:
					// always ask it (sessionConn skips the futile read).
					skipRead = fc.drained && fc.tc == nil
					continue
				}
				if err == h1.ErrIncomplete && len(b) > fc.lim.maxHeader {
					err = errHeadTooLarge
				}
				if err != h1.ErrIncomplete {
					fc.refuse(err)
					return true
				}
				if headStart.IsZero() {
					fc.state.Store(connActive)
					headStart = time.Now()
					fc.setDeadline(headStart.Add(fc.lim.readHeader))
				}
			} else if !fc.waitIdle() && !fc.drainLook() {
				return true
			}
			if skipRead {
				return false // wait for the poller
			}
			n, full, err := fc.in.FillWith(read)
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
			skipRead = !full && fc.tc == nil
		}
	})
	if err != nil {
		// A drain wakes an idle connection with a deadline in the past.
		if errors.Is(err, os.ErrDeadlineExceeded) && fc.state.Load() == connIdle && fc.drainLook() {
			return fc.session()
		}
		return stepClose // idle or header timeout, drain, closed
	}
	return next
}

// How long a drain waits for the next request of a connection that is
// likely sending one: it was just accepted (no request yet), or had an
// answer within drainRecent (a busy keep-alive client).
const (
	drainGrace  = 200 * time.Millisecond
	drainRecent = time.Second
)

// drainLook runs, once, when a drain is to close an idle connection. A
// request the client has sent meanwhile (its bytes wait in the socket) is
// read and answered, with Connection: close, rather than lost to the
// reset a close with unread input sends; so is one that comes within
// drainGrace from a client that just connected or just had an answer,
// whose next request is most likely on its way. It reports whether to
// read on.
func (fc *fastConn) drainLook() bool {
	if !fc.l.draining.Load() || fc.sock == nil || fc.looked {
		return false
	}
	fc.looked = true
	pending := false
	fc.sock.Control(func(fd uintptr) {
		pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd[:], 0); err == nil && n > 0 && pfd[0].Revents&unix.POLLIN != 0 {
			pending = true
		}
	})
	switch {
	case pending:
		fc.setDeadline(time.Now().Add(fc.lim.readHeader))
	case fc.fresh || time.Since(fc.r.end) < drainRecent:
		fc.setDeadline(time.Now().Add(drainGrace))
	default:
		return false
	}
	// Not idle any more: the drain neither kicks it again nor counts it
	// gone, and waitIdle lets it read.
	fc.granted = true
	fc.state.Store(connActive)
	return true
}

// waitIdle prepares to wait for a request with nothing buffered: the
// connection counts as idle (a drain closes it) and idle_timeout runs. It
// reports false when the connection should close instead.
func (fc *fastConn) waitIdle() bool {
	if fc.granted {
		return true // a drain's last request, under drainLook's deadline
	}
	fc.state.Store(connIdle)
	if fc.l.draining.Load() {
		return false
	}
	if idle := fc.lim.idle; idle > 0 {
		// Moving a deadline costs a timer update; a deadline up to a
		// second short of idle_timeout is good enough to keep. The end
		// of the last request is "now" enough.
		now := fc.r.end
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
			if err == errPreface {
				return fc.preface()
			}
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
		if !fc.serveOne() {
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
			err := fc.parse(b)
			if err == nil || err == errPreface {
				return err
			}
			if err != h1.ErrIncomplete {
				return err
			}
			if len(b) > fc.lim.maxHeader {
				return errHeadTooLarge
			}
			if headStart.IsZero() {
				fc.state.Store(connActive)
				headStart = time.Now()
				fc.setDeadline(headStart.Add(fc.lim.readHeader))
			}
		} else if !fc.waitIdle() && !fc.drainLook() {
			return io.EOF
		}
		if err := fc.in.Fill(); err != nil {
			if err == h1.ErrFull {
				return errHeadTooLarge
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && headStart.IsZero() && fc.drainLook() {
				continue
			}
			return err
		}
	}
}

func (fc *fastConn) setDeadline(t time.Time) {
	fc.dl = t
	fc.c.SetReadDeadline(t)
}

var (
	errHeadTooLarge = errors.New("request head too large")
	errPreface      = errors.New("HTTP/2 connection preface")
	errH1Off        = errors.New("HTTP/1.x is off on this listener")
	errNotH2        = errors.New("neither an HTTP/2 preface nor an HTTP/1.x request")
)

// parse parses the next request head. The first bytes of a connection may
// be HTTP/2's preface instead (h2c with prior knowledge, or a TLS client
// that offered no ALPN): errPreface once it is whole, ErrIncomplete while
// the bytes could still be one. A service whose protocols leave out http1
// refuses HTTP/1.x requests (errH1Off).
func (fc *fastConn) parse(b []byte) error {
	if fc.fresh {
		n := min(len(b), len(h2Preface))
		if bytes.Equal(b[:n], h2Preface[:n]) {
			if n == len(h2Preface) {
				return errPreface
			}
			return h1.ErrIncomplete
		}
	}
	err := h1.ParseRequest(b, &fc.head)
	if err == h1.ErrIncomplete || fc.l.handler.Load().h1 {
		if err == nil {
			fc.fresh = false
		}
		return err
	}
	if err == nil {
		return errH1Off
	}
	// Neither HTTP/2 nor a request this listener would serve: no answer
	// in a protocol the client may not speak.
	return errNotH2
}

// preface decides what becomes of a connection that opened with the
// HTTP/2 preface: the HTTP/2 engine when the service speaks h2, else a
// GOAWAY that says why (HTTP_1_1_REQUIRED), after the SETTINGS a client
// expects first.
func (fc *fastConn) preface() step {
	if fc.l.handler.Load().h2 {
		return stepH2
	}
	msg := "h2 is off on this listener (protocols: [http1]); speak HTTP/1.1"
	b := append(fc.out.b[:0], 0, 0, 0, 0x4, 0, 0, 0, 0, 0) // SETTINGS, empty
	n := 8 + len(msg)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), 0x7, 0, 0, 0, 0, 0) // GOAWAY
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0xd)                             // last stream 0, HTTP_1_1_REQUIRED
	fc.out.b = append(b, msg...)
	fc.out.flush()
	fc.linger = true
	return stepClose
}

// refuse answers a request that cannot be read, when it can be answered.
func (fc *fastConn) refuse(err error) {
	var pe *h1.Error
	status, msg := 0, ""
	switch {
	case errors.As(err, &pe):
		status, msg = pe.Status, pe.Msg
	case errors.Is(err, errHeadTooLarge):
		status, msg = http.StatusRequestHeaderFieldsTooLarge, "request header fields too large"
	case errors.Is(err, errH1Off):
		status, msg = http.StatusHTTPVersionNotSupported, "this listener speaks HTTP/2 only (protocols: [h2]): over TLS by ALPN h2, in cleartext h2c with prior knowledge"
	default:
		return
	}
	fc.replyClose(status, msg)
	fc.l.handler.Load().refused(fc.c.RemoteAddr().String(), status, msg)
}

func (fc *fastConn) replyClose(status int, msg string) {
	fc.out.b = appendReply(fc.out.b[:0], status, msg, nil, 0, true)
	fc.out.flush()
	fc.linger = true
}

// handOff gives the connection, with what was read of it, to net/http.
func (fc *fastConn) handOff() bool {
	pending := append([]byte(nil), fc.in.Buffered()...)
	fc.setDeadline(time.Time{})
	if !fc.out.wdl.IsZero() {
		fc.c.SetWriteDeadline(time.Time{}) // net/http sets none of its own: a WebSocket may idle
	}
	return fc.l.handOff(&prefixConn{Conn: fc.c, pending: pending, tls: fc.tls})
}
