package l7

import (
	"bytes"
	"io"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/xlbproject/xlb/l7/h1"
)

// wbuf batches writes to a connection.
type wbuf struct {
	w  net.Conn
	b  []byte
	fd int // the socket, inside a RawConn session on it (which keeps it open); else -1
	// wt > 0 bounds a write that must wait for room (a client that stops
	// reading holds nothing past it); the deadline wdl is moved only when
	// less than half of wt is left, so most writes cost no timer update.
	wt  time.Duration
	wdl time.Time
}

// flush writes what is batched. Inside a session the first attempt is a
// raw non-blocking write (see readFD); what does not fit goes through the
// connection, whose poller waits for room.
func (w *wbuf) flush() error {
	if len(w.b) == 0 {
		return nil
	}
	b := w.b
	w.b = w.b[:0]
	if w.fd >= 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(w.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			b = b[n:]
		case syscall.EAGAIN, syscall.EINTR:
		default:
			return &net.OpError{Op: "write", Net: "tcp", Addr: w.w.RemoteAddr(), Err: os.NewSyscallError("write", e)}
		}
		if len(b) == 0 {
			return nil
		}
	}
	if w.wt > 0 {
		if now := time.Now(); w.wdl.Sub(now) < w.wt/2 {
			w.wdl = now.Add(w.wt)
			w.w.SetWriteDeadline(w.wdl)
		}
	}
	_, err := w.w.Write(b)
	return err
}

// copyBatch is how much a body copy gathers before writing.
const copyBatch = 32 << 10

// copyLength copies an n-byte body from src to w. It writes out whenever
// src has nothing more buffered, so that what arrived leaves at once.
// werr is a failure of w, rerr one of src.
func copyLength(w *wbuf, src *h1.Reader, n int64, fill func() error) (copied int64, werr, rerr error) {
	for n > 0 {
		b := src.Buffered()
		if len(b) == 0 {
			if werr = w.flush(); werr != nil {
				return
			}
			if rerr = fill(); rerr != nil {
				if rerr == io.EOF {
					rerr = io.ErrUnexpectedEOF
				}
				return
			}
			continue
		}
		take := int(min(int64(len(b)), n))
		w.b = append(w.b, b[:take]...)
		src.Discard(take)
		n -= int64(take)
		copied += int64(take)
		if len(w.b) >= copyBatch {
			if werr = w.flush(); werr != nil {
				return
			}
		}
	}
	return
}

// copyUntilClose copies a body delimited by the backend closing the
// connection, chunk-framed for the client.
func copyUntilClose(w *wbuf, src *h1.Reader, fill func() error) (copied int64, werr, rerr error) {
	for {
		b := src.Buffered()
		if len(b) > 0 {
			w.b = strconv.AppendInt(w.b, int64(len(b)), 16)
			w.b = append(w.b, "\r\n"...)
			w.b = append(w.b, b...)
			w.b = append(w.b, "\r\n"...)
			src.Discard(len(b))
			copied += int64(len(b))
		}
		if werr = w.flush(); werr != nil {
			return
		}
		if err := fill(); err != nil {
			if err == io.EOF {
				w.b = append(w.b, "0\r\n\r\n"...)
				return
			}
			rerr = err
			return
		}
	}
}

// maxChunkLine bounds a chunk-size or trailer line.
const maxChunkLine = 4 << 10

// copyChunked copies a chunked body, trailer fields included, re-framing
// each chunk; like copyLength it writes whenever src runs dry.
func copyChunked(w *wbuf, src *h1.Reader, fill func() error) (copied int64, werr, rerr error) {
	// line reads the next line; false once w or src failed (werr or rerr
	// says which).
	line := func() ([]byte, bool) {
		for {
			ln, n, err := h1.Line(src.Buffered())
			switch {
			case err == nil:
				src.Discard(n)
				return ln, true
			case err != h1.ErrIncomplete:
				rerr = err
				return nil, false
			case len(src.Buffered()) > maxChunkLine:
				rerr = malformedBody("chunk line too long")
				return nil, false
			}
			if werr = w.flush(); werr != nil {
				return nil, false
			}
			if rerr = fill(); rerr != nil {
				if rerr == io.EOF {
					rerr = io.ErrUnexpectedEOF
				}
				return nil, false
			}
		}
	}
	for {
		ln, ok := line()
		if !ok {
			return
		}
		size, err := h1.ChunkSize(ln)
		if err != nil {
			rerr = err
			return
		}
		if size == 0 {
			w.b = append(w.b, "0\r\n"...)
			for {
				if ln, ok = line(); !ok {
					return
				}
				if len(ln) == 0 {
					break
				}
				if validTrailer(ln) {
					w.b = append(w.b, ln...)
					w.b = append(w.b, "\r\n"...)
				}
			}
			w.b = append(w.b, "\r\n"...)
			return
		}
		w.b = strconv.AppendInt(w.b, size, 16)
		w.b = append(w.b, "\r\n"...)
		n, werr2, rerr2 := copyLength(w, src, size, fill)
		copied += n
		if werr, rerr = werr2, rerr2; werr != nil || rerr != nil {
			return
		}
		if ln, ok = line(); !ok {
			return
		}
		if len(ln) != 0 {
			rerr = malformedBody("malformed chunk: no line end after its data")
			return
		}
		w.b = append(w.b, "\r\n"...)
	}
}

// trailerName is a trailer's canonical name; gRPC's own, in every gRPC
// answer, without allocating.
func trailerName(name []byte) string {
	switch {
	case h1.EqualFold(name, "grpc-status"):
		return "Grpc-Status"
	case h1.EqualFold(name, "grpc-message"):
		return "Grpc-Message"
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// validTrailer accepts a trailer line that is a well-formed field; the
// others are dropped rather than passed on.
func validTrailer(ln []byte) bool {
	if len(ln) == 0 {
		return false
	}
	f, ok := h1.ParseField(ln)
	return ok && !f.Kind.Hop()
}

// bodyReader decodes a backend's response body, for a transport that
// writes the bytes itself (net/http) rather than re-framing them.
type bodyReader struct {
	pc        *upConn
	left      int64 // of the body; -1: chunked, or until the backend closes
	chunked   bool
	chunkLeft int64
	started   bool // a chunk was read: its data ends in a line end
	done      bool
	trailers  [][2]string
	// beforeFill, if set, runs before the reader waits for the backend:
	// a transport that batches its output writes it out there.
	beforeFill func() error
}

func (b *bodyReader) fill() error {
	if b.beforeFill != nil {
		if err := b.beforeFill(); err != nil {
			return err
		}
	}
	return b.pc.bodyFill()
}

// untilClose reports whether the body ends when the backend closes.
func (b *bodyReader) untilClose() bool { return !b.chunked && b.left < 0 }

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	switch {
	case b.chunked:
		if b.chunkLeft == 0 {
			if err := b.nextChunk(); err != nil {
				return 0, err
			}
			if b.done {
				return 0, io.EOF
			}
		}
		return b.data(p, &b.chunkLeft)
	case b.left >= 0:
		if b.left == 0 {
			b.done = true
			return 0, io.EOF
		}
		return b.data(p, &b.left)
	}
	src := b.pc.in
	if len(src.Buffered()) == 0 {
		if err := b.fill(); err != nil {
			b.done = err == io.EOF
			return 0, err
		}
	}
	n := copy(p, src.Buffered())
	src.Discard(n)
	return n, nil
}

// data reads at most *left bytes of body data.
func (b *bodyReader) data(p []byte, left *int64) (int, error) {
	src := b.pc.in
	if len(src.Buffered()) == 0 {
		if err := b.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	n := copy(p, src.Buffered())
	n = int(min(int64(n), *left))
	src.Discard(n)
	*left -= int64(n)
	return n, nil
}

// nextChunk reads up to the next chunk's data, or the trailer section
// after the last chunk.
func (b *bodyReader) nextChunk() error {
	if b.started {
		ln, err := b.line()
		if err != nil {
			return err
		}
		if len(ln) != 0 {
			return malformedBody("malformed chunk: no line end after its data")
		}
	}
	b.started = true
	ln, err := b.line()
	if err != nil {
		return err
	}
	size, err := h1.ChunkSize(ln)
	if err != nil {
		return err
	}
	if size > 0 {
		b.chunkLeft = size
		return nil
	}
	for {
		ln, err := b.line()
		if err != nil {
			return err
		}
		if len(ln) == 0 {
			b.done = true
			return nil
		}
		if validTrailer(ln) {
			name, value, _ := bytes.Cut(ln, []byte{':'})
			b.trailers = append(b.trailers, [2]string{trailerName(name), string(bytes.TrimSpace(value))})
		}
	}
}

// line reads the next line; it is valid until the next read.
func (b *bodyReader) line() ([]byte, error) {
	src := b.pc.in
	for {
		ln, n, err := h1.Line(src.Buffered())
		switch {
		case err == nil:
			src.Discard(n)
			return ln, nil
		case err != h1.ErrIncomplete:
			return nil, err
		case len(src.Buffered()) > maxChunkLine:
			return nil, malformedBody("chunk line too long")
		}
		if err := b.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// malformedBody is a request body whose framing is broken: the client's
// fault, answered 400 (not a client that went away).
func malformedBody(msg string) error { return &h1.Error{Status: 400, Msg: msg} }
