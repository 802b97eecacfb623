package h1

import (
	"errors"
	"io"
)

// ErrFull is returned by Fill when the buffer holds its maximum unread.
var ErrFull = errors.New("buffer full")

// Reader buffers a connection's input so that heads are parsed in place.
//
// While pinned (a parsed head is in use), Fill never moves bytes within the
// buffer: when it needs room it moves the unread bytes to a new buffer, so
// the head's slices stay valid.
type Reader struct {
	src    io.Reader
	buf    []byte
	r, w   int
	max    int
	pinned bool
	grown  bool // the buffer was replaced while pinned
}

// NewReader reads from src with a buffer of size bytes that may grow to max.
func NewReader(src io.Reader, size, max int) *Reader {
	size = min(size, max)
	if size < 1 {
		size, max = 1, 1
	}
	return &Reader{src: src, buf: make([]byte, size), max: max}
}

// Buffered returns the unread bytes.
func (b *Reader) Buffered() []byte { return b.buf[b.r:b.w] }

// Discard drops n unread bytes.
func (b *Reader) Discard(n int) {
	b.r += n
	if b.r == b.w && !b.pinned {
		b.r, b.w = 0, 0
	}
}

// Pin keeps the bytes of a parsed head in place until Unpin.
func (b *Reader) Pin() { b.pinned, b.grown = true, false }

// Unpin lets Fill compact the buffer again.
func (b *Reader) Unpin() {
	b.pinned = false
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
}

// Fill reads once from the source, after making room: it returns ErrFull
// when max unread bytes are buffered already.
func (b *Reader) Fill() error {
	if err := b.room(); err != nil {
		return err
	}
	n, err := b.src.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// room makes room after the unread bytes; ErrFull if max are unread.
func (b *Reader) room() error {
	if b.w == len(b.buf) {
		unread := b.w - b.r
		switch {
		case unread >= b.max:
			return ErrFull
		case b.r > 0 && (!b.pinned || b.grown) && (unread < len(b.buf)/2 || len(b.buf) >= b.max):
			copy(b.buf, b.buf[b.r:b.w])
		default:
			size := len(b.buf)
			if unread >= size/2 {
				size *= 2
			}
			nb := make([]byte, min(size, max(b.max, len(b.buf))))
			copy(nb, b.buf[b.r:b.w])
			b.buf = nb
			b.grown = b.pinned
		}
		b.r, b.w = 0, unread
	}
	return nil
}

// Reset points the reader at a new source with nothing buffered.
func (b *Reader) Reset(src io.Reader) {
	b.src = src
	b.r, b.w = 0, 0
	b.pinned, b.grown = false, false
}

// FillWith is Fill with a read function of the caller's (a raw system
// call, say) in place of the source. It returns the bytes read and whether
// they filled all the room there was: if not, the source had nothing more.
func (b *Reader) FillWith(read func([]byte) (int, error)) (n int, full bool, err error) {
	if err := b.room(); err != nil {
		return 0, false, err
	}
	p := b.buf[b.w:]
	n, err = read(p)
	if n > 0 {
		b.w += n
	}
	return max(n, 0), n == len(p), err
}
