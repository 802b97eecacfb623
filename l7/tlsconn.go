package l7

import (
	"io"
	"net"
	"syscall"
)

// sessionConn is the TCP connection under a TLS client connection of the
// HTTP/1.1 engine. Inside a read session (fd >= 0) crypto/tls's reads of
// the socket are raw non-blocking ones, and one that would only say EAGAIN
// is skipped when the last read left the socket empty: the session's
// poller records every readiness edge from its start, so waiting first
// cannot miss data. crypto/tls asks for more bytes only when it holds no
// complete record, so a skipped read never leaves a request waiting in its
// buffers. Outside a session (the handshake, streamed bodies, hand-offs)
// reads are the connection's own.
type sessionConn struct {
	net.Conn
	fd      int
	drained bool
}

func newSessionConn(c net.Conn) *sessionConn { return &sessionConn{Conn: c, fd: -1} }

func (sc *sessionConn) Read(p []byte) (int, error) {
	if sc.fd < 0 {
		return sc.Conn.Read(p)
	}
	if sc.drained || len(p) == 0 {
		return 0, errWouldBlock{}
	}
	n, err := readFD(uintptr(sc.fd), p)
	switch {
	case err == syscall.EAGAIN:
		sc.drained = true
		return 0, errWouldBlock{}
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Addr: sc.RemoteAddr(), Err: err}
	case n == 0:
		return 0, io.EOF
	}
	sc.drained = n < len(p)
	return n, nil
}

// errWouldBlock tells crypto/tls that the socket has nothing now. It is a
// temporary net.Error, which crypto/tls does not keep as the connection's
// error: the next Read carries on with the bytes it has buffered.
type errWouldBlock struct{}

func (errWouldBlock) Error() string   { return "would block" }
func (errWouldBlock) Timeout() bool   { return true }
func (errWouldBlock) Temporary() bool { return true }

// tlsRead reads decrypted bytes inside a read session on fd; EAGAIN means
// wait for the poller.
func (fc *fastConn) tlsRead(fd uintptr, p []byte) (int, error) {
	fc.sc.fd = int(fd)
	n, err := fc.tc.Read(p)
	fc.sc.fd = -1
	if n > 0 {
		return n, nil // an error after data (a close_notify) comes again
	}
	if _, ok := err.(errWouldBlock); ok {
		return 0, syscall.EAGAIN
	}
	if err == io.EOF {
		return 0, nil // closed by the client, as a raw read says it
	}
	return 0, err
}
