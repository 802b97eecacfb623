package l7

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
)

// stdServer is Go's net/http server for the connections the engine hands
// off, with the limits in force when it was made: a Server's fields may
// not change while it serves, so new limits get a new one (setLimits),
// and the old one goes once the connections it took have.
type stdServer struct {
	srv     *http.Server
	handoff *handoffListener
	conns   int // handed to it and not yet closed or hijacked; under listener.mu
}

func newStdServer(l *listener, lim limits) *stdServer {
	st := &stdServer{handoff: newHandoffListener(l.ln.Addr())}
	st.srv = &http.Server{
		Handler:           http.HandlerFunc(l.serveStd),
		MaxHeaderBytes:    lim.maxHeader,
		ReadHeaderTimeout: lim.readHeader,
		IdleTimeout:       lim.idle,
		ErrorLog:          log.New(io.Discard, "", 0), // client hiccups are not operator news
		// HTTP/2 is xlb's own engine's (h2conn.go): net/http only gets
		// HTTP/1.x requests the HTTP/1.1 engine hands it.
		Protocols: http1Only(),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*prefixConn); ok && pc.tls {
				return context.WithValue(ctx, connTLS{}, true)
			}
			return ctx
		},
		ConnState: func(_ net.Conn, cs http.ConnState) {
			if cs == http.StateClosed || cs == http.StateHijacked {
				l.released(st)
			}
		},
	}
	return st
}

func http1Only() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}

func (st *stdServer) serve(log *slog.Logger, addr string) {
	err := st.srv.Serve(st.handoff)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		log.Error("listener stopped", "addr", addr, "err", err)
	}
}

// shutdown lets the server's requests finish until ctx ends, then closes
// its connections.
func (st *stdServer) shutdown(ctx context.Context) error {
	st.handoff.Close()
	err := st.srv.Shutdown(ctx)
	if err != nil {
		st.srv.Close()
	}
	return err
}

// handOff gives c to net/http; false once the listener drains. The
// server is counted as taking c before it does, so that it is not retired
// with c on its way in.
func (l *listener) handOff(c net.Conn) bool {
	l.mu.Lock()
	st := l.std
	st.conns++
	l.mu.Unlock()
	if st.handoff.push(c) {
		return true
	}
	l.released(st)
	return false
}

// released counts a connection st no longer serves; a server that new
// limits replaced goes with its last one.
func (l *listener) released(st *stdServer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st.conns--
	if st.conns == 0 && st != l.std {
		l.retireLocked(st)
	}
}

// retireLocked ends a server with no connection left: closing its
// listener ends its Serve. l.mu is held.
func (l *listener) retireLocked(st *stdServer) {
	delete(l.stds, st)
	st.handoff.Close()
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
	tls     bool // Conn is a *tls.Conn: the request came over TLS
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
