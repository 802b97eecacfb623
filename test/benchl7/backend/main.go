// Command backend is the origin server of `make bench-l7`: one process that
// listens on several addresses and answers, over HTTP/1.1 with keep-alive,
//
//	GET /        200 with a small fixed body (64 bytes by default) naming the listener
//	GET /health  200 "ok\n"
//	GET /stats   200, one line per listener: "ADDRESS REQUESTS CONNECTIONS": the
//	             requests for / so far, and the connections that carried at
//	             least one of them (health checks' connections do not count),
//	             which tells whether a proxy reuses its upstream connections
//	anything else 404
//
// It must never be the bottleneck of the benchmark, so the default server is a
// small hand-written HTTP/1.1 loop (precomputed responses, no allocation per
// request, pipelining batched into one write); -server std uses net/http
// instead, for comparison. Request bodies with Content-Length are read and
// discarded; chunked request bodies are refused (501), which no proxy sends
// for a GET.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// maxHeaderBytes bounds a request's head (request line and headers).
const maxHeaderBytes = 64 << 10

func main() {
	listen := flag.String("listen", "127.0.0.1:19001,127.0.0.1:19002,127.0.0.1:19003", "comma-separated listen addresses")
	bodyBytes := flag.Int("body-bytes", 64, "size of the body of GET / (at least 32)")
	server := flag.String("server", "raw", "raw (hand-written HTTP/1.1 loop) or std (net/http)")
	flag.Parse()
	if *bodyBytes < 32 || *bodyBytes > 1<<20 {
		fmt.Fprintln(os.Stderr, "backend: -body-bytes must be between 32 and 1048576")
		os.Exit(2)
	}
	var lns []*listener
	for _, addr := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", strings.TrimSpace(addr))
		if err != nil {
			fmt.Fprintf(os.Stderr, "backend: %v\n", err)
			os.Exit(1)
		}
		lns = append(lns, newListener(ln, *bodyBytes))
	}
	st := &stats{lns: lns}
	errs := make(chan error, len(lns))
	for _, l := range lns {
		switch *server {
		case "raw":
			go func() { errs <- l.serveRaw(st) }()
		case "std":
			go func() { errs <- l.serveStd(st) }()
		default:
			fmt.Fprintf(os.Stderr, "backend: -server %q: want raw or std\n", *server)
			os.Exit(2)
		}
	}
	fmt.Fprintf(os.Stderr, "backend: serving on %s (%s server, %d-byte body)\n", *listen, *server, *bodyBytes)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sigs:
	case err := <-errs:
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		os.Exit(1)
	}
}

// listener is one listening address with its precomputed answers.
type listener struct {
	ln       net.Listener
	addr     string
	body     []byte
	ok       []byte // full response to GET /
	okHead   []byte // the same without the body, for HEAD /
	requests atomic.Uint64
	conns    atomic.Uint64
	_        [56]byte // keep the counters of different listeners off one cache line
}

func newListener(ln net.Listener, bodyBytes int) *listener {
	addr := ln.Addr().String()
	body := bytes.Repeat([]byte{'.'}, bodyBytes)
	copy(body, "backend "+addr+" ")
	body[len(body)-1] = '\n'
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(body))
	return &listener{
		ln: ln, addr: addr, body: body,
		ok:     append([]byte(head), body...),
		okHead: []byte(head),
	}
}

type stats struct{ lns []*listener }

func (s *stats) text() []byte {
	var b bytes.Buffer
	for _, l := range s.lns {
		fmt.Fprintf(&b, "%s %d %d\n", l.addr, l.requests.Load(), l.conns.Load())
	}
	return b.Bytes()
}

var (
	healthResp   = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
	notFoundResp = []byte("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n")
)

func (l *listener) serveRaw(st *stats) error {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		go l.conn(c, st)
	}
}

// conn serves one client connection until it closes, errs or asks to close.
func (l *listener) conn(c net.Conn, st *stats) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 16<<10)
	w := bufio.NewWriterSize(c, 16<<10)
	counted := false // this connection is in l.conns
	for {
		req, err := readRequest(r)
		if err != nil {
			if status := err.status(); status != 0 {
				fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status, http.StatusText(status))
				w.Flush()
			}
			return
		}
		var resp []byte
		switch {
		case req.path == "/" && (req.method == "GET" || req.method == "HEAD"):
			l.requests.Add(1)
			if !counted {
				l.conns.Add(1)
				counted = true
			}
			resp = l.ok
			if req.method == "HEAD" {
				resp = l.okHead
			}
		case req.path == "/health":
			resp = healthResp
		case req.path == "/stats":
			body := st.text()
			resp = append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(body)), body...)
		default:
			resp = notFoundResp
		}
		if req.close {
			// Same answer with "Connection: close" before the blank line.
			i := bytes.Index(resp, []byte("\r\n\r\n"))
			w.Write(resp[:i+2])
			w.WriteString("Connection: close\r\n")
			w.Write(resp[i+2:])
			w.Flush()
			return
		}
		w.Write(resp)
		if r.Buffered() == 0 { // no pipelined request waiting: send now
			if w.Flush() != nil {
				return
			}
		}
	}
}

type request struct {
	method, path string
	close        bool // the client asked to close after the response
}

// reqError is a request that cannot be served; status is what to answer (0:
// close silently, e.g. on EOF).
type reqError struct {
	code int
	err  error
}

func (e *reqError) status() int { return e.code }

// readRequest reads one request head and discards its body.
func readRequest(r *bufio.Reader) (request, *reqError) {
	var req request
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return req, &reqError{code: 414}
		}
		return req, &reqError{err: err}
	}
	line = trimEOL(line)
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1 {
		return req, &reqError{code: 400}
	}
	// The method and path are compared and switched on, not kept: avoid
	// allocating for the common ones.
	req.method = internMethod(line[:sp1])
	req.path = internPath(line[sp1+1 : sp2])
	proto := line[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		req.close = true // unless Connection: keep-alive
	default:
		return req, &reqError{code: 505}
	}
	total := len(line)
	var contentLength int64
	for {
		h, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return req, &reqError{code: 431}
			}
			return req, &reqError{err: err}
		}
		total += len(h)
		if total > maxHeaderBytes {
			return req, &reqError{code: 431}
		}
		h = trimEOL(h)
		if len(h) == 0 {
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon <= 0 {
			return req, &reqError{code: 400}
		}
		name, value := h[:colon], bytes.TrimSpace(h[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return req, &reqError{code: 400}
			}
			contentLength = n
		case asciiEqualFold(name, "transfer-encoding"):
			return req, &reqError{code: 501}
		case asciiEqualFold(name, "connection"):
			for _, tok := range bytes.Split(value, []byte{','}) {
				tok = bytes.TrimSpace(tok)
				if asciiEqualFold(tok, "close") {
					req.close = true
				} else if asciiEqualFold(tok, "keep-alive") {
					req.close = false
				}
			}
		}
	}
	if contentLength > 0 {
		if _, err := r.Discard(int(contentLength)); err != nil {
			return req, &reqError{err: err}
		}
	}
	return req, nil
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

func internMethod(b []byte) string {
	switch string(b) { // no allocation: the compiler turns this into comparisons
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	}
	return string(b)
}

func internPath(b []byte) string {
	switch string(b) {
	case "/":
		return "/"
	case "/health":
		return "/health"
	case "/stats":
		return "/stats"
	}
	return string(b)
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

type connKey struct{}

// serveStd serves the same answers with net/http.
func (l *listener) serveStd(st *stats) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) { w.Write(st.text()) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		l.requests.Add(1)
		if counted := r.Context().Value(connKey{}).(*bool); !*counted {
			l.conns.Add(1)
			*counted = true
		}
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{strconv.Itoa(len(l.body))}
		w.Write(l.body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		// HTTP/1.1 serves a connection's requests one after another, so a
		// plain flag per connection is enough.
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, new(bool))
		}}
	err := srv.Serve(l.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
