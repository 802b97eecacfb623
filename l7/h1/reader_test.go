package h1

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// chunkSource hands out data at most chunk bytes per Read, like a socket
// that delivers a stream in small segments, then returns err (io.EOF
// when nil).
type chunkSource struct {
	data  []byte
	off   int
	chunk int
	err   error
	reads int
}

func (s *chunkSource) Read(p []byte) (int, error) {
	s.reads++
	if s.off == len(s.data) {
		if s.err != nil {
			return 0, s.err
		}
		return 0, io.EOF
	}
	n := min(len(p), s.chunk, len(s.data)-s.off)
	copy(p, s.data[s.off:s.off+n])
	s.off += n
	return n, nil
}

// pattern is a stream in which every window of a few bytes is distinct,
// so a byte that lands at the wrong offset is noticed.
func pattern(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// infinite never runs dry and never allocates, for tests that only care
// about buffer management.
type infinite struct{ next byte }

func (s *infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = s.next
		s.next++
	}
	return len(p), nil
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderOneByteAtATime(t *testing.T) {
	data := pattern(1000)
	src := &chunkSource{data: data, chunk: 1}
	r := NewReader(src, 8, 64)
	var got []byte
	for {
		err := r.Fill()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Fill after %d bytes: %v", len(got), err)
		}
		// Consume in batches, keeping a remainder, so that the buffer
		// both grows and gets compacted.
		buf := r.Buffered()
		if len(buf) >= 20 {
			n := len(buf) - 2
			got = append(got, buf[:n]...)
			r.Discard(n)
		}
	}
	got = append(got, r.Buffered()...)
	r.Discard(len(r.Buffered()))
	if !bytes.Equal(got, data) {
		t.Fatal("bytes out of the reader differ from the bytes put in")
	}
	if len(r.Buffered()) != 0 || r.r != 0 || r.w != 0 {
		t.Errorf("after draining: r=%d w=%d, want 0 0", r.r, r.w)
	}
}

// The way the proxy uses Reader with ParseRequest: parse, Fill on
// ErrIncomplete, Discard the head; pipelined requests arrive one byte
// at a time and straddle every read.
func TestReaderParsePipelined(t *testing.T) {
	heads := []string{wrkHead, browserHead, "GET /last HTTP/1.0\r\n\r\n"}
	src := &chunkSource{data: []byte(strings.Join(heads, "")), chunk: 1}
	r := NewReader(src, 16, 1024)
	var h Head
	for i := 0; i < len(heads); {
		err := ParseRequest(r.Buffered(), &h)
		if err == ErrIncomplete {
			if err := r.Fill(); err != nil {
				t.Fatalf("head %d: Fill: %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("head %d: %v", i, err)
		}
		if h.Len != len(heads[i]) {
			t.Fatalf("head %d: Len %d, want %d", i, h.Len, len(heads[i]))
		}
		r.Discard(h.Len)
		i++
	}
	if err := r.Fill(); err != io.EOF {
		t.Errorf("Fill at the end = %v, want io.EOF", err)
	}
}

func TestReaderGrowthAndErrFull(t *testing.T) {
	r := NewReader(&infinite{}, 4, 12)
	for i, wantLen := range []int{4, 8, 12} {
		if err := r.Fill(); err != nil {
			t.Fatalf("Fill %d: %v", i, err)
		}
		if len(r.buf) != wantLen || len(r.Buffered()) != wantLen {
			t.Fatalf("Fill %d: buffer %d, buffered %d, want %d", i, len(r.buf), len(r.Buffered()), wantLen)
		}
	}
	if err := r.Fill(); err != ErrFull {
		t.Fatalf("Fill with max bytes unread = %v, want ErrFull", err)
	}
	if len(r.buf) != 12 {
		t.Errorf("buffer grew to %d past max 12", len(r.buf))
	}
	want := bytes.Clone(r.Buffered())
	r.Discard(1)
	if err := r.Fill(); err != nil {
		t.Fatalf("Fill after Discard: %v", err)
	}
	got := r.Buffered()
	if len(got) != 12 || !bytes.Equal(got[:11], want[1:]) || got[11] != 12 {
		t.Errorf("after Discard(1) and Fill: %v, want %v then 12", got, want[1:])
	}
	if err := r.Fill(); err != ErrFull {
		t.Errorf("Fill = %v, want ErrFull", err)
	}
}

func TestReaderErrFullOneByteAtATime(t *testing.T) {
	data := pattern(100)
	r := NewReader(&chunkSource{data: data, chunk: 1}, 1, 40)
	var err error
	for range 1000 {
		if err = r.Fill(); err != nil {
			break
		}
	}
	if err != ErrFull {
		t.Fatalf("Fill = %v, want ErrFull", err)
	}
	if !bytes.Equal(r.Buffered(), data[:40]) {
		t.Errorf("Buffered = %v, want the first 40 bytes", r.Buffered())
	}
	if len(r.buf) > 40 {
		t.Errorf("buffer grew to %d past max 40", len(r.buf))
	}
}

// One Fill is one Read: the proxy relies on Fill not blocking for more
// once some bytes arrived.
func TestReaderFillReadsOnce(t *testing.T) {
	src := &chunkSource{data: pattern(100), chunk: 3}
	r := NewReader(src, 64, 64)
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	if src.reads != 1 || len(r.Buffered()) != 3 {
		t.Errorf("one Fill made %d reads and buffered %d bytes, want 1 and 3", src.reads, len(r.Buffered()))
	}
}

// The proxy parses a head, pins it, and then reads the body through the
// same Reader while the head's slices are still in use (to write the
// head to the backend, to log it). Those slices must not change however
// often Fill has to make room.
func TestReaderPinKeepsSlices(t *testing.T) {
	data := pattern(20000)
	src := &chunkSource{data: data, chunk: 7}
	r := NewReader(src, 32, 128)
	for len(r.Buffered()) < 20 {
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
	}
	head := r.Buffered()[:20]
	tail := r.Buffered()[20:] // taken before Pin, still unread
	want := bytes.Clone(head)
	wantTail := bytes.Clone(tail)
	r.Pin()
	r.Discard(len(head))

	consumed := len(head)
	var replaced, compacted int
	for fills := 0; ; fills++ {
		base, mustMove := &r.buf[0], r.w == len(r.buf)
		err := r.Fill()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Fill %d: %v", fills, err)
		}
		switch {
		case &r.buf[0] != base:
			replaced++
		case mustMove:
			compacted++
		}
		// Leave a few bytes unread each time, as a body reader that
		// waits for a whole chunk-size line does, so that later Fills
		// must move them.
		buf := r.Buffered()
		if n := len(buf) - 5; n > 0 {
			if !bytes.Equal(buf[:n], data[consumed:consumed+n]) {
				t.Fatalf("Fill %d: stream corrupted at offset %d", fills, consumed)
			}
			consumed += n
			r.Discard(n)
		}
		if !bytes.Equal(head, want) || !bytes.Equal(tail, wantTail) {
			t.Fatalf("Fill %d (%d replaced, %d compacted): pinned bytes changed", fills, replaced, compacted)
		}
	}
	// Both ways of making room must have happened for the test to mean
	// anything: replacing the pinned buffer, then compacting the new one.
	if replaced < 1 || compacted < 10 {
		t.Fatalf("buffer replaced %d times, compacted %d times: Pin not exercised", replaced, compacted)
	}
	if !bytes.Equal(r.Buffered(), data[consumed:]) {
		t.Error("stream corrupted at its end")
	}
	if consumed+len(r.Buffered()) != len(data) {
		t.Errorf("read %d bytes, want %d", consumed+len(r.Buffered()), len(data))
	}
}

// Until the buffer first has to move, a pinned Reader reads into the
// space after the unread bytes, in the same buffer.
func TestReaderPinnedAppendsInPlace(t *testing.T) {
	r := NewReader(&chunkSource{data: pattern(100), chunk: 10}, 64, 64)
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	head := r.Buffered()
	want := bytes.Clone(head)
	r.Pin()
	r.Discard(len(head))
	base := &r.buf[0]
	for range 5 {
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
		r.Discard(len(r.Buffered()))
	}
	if &r.buf[0] != base {
		t.Error("buffer replaced although it had room")
	}
	if r.r != 60 || r.w != 60 {
		t.Errorf("pinned Discard of everything reset the offsets: r=%d w=%d, want 60 60", r.r, r.w)
	}
	if !bytes.Equal(head, want) {
		t.Error("pinned bytes changed")
	}
}

// After Unpin, Fill compacts within the buffer again instead of
// allocating a new one.
func TestReaderUnpinResumesCompaction(t *testing.T) {
	r := NewReader(&infinite{}, 16, 16)
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	head := r.Buffered()[:12]
	want := bytes.Clone(head)
	r.Pin()
	r.Discard(12)
	base := &r.buf[0]
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	if &r.buf[0] == base {
		t.Fatal("a full pinned buffer was compacted in place")
	}
	if !bytes.Equal(head, want) {
		t.Fatal("pinned bytes changed")
	}

	r.Unpin()
	for r.w < len(r.buf) {
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
	}
	r.Discard(12)
	unread := bytes.Clone(r.Buffered())
	old := r.Buffered()
	base = &r.buf[0]
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	if &r.buf[0] != base {
		t.Fatal("unpinned Fill replaced the buffer instead of compacting")
	}
	if !bytes.Equal(r.Buffered()[:len(unread)], unread) {
		t.Error("compaction lost unread bytes")
	}
	if bytes.Equal(old, unread) {
		t.Error("bytes at the old offset unchanged: no compaction happened")
	}

	allocs := testing.AllocsPerRun(100, func() {
		for r.w < len(r.buf) {
			_ = r.Fill()
		}
		r.Discard(12)
		_ = r.Fill()
	})
	if allocs != 0 {
		t.Errorf("compacting Fill allocates %v times", allocs)
	}
}

func TestReaderDiscardAndUnpinReset(t *testing.T) {
	r := NewReader(strings.NewReader("abcdef"), 16, 16)
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	r.Discard(2)
	if string(r.Buffered()) != "cdef" {
		t.Fatalf("Buffered = %q", r.Buffered())
	}
	r.Discard(4)
	if r.r != 0 || r.w != 0 {
		t.Errorf("unpinned Discard of everything: r=%d w=%d, want 0 0", r.r, r.w)
	}

	r.Reset(strings.NewReader("ghij"))
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	r.Pin()
	r.Discard(4)
	if r.r != 4 || r.w != 4 {
		t.Errorf("pinned Discard of everything: r=%d w=%d, want 4 4", r.r, r.w)
	}
	r.Unpin()
	if r.r != 0 || r.w != 0 {
		t.Errorf("Unpin with nothing unread: r=%d w=%d, want 0 0", r.r, r.w)
	}
}

func TestReaderReset(t *testing.T) {
	r := NewReader(strings.NewReader("first"), 8, 8)
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	r.Discard(2)
	r.Pin()
	r.Reset(strings.NewReader("second"))
	if len(r.Buffered()) != 0 {
		t.Errorf("Buffered after Reset = %q", r.Buffered())
	}
	if r.pinned || r.grown {
		t.Error("Reset kept the pin")
	}
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	if string(r.Buffered()) != "second" {
		t.Errorf("Buffered = %q, want %q", r.Buffered(), "second")
	}
}

func TestReaderErrors(t *testing.T) {
	t.Run("EOF after data", func(t *testing.T) {
		r := NewReader(&chunkSource{data: []byte("abc"), chunk: 2}, 8, 8)
		for i, want := range []error{nil, nil, io.EOF, io.EOF} {
			if err := r.Fill(); err != want {
				t.Fatalf("Fill %d = %v, want %v", i, err, want)
			}
		}
		if string(r.Buffered()) != "abc" {
			t.Errorf("Buffered = %q", r.Buffered())
		}
	})
	t.Run("EOF with data", func(t *testing.T) {
		// Bytes that come with an error are kept and reported first.
		r := NewReader(iotest.DataErrReader(strings.NewReader("abc")), 8, 8)
		if err := r.Fill(); err != nil {
			t.Fatalf("Fill = %v, want nil with the data", err)
		}
		if string(r.Buffered()) != "abc" {
			t.Errorf("Buffered = %q", r.Buffered())
		}
		if err := r.Fill(); err != io.EOF {
			t.Errorf("Fill = %v, want io.EOF", err)
		}
	})
	t.Run("source error", func(t *testing.T) {
		boom := errors.New("connection reset")
		r := NewReader(&chunkSource{data: []byte("x"), chunk: 1, err: boom}, 8, 8)
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
		if err := r.Fill(); err != boom {
			t.Errorf("Fill = %v, want %v", err, boom)
		}
		if string(r.Buffered()) != "x" {
			t.Errorf("Buffered = %q", r.Buffered())
		}
	})
	t.Run("no progress", func(t *testing.T) {
		r := NewReader(zeroReader{}, 8, 8)
		if err := r.Fill(); err != io.ErrNoProgress {
			t.Errorf("Fill = %v, want io.ErrNoProgress", err)
		}
		if len(r.Buffered()) != 0 {
			t.Errorf("Buffered = %q", r.Buffered())
		}
	})
	t.Run("ErrFull before reading", func(t *testing.T) {
		src := &chunkSource{data: pattern(100), chunk: 100}
		r := NewReader(src, 8, 8)
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
		reads := src.reads
		if err := r.Fill(); err != ErrFull {
			t.Fatalf("Fill = %v, want ErrFull", err)
		}
		if src.reads != reads {
			t.Error("Fill read from the source although the buffer was full")
		}
	})
}

func TestReaderFillWith(t *testing.T) {
	data := pattern(100)
	off, calls := 0, 0
	// Like a non-blocking read(2): as much as is there, up to the room.
	read := func(avail int) func([]byte) (int, error) {
		return func(p []byte) (int, error) {
			calls++
			n := copy(p, data[off:off+min(avail, len(p))])
			off += n
			return n, nil
		}
	}
	r := NewReader(nil, 8, 16)

	n, full, err := r.FillWith(read(5))
	if n != 5 || full || err != nil {
		t.Fatalf("FillWith into 8 bytes of room, 5 available = %d, %v, %v; want 5, false, nil", n, full, err)
	}
	n, full, err = r.FillWith(read(100))
	if n != 3 || !full || err != nil {
		t.Fatalf("FillWith into 3 bytes of room = %d, %v, %v; want 3, true, nil", n, full, err)
	}
	// The room is made as by Fill: here the buffer grows to max.
	n, full, err = r.FillWith(read(100))
	if n != 8 || !full || err != nil || len(r.buf) != 16 {
		t.Fatalf("FillWith at a full buffer = %d, %v, %v (buffer %d); want 8, true, nil (16)", n, full, err, len(r.buf))
	}
	before := calls
	if n, full, err = r.FillWith(read(100)); n != 0 || full || err != ErrFull {
		t.Fatalf("FillWith with max unread = %d, %v, %v; want 0, false, ErrFull", n, full, err)
	}
	if calls != before {
		t.Error("FillWith called read although the buffer was full")
	}
	if !bytes.Equal(r.Buffered(), data[:16]) {
		t.Fatalf("Buffered = %v, want the first 16 bytes", r.Buffered())
	}

	// A failed system call reports -1; that must not move the offsets.
	r.Discard(16)
	eagain := errors.New("resource temporarily unavailable")
	n, full, err = r.FillWith(func([]byte) (int, error) { return -1, eagain })
	if n != 0 || full || err != eagain || len(r.Buffered()) != 0 {
		t.Fatalf("FillWith with a failing read = %d, %v, %v, %d buffered; want 0, false, the error, 0", n, full, err, len(r.Buffered()))
	}
	n, full, err = r.FillWith(func([]byte) (int, error) { return 0, nil })
	if n != 0 || full || err != nil {
		t.Fatalf("FillWith at end of stream = %d, %v, %v; want 0, false, nil", n, full, err)
	}
}

// FillWith shares Fill's way of making room, so Pin must hold for it too.
func TestReaderFillWithPin(t *testing.T) {
	data := pattern(5000)
	off := 0
	read := func(p []byte) (int, error) {
		n := copy(p, data[off:min(off+7, len(data))])
		off += n
		return n, nil
	}
	r := NewReader(nil, 16, 64)
	for len(r.Buffered()) < 10 {
		if _, _, err := r.FillWith(read); err != nil {
			t.Fatal(err)
		}
	}
	head := r.Buffered()[:10]
	want := bytes.Clone(head)
	r.Pin()
	r.Discard(10)
	consumed := 10
	for off < len(data) {
		if _, _, err := r.FillWith(read); err != nil {
			t.Fatal(err)
		}
		buf := r.Buffered()
		if n := len(buf) - 3; n > 0 {
			if !bytes.Equal(buf[:n], data[consumed:consumed+n]) {
				t.Fatalf("stream corrupted at offset %d", consumed)
			}
			consumed += n
			r.Discard(n)
		}
		if !bytes.Equal(head, want) {
			t.Fatalf("pinned bytes changed after %d bytes", consumed)
		}
	}
}

// Steady state with a buffer at its maximum size: a Fill that has to make
// room while more than half the buffer is unread allocates a new buffer
// of the same size, although moving the unread bytes to the front would
// do (the reader is not pinned). On a backend connection (4 KiB growing
// to 64 KiB) that is a 64 KiB allocation per such Fill.
func TestBugReaderFillAtMaxAllocates(t *testing.T) {

	r := NewReader(&infinite{}, 8, 8)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(r.src)
		_ = r.Fill() // 8 bytes: buffer full
		r.Discard(3) // 5 unread, more than half
		_ = r.Fill()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Fill at max size, want 0", allocs)
	}
}
