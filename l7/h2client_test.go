package l7_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/xlbproject/xlb/l7"
)

// rawH2 is an HTTP/2 backend written frame by frame, so that a test can
// make it do what well-behaved servers do only under load or on shutdown:
// refuse streams, send GOAWAY with streams in flight, hold a stream limit.
// It answers each request, once its body has come, with 200 and the body
// echoed, after delay; decide may refuse the stream or send GOAWAY first.
type rawH2 struct {
	ln       net.Listener
	settings []http2.Setting
	delay    time.Duration
	// decide is asked for every request: its connection's number (from 1)
	// and the request's number on it (from 1).
	decide func(conn, req int) rawAction
	// shrinkAt > 0: once that many body bytes came on a connection, the
	// backend lowers SETTINGS_INITIAL_WINDOW_SIZE to 0 (the stream windows
	// in use go negative, RFC 9113 6.9.2) and gives no window back.
	shrinkAt int
	// closeAfter > 0: a connection answers that many requests, then sends
	// GOAWAY naming the last one and closes its side at once, reading on
	// until xlb closes (NGINX at keepalive_requests, with its lingering
	// close); what comes after is not processed.
	closeAfter int
	// settingsDelay: a new connection's SETTINGS come this late (a slow
	// handshake).
	settingsDelay time.Duration

	conns    atomic.Int64
	answered atomic.Int64
	refused  atomic.Int64
	maxOpen  atomic.Int64 // the most streams open at once on one connection
	resets   atomic.Int64 // RST_STREAM PROTOCOL_ERROR frames xlb sent
}

type rawAction int

const (
	rawAnswer     rawAction = iota
	rawRefuse               // RST_STREAM REFUSED_STREAM
	rawGoAway               // GOAWAY naming the stream before this one as the last processed, then nothing
	rawInterimEnd           // a 103 answer that ends the stream (malformed: a 1xx cannot)
	rawOverLength           // the echo, under a content-length of half of it (malformed)
	rawDrop                 // close the connection without an answer (a killed backend)
)

func newRawH2(t *testing.T, r *rawH2) *rawH2 {
	t.Helper()
	if r.decide == nil {
		r.decide = func(int, int) rawAction { return rawAnswer }
	}
	r.ln = serveTCP(t, func(c net.Conn, n int) {
		r.conns.Add(1)
		r.serve(c, n)
	})
	return r
}

func (r *rawH2) addr() string { return r.ln.Addr().String() }

func (r *rawH2) serve(c net.Conn, connNo int) {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	var wmu sync.Mutex
	fr := http2.NewFramer(c, c)
	write := func(f func()) { wmu.Lock(); f(); wmu.Unlock() }
	time.Sleep(r.settingsDelay)
	write(func() { fr.WriteSettings(r.settings...) })
	type stream struct {
		body []byte
	}
	streams := map[uint32]*stream{}
	var open atomic.Int64
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	dec := hpack.NewDecoder(4096, nil)
	reqs, got, shrunk := 0, 0, false
	answer := func(id uint32, body []byte, length int) {
		time.Sleep(r.delay)
		r.answered.Add(1)
		wmu.Lock()
		defer wmu.Unlock()
		// Counted closed before its last frame goes: xlb may open the
		// next stream the moment it reads it, and the reader counting
		// that one must not find this one still open.
		open.Add(-1)
		hbuf.Reset()
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		enc.WriteField(hpack.HeaderField{Name: "content-length", Value: fmt.Sprint(length)})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true, EndStream: len(body) == 0})
		for len(body) > 0 { // the tests' bodies fit xlb's windows
			n := min(len(body), 16<<10)
			fr.WriteData(id, n == len(body), body[:n])
			body = body[n:]
		}
	}
	start := func(id uint32) {
		reqs++
		if r.closeAfter > 0 {
			switch {
			case reqs < r.closeAfter:
				answer(id, streams[id].body, len(streams[id].body)) // before the close
			case reqs == r.closeAfter:
				answer(id, streams[id].body, len(streams[id].body))
				write(func() { fr.WriteGoAway(id, http2.ErrCodeNo, nil) })
				c.(*net.TCPConn).CloseWrite()
			default:
				open.Add(-1) // past the GOAWAY: not processed
			}
			return
		}
		switch r.decide(connNo, reqs) {
		case rawRefuse:
			r.refused.Add(1)
			open.Add(-1)
			write(func() { fr.WriteRSTStream(id, http2.ErrCodeRefusedStream) })
		case rawDrop:
			open.Add(-1)
			c.Close()
		case rawOverLength:
			go answer(id, streams[id].body, len(streams[id].body)/2)
		case rawInterimEnd:
			open.Add(-1)
			write(func() {
				hbuf.Reset()
				enc.WriteField(hpack.HeaderField{Name: ":status", Value: "103"})
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true, EndStream: true})
			})
		case rawGoAway:
			open.Add(-1)
			last := uint32(0)
			if id > 2 {
				last = id - 2
			}
			write(func() { fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
		default:
			go answer(id, streams[id].body, len(streams[id].body))
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				write(func() { fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				write(func() { fr.WritePing(true, f.Data) })
			}
		case *http2.HeadersFrame:
			if _, err := dec.DecodeFull(f.HeaderBlockFragment()); err != nil {
				return
			}
			streams[f.StreamID] = &stream{}
			if n := open.Add(1); n > r.maxOpen.Load() {
				r.maxOpen.Store(n)
			}
			if f.StreamEnded() {
				start(f.StreamID)
			}
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeProtocol {
				r.resets.Add(1)
			}
		case *http2.DataFrame:
			s := streams[f.StreamID]
			if s == nil {
				continue
			}
			s.body = append(s.body, f.Data()...)
			got += len(f.Data())
			if r.shrinkAt > 0 {
				if got >= r.shrinkAt && !shrunk {
					shrunk = true
					write(func() { fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}) })
				}
			} else if n := uint32(len(f.Data())); n > 0 {
				write(func() { fr.WriteWindowUpdate(0, n); fr.WriteWindowUpdate(f.StreamID, n) })
			}
			if f.StreamEnded() {
				start(f.StreamID)
			}
		}
	}
}

func postEcho(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp.StatusCode, got
}

// TestH2BackendStreamLimit: a backend's SETTINGS_MAX_CONCURRENT_STREAMS
// holds from its connection's first call on: xlb opens more connections
// rather than exceed it, and every request is answered.
func TestH2BackendStreamLimit(t *testing.T) {
	b := newRawH2(t, &rawH2{settings: []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 1}}, delay: 20 * time.Millisecond})
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\nretries: {attempts: 0}\n", "")
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprint("request ", i))
			if code, got := postEcho(t, p.url+"/", body); code == 200 && bytes.Equal(got, body) {
				ok.Add(1)
			} else {
				t.Errorf("request %d: %d %q", i, code, got)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 8 || b.maxOpen.Load() != 1 || b.refused.Load() != 0 {
		t.Errorf("%d of 8 answered; at most %d streams open on a connection (limit 1), %d refused", ok.Load(), b.maxOpen.Load(), b.refused.Load())
	}
	if b.conns.Load() < 2 {
		t.Errorf("%d connections for 8 concurrent requests with one stream each", b.conns.Load())
	}
}

// TestH2BackendBurstDialsAlongside: a burst larger than one connection
// carries (the backend's stream limit) dials its connections alongside,
// not one after the other: with a limit of 1, 200ms before each new
// connection's SETTINGS and 200ms per answer, 4 concurrent requests on one
// open connection get 3 new connections at once and take about 400ms. One
// dial at a time, the waiters shared one new connection and then the first
// one freed: 3 connections, 600ms.
func TestH2BackendBurstDialsAlongside(t *testing.T) {
	const handshake, answer = 200 * time.Millisecond, 200 * time.Millisecond
	b := newRawH2(t, &rawH2{settings: []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 1}}, settingsDelay: handshake, delay: answer})
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\nretries: {attempts: 0}\n", "")
	// The first connection tells xlb the limit.
	if code, _ := postEcho(t, p.url+"/", []byte("first")); code != 200 {
		t.Fatalf("first request: %d", code)
	}
	// It stays open and idle: the burst below takes it, and needs 3 more.
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprint("request ", i))
			if code, got := postEcho(t, p.url+"/", body); code != 200 || !bytes.Equal(got, body) {
				t.Errorf("request %d: %d %q", i, code, got)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if b.maxOpen.Load() != 1 || b.conns.Load() != 4 {
		t.Errorf("at most %d streams open on a connection (limit 1), %d connections; want 1 and 4 (3 dialled at once)", b.maxOpen.Load(), b.conns.Load())
	}
	t.Logf("4 concurrent requests needing 3 new connections took %v (%v a handshake, %v an answer)", took, handshake, answer)
}

// TestH2BackendRefusedStreamsSentAgain: a stream the backend refuses
// (REFUSED_STREAM) or leaves unprocessed by its GOAWAY was never acted on,
// so even a POST is sent again, its body whole, and succeeds; with one
// backend and no retries configured, this is the client's own doing.
func TestH2BackendRefusedStreamsSentAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action rawAction
	}{{"REFUSED_STREAM", rawRefuse}, {"GOAWAY", rawGoAway}} {
		t.Run(tc.name, func(t *testing.T) {
			// The first request fails so.
			b := newRawH2(t, &rawH2{decide: func(conn, req int) rawAction {
				if conn == 1 && req == 1 {
					return tc.action
				}
				return rawAnswer
			}})
			p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\nretries: {attempts: 0}\n", "")
			for i := range 3 {
				body := bytes.Repeat([]byte{byte('a' + i)}, 1<<10)
				if code, got := postEcho(t, p.url+"/", body); code != 200 || !bytes.Equal(got, body) {
					t.Fatalf("POST %d: %d, %d bytes back (want %d)", i, code, len(got), len(body))
				}
			}
			if b.answered.Load() != 3 {
				t.Errorf("the backend answered %d requests, want 3", b.answered.Load())
			}
			if tc.action == rawGoAway && b.conns.Load() != 2 {
				t.Errorf("%d connections: the one that sent GOAWAY and one more expected", b.conns.Load())
			}
		})
	}
}

// TestH2BackendClosesAfterGoAway: a backend that ends each connection
// after a few requests with GOAWAY and a close at once (NGINX's
// keepalive_requests) loses no request: a stream past the GOAWAY's last,
// or never written because the connection failed first, is sent again,
// even when xlb's own write met the close before its reader the GOAWAY.
func TestH2BackendClosesAfterGoAway(t *testing.T) {
	b := newRawH2(t, &rawH2{closeAfter: 3})
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\nretries: {attempts: 0}\n", "")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				body := []byte(fmt.Sprint("client ", w, " request ", i))
				code, got := postEcho(t, p.url+"/", body)
				if code == 200 && !bytes.Equal(got, body) {
					code = -1
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if codes[200] != 400 {
		t.Errorf("400 requests over connections that end after 3: %v (-1: wrong body), want all 200; %d connections", codes, b.conns.Load())
	}
}

// TestH2BackendInterimAnswerThatEnds: a 1xx answer that ends its stream
// is malformed (no final answer can follow): 502 at once, not a wait for
// the final answer until the response-header timeout and a 504 that
// blames a slow backend.
func TestH2BackendInterimAnswerThatEnds(t *testing.T) {
	b := newRawH2(t, &rawH2{decide: func(int, int) rawAction { return rawInterimEnd }})
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\nretries: {attempts: 0}\ntimeouts: {response_header: 5s}\n", "")
	start := time.Now()
	code, _ := postEcho(t, p.url+"/", []byte("x"))
	if took := time.Since(start); code != 502 || took > 2*time.Second {
		t.Errorf("a 103 that ends the stream: %d after %v, want 502 at once", code, took.Round(time.Millisecond))
	}
}

// TestH2BackendHoldsAnUploadsWindowShut: a backend that takes a streamed
// upload's first window and never gives more (answering PINGs all along)
// is timed out as one that takes no bytes would be: 504, its fault, not a
// request held until its client gives up and logged as the client's.
func TestH2BackendHoldsAnUploadsWindowShut(t *testing.T) {
	t.Cleanup(l7.SetH2SendStall(300 * time.Millisecond))
	b := newRawH2(t, &rawH2{shrinkAt: 1 << 30}) // gives no window back, ever
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\nretries: {attempts: 0}\n", "")
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go func() {
		chunk := bytes.Repeat([]byte("u"), 16<<10)
		for range 8 { // 128 KiB: past the backend's 64 KiB window
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	resp, err := http.Post(p.url+"/", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != 504 || took > 3*time.Second {
		t.Errorf("an upload whose backend keeps its window shut: %d after %v, want 504 after about 300ms", resp.StatusCode, took.Round(time.Millisecond))
	}
	if st, _ := p.srv.Status("web"); len(st) != 1 || st[0].Failures != 1 {
		t.Errorf("passive health: %+v, want the backend's failure counted", st)
	}
}

// TestH2BackendSendsPastItsLength: DATA past the answer's content-length
// is malformed: the client gets what the length announced, whole, and no
// more (NGINX drops the rest too, and logs it).
func TestH2BackendSendsPastItsLength(t *testing.T) {
	b := newRawH2(t, &rawH2{decide: func(int, int) rawAction { return rawOverLength }})
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\n", "")
	body := []byte("0123456789")
	if code, got := postEcho(t, p.url+"/", body); code != 200 || string(got) != "01234" {
		t.Errorf("an answer of 10 bytes under content-length 5: %d %q, want 200 \"01234\"", code, got)
	}
	// The connection still serves (the stream was reset, not the connection).
	if code, got := postEcho(t, p.url+"/", []byte("ab")); code != 200 || string(got) != "a" {
		t.Errorf("the next request: %d %q", code, got)
	}
	for deadline := time.Now().Add(2 * time.Second); b.resets.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := b.resets.Load(); n != 2 {
		t.Errorf("%d streams reset with PROTOCOL_ERROR, want both malformed ones", n)
	}
	if b.conns.Load() != 1 {
		t.Errorf("%d connections, want the one kept", b.conns.Load())
	}
}

// TestGRPCCallWhoseBodyCameLateIsRetried: a gRPC unary call whose message
// came in a DATA frame after its HEADERS (so xlb streamed it to the
// backend) and whose backend died before answering is sent again, its
// body whole, as one whose body came with its head is: whether a small
// body streams depends only on how the client's frames were read.
func TestGRPCCallWhoseBodyCameLateIsRetried(t *testing.T) {
	dead := newRawH2(t, &rawH2{decide: func(int, int) rawAction { return rawDrop }})
	live := newRawH2(t, &rawH2{})
	_, c, base := startH2Proxy(t, false, addrYAML(dead.addr(), live.addr())+"backend_protocol: h2c\npassive_health: {max_fails: 0}\nretries: {attempts: 1, on: [grpc_unavailable]}\n", "")
	for i := range 4 {
		msg := []byte(fmt.Sprint("\x00\x00\x00\x00\x05call", i))
		pr, pw := io.Pipe()
		go func() {
			time.Sleep(50 * time.Millisecond) // the DATA after the HEADERS
			pw.Write(msg)
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", base+"/grpc.health.v1.Health/Check", pr)
		req.Header.Set("Content-Type", "application/grpc")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, msg) || resp.Header.Get("Grpc-Status") != "" {
			t.Errorf("call %d: %d %q grpc-status %q, want the live backend's echo", i, resp.StatusCode, got, resp.Header.Get("Grpc-Status"))
		}
	}
	if dead.conns.Load() == 0 {
		t.Error("no call went to the dead backend first: the test proved nothing")
	}
}

// TestH2BackendWindowBelowZero: a backend that lowers its initial window
// while a streamed body has used the stream's (the window goes below
// zero, RFC 9113 6.9.2) still gets the body's end: an empty END_STREAM
// frame needs no window. It once panicked xlbd.
func TestH2BackendWindowBelowZero(t *testing.T) {
	b := newRawH2(t, &rawH2{shrinkAt: 65535})
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\n", "")
	body := bytes.Repeat([]byte("w"), 65535)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(body)
		time.Sleep(300 * time.Millisecond) // streamed: the end comes later
		pw.Close()
	}()
	resp, err := http.Post(p.url+"/", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Errorf("streamed upload to a backend whose window went below zero: %d, %d bytes back (want 200, %d)", resp.StatusCode, len(got), len(body))
	}
}

// TestH2BackendLargeBodies: bodies larger than every flow-control window
// on the way go through whole both ways, and a client that reads slowly
// holds the backend back (the stream's window) instead of making xlb
// buffer the answer.
func TestH2BackendLargeBodies(t *testing.T) {
	var served atomic.Int64 // bytes the backend got written
	b := newH2CBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			chunk := pattern(64 << 10)
			for range 1024 { // 64 MiB
				n, err := w.Write(chunk)
				served.Add(int64(n))
				if err != nil {
					return
				}
			}
			return
		}
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\n", "")

	upload := pattern(4 << 20)
	sum := sha256.Sum256(upload)
	if code, got := postEcho(t, p.url+"/up", upload); code != 200 || string(got) != fmt.Sprintf("%d %x", len(upload), sum) {
		t.Errorf("a 4 MiB upload: %d %q", code, got)
	}

	// A client with a small receive buffer (no autotuning) that reads
	// nothing for a while: what the backend could write is bounded by the
	// windows (xlb's stream window, the sockets' buffers on the way), not
	// by the answer's size.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
	}}
	c, err := d.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(500 * time.Millisecond)
	if got := served.Load(); got >= 16<<20 {
		t.Errorf("the backend wrote %d bytes to a client that reads nothing", got)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	want := sha256.New()
	for range 1024 {
		want.Write(pattern(64 << 10))
	}
	if err != nil || n != 64<<20 || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Errorf("a 64 MiB answer: %d bytes, %v; intact %v", n, err, bytes.Equal(h.Sum(nil), want.Sum(nil)))
	}
}

// TestH2BackendConnectionsReused: calls in sequence and in parallel share
// a few connections (one while it has room), and the backend sees HTTP/2.
func TestH2BackendConnectionsReused(t *testing.T) {
	b := newH2CBackend(t, "a", nil)
	p := startProxy(t, addrYAML(b.addr())+"backend_protocol: h2c\n", "")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				resp, body := get(t, p.url+"/", nil)
				if resp.StatusCode != 200 || strings.TrimSpace(body) != "a" {
					t.Errorf("%d %q", resp.StatusCode, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.h2.Load() != 100 || b.conns.Load() != 1 {
		t.Errorf("%d of 100 requests over HTTP/2 on %d connections, want all on 1", b.h2.Load(), b.conns.Load())
	}
}

// TestH2BackendDeadOrClosedToStreams: a backend that accepts connections
// but never speaks HTTP/2 costs the calls waiting for it one connect
// timeout together, not one each (they share the dial and its failure);
// one whose SETTINGS allow no streams fails its calls as a connect error
// would, without piling up connections.
func TestH2BackendDeadOrClosedToStreams(t *testing.T) {
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			held = append(held, c) // open, silent
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mute.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	p := startProxy(t, addrYAML(mute.Addr().String())+"backend_protocol: h2c\ntimeouts: {connect: 300ms}\nretries: {attempts: 0}\n", "")
	start := time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := get(t, p.url+"/", nil)
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("a call to a backend that never speaks HTTP/2: %d, want 502", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	t.Logf("elapsed %v, %d connections", time.Since(start), accepted.Load())
	if el := time.Since(start); el > 1500*time.Millisecond || accepted.Load() > 3 {
		t.Errorf("10 calls to a silent backend took %v and %d connections; want about one connect timeout (300ms) and one connection", el, accepted.Load())
	}

	none := newRawH2(t, &rawH2{settings: []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 0}}})
	p = startProxy(t, addrYAML(none.addr())+"backend_protocol: h2c\nretries: {attempts: 0}\n", "")
	for i := range 5 {
		// After the first failure passive health may eject it: 503.
		resp, _ := get(t, p.url+"/", nil)
		if c := resp.StatusCode; c != http.StatusBadGateway && (i == 0 || c != http.StatusServiceUnavailable) {
			t.Errorf("call %d to a backend that allows no streams: %d, want 502", i, c)
		}
	}
	if none.answered.Load() != 0 || none.conns.Load() > 5 {
		t.Errorf("a backend that allows no streams: %d answered, %d connections", none.answered.Load(), none.conns.Load())
	}
}
