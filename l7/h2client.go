package l7

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/xlbproject/xlb/l7/h1"
)

// xlb's own HTTP/2 client, for backends that speak HTTP/2 (backend_protocol
// h2c, and h2 over TLS). Like the server engine (h2conn.go) it is built on
// x/net's Framer and hpack, not on its Transport: that client writes a
// request's head and body in two system calls from a goroutine of its own,
// hands the answer over channels, and allocates a request, a response and
// their header maps per call; through it a gRPC call cost xlb 1.7x NGINX's
// CPU.
//
// Here a connection has one goroutine, its reader, which decodes answers
// into the streams' buffers (already in the HTTP/1.1 form the pipeline
// reads, see h2backend.go) and writes only the small control frames. A
// request is written by the pipeline's goroutine that sends it, head and
// whole body in one write; writers that find another write under way leave
// their frames to it, so that calls sent at the same moment share a system
// call (as NGINX does once per pass of its event loop).
//
// Lock order: h2Up.wmu may be held while h2Up.mu is taken, never the
// reverse.

// What xlb asks of a backend's connection, and how it watches it.
const (
	// A stream's window: how much of one answer may wait in xlb for a
	// slow client.
	h2UpStreamWindow = 256 << 10
	h2UpConnWindow   = 1 << 30
	// Streams per connection before the backend's SETTINGS say otherwise
	// (RFC 9113 allows any number; 100 is what it recommends at least).
	h2UpDefaultStreams = 100
	// A connection with streams open that read nothing for h2UpPingAfter
	// is pinged, and closed if the answer does not come in h2UpPingTimeout.
	h2UpPingAfter   = 30 * time.Second
	h2UpPingTimeout = 5 * time.Second
	h2UpCheckEvery  = 5 * time.Second
	// A backend that does not read what xlb writes fails after this long.
	h2UpWriteTimeout = 30 * time.Second
)

// h2UpSendStall is how long a backend may keep its windows shut on a
// request body; a variable for tests only.
var h2UpSendStall = h2UpWriteTimeout

// h2Backend is one backend's HTTP/2 connections: few, each carrying as
// many streams as the backend allows, a new one opened when they are full.
type h2Backend struct {
	pool *connPool // address, connect timeout and TLS configuration

	mu    sync.Mutex
	conns []*h2Up
	dials []*h2Dial // dials under way
	// perConn is how many streams the backend's connections take, as the
	// last new one's SETTINGS said (0: none yet, h2UpDefaultStreams).
	perConn int
	closed  bool
}

// h2Dial is a dial that calls wait for: done is closed when it ended, with
// err, which every call that waited for it gets too (a dead backend costs
// them one connect timeout, not one each). calls counts them, the dialer
// included: a new connection carries perConn of them, and a burst of more
// dials again alongside (up to h2MaxDials at once), not one connection
// after the other.
type h2Dial struct {
	done  chan struct{}
	err   error
	calls int
}

// h2MaxDials bounds the dials under way to one backend.
const h2MaxDials = 8

func newH2Backend(p *connPool) *h2Backend { return &h2Backend{pool: p} }

var (
	errH2BackendClosed = errors.New("the backend's connections were closed (reload)")
	errNoStreams       = errors.New("the backend's SETTINGS allow no streams")
)

// conn returns a connection with room for one more stream, counted as
// taken: the caller opens a stream on it or gives the room back (done).
func (b *h2Backend) conn() (*h2Up, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, errH2BackendClosed
		}
		for _, c := range b.conns {
			if c.take() {
				b.mu.Unlock()
				return c, nil
			}
		}
		if d := b.joinable(); d != nil {
			// The calls that find every connection full at the same
			// moment share the new ones.
			d.calls++
			b.mu.Unlock()
			<-d.done
			if d.err != nil {
				return nil, d.err
			}
			continue
		}
		d := &h2Dial{done: make(chan struct{}), calls: 1}
		b.dials = append(b.dials, d)
		b.mu.Unlock()
		c, err := dialH2(b)
		var unused *h2Up
		b.mu.Lock()
		b.dials = slices.DeleteFunc(b.dials, func(o *h2Dial) bool { return o == d })
		if err == nil {
			b.perConn = c.streamLimit()
		}
		switch {
		case err != nil:
		case b.closed:
			unused, err = c, errH2BackendClosed
		case !c.take():
			unused, err = c, &net.OpError{Op: "dial", Net: "tcp", Addr: c.addr, Err: errNoStreams}
		default:
			b.conns = append(b.conns, c)
		}
		d.err = err
		close(d.done)
		b.mu.Unlock()
		if unused != nil {
			unused.fail(err)
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// joinable is the dial under way whose connection will have room for one
// more call, or when h2MaxDials are under way the first of them; nil: a
// call should dial. b.mu is held.
func (b *h2Backend) joinable() *h2Dial {
	per := b.perConn
	if per <= 0 {
		per = h2UpDefaultStreams
	}
	for _, d := range b.dials {
		if d.calls < per {
			return d
		}
	}
	if len(b.dials) >= h2MaxDials {
		return b.dials[0]
	}
	return nil
}

// streamLimit is how many streams the backend lets c carry.
func (c *h2Up) streamLimit() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxStreams
}

// drop forgets a connection that takes no new streams.
func (b *h2Backend) drop(c *h2Up) {
	b.mu.Lock()
	for i, o := range b.conns {
		if o == c {
			b.conns = append(b.conns[:i], b.conns[i+1:]...)
			break
		}
	}
	b.mu.Unlock()
}

// close ends the connections without streams, and the others once their
// streams end (a reload replaced the backend's pool).
func (b *h2Backend) close() {
	b.mu.Lock()
	b.closed = true
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()
	for _, c := range conns {
		c.retire()
	}
}

// h2Up is one HTTP/2 connection to a backend.
type h2Up struct {
	b    *h2Backend
	c    net.Conn
	addr net.Addr
	fr   *http2.Framer // reads; the reader's only
	dec  *hpack.Decoder
	hd   h2UpHeaders // the header block being read

	wmu      sync.Mutex
	out      h2buf
	spare    []byte
	flushing bool // a writer is in the socket: what is appended now goes with its next write
	wfr      *http2.Framer
	hbuf     h2buf
	lower    []byte
	num      []byte // content-length's digits (wmu held)
	nextID   uint32
	werr     error
	wdl      time.Time

	mu          sync.Mutex
	streams     map[uint32]*h2Call
	taken       int // streams open or about to be
	maxStreams  int
	sendWindow  int64 // the backend's connection window
	initWindow  int64 // its SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame    int
	recvUnacked int64
	goAway      bool  // no new streams: GOAWAY came, or the pool retired it
	peerAway    bool  // the backend's GOAWAY came
	err         error // the connection failed: every stream fails with it
	idleSince   time.Time
	pingAt      time.Time // a liveness PING is out since then
	lastRead    atomic.Int64
	check       *time.Timer
}

// h2UpHeaders is a header block on its way in.
type h2UpHeaders struct {
	id        uint32
	endStream bool
	status    int
	fields    []byte // the regular fields, in HTTP/1.1 form
	length    int64  // content-length, -1 if absent
	grpc      bool   // content-type application/grpc*
	trailer   bool   // a Trailer field announces trailers
	bad       string // why the block is malformed, if it is
	size      int
}

// dialH2 opens a connection and sends the preface and xlb's settings.
func dialH2(b *h2Backend) (*h2Up, error) {
	p := b.pool
	d := net.Dialer{Timeout: p.connect, KeepAlive: 30 * time.Second}
	start := time.Now()
	tcp, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	var nc net.Conn = tcp
	if conf := p.tls.Load(); conf != nil {
		conf = conf.Clone()
		conf.NextProtos = []string{"h2"}
		tc := tls.Client(tcp, conf)
		tcp.SetDeadline(start.Add(p.connect))
		err := tc.Handshake()
		tcp.SetDeadline(time.Time{})
		if err == nil && tc.ConnectionState().NegotiatedProtocol != "h2" {
			err = fmt.Errorf("backend chose ALPN %q, not h2", tc.ConnectionState().NegotiatedProtocol)
		}
		if err != nil {
			tcp.Close()
			// The backend's fault, as a refused connection is: retried and
			// counted the same way.
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: tcp.RemoteAddr(), Err: fmt.Errorf("tls handshake: %w", err)}
		}
		nc = tc
	}
	c := &h2Up{
		b: b, c: nc, addr: tcp.RemoteAddr(), nextID: 1,
		streams: map[uint32]*h2Call{}, maxStreams: h2UpDefaultStreams,
		sendWindow: 65535, initWindow: 65535, maxFrame: 16 << 10, idleSince: start,
	}
	c.fr = http2.NewFramer(nil, bufio.NewReaderSize(nc, 16<<10))
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(16 << 10)
	c.dec = hpack.NewDecoder(4096, c.emit)
	c.dec.SetMaxStringLength(maxResponseHead)
	c.wfr = http2.NewFramer(&c.out, nil)
	c.lastRead.Store(start.UnixNano())

	c.wmu.Lock()
	c.out.b = append(c.out.b, http2.ClientPreface...)
	c.wfr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2UpStreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxResponseHead},
	)
	c.wfr.WriteWindowUpdate(0, h2UpConnWindow-65535)
	if err := c.flushUnlock(); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.addr, Err: err}
	}
	// The backend's SETTINGS come first (RFC 9113 3.4): read them before
	// any stream, so that its stream limit and windows are known from
	// the first call on (not the defaults, which it would refuse).
	nc.SetReadDeadline(start.Add(p.connect))
	f, err := c.fr.ReadFrame()
	nc.SetReadDeadline(time.Time{})
	if err == nil {
		if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
			err = errors.New("the backend did not start with SETTINGS: not HTTP/2?")
		} else {
			err = c.settings(sf)
		}
	}
	if err != nil {
		c.fail(err)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.addr, Err: fmt.Errorf("HTTP/2 preface: %w", err)}
	}
	c.check = time.AfterFunc(h2UpCheckEvery, c.watch) // before the reader, which may fail at once
	go c.read()
	return c, nil
}

// take counts one more stream if the connection has room; b.mu is held.
func (c *h2Up) take() bool {
	c.mu.Lock()
	ok := c.err == nil && !c.goAway && c.taken < c.maxStreams
	if ok {
		c.taken++
	}
	c.mu.Unlock()
	return ok
}

// done gives back the room of a stream that ended (or never opened); mu
// is held. A connection that takes no new streams closes with its last.
func (c *h2Up) doneLocked() (closeNow bool) {
	c.taken--
	if c.taken == 0 {
		c.idleSince = time.Now()
		return c.goAway && c.err == nil
	}
	return false
}

func (c *h2Up) done() {
	c.mu.Lock()
	closeNow := c.doneLocked()
	c.mu.Unlock()
	if closeNow {
		c.fail(errH2BackendClosed)
	}
}

// retire takes no new streams on c and closes it when the open ones end.
func (c *h2Up) retire() {
	c.mu.Lock()
	c.goAway = true
	idle := c.taken == 0
	c.mu.Unlock()
	c.b.drop(c)
	if idle {
		c.fail(errH2BackendClosed)
	}
}

// fail ends the connection: every stream still open fails with err.
func (c *h2Up) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	for _, s := range c.streams {
		if s.err == nil && !s.ended {
			s.err = err
		}
		s.wakeUp()
	}
	c.mu.Unlock()
	c.b.drop(c)
	if c.check != nil {
		c.check.Stop()
	}
	c.c.Close()
}

// watch closes a connection left idle for the keep-alive time, and pings
// one whose streams wait on a backend that went silent: a dead backend's
// connection is not kept for the next calls.
func (c *h2Up) watch() {
	now := time.Now()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	var failWith error
	ping := false
	switch {
	case c.taken == 0 && now.Sub(c.idleSince) >= upstreamIdleTimeout:
		failWith = errors.New("idle")
	case !c.pingAt.IsZero() && now.Sub(c.pingAt) >= h2UpPingTimeout:
		failWith = errors.New("the backend did not answer a PING")
	case c.taken > 0 && c.pingAt.IsZero() && now.Sub(time.Unix(0, c.lastRead.Load())) >= h2UpPingAfter:
		c.pingAt = now
		ping = true
	}
	c.mu.Unlock()
	if failWith != nil {
		c.fail(failWith)
		return
	}
	if ping {
		c.wmu.Lock()
		c.wfr.WritePing(false, [8]byte{'x', 'l', 'b'})
		c.flushUnlock()
	}
	c.check.Reset(h2UpCheckEvery)
}

// flushUnlock writes what was appended to c.out and releases wmu, which
// is held. When another writer is in the socket it returns at once: that
// writer's next write takes these frames too.
func (c *h2Up) flushUnlock() error {
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	if c.flushing {
		c.wmu.Unlock()
		return nil
	}
	c.flushing = true
	for len(c.out.b) > 0 && c.werr == nil {
		b := c.out.b
		c.out.b = c.spare[:0]
		now := time.Now()
		if c.wdl.Sub(now) < h2UpWriteTimeout/2 {
			c.wdl = now.Add(h2UpWriteTimeout)
			c.c.SetWriteDeadline(c.wdl)
		}
		c.wmu.Unlock()
		_, err := c.c.Write(b)
		c.wmu.Lock()
		c.spare = b[:0]
		if err != nil {
			c.werr = err
		}
	}
	c.flushing = false
	err := c.werr
	c.wmu.Unlock()
	if err != nil {
		c.writeFailed(err)
	}
	return err
}

// writeFailed ends a connection whose write failed. That is most often the
// backend closing it, right after a GOAWAY still unread in the receive
// buffer which says what streams it left unprocessed (those are sent again):
// failing every stream with the write error at once would answer 502 for
// requests the backend never saw. So no new stream goes there, the reader
// reads on to the end, and what it has not judged by writeFailGrace fails
// with the write error.
func (c *h2Up) writeFailed(err error) {
	c.b.drop(c)
	time.AfterFunc(writeFailGrace, func() { c.fail(err) })
}

// writeFailGrace bounds how long a connection whose write failed is read
// for what the backend sent before it closed.
const writeFailGrace = 250 * time.Millisecond

// errRefused is a stream the backend did not process: refused
// (REFUSED_STREAM), or past the last one its GOAWAY accepted, or never
// written. It can always be sent again (RFC 9113 8.7). gone: the
// connection it met is going away, so the next try is on another one.
type errRefused struct {
	why  string
	gone bool
}

func (e errRefused) Error() string { return e.why }

// errStreamReset is a stream the backend reset after taking it.
type errStreamReset struct{ code http2.ErrCode }

func (e errStreamReset) Error() string { return "the backend reset the stream: " + e.code.String() }

// read is the connection's reader: it decodes every frame the backend
// sends and acts on it, until the connection fails.
func (c *h2Up) read() {
	defer contain("an HTTP/2 backend connection", c.c)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the backend closed with streams in flight
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAwayWith(http2.ErrCode(ce), err)
			}
			c.fail(err)
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		if err := c.frame(f); err != nil {
			var he *errH2
			code := http2.ErrCodeProtocol
			if errors.As(err, &he) {
				code = he.code
			}
			c.goAwayWith(code, err)
			c.fail(err)
			return
		}
	}
}

// goAwayWith tells the backend why xlb closes the connection.
func (c *h2Up) goAwayWith(code http2.ErrCode, err error) {
	c.wmu.Lock()
	c.wfr.WriteGoAway(0, code, []byte(err.Error()))
	c.flushUnlock()
}

func (c *h2Up) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.data(f)
	case *http2.HeadersFrame:
		c.hd = h2UpHeaders{id: f.StreamID, endStream: f.StreamEnded(), fields: c.hd.fields[:0], length: -1}
		return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.ContinuationFrame:
		return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		if s := c.streams[f.StreamID]; s != nil && s.err == nil && !s.ended {
			if f.ErrCode == http2.ErrCodeRefusedStream {
				s.err = errRefused{why: "the backend refused the stream (REFUSED_STREAM)"}
			} else {
				s.err = errStreamReset{f.ErrCode}
			}
			s.reset = true
			s.wakeUp()
		} else if s != nil {
			s.reset = true
			s.wakeUp()
		}
		c.mu.Unlock()
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return c.settings(f)
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			c.mu.Lock()
			c.pingAt = time.Time{}
			c.mu.Unlock()
			return nil
		}
		c.wmu.Lock()
		c.wfr.WritePing(true, f.Data)
		c.flushUnlock()
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.goAway, c.peerAway = true, true
		for id, s := range c.streams {
			if id > f.LastStreamID && s.err == nil && !s.ended {
				s.err = errRefused{"the backend's GOAWAY left the stream unprocessed", true}
				s.wakeUp()
			}
		}
		idle := c.taken == 0
		c.mu.Unlock()
		c.b.drop(c)
		if idle {
			c.fail(errH2BackendClosed)
		}
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "PUSH_PROMISE, though push is off")
	}
	return nil
}

func (c *h2Up) settings(f *http2.SettingsFrame) error {
	var err error
	c.mu.Lock()
	f.ForeachSetting(func(s http2.Setting) error {
		if err = s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = int(min(s.Val, 1<<16))
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.initWindow
			c.initWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				st.wakeUp()
			}
		case http2.SettingMaxFrameSize:
			c.maxFrame = int(s.Val)
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.wfr.WriteSettingsAck()
	return c.flushUnlock()
}

func (c *h2Up) windowUpdate(f *http2.WindowUpdateFrame) error {
	n := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if c.sendWindow+n > 1<<31-1 {
			return connErr(http2.ErrCodeFlowControl, "connection window over 2^31-1")
		}
		c.sendWindow += n
		for _, s := range c.streams {
			if s.sending {
				s.wakeUp()
			}
		}
		return nil
	}
	if s := c.streams[f.StreamID]; s != nil {
		s.sendWindow += n
		s.wakeUp()
	}
	return nil
}

// fragment decodes a piece of a header block; the whole block acts on
// its stream.
func (c *h2Up) fragment(p []byte, end bool) error {
	hd := &c.hd
	hd.size += len(p)
	if hd.size > maxResponseHead {
		return connErr(http2.ErrCodeEnhanceYourCalm, "response header block too large")
	}
	if _, err := c.dec.Write(p); err != nil {
		return connErr(http2.ErrCodeCompression, err.Error())
	}
	if !end {
		return nil
	}
	if err := c.dec.Close(); err != nil {
		return connErr(http2.ErrCodeCompression, err.Error())
	}
	c.mu.Lock()
	s := c.streams[hd.id]
	if s == nil || s.err != nil || s.ended {
		// A stream xlb gave up on: its block was decoded only to keep the
		// decoder's table in step.
		c.mu.Unlock()
		return nil
	}
	bad := hd.bad
	switch {
	case bad != "":
	case !s.gotHead && hd.status == 0:
		bad = "response without :status"
	case !s.gotHead && hd.status < 200 && hd.endStream:
		bad = "an interim (1xx) answer that ends the stream"
	case !s.gotHead && hd.status < 200:
		// 1xx: the answer is still to come.
		c.mu.Unlock()
		return nil
	case !s.gotHead:
		s.head(hd)
	case !hd.endStream:
		bad = "trailers without END_STREAM"
	default:
		s.trailers(hd)
	}
	if bad != "" {
		s.err = errors.New("malformed answer from backend: " + bad)
		s.reset = true
	}
	s.wakeUp()
	c.mu.Unlock()
	if bad != "" {
		c.wmu.Lock()
		c.wfr.WriteRSTStream(hd.id, http2.ErrCodeProtocol)
		c.flushUnlock()
	}
	return nil
}

// emit takes one decoded field of the block being read.
func (c *h2Up) emit(f hpack.HeaderField) {
	hd := &c.hd
	if hd.bad != "" {
		return
	}
	if len(f.Name) > 0 && f.Name[0] == ':' {
		if f.Name != ":status" || hd.status != 0 || len(hd.fields) > 0 {
			hd.bad = "pseudo-header " + f.Name + " out of place"
			return
		}
		st, err := strconv.Atoi(f.Value)
		if err != nil || st < 100 || st > 999 {
			hd.bad = "bad :status"
			return
		}
		hd.status = st
		return
	}
	if !h1.ValidValue(f.Value) || !h1.ValidName(f.Name) {
		return // HTTP/2 allows what HTTP/1.1 must not carry
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return // RFC 9113 8.2.2: never in HTTP/2; the answer's framing is xlb's
	case "content-length":
		n, err := strconv.ParseInt(f.Value, 10, 64)
		if err != nil || n < 0 || (hd.length >= 0 && hd.length != n) {
			hd.bad = "bad content-length"
			return
		}
		hd.length = n
		return
	case "content-type":
		hd.grpc = isGRPCType(f.Value)
	case "trailer":
		hd.trailer = true
	}
	hd.fields = append(hd.fields, f.Name...)
	hd.fields = append(hd.fields, ": "...)
	hd.fields = append(hd.fields, f.Value...)
	hd.fields = append(hd.fields, "\r\n"...)
}

func isGRPCType(v string) bool {
	return len(v) >= 16 && v[:16] == "application/grpc" && (len(v) == 16 || v[16] == '+' || v[16] == ';')
}

// data takes a DATA frame into its stream's buffer.
func (c *h2Up) data(f *http2.DataFrame) error {
	n := int64(f.Length)
	c.mu.Lock()
	c.recvUnacked += n
	credit := int64(0)
	if c.recvUnacked >= h2UpConnWindow/2 {
		credit, c.recvUnacked = c.recvUnacked, 0
	}
	s := c.streams[f.StreamID]
	var bad string
	excess := false
	if s != nil && s.err == nil && !s.ended {
		s.recvWindow -= n
		switch {
		case s.recvWindow < 0:
			c.mu.Unlock()
			return connErr(http2.ErrCodeFlowControl, "the backend sent past a stream's window")
		case !s.gotHead:
			bad = "DATA before HEADERS"
		default:
			if s.body(f.Data(), f.StreamEnded()) {
				excess = true
			}
			// Padding is nobody's to read: given back with the data.
			s.uncredited += n - int64(len(f.Data()))
		}
		if bad != "" {
			s.err = errors.New("malformed answer from backend: " + bad)
			s.reset = true
		}
		s.wakeUp()
	}
	c.mu.Unlock()
	if excess {
		// NGINX logs the same ("upstream sent more data than specified in
		// Content-Length"); the client's answer is whole as announced.
		if log := panicLog.Load(); log != nil {
			log.Warn("l7: an HTTP/2 backend sent more than its answer's content-length; the rest was dropped and its stream reset", "backend", c.b.pool.addr)
		}
	}
	if credit == 0 && bad == "" && !excess {
		return nil
	}
	c.wmu.Lock()
	if credit > 0 {
		c.wfr.WriteWindowUpdate(0, uint32(credit))
	}
	if bad != "" || excess {
		c.wfr.WriteRSTStream(f.StreamID, http2.ErrCodeProtocol)
	}
	c.flushUnlock()
	return nil
}

// open starts a stream for s: HEADERS from the request head in h (the
// HTTP/1.1 form the pipeline builds for every backend), and the body when
// it is whole and the windows let it go at once, all in one write.
func (c *h2Up) open(s *h2Call, method, scheme, authority, path string, grpc bool, body []byte, endStream bool) error {
	c.wmu.Lock()
	c.mu.Lock()
	if c.err != nil || c.werr != nil {
		// Nothing of this stream was written: as safe to send again as a
		// refused one.
		err := c.err
		if err == nil {
			err = c.werr
		}
		c.mu.Unlock()
		c.wmu.Unlock()
		return errRefused{"the backend's connection failed before the stream was sent: " + err.Error(), true}
	}
	if c.peerAway {
		c.mu.Unlock()
		c.wmu.Unlock()
		return errRefused{"the backend's GOAWAY came first", true}
	}
	id := c.nextID
	c.nextID += 2
	s.id, s.conn = id, c
	s.sendWindow = c.initWindow
	s.recvWindow = h2UpStreamWindow
	c.streams[id] = s
	frame := c.maxFrame
	busy := c.taken > 1
	c.mu.Unlock()

	c.hbuf.b = c.hbuf.b[:0]
	c.hfield(":method", method)
	c.hfield(":scheme", scheme)
	c.hfield(":authority", authority)
	c.hfield(":path", path)
	h := &s.req
	for i := range h.Fields {
		f := &h.Fields[i]
		if f.Kind.Hop() || f.Kind == h1.Host {
			continue
		}
		c.hfield(c.lowerName(f.Name), bstr(f.Value))
	}
	// The framing field is dropped above with the hop-by-hop ones, but in
	// HTTP/2 a known length is a request field backends use (to refuse an
	// upload too large before it comes, or to answer 411).
	if h.ContentLength >= 0 && !h.Chunked {
		c.num = strconv.AppendInt(c.num[:0], h.ContentLength, 10)
		c.hfield("content-length", bstr(c.num))
	}
	if grpc {
		// gRPC servers want it; it is hop-by-hop, so it was dropped above.
		c.hfield("te", "trailers")
	}
	c.writeHeaders(id, c.hbuf.b, endStream && len(body) == 0, frame)
	if len(body) > 0 {
		c.mu.Lock()
		n := int64(len(body))
		if n <= s.sendWindow && n <= c.sendWindow && len(body) <= c.maxFrame {
			s.sendWindow -= n
			c.sendWindow -= n
			c.wfr.WriteData(id, endStream, body)
			body = nil
		}
		c.mu.Unlock()
	}
	if busy && !c.flushing {
		// Other calls are on their way to this connection: let them
		// append their frames first, and share this write.
		c.wmu.Unlock()
		runtime.Gosched()
		c.wmu.Lock()
	}
	if err := c.flushUnlock(); err != nil {
		// The backend may have closed after a GOAWAY that leaves this
		// stream unprocessed: the reader's verdict (writeFailed) is the
		// stream's, and awaitHead waits for it.
		return nil
	}
	if len(body) > 0 {
		return c.sendData(s, body, endStream)
	}
	return nil
}

// lowerName lower-cases a field name into c.lower (wmu held); the encoder
// keeps no table, so the view is used and forgotten.
func (c *h2Up) lowerName(name []byte) string {
	c.lower = appendLower(c.lower[:0], name)
	return bstr(c.lower)
}

func (c *h2Up) hfield(name, value string) { c.hbuf.b = appendHpack(c.hbuf.b, name, value) }

// writeHeaders frames a header block, in CONTINUATION frames past the
// backend's frame size; wmu is held.
func (c *h2Up) writeHeaders(id uint32, block []byte, endStream bool, max int) {
	first := true
	for first || len(block) > 0 {
		n := min(len(block), max)
		frag := block[:n]
		block = block[n:]
		if first {
			c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			c.wfr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

// sendData sends body bytes on s as the windows allow, waiting for the
// backend to open them; it stops when the stream ends or fails.
func (c *h2Up) sendData(s *h2Call, p []byte, end bool) error {
	// stalled is when the backend's windows last left nothing to send: one
	// that keeps them shut for h2UpWriteTimeout (while it answers PINGs)
	// holds the upload, as a socket that takes no bytes would.
	var stalled time.Time
	for {
		c.mu.Lock()
		var n int64
		for {
			if c.err != nil || s.err != nil {
				err := c.err
				if s.err != nil {
					err = s.err
				}
				c.mu.Unlock()
				return err
			}
			if s.ended || s.reset {
				// The backend answered whole (or reset the stream without
				// error): the rest of the body is not wanted.
				c.mu.Unlock()
				return errBodyNotWanted
			}
			if len(p) == 0 {
				// An empty END_STREAM frame needs no window, and a window
				// may be below zero (a backend lowered its initial size).
				n = 0
				break
			}
			n = min(int64(len(p)), s.sendWindow, c.sendWindow, int64(c.maxFrame))
			if n > 0 {
				break
			}
			if stalled.IsZero() {
				stalled = time.Now()
			} else if time.Since(stalled) >= h2UpSendStall {
				err := errH2SendStall{}
				s.err, s.reset = err, true
				s.wakeUp()
				c.mu.Unlock()
				c.wmu.Lock()
				c.wfr.WriteRSTStream(s.id, http2.ErrCodeCancel)
				c.flushUnlock()
				return err
			}
			s.sending = true
			c.mu.Unlock()
			if err := s.await(s.x); err != nil {
				return err
			}
			c.mu.Lock()
			s.sending = false
		}
		stalled = time.Time{}
		s.sendWindow -= n
		c.sendWindow -= n
		c.mu.Unlock()
		last := int(n) == len(p)
		c.wmu.Lock()
		c.wfr.WriteData(s.id, end && last, p[:n])
		if err := c.flushUnlock(); err != nil {
			return err
		}
		p = p[n:]
		if last {
			return nil
		}
	}
}

var errBodyNotWanted = errors.New("the backend answered before the request body was all sent")

// errH2SendStall is an upload the backend's flow-control windows held shut
// for h2UpWriteTimeout: a timeout of the backend's (504), as NGINX's
// proxy_send_timeout is.
type errH2SendStall struct{}

func (errH2SendStall) Error() string {
	return fmt.Sprintf("the backend gave no flow-control window for the request body in %v", h2UpSendStall)
}
func (errH2SendStall) Timeout() bool   { return true }
func (errH2SendStall) Temporary() bool { return true }

// sendTrailers ends s's body with trailers.
func (c *h2Up) sendTrailers(s *h2Call, trailers [][2]string) error {
	c.mu.Lock()
	frame := c.maxFrame
	c.mu.Unlock()
	c.wmu.Lock()
	c.hbuf.b = c.hbuf.b[:0]
	for _, t := range trailers {
		c.hfield(strings.ToLower(t[0]), t[1])
	}
	c.writeHeaders(s.id, c.hbuf.b, true, frame)
	return c.flushUnlock()
}

// credit gives window back for what the pipeline took from s's buffer.
func (c *h2Up) credit(s *h2Call, n int64) {
	c.wmu.Lock()
	c.wfr.WriteWindowUpdate(s.id, uint32(n))
	c.flushUnlock()
}

// close ends s on its connection: a stream still open (the client left,
// the answer is not wanted) is reset, and its room given back.
func (c *h2Up) close(s *h2Call) {
	c.mu.Lock()
	if c.streams[s.id] != s {
		c.mu.Unlock()
		return
	}
	delete(c.streams, s.id)
	reset := !s.reset && c.err == nil && !(s.ended && s.sentEnd)
	closeNow := c.doneLocked()
	c.mu.Unlock()
	if reset {
		c.wmu.Lock()
		c.wfr.WriteRSTStream(s.id, http2.ErrCodeCancel)
		c.flushUnlock()
	}
	if closeNow {
		c.fail(errH2BackendClosed)
	}
}
