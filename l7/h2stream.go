package l7

import (
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/xlbproject/xlb/l7/h1"
)

// h2Stream is one HTTP/2 request and the pipeline's exchange for it. Its
// record is reused by the connection's later streams, so that a stream
// allocates nothing of its own once the connection is warm.
type h2Stream struct {
	c        *h2Conn
	id       uint32
	r        request
	fields   []hpack.HeaderField // the regular request fields, as decoded
	trailers []hpack.HeaderField
	host     string // the host field, if any
	scheme   string
	pathS    string
	scratch  []byte
	wake     chan struct{} // data came, a window opened, or the stream was reset
	reset    atomic.Bool   // the client reset the stream or the connection closed
	bodyStop atomic.Bool   // the answer is done: sendBody returns (h2backend.go)

	// Under c.mu.
	sendWin  int64
	recvWin  int64
	unacked  int64 // body bytes consumed, not yet granted back on the stream
	recv     []byte
	recvDone bool
	received int64
	waiting  bool // for a window to open
	ended    bool // END_STREAM or RST_STREAM went out
	pending  bool // not started yet: its body may come whole (takePending)
}

var _ exchange = (*h2Stream)(nil)

// init readies the record for stream id; the reader calls it before the
// stream is visible to anyone else.
func (s *h2Stream) init(id uint32, c *h2Conn) {
	s.id = id
	r := &s.r
	r.method, r.target, r.host, r.id = "", "", "", nil
	r.close, r.upgrade, r.body, r.length, r.stream, r.read = false, "", nil, -1, false, false
	s.fields, s.trailers = s.fields[:0], s.trailers[:0]
	s.host, s.scheme, s.pathS = "", "", ""
	s.sendWin, s.recvWin, s.unacked = c.peerWin, h2StreamWindow, 0
	s.recv, s.recvDone, s.received, s.waiting, s.ended, s.pending = s.recv[:0], false, 0, false, false, false
	s.reset.Store(false)
	s.bodyStop.Store(false)
	select {
	case <-s.wake:
	default:
	}
}

// resetByPeer marks the stream gone and wakes its goroutine; c.mu is held.
func (s *h2Stream) resetByPeer() {
	s.reset.Store(true)
	s.wakeLocked()
}

func (s *h2Stream) wakeLocked() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Header validation (RFC 9113 8.2 and 8.3). Each check returns why a
// request is malformed, or "".

const (
	seenMethod = 1 << iota
	seenScheme
	seenAuthority
	seenPath
)

// takeField takes one decoded request field.
func (s *h2Stream) takeField(f hpack.HeaderField, hd *h2Headers) string {
	if f.IsPseudo() {
		if hd.regular {
			return "pseudo-header after a regular field"
		}
		var bit uint8
		switch f.Name {
		case ":method":
			bit, s.r.method = seenMethod, f.Value
		case ":scheme":
			bit, s.scheme = seenScheme, f.Value
		case ":authority":
			bit, s.r.host = seenAuthority, f.Value
		case ":path":
			bit, s.r.target = seenPath, f.Value
		default:
			return "unknown pseudo-header"
		}
		if hd.seen&bit != 0 {
			return "repeated pseudo-header"
		}
		hd.seen |= bit
		return ""
	}
	hd.regular = true
	if why := checkField(f); why != "" {
		return why
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return "connection-specific field"
	case "te":
		if f.Value != "trailers" {
			return "te other than trailers"
		}
	case "host":
		if s.host != "" {
			return "more than one host"
		}
		s.host = f.Value
	case "content-length":
		n, err := strconv.ParseInt(f.Value, 10, 64)
		if err != nil || n < 0 || (s.r.length >= 0 && s.r.length != n) {
			return "malformed content-length"
		}
		s.r.length = n
	case "x-request-id":
		s.r.id = unsafe.Slice(unsafe.StringData(f.Value), len(f.Value))
	}
	s.fields = append(s.fields, f)
	return ""
}

// checkField refuses names that are not lower-case tokens and values that
// could split a field when the request is forwarded as HTTP/1.1.
func checkField(f hpack.HeaderField) string {
	if f.Name == "" {
		return "empty field name"
	}
	for i := 0; i < len(f.Name); i++ {
		if !h2NameByte[f.Name[i]] {
			return "field name not a lower-case token"
		}
	}
	for i := 0; i < len(f.Value); i++ {
		if c := f.Value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return "control character in a field value"
		}
	}
	return ""
}

var h2NameByte = func() (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// h2HostByte is what :authority and host may hold: a reg-name, an IP
// literal and a port, as the HTTP/1.1 engine accepts (the proxy repeats
// the host in forwarding fields, where a quote could forge parameters).
var h2HostByte = func() (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!$%&'()*+,-.:;=[]_~" {
		t[c] = true
	}
	return t
}()

// checkHead checks a complete request head and fills the request view.
func (s *h2Stream) checkHead(endStream bool) string {
	r := &s.r
	switch {
	case r.method == "":
		return "no :method"
	case r.method == "CONNECT":
		return "CONNECT is not supported"
	case s.scheme == "":
		return "no :scheme"
	case r.target == "":
		return "no :path, or an empty one"
	case r.target[0] != '/' && !(r.target == "*" && r.method == "OPTIONS"):
		return "malformed :path"
	}
	for i := 0; i < len(r.target); i++ {
		if c := r.target[i]; c <= ' ' || c == 0x7f {
			return "malformed :path"
		}
	}
	switch {
	case r.host == "":
		r.host = s.host
	case s.host != "" && s.host != r.host:
		return "host and :authority differ"
	}
	if r.host == "" {
		// RFC 9113 8.3.1: an http or https request names its authority;
		// forwarded without one, a backend would get an empty Host.
		return "no :authority nor host"
	}
	for i := 0; i < len(r.host); i++ {
		if !h2HostByte[r.host[i]] {
			return "malformed :authority"
		}
	}
	if endStream {
		if r.length > 0 {
			return "content-length without a body"
		}
		s.recvDone = true
	} else {
		r.stream = true
	}
	return ""
}

func (s *h2Stream) req() *request { return &s.r }

func (s *h2Stream) path() string {
	if s.pathS != "" {
		return s.pathS
	}
	t := s.r.target
	if i := strings.IndexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	s.pathS = t
	if strings.IndexByte(t, '%') >= 0 {
		if p, err := url.PathUnescape(t); err == nil {
			s.pathS = p
		}
	}
	return s.pathS
}

func (s *h2Stream) header(lower, _ string) string {
	for i := range s.fields {
		if s.fields[i].Name == lower {
			return s.fields[i].Value
		}
	}
	return ""
}

// cookie looks through every cookie field: HTTP/2 clients may send each
// cookie in a field of its own (RFC 9113 8.2.3).
func (s *h2Stream) cookie(name string) string {
	for i := range s.fields {
		if s.fields[i].Name != "cookie" {
			continue
		}
		for pair := range strings.SplitSeq(s.fields[i].Value, ";") {
			pair = strings.TrimLeft(pair, " \t")
			if v, ok := strings.CutPrefix(pair, name); ok && len(v) > 0 && v[0] == '=' {
				v = v[1:]
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v
			}
		}
	}
	return ""
}

func (s *h2Stream) remote() string { return s.c.remoteS }

func (s *h2Stream) gone() bool { return s.reset.Load() }

func (s *h2Stream) idleLimit() time.Duration { return s.c.idle }

// appendFields writes the request's fields for an HTTP/1.1 backend: Host
// from :authority, the cookie fields joined into one (RFC 9113 8.2.3).
func (s *h2Stream) appendFields(b []byte) []byte {
	b = append(b, "Host: "...)
	b = append(b, s.r.host...)
	b = append(b, "\r\n"...)
	cookies := 0
	for i := range s.fields {
		f := &s.fields[i]
		switch f.Name {
		case "host", "content-length", "te", "x-request-id", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded":
			continue
		case "cookie":
			cookies++
			continue
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if cookies > 0 {
		b = append(b, "Cookie: "...)
		n := 0
		for i := range s.fields {
			if f := &s.fields[i]; f.Name == "cookie" {
				if n > 0 {
					b = append(b, "; "...)
				}
				b = append(b, f.Value...)
				n++
			}
		}
		b = append(b, "\r\n"...)
	}
	return b
}

func (s *h2Stream) appendPrior(b []byte, forwarded bool) []byte {
	name := "x-forwarded-for"
	if forwarded {
		name = "forwarded"
	}
	for i := range s.fields {
		if f := &s.fields[i]; f.Name == name {
			b = append(b, f.Value...)
			b = append(b, ", "...)
		}
	}
	return b
}

// sendBody streams the request's DATA to the backend as it comes, giving
// the client window back as the backend takes it; a client that stops
// sending holds the backend for idle_timeout at most.
func (s *h2Stream) sendBody(w *wbuf) (werr, cerr error) {
	c := s.c
	chunked := s.r.length < 0
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		n := len(s.recv)
		done, reset := s.recvDone, s.reset.Load()
		if n > 0 && !reset {
			if chunked {
				w.b = strconv.AppendInt(w.b, int64(n), 16)
				w.b = append(w.b, "\r\n"...)
			}
			w.b = append(w.b, s.recv...)
			if chunked {
				w.b = append(w.b, "\r\n"...)
			}
			s.recv = s.recv[:0]
			s.unacked += int64(n)
			c.unacked += int64(n)
		}
		c.mu.Unlock()
		if reset || s.bodyStop.Load() {
			return nil, errStreamGone
		}
		if done {
			if chunked {
				w.b = append(w.b, "0\r\n"...)
				for _, f := range s.trailers {
					w.b = append(w.b, f.Name...)
					w.b = append(w.b, ": "...)
					w.b = append(w.b, f.Value...)
					w.b = append(w.b, "\r\n"...)
				}
				w.b = append(w.b, "\r\n"...)
			}
			return nil, nil
		}
		if n > 0 {
			if werr = w.flush(); werr != nil {
				return werr, nil
			}
			if err := c.grant(s); err != nil {
				return nil, err
			}
			continue
		}
		if timer == nil {
			timer = time.NewTimer(c.writeTimeout())
		} else {
			timer.Reset(c.writeTimeout())
		}
		select {
		case <-s.wake:
		case <-timer.C:
			return nil, errBodyStall
		}
	}
}

// stopBody makes a sendBody running on another goroutine return.
func (s *h2Stream) stopBody() {
	s.bodyStop.Store(true)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

type h2Error string

func (e h2Error) Error() string { return string(e) }

const errBodyStall = h2Error("the client sent no request body data for idle_timeout")

func (s *h2Stream) markEnded() {
	s.c.mu.Lock()
	s.ended = true
	s.c.mu.Unlock()
}

func (s *h2Stream) reply(status int, msg string, id []byte, retryAfter int) bool {
	c := s.c
	c.wmu.Lock()
	c.beginHeaders()
	c.field(":status", statusString(status))
	c.field("content-type", "text/plain; charset=utf-8")
	c.field("x-content-type-options", "nosniff")
	if len(id) > 0 {
		c.field("x-request-id", bstr(id))
	}
	if retryAfter > 0 {
		c.lower = strconv.AppendInt(c.lower[:0], int64(retryAfter), 10)
		c.field("retry-after", bstr(c.lower))
	}
	c.lower = strconv.AppendInt(c.lower[:0], int64(len(msg)+1), 10)
	c.field("content-length", bstr(c.lower))
	if s.r.method == "HEAD" {
		// The length a GET would get, and no body (RFC 9110 9.3.2).
		c.endHeaders(s.id, true)
		c.wmu.Unlock()
		s.markEnded()
		return c.flushSoon() == nil
	}
	c.endHeaders(s.id, false)
	c.wmu.Unlock()
	s.scratch = append(append(s.scratch[:0], msg...), '\n')
	if err := s.writeData(s.scratch, true); err != nil {
		return false
	}
	s.markEnded()
	return c.flushSoon() == nil
}

func (s *h2Stream) replyGRPC(code int, msg string, id []byte) bool {
	c := s.c
	c.wmu.Lock()
	c.writeGRPCStatus(s.id, code, msg, id)
	c.wmu.Unlock()
	s.markEnded()
	return c.flushSoon() == nil
}

// writeGRPCStatus answers stream id with a trailers-only gRPC status; wmu
// is held.
func (c *h2Conn) writeGRPCStatus(id uint32, code int, msg string, reqID []byte) {
	c.beginHeaders()
	c.field(":status", "200")
	c.field("content-type", "application/grpc")
	c.lower = strconv.AppendInt(c.lower[:0], int64(code), 10)
	c.field("grpc-status", bstr(c.lower))
	c.lower = appendGRPCMessage(c.lower[:0], msg)
	c.field("grpc-message", bstr(c.lower))
	if len(reqID) > 0 {
		c.field("x-request-id", bstr(reqID))
	}
	c.endHeaders(id, true)
}

// lowerName lower-cases a backend's field name into c.lower (wmu held);
// the encoder keeps no table, so the view is used and forgotten.
func (c *h2Conn) lowerName(name []byte) string {
	c.lower = appendLower(c.lower[:0], name)
	return bstr(c.lower)
}

// appendLower appends name in lower case: HTTP/2 field names are.
func appendLower(b, name []byte) []byte {
	for _, ch := range name {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b = append(b, ch)
	}
	return b
}

// respond sends a backend's answer: HEADERS, then DATA as the body comes,
// never more than the client's windows allow (the backend is read no
// faster than the client takes the answer), then trailers if the backend
// sent some.
func (s *h2Stream) respond(a *answer) bool {
	c := s.c
	pc := a.pc
	resp := &pc.head
	if s.gone() {
		// Reset while the backend answered (a cancelled call): nobody
		// wants the answer, and its connection may hold an unread body.
		pc.c.Close()
		a.gone, a.err = true, errStreamGone.Error()
		return false
	}
	headOnly := pc.noBody || resp.ContentLength == 0
	c.wmu.Lock()
	c.beginHeaders()
	c.field(":status", statusString(resp.Status))
	ownID := true
	for i := range resp.Fields {
		f := &resp.Fields[i]
		if f.Kind == h1.XRequestID {
			ownID = false
		}
		if f.Kind.Hop() || (resp.ConnNames && f.Kind == h1.Other && resp.Named(f.Name)) {
			continue
		}
		c.field(c.lowerName(f.Name), bstr(f.Value))
	}
	if ownID {
		c.field("x-request-id", bstr(a.id))
	}
	if a.setCookie != "" {
		c.field("set-cookie", a.setCookie)
	}
	if resp.ContentLength >= 0 && (!pc.noBody || a.headReq || resp.Status == 304) {
		c.lower = strconv.AppendInt(c.lower[:0], resp.ContentLength, 10)
		c.field("content-length", bstr(c.lower))
	}
	c.endHeaders(s.id, headOnly)
	var err error
	if headOnly || len(pc.in.Buffered()) == 0 {
		// The client sees the head now, while the body is still to come.
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if headOnly {
		s.markEnded()
		if pc.noBody || !resp.Close {
			pc.release(!resp.Close, a.now)
		} else {
			pc.c.Close()
		}
		return err == nil
	}
	var n int64
	var rerr, werr error
	reusable := !resp.Close
	if err != nil {
		werr = err
	} else if resp.ContentLength > 0 {
		n, werr, rerr = s.copyLength(pc, resp.ContentLength)
	} else {
		br := bodyReader{pc: pc, left: -1, chunked: resp.Chunked, beforeFill: c.flushOut}
		n, werr, rerr = s.copyDecoded(&br, a)
		reusable = reusable && !br.untilClose()
	}
	if werr == nil && rerr == nil {
		werr = c.flushSoon()
	}
	a.bytes = n
	if rerr != nil || werr != nil {
		pc.c.Close()
		if rerr != nil {
			a.err = "reading the backend's body: " + rerr.Error()
		} else {
			a.err = "writing to the client: " + werr.Error()
		}
		if !s.gone() {
			if rerr != nil && isGRPCType(s.header("content-type", "Content-Type")) {
				// A gRPC call whose backend went away mid-answer is what a
				// gRPC client calls UNAVAILABLE (its retry policies key on
				// it), not the INTERNAL a reset gives; the call has its
				// status in the log, the metric and passive health.
				a.grpc = "14"
				c.wmu.Lock()
				c.beginHeaders()
				c.field("grpc-status", "14")
				c.lower = appendGRPCMessage(c.lower[:0], "xlb: the backend's connection was lost during the call")
				c.field("grpc-message", bstr(c.lower))
				c.endHeaders(s.id, true)
				c.wmu.Unlock()
				s.markEnded()
				c.flushOut()
				return false
			}
			// The client sees a broken answer, not a short one.
			code := http2.ErrCodeInternal
			if werr == errWindowStall {
				code = http2.ErrCodeCancel
			}
			c.resetStream(s.id, code)
			c.flushOut()
		}
		return false
	}
	s.markEnded()
	pc.release(reusable, a.now)
	return true
}

// copyLength sends a body of n bytes straight from the backend's buffer
// into DATA frames.
func (s *h2Stream) copyLength(pc *upConn, n int64) (copied int64, werr, rerr error) {
	c := s.c
	for n > 0 {
		b := pc.in.Buffered()
		if len(b) == 0 {
			if werr = c.flushOut(); werr != nil {
				return
			}
			if rerr = pc.bodyFill(); rerr != nil {
				return
			}
			continue
		}
		want := int(min(int64(len(b)), n))
		got, err := s.reserve(want)
		if err != nil {
			return copied, err, nil
		}
		c.wmu.Lock()
		c.appendData(s.id, b[:got], int64(got) == n)
		if len(c.out.b) >= h2FlushAt {
			werr = c.flushLocked()
		} else {
			werr = c.werr
		}
		c.wmu.Unlock()
		pc.in.Discard(got)
		n -= int64(got)
		copied += int64(got)
		if werr != nil {
			return
		}
	}
	return
}

// copyDecoded sends a chunked or close-delimited body, decoded, then the
// backend's trailers as a last HEADERS frame.
func (s *h2Stream) copyDecoded(br *bodyReader, a *answer) (copied int64, werr, rerr error) {
	c := s.c
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:h2MaxFrame]
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if werr = s.writeData(buf[:n], false); werr != nil {
				return
			}
			copied += int64(n)
		}
		if err != nil {
			if err != io.EOF {
				rerr = err
				return
			}
			break
		}
	}
	if len(br.trailers) == 0 {
		werr = s.writeData(nil, true)
		return
	}
	c.wmu.Lock()
	c.beginHeaders()
	for _, t := range br.trailers {
		c.field(strings.ToLower(t[0]), t[1])
		if t[0] == "Grpc-Status" {
			a.grpc = t[1]
		}
	}
	c.endHeaders(s.id, true)
	werr = c.werr
	c.wmu.Unlock()
	return
}

// finish ends the stream after the pipeline is done with it: a reset if
// it was left unanswered, RST_STREAM(NO_ERROR) if the answer went out
// before the request's body was all sent (RFC 9113 8.1), the unread body
// given back to the connection's window.
func (s *h2Stream) finish() {
	c := s.c
	id := s.id
	c.mu.Lock()
	ended, recvDone, reset := s.ended, s.recvDone, s.reset.Load()
	c.unacked += int64(len(s.recv))
	s.recv = s.recv[:0]
	delete(c.streams, id)
	c.active--
	c.idleSince = time.Now()
	wakeReader := (c.goingAway || c.clientAway) && c.active == 0
	c.recycle(s)
	c.mu.Unlock()
	switch {
	case reset:
	case !ended:
		c.wmu.Lock()
		c.wfr.WriteRSTStream(id, http2.ErrCodeInternal)
		c.flushLocked()
		c.wmu.Unlock()
	case !recvDone:
		c.wmu.Lock()
		c.wfr.WriteRSTStream(id, http2.ErrCodeNo)
		c.flushLocked()
		c.wmu.Unlock()
	}
	c.grant(nil)
	c.flushOut()
	if wakeReader {
		c.c.SetReadDeadline(time.Unix(1, 0))
	}
}
