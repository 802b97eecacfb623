package l7

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// xlb's own HTTP/2 server, for TLS clients that chose "h2" by ALPN and for
// cleartext clients that open with the connection preface (h2c with prior
// knowledge). It is built on x/net's Framer and hpack, not on its server:
// that server reads frames on one goroutine, runs the connection's state
// on a second and writes on a third, handing every frame and every answer
// between them over channels, and costs several times NGINX's CPU per
// request.
//
// Here a connection's frames are read and acted on by one goroutine (the
// reader: serve), which never waits for a backend; each stream is served
// by a goroutine of its own running the shared pipeline (service.serve),
// which writes its answer's frames itself under the connection's write
// lock, so no frame changes goroutine on its way out. The reader writes
// only the small control answers (SETTINGS and PING acknowledgements,
// WINDOW_UPDATE, RST_STREAM, GOAWAY), batched until it has read all the
// client sent.
//
// h2conn.go: the connection, its reader and its limits; h2write.go: the
// output side and flow control; h2stream.go: a stream as the pipeline's
// exchange, and header validation (RFC 9113 8.2-8.3).

// The settings xlb announces. The windows let a client upload at speed
// without letting one connection park more than h2ConnWindow bytes of
// request bodies in memory.
const (
	h2MaxStreams   = 128
	h2StreamWindow = 256 << 10
	h2ConnWindow   = 1 << 20
	h2MaxFrame     = 16 << 10
	// Client resets of streams that had not been answered, per connection
	// and second, beyond which the connection is an attack (CVE-2023-44487,
	// "rapid reset") and is closed with ENHANCE_YOUR_CALM.
	h2MaxResetsPerSecond = 2 * h2MaxStreams
	// The write stall allowed when idle_timeout is off.
	h2DefaultWriteTimeout = 2 * time.Minute
	// How long a drain waits for the client to acknowledge the first
	// GOAWAY's PING before it names the last stream it will serve.
	h2DrainRTT = time.Second
)

// h2DrainPing is the PING sent with a drain's first GOAWAY: its
// acknowledgement says the client has seen that GOAWAY.
var h2DrainPing = [8]byte{'x', 'l', 'b', 'd', 'r', 'a', 'i', 'n'}

var h2Preface = []byte(http2.ClientPreface)

// h2Conn is one HTTP/2 client connection.
type h2Conn struct {
	l       *listener
	c       net.Conn // what frames are read from and written to: tcp, or TLS over it
	tls     bool
	ip      string
	addr    netip.Addr
	remoteS string
	br      *bufio.Reader
	fr      *http2.Framer // reads only
	dec     *hpack.Decoder
	hd      h2Headers // the header block being read

	// The limits it was accepted under (listener.go).
	idle    time.Duration
	maxHdr  int
	readHdr time.Duration

	// The output, under wmu (see h2write.go).
	wmu    sync.Mutex
	out    h2buf
	wfr    *http2.Framer // writes into out
	hbuf   h2buf         // a header block being encoded
	lower  []byte        // scratch for lower-casing a backend's field names
	wdl    time.Time
	werr   error
	closed atomic.Bool
	// Under wmu: the server's SETTINGS went out (a GOAWAY may not precede
	// them), and a drain asked before that, which serve starts after them.
	started    bool
	drainAsked bool
	drainTimer *time.Timer

	// Stream state, under mu.
	mu           sync.Mutex
	streams      map[uint32]*h2Stream
	free         []*h2Stream
	sendWin      int64 // what xlb may still send on the connection
	peerWin      int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame    int   // the client's SETTINGS_MAX_FRAME_SIZE
	unacked      int64 // request body bytes consumed, not yet granted back on the connection
	recvWin      int64 // what the client may still send on the connection
	active       int   // streams being served (client-reset ones included until their goroutine ends)
	idleSince    time.Time
	announced    bool   // a drain's first GOAWAY went out: streams still come
	goingAway    bool   // a GOAWAY naming the last stream went out: no new streams
	clientAway   bool   // the client sent GOAWAY
	refs         int    // the reader and the stream goroutines still running
	drainKicked  bool   // under l.mu
	maxID        uint32 // the highest stream id the client opened
	resetsWindow time.Time
	resets       int
	pending      []*h2Stream    // started, waiting for the rest of their body (under mu)
	idleWorkers  int            // stream goroutines waiting on work
	work         chan *h2Stream // the reader hands them streams here
	done         chan struct{}  // closed with the connection
}

// serveH2 serves an HTTP/2 connection under lim until it ends. pending is
// what was read of it already (the preface, on a cleartext listener).
func (l *listener) serveH2(c, tcp net.Conn, pending []byte, lim *limits) {
	hc := newH2Conn(l, c, tcp, pending, lim)
	l.addH2(hc)
	hc.serve()
}

func newH2Conn(l *listener, c, tcp net.Conn, pending []byte, lim *limits) *h2Conn {
	hc := &h2Conn{l: l, c: c, tls: c != tcp, idle: lim.idle, maxHdr: lim.maxHeader, readHdr: lim.readHeader,
		streams: map[uint32]*h2Stream{}, sendWin: 65535, peerWin: 65535, peerFrame: 16384,
		recvWin: 65535, refs: 1, idleSince: time.Now(), work: make(chan *h2Stream), done: make(chan struct{})}
	var src io.Reader = c
	if len(pending) > 0 {
		src = io.MultiReader(bytes.NewReader(pending), c)
	}
	hc.br = bufio.NewReaderSize(src, 32<<10)
	hc.fr = http2.NewFramer(nil, hc.br)
	hc.fr.SetReuseFrames() // frames are acted on before the next is read
	hc.fr.SetMaxReadFrameSize(h2MaxFrame)
	hc.dec = hpack.NewDecoder(4096, hc.emit)
	// Above max_header_bytes: a field that long must reach emit, which
	// answers 431, not fail the decoder (a connection error). The header
	// block's own size limit still bounds what one string may cost, and
	// Huffman coding expands a string by less than 2x.
	hc.dec.SetMaxStringLength(4 * hc.maxHdr)
	hc.wfr = http2.NewFramer(&hc.out, nil)
	// No dynamic table for answers (NGINX keeps none either): a field's
	// strings are never stored, so they can be views of a backend's buffer,
	// and no answer pays for table upkeep (hpack.go).
	hc.remoteS = tcp.RemoteAddr().String()
	if ap, err := netip.ParseAddrPort(hc.remoteS); err == nil {
		hc.addr = ap.Addr().Unmap()
		hc.ip = hc.addr.String()
	} else {
		hc.ip = hc.remoteS
	}
	return hc
}

// errH2 is a connection error: the GOAWAY code and what it says.
type errH2 struct {
	code http2.ErrCode
	msg  string
}

func (e *errH2) Error() string { return e.code.String() + ": " + e.msg }

func connErr(code http2.ErrCode, msg string) error { return &errH2{code, msg} }

// errH2Drained ends a connection that was drained and has served its last
// stream.
var errH2Drained = errors.New("drained")

// serve is the connection's reader.
func (c *h2Conn) serve() {
	defer c.release()
	c.c.SetReadDeadline(time.Now().Add(c.readHdr))
	var pre [24]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil || !bytes.Equal(pre[:], h2Preface) {
		c.fail(connErr(http2.ErrCodeProtocol, "invalid connection preface"))
		return
	}
	c.wmu.Lock()
	c.wfr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: h2MaxFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.maxHdr)},
	)
	c.wfr.WriteWindowUpdate(0, h2ConnWindow-65535)
	c.started = true
	drain := c.drainAsked
	c.wmu.Unlock()
	if drain {
		c.drain()
	}
	c.recvWin = h2ConnWindow
	c.setIdleDeadline(time.Now())

	first := true
	for {
		if c.br.Buffered() == 0 {
			// All the client sent is acted on: answers go out before the
			// reader waits.
			c.dispatchPending()
			if err := c.flushOut(); err != nil {
				c.fail(nil)
				return
			}
			if err := c.await(); err != nil {
				if errors.Is(err, errH2Drained) {
					c.flushOut()
					c.linger()
					c.shut()
					return
				}
				c.fail(err)
				return
			}
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.fail(c.readError(err))
			return
		}
		if first {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				c.fail(connErr(http2.ErrCodeProtocol, "the first frame after the preface is not SETTINGS"))
				return
			}
			first = false
		}
		if err := c.frame(f); err != nil {
			c.fail(err)
			return
		}
		if c.endNow() {
			c.fail(nil)
			return
		}
	}
}

// await waits for the next frame's first byte. The read deadline is the
// idle timeout, moved only when it fires: a timeout with streams open, or
// with a stream that ended recently, is no reason to close.
func (c *h2Conn) await() error {
	for {
		_, err := c.br.Peek(1)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || c.closed.Load() {
			return err
		}
		c.mu.Lock()
		active, since, draining := c.active, c.idleSince, c.goingAway || c.clientAway
		c.mu.Unlock()
		now := time.Now()
		switch {
		case draining && active == 0:
			return errH2Drained
		case c.idle <= 0:
			c.c.SetReadDeadline(time.Time{})
		case active > 0:
			c.c.SetReadDeadline(now.Add(c.idle))
		case now.Sub(since) < c.idle:
			c.c.SetReadDeadline(since.Add(c.idle))
		default:
			return connErr(http2.ErrCodeNo, "idle timeout")
		}
	}
}

func (c *h2Conn) setIdleDeadline(now time.Time) {
	if c.idle > 0 {
		c.c.SetReadDeadline(now.Add(c.idle))
	} else {
		c.c.SetReadDeadline(time.Time{})
	}
}

// readError turns a Framer error into what the connection answers.
func (c *h2Conn) readError(err error) error {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		msg := "malformed frame"
		if d := c.fr.ErrorDetail(); d != nil {
			msg = d.Error()
		}
		return connErr(http2.ErrCode(ce), msg)
	case errors.Is(err, http2.ErrFrameTooLarge):
		return connErr(http2.ErrCodeFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE")
	}
	return nil // the connection broke, or the client closed it: nothing to say
}

// endNow reports whether the connection is done: closed, or draining
// (GOAWAY sent or received) with nothing left to serve.
func (c *h2Conn) endNow() bool {
	if c.closed.Load() {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return (c.goingAway || c.clientAway) && c.active == 0
}

// fail ends the connection: a GOAWAY for a connection error, then close;
// every stream still served sees its client gone.
func (c *h2Conn) fail(err error) {
	var he *errH2
	if errors.As(err, &he) {
		c.mu.Lock()
		last := c.maxID
		c.goingAway = true
		c.mu.Unlock()
		c.wmu.Lock()
		c.wfr.WriteGoAway(last, he.code, []byte(he.msg))
		c.flushLocked()
		c.wmu.Unlock()
	} else {
		c.flushOut()
	}
	c.shut()
}

// shut closes the connection and tells every stream.
func (c *h2Conn) shut() {
	if c.closed.Swap(true) {
		return
	}
	close(c.done)
	if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
		// The GOAWAY must not be lost to a reset: Linux resets a socket
		// closed with unread input.
		cw.CloseWrite()
	}
	c.c.Close()
	c.mu.Lock()
	for _, s := range c.streams {
		s.resetByPeer()
	}
	c.mu.Unlock()
	// Streams waiting for their body end through the pipeline too (a
	// 499 in the log), which releases them.
	c.dispatchPending()
}

// release drops one reference: the reader's when it ends, a stream's when
// it was served. The last one removes the connection from its listener.
func (c *h2Conn) release() {
	c.mu.Lock()
	c.refs--
	last := c.refs == 0
	c.mu.Unlock()
	if last {
		c.shut()
		c.l.removeH2(c)
	}
}

// drain shuts the connection down gracefully, as RFC 9113 6.8 advises: a
// first GOAWAY naming no last stream (2^31-1) and a PING, so that a request
// the client sent before it saw the GOAWAY is still served; then, once the
// PING comes back (or after h2DrainRTT), goAway. A single GOAWAY naming the
// last stream read so far would refuse a request already on the wire
// (clients retry those, but only if they can replay them).
func (c *h2Conn) drain() {
	c.wmu.Lock()
	if !c.started {
		c.drainAsked = true
		c.wmu.Unlock()
		return
	}
	c.mu.Lock()
	if c.announced || c.goingAway {
		c.mu.Unlock()
		c.wmu.Unlock()
		return
	}
	c.announced = true
	c.mu.Unlock()
	c.wfr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
	c.wfr.WritePing(false, h2DrainPing)
	c.flushLocked()
	c.drainTimer = time.AfterFunc(h2DrainRTT, c.goAway)
	c.wmu.Unlock()
}

// goAway sends the GOAWAY that names the last stream served: the streams
// opened so far finish, no new one starts, and the connection closes once
// the last is served.
func (c *h2Conn) goAway() {
	// The write lock first: from the moment goingAway is set, the reader
	// or the last stream may close the connection, and they write out
	// what is batched before they do, so the GOAWAY must already be there.
	c.wmu.Lock()
	c.mu.Lock()
	if c.goingAway || c.closed.Load() {
		c.mu.Unlock()
		c.wmu.Unlock()
		return
	}
	c.goingAway = true
	last, idle := c.maxID, c.active == 0
	c.mu.Unlock()
	c.wfr.WriteGoAway(last, http2.ErrCodeNo, nil)
	c.flushLocked()
	if c.drainTimer != nil {
		c.drainTimer.Stop()
	}
	c.wmu.Unlock()
	if idle {
		// Wake the reader, which sees the drain and closes.
		c.c.SetReadDeadline(time.Unix(1, 0))
	}
}

// linger ends a drained connection's output (the GOAWAY is out) and reads
// what the client still sends for a moment (a WINDOW_UPDATE, its own
// GOAWAY), until it closes: Linux resets a socket closed with input
// unread, and a reset can destroy the GOAWAY before the client reads it.
func (c *h2Conn) linger() {
	cw, ok := c.c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.c.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c.c, lingerBytes)
}

// frame acts on one frame; an error ends the connection.
func (c *h2Conn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.data(f)
	case *http2.HeadersFrame:
		return c.headers(f)
	case *http2.ContinuationFrame:
		return c.continuation(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.RSTStreamFrame:
		return c.rstStream(f)
	case *http2.SettingsFrame:
		return c.settings(f)
	case *http2.PingFrame:
		if f.StreamID != 0 {
			return connErr(http2.ErrCodeProtocol, "PING on a stream")
		}
		if !f.IsAck() {
			c.wmu.Lock()
			c.wfr.WritePing(true, f.Data)
			err := c.flushIfBig()
			c.wmu.Unlock()
			return err
		}
		if f.Data == h2DrainPing {
			// The client has seen the first GOAWAY: every stream it
			// opened before that has been read.
			c.goAway()
		}
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.clientAway = true
		c.mu.Unlock()
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f)
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "PUSH_PROMISE from a client")
	}
	return nil // unknown frame types are ignored (RFC 9113 5.5)
}

// idleStream reports whether id names a stream that was never opened.
func (c *h2Conn) idleStream(id uint32) bool { return id > c.maxID }

func (c *h2Conn) data(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length) // padding counts against flow control too
	c.mu.Lock()
	if n > c.recvWin {
		c.mu.Unlock()
		return connErr(http2.ErrCodeFlowControl, "DATA beyond the connection's flow-control window")
	}
	c.recvWin -= n
	s := c.streams[id]
	if s == nil || s.recvDone || s.reset.Load() {
		// Nobody will read it: grant it back to the connection at once.
		c.unacked += n
		c.mu.Unlock()
		if c.idleStream(id) {
			return connErr(http2.ErrCodeProtocol, "DATA on a stream never opened")
		}
		c.resetStream(id, http2.ErrCodeStreamClosed)
		return c.grant(nil)
	}
	if n > s.recvWin {
		c.unacked += n
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeFlowControl)
		return c.grant(nil)
	}
	s.recvWin -= n
	data := f.Data()
	s.recv = append(s.recv, data...)
	s.received += int64(len(data))
	// Padding is nobody's to read: granted back now.
	c.unacked += n - int64(len(data))
	s.unacked += n - int64(len(data))
	bad := s.r.length >= 0 && s.received > s.r.length
	if f.StreamEnded() {
		s.recvDone = true
		bad = bad || (s.r.length >= 0 && s.received != s.r.length)
	}
	s.wakeLocked()
	ready := c.takePending(s, false)
	c.mu.Unlock()
	if bad {
		// RFC 9113 8.1.1: a body that contradicts its content-length is
		// malformed.
		c.resetStream(id, http2.ErrCodeProtocol)
	}
	if ready != nil {
		c.start(ready)
	}
	return c.grant(nil)
}

// headers starts a header block: a new stream's request, or a stream's
// trailers.
func (c *h2Conn) headers(f *http2.HeadersFrame) error {
	id := f.StreamID
	if f.HasPriority() && f.Priority.StreamDep == id {
		// Decoded all the same below, to keep the compression state.
		defer c.resetStream(id, http2.ErrCodeProtocol)
	}
	hd := &c.hd
	*hd = h2Headers{endStream: f.StreamEnded()}
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	switch {
	case id%2 == 0:
		return connErr(http2.ErrCodeProtocol, "a client stream with an even id")
	case s != nil && (s.recvDone || s.reset.Load()):
		// Half-closed or reset: RFC 9113 5.1 wants STREAM_CLOSED, and the
		// block cannot be skipped without decoding it.
		return connErr(http2.ErrCodeStreamClosed, "HEADERS on a stream the client ended or reset")
	case s != nil:
		// Trailers: the second header block of a request, which must end it.
		if !f.StreamEnded() {
			hd.bad = "trailers without END_STREAM"
		}
		hd.s, hd.trailers = s, true
	case id <= c.maxID:
		// A stream that was served, refused or reset already.
		return connErr(http2.ErrCodeStreamClosed, "HEADERS on a closed stream")
	default:
		c.maxID = id
		hd.s = c.newStream(id)
	}
	return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

func (c *h2Conn) continuation(f *http2.ContinuationFrame) error {
	return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

// fragment decodes a piece of a header block as it comes, so that the
// block is never buffered whole. The CONTINUATION flood bound: a block's
// compressed bytes beyond twice max_header_bytes end the connection before
// more is decoded (up to there, fields past max_header_bytes are dropped
// and the request gets 431).
func (c *h2Conn) fragment(p []byte, end bool) error {
	hd := &c.hd
	hd.bytes += len(p)
	if hd.bytes > 2*c.maxHdr {
		return connErr(http2.ErrCodeEnhanceYourCalm, "header block larger than twice SETTINGS_MAX_HEADER_LIST_SIZE")
	}
	if _, err := c.dec.Write(p); err != nil {
		return connErr(http2.ErrCodeCompression, "header block: "+err.Error())
	}
	if !end {
		return nil
	}
	if err := c.dec.Close(); err != nil {
		return connErr(http2.ErrCodeCompression, "header block: "+err.Error())
	}
	c.dec.SetEmitEnabled(true)
	if hd.trailers {
		return c.trailersDone()
	}
	return c.requestDone()
}

// emit receives each decoded field of the block being read.
func (c *h2Conn) emit(f hpack.HeaderField) {
	hd := &c.hd
	hd.size += int(f.Size())
	if hd.size > c.maxHdr {
		hd.tooLarge = true
		c.dec.SetEmitEnabled(false) // decoded only to keep the table right
		return
	}
	if hd.bad != "" {
		return
	}
	if hd.trailers {
		if f.IsPseudo() {
			hd.bad = "pseudo-header in trailers"
			return
		}
		if why := checkField(f); why != "" {
			hd.bad = why
			return
		}
		hd.s.trailers = append(hd.s.trailers, f)
		return
	}
	hd.bad = hd.s.takeField(f, hd)
}

// requestDone acts on a new stream's complete request head.
func (c *h2Conn) requestDone() error {
	hd := &c.hd
	s := hd.s
	if hd.bad == "" && !hd.tooLarge {
		hd.bad = s.checkHead(hd.endStream)
	}
	c.mu.Lock()
	refuse := c.goingAway || c.active >= h2MaxStreams
	if hd.bad == "" && !refuse && !hd.tooLarge {
		c.streams[s.id] = s
		c.active++
		c.refs++
		if !hd.endStream && c.br.Buffered() > 0 && s.r.length <= h2WholeBody {
			// More frames are here already, likely the body: read them
			// before the request starts, so that a small body goes to the
			// backend whole (and can be sent again, on a retry). Never a
			// wait on the network: what is still pending when the reader
			// runs dry starts streamed (dispatchPending).
			s.pending = true
			c.pending = append(c.pending, s)
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		c.start(s)
		return nil
	}
	// A gRPC client reads a plain 431 as UNKNOWN; its content-type, sent
	// before the metadata that overflowed, says what it speaks.
	grpc := hd.bad == "" && !refuse && isGRPCType(s.header("content-type", ""))
	c.recycle(s)
	c.mu.Unlock()
	switch {
	case hd.bad != "":
		// RFC 9113 8.1.1: a malformed request is a stream error.
		c.resetStream(s.id, http2.ErrCodeProtocol)
	case refuse:
		c.resetStream(s.id, http2.ErrCodeRefusedStream)
	case grpc:
		c.wmu.Lock()
		c.writeGRPCStatus(s.id, grpcResourceExhausted, "request header fields too large", nil)
		c.flushIfBig()
		c.wmu.Unlock()
		c.l.handler.Load().refused(c.remoteS, 431, "request header fields too large (grpc-status 8)")
	default:
		c.replyHeadOnly(s.id, 431)
		c.l.handler.Load().refused(c.remoteS, 431, "request header fields too large")
	}
	return nil
}

// h2WholeBody is the largest request body read whole before its request
// starts.
const h2WholeBody = 64 << 10

// start hands a stream to an idle stream goroutine of the connection, or
// to a new one.
func (c *h2Conn) start(s *h2Stream) {
	c.mu.Lock()
	idle := c.idleWorkers > 0
	if idle {
		c.idleWorkers--
	}
	c.mu.Unlock()
	if idle {
		c.work <- s
	} else {
		go c.worker(s)
	}
}

// takePending takes a pending stream out of waiting once its body ended
// (then whole), grew past h2WholeBody, it was reset (then to be logged as
// 499), or force; c.mu is held, and the caller starts what it returns.
func (c *h2Conn) takePending(s *h2Stream, force bool) *h2Stream {
	if !s.pending {
		return nil
	}
	whole := s.recvDone && len(s.trailers) == 0
	if !whole && !force && !s.reset.Load() && len(s.recv) <= h2WholeBody {
		return nil
	}
	s.pending = false
	for i, p := range c.pending {
		if p == s {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			break
		}
	}
	if whole {
		r := &s.r
		r.stream = false
		r.length = int64(len(s.recv))
		if len(s.recv) > 0 {
			r.body = s.recv
		}
	}
	return s
}

// dispatchPending starts every stream still waiting for its body, as
// streamed requests: the reader is about to wait for the network.
func (c *h2Conn) dispatchPending() {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	var start []*h2Stream
	for len(c.pending) > 0 {
		start = append(start, c.takePending(c.pending[0], true))
	}
	c.mu.Unlock()
	for _, s := range start {
		c.start(s)
	}
}

// trailersDone acts on a request's trailers: the end of its body.
func (c *h2Conn) trailersDone() error {
	hd := &c.hd
	s := hd.s
	if hd.bad != "" || hd.tooLarge {
		c.resetStream(s.id, http2.ErrCodeProtocol)
		return nil
	}
	c.mu.Lock()
	s.recvDone = true
	bad := s.r.length >= 0 && s.received != s.r.length
	s.wakeLocked()
	ready := c.takePending(s, true)
	c.mu.Unlock()
	if bad {
		c.resetStream(s.id, http2.ErrCodeProtocol)
	}
	if ready != nil {
		c.start(ready)
	}
	return nil
}

func (c *h2Conn) rstStream(f *http2.RSTStreamFrame) error {
	if c.idleStream(f.StreamID) {
		return connErr(http2.ErrCodeProtocol, "RST_STREAM on a stream never opened")
	}
	c.mu.Lock()
	s := c.streams[f.StreamID]
	abusive := false
	if s != nil && !s.ended {
		// A reset before the answer: the work done for it is wasted, the
		// price of the rapid-reset attack.
		now := time.Now()
		if now.Sub(c.resetsWindow) > time.Second {
			c.resetsWindow, c.resets = now, 0
		}
		c.resets++
		abusive = c.resets > h2MaxResetsPerSecond
	}
	var ready *h2Stream
	if s != nil {
		s.resetByPeer()
		ready = c.takePending(s, true)
	}
	c.mu.Unlock()
	if ready != nil {
		c.start(ready)
	}
	if abusive {
		return connErr(http2.ErrCodeEnhanceYourCalm, "too many streams reset before their answer")
	}
	return nil
}

func (c *h2Conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var delta int64
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				return connErr(http2.ErrCode(ce), "invalid setting "+s.ID.String())
			}
			return connErr(http2.ErrCodeProtocol, "invalid setting "+s.ID.String())
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta += int64(s.Val) - c.peerWin
			c.peerWin = int64(s.Val)
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerFrame = int(s.Val)
			c.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The acknowledgement goes out before any DATA the new window lets a
	// stream send: wmu is held while the streams are woken (clients such
	// as h2spec read the ACK first).
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wfr.WriteSettingsAck()
	if delta != 0 {
		c.mu.Lock()
		for _, s := range c.streams {
			s.sendWin += delta
			if s.sendWin > 1<<31-1 {
				c.mu.Unlock()
				return connErr(http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream's window")
			}
			s.wakeLocked()
		}
		c.mu.Unlock()
	}
	return c.flushIfBig()
}

func (c *h2Conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.mu.Lock()
		c.sendWin += inc
		over := c.sendWin > 1<<31-1
		for _, s := range c.streams {
			if s.waiting {
				s.wakeLocked()
			}
		}
		c.mu.Unlock()
		if over {
			return connErr(http2.ErrCodeFlowControl, "the connection's window overflows")
		}
		return nil
	}
	if c.idleStream(f.StreamID) {
		return connErr(http2.ErrCodeProtocol, "WINDOW_UPDATE on a stream never opened")
	}
	c.mu.Lock()
	s := c.streams[f.StreamID]
	over := false
	if s != nil { // else closed: updates may still be in flight
		s.sendWin += inc
		over = s.sendWin > 1<<31-1
		s.wakeLocked()
	}
	c.mu.Unlock()
	if over {
		c.resetStream(f.StreamID, http2.ErrCodeFlowControl)
	}
	return nil
}

// newStream takes a stream record for id, reusing a finished one's.
// The reader calls it; mu is not held.
func (c *h2Conn) newStream(id uint32) *h2Stream {
	c.mu.Lock()
	var s *h2Stream
	if n := len(c.free); n > 0 {
		s = c.free[n-1]
		c.free = c.free[:n-1]
	}
	c.mu.Unlock()
	if s == nil {
		s = &h2Stream{c: c, wake: make(chan struct{}, 1)}
		s.r.ip, s.r.addr, s.r.tls = c.ip, c.addr, c.tls
	}
	s.init(id, c)
	return s
}

// recycle keeps a finished stream's record for the next one; mu is held.
func (c *h2Conn) recycle(s *h2Stream) {
	if len(c.free) < 16 {
		c.free = append(c.free, s)
	}
}

// h2WorkerIdle is how long a stream's goroutine waits for the next stream
// of its connection before it ends. A goroutine that serves several
// streams in turn keeps the stack it grew (the pipeline's is deep): a new
// goroutine per stream would grow one each time.
const h2WorkerIdle = time.Second

// worker serves s, then the streams the reader hands it, until none came
// for h2WorkerIdle or the connection closed.
func (c *h2Conn) worker(s *h2Stream) {
	defer contain("an HTTP/2 stream", c.c)
	var timer *time.Timer
	for {
		c.run(s)
		c.mu.Lock()
		if c.closed.Load() || c.idleWorkers >= h2MaxStreams {
			c.mu.Unlock()
			return
		}
		c.idleWorkers++
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(h2WorkerIdle)
		} else {
			timer.Reset(h2WorkerIdle)
		}
		select {
		case s = <-c.work:
			timer.Stop()
			continue
		case <-timer.C:
		case <-c.done:
		}
		c.mu.Lock()
		if c.idleWorkers > 0 {
			c.idleWorkers--
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		// The reader counted on this goroutine already: take its stream.
		s = <-c.work
	}
}

// run serves one stream through the pipeline.
func (c *h2Conn) run(s *h2Stream) {
	s.r.start = time.Now()
	sv := c.l.handler.Load()
	switch {
	case !sv.h2:
		// A reload took h2 off this listener: this connection ends.
		c.resetStream(s.id, http2.ErrCodeRefusedStream)
		c.drain()
	case s.gone():
		// Reset before its turn (the rapid-reset pattern): no backend
		// work for it at all.
		sv.abandoned(s)
	default:
		sv.serve(s)
	}
	s.finish()
	c.release()
}

// h2Headers is the state of the header block being read.
type h2Headers struct {
	s         *h2Stream
	size      int // the decoded header list size (RFC 9113 6.5.2)
	bytes     int // compressed
	bad       string
	tooLarge  bool
	trailers  bool
	endStream bool
	regular   bool // a regular field came: no more pseudo-headers
	seen      uint8
}
