package l7

import (
	"errors"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// The output side of an HTTP/2 connection. Whoever has frames to send (the
// reader, or a stream's goroutine) appends them to c.out under c.wmu and
// writes them out; no goroutine exists only to write. A client that does
// not read stalls the writer in the socket for at most the write timeout
// (idle_timeout), after which the connection is closed: that bounds what a
// PING or SETTINGS flood from a client that never reads its answers can
// hold (one connection's buffer, for that long).
//
// Lock order: c.mu may be taken while c.wmu is held, never the reverse.

// h2buf collects frames; the Framer and the hpack encoder write into it.
type h2buf struct{ b []byte }

func (o *h2buf) Write(p []byte) (int, error) {
	o.b = append(o.b, p...)
	return len(p), nil
}

// h2FlushAt is how much output the reader batches before writing anyway.
const h2FlushAt = 32 << 10

func (c *h2Conn) writeTimeout() time.Duration {
	if c.idle > 0 {
		return c.idle
	}
	return h2DefaultWriteTimeout
}

// flushLocked writes the batched output; wmu is held. The write deadline
// is moved only when less than half of the timeout is left, so that most
// writes cost no timer update.
func (c *h2Conn) flushLocked() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.out.b) == 0 {
		return nil
	}
	now := time.Now()
	if wt := c.writeTimeout(); c.wdl.Sub(now) < wt/2 {
		c.wdl = now.Add(wt)
		c.c.SetWriteDeadline(c.wdl)
	}
	_, err := c.c.Write(c.out.b)
	c.out.b = c.out.b[:0]
	if err != nil {
		c.werr = err
		// The client does not read, or is gone: nothing more can reach it.
		c.shut()
	}
	return err
}

func (c *h2Conn) flushOut() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

// flushSoon writes the batched output at the end of an answer. When other
// streams of the connection are being served it lets them run first, so
// that an answer ready at the same moment joins this write instead of
// paying for a TLS record and a system call of its own (NGINX writes once
// per pass of its event loop to the same effect). The later flushes find
// nothing left to write.
func (c *h2Conn) flushSoon() error {
	c.mu.Lock()
	busy := c.active > 1
	c.mu.Unlock()
	if busy {
		runtime.Gosched()
	}
	return c.flushOut()
}

// flushIfBig writes the reader's batch once it is large; wmu is held.
func (c *h2Conn) flushIfBig() error {
	if len(c.out.b) < h2FlushAt {
		return nil
	}
	return c.flushLocked()
}

// resetStream sends RST_STREAM and ends the stream for its goroutine.
func (c *h2Conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if s := c.streams[id]; s != nil {
		s.ended = true
		s.resetByPeer()
	}
	c.mu.Unlock()
	c.wmu.Lock()
	c.wfr.WriteRSTStream(id, code)
	c.flushIfBig()
	c.wmu.Unlock()
}

// grant gives consumed request body bytes back to the client, on the
// connection and on stream s (nil: the connection only), once half a
// window's worth has gathered.
func (c *h2Conn) grant(s *h2Stream) error {
	var connInc, streamInc int64
	var id uint32
	c.mu.Lock()
	if c.unacked >= h2ConnWindow/2 {
		connInc, c.unacked = c.unacked, 0
		c.recvWin += connInc
	}
	if s != nil && !s.recvDone && !s.reset.Load() && s.unacked >= h2StreamWindow/2 {
		streamInc, s.unacked, id = s.unacked, 0, s.id
		s.recvWin += streamInc
	}
	c.mu.Unlock()
	if connInc == 0 && streamInc == 0 {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if connInc > 0 {
		c.wfr.WriteWindowUpdate(0, uint32(connInc))
	}
	if streamInc > 0 {
		c.wfr.WriteWindowUpdate(id, uint32(streamInc))
	}
	if s != nil {
		// A stream's goroutine grants before it waits for more: the
		// update must go out now.
		return c.flushLocked()
	}
	return c.flushIfBig()
}

// Header blocks. beginHeaders and field are called with wmu held.
func (c *h2Conn) beginHeaders() { c.hbuf.b = c.hbuf.b[:0] }

func (c *h2Conn) field(name, value string) { c.hbuf.b = appendHpack(c.hbuf.b, name, value) }

// endHeaders frames the encoded block as HEADERS and CONTINUATIONs.
func (c *h2Conn) endHeaders(id uint32, endStream bool) {
	block := c.hbuf.b
	max := c.frameSize()
	first := true
	for first || len(block) > 0 {
		n := min(len(block), max)
		frag, rest := block[:n], block[n:]
		if first {
			c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(rest) == 0})
			first = false
		} else {
			c.wfr.WriteContinuation(id, len(rest) == 0, frag)
		}
		block = rest
	}
}

// frameSize is the largest DATA or header fragment xlb sends.
func (c *h2Conn) frameSize() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return min(c.peerFrame, h2MaxFrame)
}

// appendData frames p as one DATA frame; wmu is held and p fits the
// windows and the frame size.
func (c *h2Conn) appendData(id uint32, p []byte, endStream bool) {
	var flags byte
	if endStream {
		flags = byte(http2.FlagDataEndStream)
	}
	n := len(p)
	c.out.b = append(c.out.b, byte(n>>16), byte(n>>8), byte(n), byte(http2.FrameData), flags,
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
	c.out.b = append(c.out.b, p...)
}

// replyHeadOnly answers a stream that never reached the pipeline (431)
// with a status and no body.
func (c *h2Conn) replyHeadOnly(id uint32, status int) {
	c.wmu.Lock()
	c.beginHeaders()
	c.field(":status", statusString(status))
	c.endHeaders(id, true)
	c.flushIfBig()
	c.wmu.Unlock()
}

var statusStrings [600]string

func init() {
	for i := 100; i < len(statusStrings); i++ {
		statusStrings[i] = strconv.Itoa(i)
	}
}

func statusString(code int) string {
	if code >= 100 && code < len(statusStrings) {
		return statusStrings[code]
	}
	return strconv.Itoa(code)
}

// errStreamGone ends an answer whose client reset the stream or closed the
// connection.
var errStreamGone = errors.New("the client reset the stream or closed the connection")

// errWindowStall ends an answer whose client kept its flow-control window
// shut for longer than the write timeout.
var errWindowStall = errors.New("the client kept its flow-control window closed for longer than idle_timeout")

// reserve waits until up to want bytes may be sent on stream s and takes
// them from both windows. Before it waits it writes what is batched: the
// client cannot open its window for data it has not seen. A client that
// keeps the window shut holds the stream for the write timeout at most.
func (s *h2Stream) reserve(want int) (int, error) {
	c := s.c
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if s.reset.Load() {
			c.mu.Unlock()
			return 0, errStreamGone
		}
		avail := min(s.sendWin, c.sendWin, int64(min(c.peerFrame, h2MaxFrame)))
		if avail > 0 {
			n := int(min(avail, int64(want)))
			s.sendWin -= int64(n)
			c.sendWin -= int64(n)
			s.waiting = false
			c.mu.Unlock()
			return n, nil
		}
		s.waiting = true
		c.mu.Unlock()
		if err := c.flushOut(); err != nil {
			return 0, err
		}
		if timer == nil {
			timer = time.NewTimer(c.writeTimeout())
		}
		select {
		case <-s.wake:
		case <-timer.C:
			return 0, errWindowStall
		}
	}
}

// writeData sends p as DATA frames within the flow-control windows; the
// last one ends the stream if end. It does not flush.
func (s *h2Stream) writeData(p []byte, end bool) error {
	c := s.c
	if len(p) == 0 {
		if !end {
			return nil
		}
		c.wmu.Lock()
		c.appendData(s.id, nil, true)
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	for len(p) > 0 {
		n, err := s.reserve(len(p))
		if err != nil {
			return err
		}
		c.wmu.Lock()
		c.appendData(s.id, p[:n], end && n == len(p))
		if len(c.out.b) >= h2FlushAt {
			err = c.flushLocked()
		} else {
			err = c.werr
		}
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}
