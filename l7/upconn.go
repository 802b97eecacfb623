package l7

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

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
	c      net.Conn
	in     *h1.Reader
	out    wbuf
	head   h1.Head
	noBody bool // the response to this request has no body
	dl     bool // a read deadline is set
	raw    syscall.RawConn
	rt     roundTrip
	idleAt time.Time
	pool   *connPool
}

// connPool keeps one backend's idle connections, newest first out: the
// connections in use stay warm and surplus ones age out.
type connPool struct {
	addr    string
	connect time.Duration
	max     int // idle connections kept

	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

func newConnPool(addr string, connect time.Duration, max int) *connPool {
	return &connPool{addr: addr, connect: connect, max: max}
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
		if idle < upstreamProbeAfter || (idle < upstreamIdleTimeout && open(c.c)) {
			return c
		}
		c.c.Close()
	}
}

// dial opens a new connection within the connect timeout.
func (p *connPool) dial(ctx context.Context) (*upConn, error) {
	d := net.Dialer{Timeout: p.connect, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	pc := &upConn{c: c, in: h1.NewReader(c, 4<<10, maxResponseHead), out: wbuf{w: c, fd: -1}, pool: p}
	if sc, ok := c.(syscall.Conn); ok {
		pc.raw, _ = sc.SyscallConn()
	}
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
