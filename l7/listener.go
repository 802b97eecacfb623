package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/config"
)

// listener is one listen address and the service it serves; the service,
// its TLS configuration and the limits are swapped on reload without
// closing the socket.
type listener struct {
	addr    string
	ln      net.Listener
	owner   *Server
	handler atomic.Pointer[service]
	tlsConf atomic.Pointer[tls.Config] // nil: cleartext
	lim     atomic.Pointer[limits]     // for the connections accepted from now on

	draining atomic.Bool
	stdReqs  atomic.Int64 // requests net/http is serving (stdconn.go)
	// arriving counts connections accepted and not yet added (a TLS
	// handshake may be under way); acceptDone closes when the accept loop
	// ends. A drain waits for both, so that no connection the listener
	// accepted is closed unserved.
	arriving   atomic.Int64
	acceptDone chan struct{}
	mu         sync.Mutex // guards what follows
	fconns     map[*fastConn]struct{}
	h2conns    map[*h2Conn]struct{}
	std        *stdServer              // net/http, for the hand-offs from now on
	stds       map[*stdServer]struct{} // std and the older ones still serving connections
}

// limits are the l7 settings a client connection is read under. Each
// connection takes those in force when it is accepted and keeps them:
// a reload applies to the connections after it, and one already open
// (or handed to net/http) goes on as it began.
type limits struct {
	maxHeader  int
	readHeader time.Duration
	idle       time.Duration // 0: none
}

func newLimits(c config.L7) limits {
	l := limits{maxHeader: c.MaxHeaderBytes, readHeader: c.ReadHeaderTimeout, idle: c.IdleTimeout}
	if l.maxHeader <= 0 {
		l.maxHeader = config.DefaultMaxHeaderBytes
	}
	if l.readHeader <= 0 {
		l.readHeader = config.DefaultReadHeaderTimeout
	}
	return l
}

// setLimits makes lim the limits of the connections accepted from now on.
// net/http reads a Server's fields while it serves, so new limits get a
// Server of their own for the hand-offs after them.
func (l *listener) setLimits(lim limits) {
	if cur := l.lim.Load(); cur != nil && *cur == lim {
		return
	}
	l.lim.Store(&lim)
	st := newStdServer(l, lim)
	l.mu.Lock()
	old := l.std
	l.std = st
	l.stds[st] = struct{}{}
	if old != nil && old.conns == 0 {
		l.retireLocked(old)
	}
	l.mu.Unlock()
	go st.serve(l.owner.log, l.addr)
}

// addH2 registers a new HTTP/2 connection: also during a drain, which
// serves the requests its client sends before it sees the GOAWAY (one
// that opened just as the drain began has its first request on the way).
func (l *listener) addH2(c *h2Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h2conns[c] = struct{}{}
}

// goAwayH2 sends GOAWAY to every HTTP/2 connection of the listener.
func (l *listener) goAwayH2() {
	l.mu.Lock()
	cs := make([]*h2Conn, 0, len(l.h2conns))
	for c := range l.h2conns {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		c.drain()
	}
}

func (l *listener) removeH2(c *h2Conn) {
	l.mu.Lock()
	delete(l.h2conns, c)
	l.mu.Unlock()
}

// add counts a connection the listener accepted: also during a drain,
// which serves its first request (drainLook) before closing it.
func (l *listener) add(fc *fastConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fconns[fc] = struct{}{}
}

func (l *listener) remove(fc *fastConn) {
	l.mu.Lock()
	delete(l.fconns, fc)
	l.mu.Unlock()
}

// drainFast stops xlb's engines: no new connections; HTTP/1.1 ones closed
// now if idle, else after their current response (which says
// Connection: close); HTTP/2 ones sent GOAWAY, closed once their open
// streams are served; all of them closed when ctx ends.
func (l *listener) drainFast(ctx context.Context) error {
	l.ln.Close()
	l.mu.Lock()
	l.draining.Store(true)
	l.mu.Unlock()
	if l.acceptDone != nil {
		select {
		case <-l.acceptDone:
		case <-ctx.Done():
		}
	}
	kicked := map[*fastConn]bool{}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := len(l.fconns) + len(l.h2conns) + int(l.arriving.Load())
		var h2s []*h2Conn
		for hc := range l.h2conns {
			if !hc.drainKicked {
				hc.drainKicked = true
				h2s = append(h2s, hc)
			}
		}
		for fc := range l.fconns {
			// A connection waiting for a request is woken by a deadline
			// in the past; it sees the drain and closes.
			if !kicked[fc] && fc.state.Load() == connIdle {
				kicked[fc] = true
				fc.c.SetReadDeadline(time.Unix(1, 0))
			}
		}
		l.mu.Unlock()
		for _, hc := range h2s {
			hc.drain()
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			l.mu.Lock()
			fcs := make([]*fastConn, 0, len(l.fconns))
			for fc := range l.fconns {
				fcs = append(fcs, fc)
			}
			hcs := make([]*h2Conn, 0, len(l.h2conns))
			for hc := range l.h2conns {
				hcs = append(hcs, hc)
			}
			l.mu.Unlock()
			// Outside the lock, and without waiting: closing a connection
			// waits for its read session (where HTTP/1.1 requests are
			// served) and a TLS close for its writer, so a request still
			// in flight would hold the drain past its timeout.
			for _, fc := range fcs {
				fc.abort()
			}
			for _, hc := range hcs {
				go hc.c.Close()
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// shutdown drains the listener: the engine's connections and net/http's.
func (l *listener) shutdown(ctx context.Context) error {
	errs := []error{l.drainFast(ctx)}
	l.mu.Lock()
	stds := make([]*stdServer, 0, len(l.stds))
	for st := range l.stds {
		stds = append(stds, st)
	}
	l.mu.Unlock()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, st := range stds {
		wg.Go(func() {
			err := st.shutdown(ctx)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// busy reports whether a request or connection of the listener is still
// being served or accounted for.
func (l *listener) busy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.fconns)+len(l.h2conns) > 0 || l.stdReqs.Load() > 0
}
