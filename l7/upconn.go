package l7

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/xlbproject/xlb/l7/h1"
)

// Upstream keep-alive: how long an idle connection is kept, and after how
// long idle it is probed before reuse (a backend may have closed it; a
// probe is one non-blocking peek, cheaper than a failed request).
const (
	upstreamIdleTimeout = 90 * time.Second
	upstreamProbeAfter  = time.Second
	maxResponseHead     = 64 << 10
)

// upConn is one connection to a backend, kept alive between requests.
type upConn struct {
	c      net.Conn // what the exchange reads and writes: tcp, or TLS over it
	tcp    net.Conn
	in     *h1.Reader
	out    wbuf
	head   h1.Head
	noBody bool // the response to this request has no body
	dl     bool // a read deadline is set
	raw    syscall.RawConn
	onRead func(fd uintptr) bool // pc.readable, made once: a method value allocates
	rt     roundTrip
	idleAt time.Time
	pool   *connPool
	call   *h2Call // the answer comes over HTTP/2 (h2backend.go): no connection of its own

	// The exchange being answered, and how its body's wait goes (bodyFill).
	x        exchange
	inBody   bool      // the body is being read: the deadline is bodyFill's
	progress bool      // a fill succeeded since the last deadline
	quietAt  time.Time // since when the backend may have sent nothing
}

// connPool keeps one backend's idle connections, newest first out: the
// connections in use stay warm and surplus ones age out. It is the only
// pool of connections to that backend, whatever the clients' transport.
type connPool struct {
	addr    string
	connect time.Duration
	// tls is the backend's TLS client configuration, nil for cleartext; a
	// reload swaps it (a new CA file), while kept connections stay.
	tls atomic.Pointer[tls.Config]
	max int // idle connections kept
	// h2, when set, is the backend's HTTP/2 client (backend_protocol
	// h2c or h2): it keeps the connections, and idle is unused.
	h2      *h2Backend
	tcpAddr net.Addr // addr resolved, for the errors of HTTP/2 calls

	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

func newConnPool(addr string, connect time.Duration, tc *tls.Config, max int) *connPool {
	p := &connPool{addr: addr, connect: connect, max: max}
	p.tls.Store(tc)
	return p
}

// get returns an idle connection that is still open, or nil.
func (p *connPool) get(now time.Time) *upConn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		idle := now.Sub(c.idleAt)
		if idle < upstreamProbeAfter || (idle < upstreamIdleTimeout && open(c.tcp)) {
			return c
		}
		c.c.Close()
	}
}

// dial opens a new connection within the connect timeout, the TLS
// handshake included.
func (p *connPool) dial() (*upConn, error) {
	d := net.Dialer{Timeout: p.connect, KeepAlive: 30 * time.Second}
	start := time.Now()
	c, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	pc := &upConn{c: c, tcp: c, pool: p}
	if conf := p.tls.Load(); conf != nil {
		tc := tls.Client(c, conf)
		c.SetDeadline(start.Add(p.connect))
		if err := tc.Handshake(); err != nil {
			c.Close()
			// A failed handshake is the backend's fault, as a refused
			// connection is: retried and counted the same way.
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: fmt.Errorf("tls handshake: %w", err)}
		}
		c.SetDeadline(time.Time{})
		pc.c = tc
	} else if sc, ok := c.(syscall.Conn); ok {
		pc.raw, _ = sc.SyscallConn()
		pc.onRead = pc.readable
	}
	pc.in = h1.NewReader(pc.c, 4<<10, maxResponseHead)
	pc.out = wbuf{w: pc.c, fd: -1}
	return pc, nil
}

// put keeps a connection whose last exchange ended cleanly.
func (p *connPool) put(c *upConn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max || len(c.in.Buffered()) > 0 {
		p.mu.Unlock()
		c.c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// sweep closes connections idle for longer than the keep-alive allows.
func (p *connPool) sweep(now time.Time) {
	p.mu.Lock()
	keep := p.idle[:0]
	var old []*upConn
	for _, c := range p.idle {
		if now.Sub(c.idleAt) >= upstreamIdleTimeout {
			old = append(old, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
	for _, c := range old {
		c.c.Close()
	}
}

// close drops the idle connections and any returned later.
func (p *connPool) close() {
	if p.h2 != nil {
		p.h2.close()
	}
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
}

// open peeks at an idle connection without blocking: a backend that closed
// it has sent FIN (read returns 0) or RST; unexpected bytes also disqualify it.
func open(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(e, syscall.EAGAIN)
		return true
	})
	return err == nil && alive
}

// clientCheck is how often a wait for a response head looks at the
// client: one that went away cancels the backend request, as NGINX does.
// The wait is cut into such slices by the read deadline, which a response
// that comes sooner never sees.
const clientCheck = 100 * time.Millisecond

// roundTrip sends what pc.out holds and reads the response head, within
// the response_header timeout from when the request was sent; interim 1xx
// answers are skipped. upgrade allows a 101 answer. It returns
// errClientGone when x's client went away first.
//
// On a plain TCP connection both happen in one RawConn.Read session, so
// that the read which would only say EAGAIN is skipped, as NGINX does: the
// poller records readiness edges from the session's start, and the request
// is written after it, so the answer's edge cannot be missed. A plain Read
// tries the system call first each time, one wasted call per request.
func (pc *upConn) roundTrip(sent time.Time, timeout time.Duration, headReq, upgrade bool, x exchange) (wrote bool, err error) {
	var limit time.Time
	if timeout > 0 {
		limit = sent.Add(timeout)
	}
	next := sent.Add(clientCheck)
	if !limit.IsZero() && limit.Before(next) {
		next = limit
	}
	pc.c.SetReadDeadline(next)
	pc.dl = true
	pc.x, pc.inBody = x, false
	rt := &pc.rt
	*rt = roundTrip{pending: len(pc.out.b) > 0, headReq: headReq, upgrade: upgrade}
	wroteBefore := !rt.pending // the head went out with a streamed body
	for {
		var rerr error
		if pc.raw == nil {
			if rt.pending {
				rt.pending = false
				if err := pc.out.flush(); err != nil {
					return false, err
				}
				rt.wrote = true
			}
			rt.err = pc.readHead(rt)
			rerr = rt.err
			if rerr == nil {
				return true, nil
			}
		} else {
			if rerr = pc.raw.Read(pc.onRead); rerr == nil {
				return rt.wrote || wroteBefore, rt.err
			}
		}
		wrote = rt.wrote || wroteBefore
		if !errors.Is(rerr, os.ErrDeadlineExceeded) {
			return wrote, rerr
		}
		if x.gone() {
			return wrote, errClientGone
		}
		now := time.Now()
		if !limit.IsZero() && !now.Before(limit) {
			return wrote, rerr // the response_header timeout
		}
		next = now.Add(clientCheck)
		if !limit.IsZero() && limit.Before(next) {
			next = limit
		}
		pc.c.SetReadDeadline(next)
	}
}

// roundTrip is the state of one exchange on an upConn, kept in it so that
// the session's callback is made once per connection, not per request.
type roundTrip struct {
	pending, wrote, headReq, upgrade bool
	err                              error
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
		if rt.err = pc.parse(rt); rt.err != h1.ErrIncomplete {
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
			if rt.err = pc.parse(rt); rt.err != h1.ErrIncomplete {
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

// readHead reads the response head with plain reads (TLS, or connections
// that offer no raw access).
func (pc *upConn) readHead(rt *roundTrip) error {
	for {
		err := pc.parse(rt)
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
func (pc *upConn) parse(rt *roundTrip) error {
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
		case st == http.StatusSwitchingProtocols && rt.upgrade:
			pc.noBody = true
			return nil
		case st == http.StatusSwitchingProtocols:
			return errors.New("backend switched protocols unasked")
		case st < 200:
			continue
		}
		pc.noBody = rt.headReq || pc.head.Status == http.StatusNoContent || pc.head.Status == http.StatusNotModified
		return nil
	}
}

// bodyCheck is how often a wait for a backend's body looks at its client.
const bodyCheck = time.Second

// errClientLeft ends an answer whose client went away while the backend
// had nothing to send.
var errClientLeft = errors.New("the client went away while the backend was silent")

// bodyFill refills the backend's buffer for its body (response_header
// bounds the wait for the head only). Its waits are cut into bodyCheck
// slices: after one, an answer whose client left ends at once (the backend
// connection is not held until the backend writes again, perhaps never),
// and one from which the backend has sent nothing for the client
// connection's idle_timeout is cut, as NGINX's proxy_read_timeout does. A
// stream that idles for less (server-sent events with a heartbeat) goes on.
func (pc *upConn) bodyFill() error {
	if pc.call != nil || pc.x == nil {
		if pc.dl {
			pc.c.SetReadDeadline(time.Time{})
			pc.dl = false
		}
		return pc.in.Fill()
	}
	if !pc.inBody {
		pc.inBody, pc.progress = true, false
		pc.quietAt = time.Now()
		pc.c.SetReadDeadline(pc.quietAt.Add(bodyCheck))
		pc.dl = true
	}
	for {
		err := pc.in.Fill()
		if err == nil {
			pc.progress = true
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if pc.x.gone() {
			return errClientLeft
		}
		now := time.Now()
		if pc.progress {
			pc.progress, pc.quietAt = false, now
		}
		if idle := pc.x.idleLimit(); idle > 0 && now.Sub(pc.quietAt) >= idle {
			return fmt.Errorf("the backend sent nothing for %v (l7.idle_timeout) in the middle of its answer", idle)
		}
		pc.c.SetReadDeadline(now.Add(bodyCheck))
	}
}

// discard skips a response that will not be used, keeping the connection
// when the body is small and already here.
func (pc *upConn) discard() {
	if pc.call != nil {
		pc.call.end()
		return
	}
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

// release returns a connection whose exchange ended cleanly to its pool,
// or closes it when it cannot carry another request.
func (pc *upConn) release(reusable bool, now time.Time) {
	pc.x = nil
	if pc.call != nil {
		pc.call.end()
		return
	}
	if reusable {
		pc.pool.put(pc, now)
	} else {
		pc.c.Close()
	}
}
