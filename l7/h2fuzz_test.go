package l7_test

// Fuzzing both HTTP/2 engines with frame sequences a peer may send: a
// client to the proxy's server side, a backend to its client side. What
// is checked is what a hostile or broken peer must never get: a panic
// (contain keeps the process up, but logs it: a bug), a connection that
// stops answering PING, a request that never ends, and another client
// left unserved. `go test -fuzz FuzzH2 ./l7/` explores; a plain `go test`
// runs the seeds below.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/xlbproject/xlb/internal/syncbuf"
	"github.com/xlbproject/xlb/l7"
)

// Frame types past HTTP/2's own (0-9) that fuzzFrames writes as valid
// header blocks, so that mutations explore streams' states and not only
// HPACK's error paths.
const (
	fuzzRequest  = 10 // a request's HEADERS (END_STREAM if flag 0x1), its method and path from the payload
	fuzzTrailers = 11 // HEADERS with END_STREAM, fields from the payload
	fuzzResponse = 12 // a response's HEADERS, its status from the payload (END_STREAM if flag 0x1)
	fuzzKinds    = 13
)

// fuzzFrames writes the frames data encodes, each as 4 bytes (type, flags,
// stream, payload length) and the payload: the stream byte's top bit
// names stream 0, else its low bits an odd stream from 1 to 15.
func fuzzFrames(fr *http2.Framer, data []byte) error {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for len(data) >= 4 {
		typ, flags, sb, n := data[0]%fuzzKinds, data[1], data[2], int(data[3])
		data = data[4:]
		n = min(n, len(data))
		payload := data[:n]
		data = data[n:]
		sid := uint32(sb&7)*2 + 1
		if sb&0x80 != 0 {
			sid = 0
		}
		block.Reset()
		var err error
		switch typ {
		case fuzzRequest:
			method := []string{"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"}[int(flags>>1)%6]
			path := "/" + strings.Map(func(r rune) rune {
				if r < 0x21 || r > 0x7e {
					return 'x'
				}
				return r
			}, string(payload))
			enc.WriteField(hpack.HeaderField{Name: ":method", Value: method})
			enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
			enc.WriteField(hpack.HeaderField{Name: ":authority", Value: "fuzz"})
			enc.WriteField(hpack.HeaderField{Name: ":path", Value: path})
			if flags&0x4 != 0 {
				enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
				enc.WriteField(hpack.HeaderField{Name: "te", Value: "trailers"})
			}
			if flags&0x8 != 0 {
				enc.WriteField(hpack.HeaderField{Name: "content-length", Value: fmt.Sprint(len(payload))})
			}
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: block.Bytes(),
				EndHeaders: flags&0x10 == 0, EndStream: flags&0x1 != 0})
		case fuzzTrailers:
			enc.WriteField(hpack.HeaderField{Name: "x-fuzz", Value: string(payload)})
			if flags&0x2 != 0 {
				enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: fmt.Sprint(flags >> 4)})
			}
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: block.Bytes(),
				EndHeaders: true, EndStream: true})
		case fuzzResponse:
			status := 200
			if len(payload) >= 2 {
				status = 100 + int(binary.BigEndian.Uint16(payload))%500
			}
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: fmt.Sprint(status)})
			if flags&0x4 != 0 {
				enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
			}
			if flags&0x8 != 0 {
				enc.WriteField(hpack.HeaderField{Name: "content-length", Value: fmt.Sprint(int(flags >> 4))})
			}
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: block.Bytes(),
				EndHeaders: flags&0x10 == 0, EndStream: flags&0x1 != 0})
		default:
			err = fr.WriteRawFrame(http2.FrameType(typ), http2.Flags(flags), sid, payload)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fuzzFrame is one frame of a seed, in fuzzFrames' encoding.
func fuzzFrame(typ, flags, stream byte, payload ...byte) []byte {
	return append([]byte{typ, flags, stream, byte(len(payload))}, payload...)
}

func fuzzSeed(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// panicked fails t if the proxy's log shows a recovered panic.
func panicked(t *testing.T, log *syncbuf.Buffer, data []byte) {
	t.Helper()
	if s := log.String(); strings.Contains(s, "recovered from a panic") {
		t.Fatalf("input %x: the proxy panicked:\n%s", data, s)
	}
}

// FuzzH2ServerFrames sends the proxy's HTTP/2 server what a client may:
// any frames after a valid preface and SETTINGS. The proxy must answer a
// PING sent after them (or close the connection) and go on serving.
func FuzzH2ServerFrames(f *testing.F) {
	const (
		get  = fuzzRequest
		data = byte(http2.FrameData)
	)
	f.Add(fuzzSeed(fuzzFrame(get, 0x1, 0, 'a')))
	f.Add(fuzzSeed(fuzzFrame(get, 0x2, 1), fuzzFrame(data, 0, 1, 'b', 'o', 'd', 'y'), fuzzFrame(data, 0x1, 1)))
	f.Add(fuzzSeed(fuzzFrame(get, 0x6, 0), fuzzFrame(data, 0, 0, 0, 0, 0, 0, 1, 'x'), fuzzFrame(fuzzTrailers, 0x2, 0)))
	f.Add(fuzzSeed(fuzzFrame(get, 0x11, 0, 'c'), fuzzFrame(byte(http2.FrameContinuation), 0x4, 0)))
	f.Add(fuzzSeed(fuzzFrame(get, 0x1, 0), fuzzFrame(byte(http2.FrameRSTStream), 0, 0, u32(8)...)))
	f.Add(fuzzSeed(fuzzFrame(get, 0x1, 1), fuzzFrame(get, 0x1, 0)))
	f.Add(fuzzSeed(fuzzFrame(byte(http2.FrameWindowUpdate), 0, 0x80, u32(0x7fffffff)...),
		fuzzFrame(byte(http2.FrameWindowUpdate), 0, 0x80, u32(1)...)))
	f.Add(fuzzSeed(fuzzFrame(byte(http2.FrameSettings), 0, 0x80, 0, 4, 0, 0, 0, 0, 0, 5, 0, 0, 0x40, 0)))
	f.Add(fuzzSeed(fuzzFrame(byte(http2.FramePriority), 0, 0, u32(1)[0], u32(1)[1], u32(1)[2], u32(1)[3], 16)))
	f.Add(fuzzSeed(fuzzFrame(get, 0x1, 0), fuzzFrame(byte(http2.FrameGoAway), 0, 0x80, append(u32(1), u32(0)...)...)))
	f.Add(fuzzSeed(fuzzFrame(byte(http2.FrameHeaders), 0x4, 0, 0xff, 0xff, 0xff, 0xff)))
	f.Add(fuzzSeed(fuzzFrame(get, 0x8, 0, 'l'), fuzzFrame(data, 0x1, 0, 'l', 'o', 'n', 'g', 'e', 'r')))

	be := newBackend(f, "be", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	var log syncbuf.Buffer
	listen := freePort(f)
	srv := must(l7.New(l7.Options{Logger: slog.New(slog.NewTextHandler(&log, nil)), StickySecret: make([]byte, 32)}))
	p := &proxy{srv: srv, listen: listen}
	p.apply(f, backendsYAML(be)+"timeouts: {connect: 1s, response_header: 2s}\n", "")
	f.Cleanup(func() { shutdownSoon(srv) })
	other := &http.Client{Timeout: 5 * time.Second}

	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, http2.ClientPreface)
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		fuzzFrames(fr, in)
		fr.WritePing(false, [8]byte{'f', 'u', 'z', 'z'})
		for {
			frame, err := fr.ReadFrame()
			if err != nil {
				// Closed by the proxy (a connection error), or a frame
				// too large for this reader: both end the connection.
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("input %x: no PING answer and no close in 10 s", in)
				}
				break
			}
			if p, ok := frame.(*http2.PingFrame); ok && p.IsAck() && p.Data == [8]byte{'f', 'u', 'z', 'z'} {
				break
			}
		}
		c.Close()
		panicked(t, &log, in)
		resp, err := other.Get("http://" + listen + "/after")
		if err != nil {
			t.Fatalf("input %x: another client: %v", in, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	})
}

// FuzzH2BackendFrames answers the proxy's HTTP/2 backend requests with
// any frames after a valid SETTINGS. Each client request must end, with
// an answer or a 5xx, within its response-header timeout and its reads,
// and the proxy must go on serving.
func FuzzH2BackendFrames(f *testing.F) {
	const resp = fuzzResponse
	data := byte(http2.FrameData)
	f.Add(fuzzSeed(fuzzFrame(resp, 0x1, 0, 0, 100)))
	f.Add(fuzzSeed(fuzzFrame(resp, 0, 0, 0, 100), fuzzFrame(data, 0x1, 0, 'o', 'k')))
	f.Add(fuzzSeed(fuzzFrame(resp, 0x8|0x20, 0, 0, 100), fuzzFrame(data, 0x1, 0, 'o', 'k', '!')))
	f.Add(fuzzSeed(fuzzFrame(resp, 0x4, 0, 0, 100), fuzzFrame(data, 0, 0, 0, 0, 0, 0, 1, 'x'), fuzzFrame(fuzzTrailers, 0x2, 0)))
	f.Add(fuzzSeed(fuzzFrame(resp, 0, 0, 0, 3), fuzzFrame(resp, 0x1, 0, 0, 100)))
	f.Add(fuzzSeed(fuzzFrame(resp, 0x10, 0, 0, 100), fuzzFrame(byte(http2.FrameContinuation), 0x4, 0)))
	f.Add(fuzzSeed(fuzzFrame(byte(http2.FrameRSTStream), 0, 0, u32(7)...)))
	f.Add(fuzzSeed(fuzzFrame(byte(http2.FrameGoAway), 0, 0x80, append(u32(0), u32(0)...)...)))
	f.Add(fuzzSeed(fuzzFrame(byte(http2.FramePushPromise), 0x4, 0, u32(2)...)))
	f.Add(fuzzSeed(fuzzFrame(byte(http2.FrameSettings), 0, 0x80, 0, 3, 0, 0, 0, 0), fuzzFrame(resp, 0x1, 0, 0, 100)))
	f.Add(fuzzSeed(fuzzFrame(resp, 0x1, 1, 0, 100), fuzzFrame(resp, 0x1, 0, 0, 100)))

	var cur atomic.Pointer[[]byte]
	ln := serveTCP(f, func(c net.Conn, _ int) { fuzzBackendServe(c, cur.Load()) })
	var log syncbuf.Buffer
	listen := freePort(f)
	srv := must(l7.New(l7.Options{Logger: slog.New(slog.NewTextHandler(&log, nil)), StickySecret: make([]byte, 32)}))
	p := &proxy{srv: srv, listen: listen}
	p.apply(f, "backend_protocol: h2c\nbackends:\n  - address: "+ln.Addr().String()+"\n"+
		"timeouts: {connect: 1s, response_header: 300ms}\nretries: {attempts: 0}\n", "read_header_timeout: 2s\nidle_timeout: 2s")
	f.Cleanup(func() { shutdownSoon(srv) })
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	f.Fuzz(func(t *testing.T, in []byte) {
		in = bytes.Clone(in)
		cur.Store(&in)
		resp, err := client.Get("http://" + listen + "/")
		if err != nil {
			// The proxy may cut a response it had begun (the backend
			// broke it mid-body); the connection must still end.
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("input %x: no answer in 10 s", in)
			}
		} else {
			_, rerr := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if ne, ok := rerr.(net.Error); ok && ne.Timeout() {
				t.Fatalf("input %x: the answer's body never ended", in)
			}
		}
		panicked(t, &log, in)
	})
}

// fuzzBackendServe reads the proxy's preface and SETTINGS, then answers
// with the frames in (nil: a plain 200), and reads until the proxy closes
// or 200 ms have passed.
func fuzzBackendServe(c net.Conn, in *[]byte) {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	// Wait for the request's HEADERS, so the frames answer stream 1.
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if s, ok := frame.(*http2.SettingsFrame); ok && !s.IsAck() {
			fr.WriteSettingsAck()
		}
		if _, ok := frame.(*http2.HeadersFrame); ok {
			break
		}
	}
	if in == nil {
		var block bytes.Buffer
		hpack.NewEncoder(&block).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: true})
	} else {
		fuzzFrames(fr, *in)
	}
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	io.Copy(io.Discard, c)
}

// shutdownSoon stops srv, cutting what is still in flight after a second.
func shutdownSoon(srv *l7.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}
