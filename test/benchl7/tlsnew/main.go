// Command tlsnew is the load client of bench-l7's https-new scenario: every
// request on a new TCP connection with a full TLS handshake, which wrk cannot
// do (with -H 'Connection: close' wrk reconnects, but OpenSSL keeps the
// session in the reused SSL object and resumes it: 2 full handshakes in 3,000
// requests against a Go server, measured).
//
// Each of -c workers loops until -d has passed: dial, TLS 1.3 handshake (ALPN
// http/1.1 only, X25519 only, no session cache, so no resumption is possible;
// the certificate is not verified, as wrk does not), one
// "GET PATH HTTP/1.1" with "Connection: close", read the head and a
// Content-Length body, close. Latency is from the dial to the last byte of
// the body.
//
// The report has wrk's shape (the lines bench-l7.sh reads: "N requests in",
// "Requests/sec:", the latency percentiles, "Socket errors:", "Non-2xx or
// 3xx responses:") plus "Handshakes: full N, resumed M" and the negotiated
// parameters. -check makes one request, prints them and exits non-zero on any
// failure or a protocol other than TLS 1.3 with http/1.1.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	conns := flag.Int("c", 64, "concurrent connections (workers), each one request at a time")
	dur := flag.Duration("d", 10*time.Second, "how long to run")
	timeout := flag.Duration("timeout", 5*time.Second, "per request, from the dial to the end of the body")
	serverName := flag.String("servername", "", "SNI (default: the URL's host)")
	check := flag.Bool("check", false, "one request: print the negotiated TLS parameters and the body, fail unless TLS 1.3 + http/1.1 + 2xx")
	flag.Parse()
	if flag.NArg() != 1 || *conns < 1 {
		fmt.Fprintln(os.Stderr, "usage: tlsnew [-c N] [-d DURATION] [-servername NAME] [-check] https://HOST:PORT/PATH")
		os.Exit(2)
	}
	t, err := newTarget(flag.Arg(0), *serverName)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tlsnew: %v\n", err)
		os.Exit(2)
	}
	if *check {
		if err := t.check(os.Stdout, *timeout); err != nil {
			fmt.Fprintf(os.Stderr, "tlsnew: %v\n", err)
			os.Exit(1)
		}
		return
	}
	r := t.run(*conns, *dur, *timeout)
	r.print(os.Stdout, t, *conns, *dur)
}

// target is where to connect and what to send.
type target struct {
	url  string
	addr string
	req  []byte
	cfg  *tls.Config
}

func newTarget(raw, serverName string) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%s: want https://HOST:PORT/PATH", raw)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	if serverName == "" {
		serverName = u.Hostname()
	}
	path := u.RequestURI()
	return &target{
		url:  raw,
		addr: addr,
		req:  fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tlsnew\r\nConnection: close\r\n\r\n", path, u.Host),
		cfg: &tls.Config{
			ServerName:         serverName,
			InsecureSkipVerify: true, // as wrk; the handshake signature is still checked
			MinVersion:         tls.VersionTLS13,
			MaxVersion:         tls.VersionTLS13,
			NextProtos:         []string{"http/1.1"},
			// X25519 only: Go would offer X25519MLKEM768 first, which Go
			// servers accept and OpenSSL 3.0 (nginx, haproxy) does not, so
			// the proxies would do different work.
			CurvePreferences: []tls.CurveID{tls.X25519},
			// ClientSessionCache nil: no tickets are kept, every handshake is full.
		},
	}, nil
}

// errKind classifies a failed request as wrk does.
type errKind int

const (
	errConnect errKind = iota // dial or handshake
	errRead
	errWrite
	errTimeout
	errKinds
)

// exchange is one request on a new connection.
type exchange struct {
	status  int
	resumed bool
	state   tls.ConnectionState
	body    []byte
}

// do makes one request on a new connection; br and body are reused buffers.
func (t *target) do(br *bufio.Reader, body []byte, timeout time.Duration) (exchange, errKind, error) {
	var x exchange
	deadline := time.Now().Add(timeout)
	raw, err := net.DialTimeout("tcp", t.addr, timeout)
	if err != nil {
		return x, kind(err, errConnect), err
	}
	c := tls.Client(raw, t.cfg)
	defer c.Close()
	c.SetDeadline(deadline)
	if err := c.Handshake(); err != nil {
		return x, kind(err, errConnect), fmt.Errorf("handshake: %w", err)
	}
	x.state = c.ConnectionState()
	x.resumed = x.state.DidResume
	if _, err := c.Write(t.req); err != nil {
		return x, kind(err, errWrite), err
	}
	br.Reset(c)
	n, status, err := readHead(br)
	if err != nil {
		return x, kind(err, errRead), err
	}
	x.status = status
	if n > len(body) {
		body = make([]byte, n)
	}
	if _, err := io.ReadFull(br, body[:n]); err != nil {
		return x, kind(err, errRead), fmt.Errorf("body: %w", err)
	}
	x.body = body[:n]
	return x, 0, nil
}

func kind(err error, k errKind) errKind {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	return k
}

// readHead reads a response head and returns its Content-Length and status.
// Every answer of the benchmark's backends has a Content-Length.
func readHead(br *bufio.Reader) (length, status int, err error) {
	length = -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, 0, fmt.Errorf("head: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if first {
			// HTTP/1.1 200 OK
			if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
				return 0, 0, fmt.Errorf("status line %q", line)
			}
			if status, err = strconv.Atoi(string(line[9:12])); err != nil {
				return 0, 0, fmt.Errorf("status line %q", line)
			}
			continue
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("content-length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil || length < 0 {
				return 0, 0, fmt.Errorf("content-length %q", value)
			}
		}
	}
	if length < 0 {
		return 0, 0, errors.New("response without content-length")
	}
	return length, status, nil
}

// result is what all workers saw.
type result struct {
	elapsed  time.Duration
	lat      []time.Duration // of the completed requests
	bytes    int64
	non2xx   int64
	errs     [errKinds]int64
	full     int64
	resumed  int64
	state    tls.ConnectionState // of one connection
	firstErr error
}

func (t *target) run(conns int, dur, timeout time.Duration) *result {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		r       = &result{}
		stateOK atomic.Bool
	)
	start := time.Now()
	end := start.Add(dur)
	for range conns {
		wg.Go(func() {
			var (
				lat           []time.Duration
				bytes, non2xx int64
				errs          [errKinds]int64
				full, resumed int64
				firstErr      error
				br            = bufio.NewReaderSize(nil, 4096)
				body          = make([]byte, 4096)
			)
			for time.Now().Before(end) {
				t0 := time.Now()
				x, k, err := t.do(br, body, timeout)
				if x.state.HandshakeComplete {
					if x.resumed {
						resumed++
					} else {
						full++
					}
					if stateOK.CompareAndSwap(false, true) {
						mu.Lock()
						r.state = x.state
						mu.Unlock()
					}
				}
				if err != nil {
					errs[k]++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
				bytes += int64(len(x.body))
				if x.status < 200 || x.status > 399 {
					non2xx++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			r.lat = append(r.lat, lat...)
			r.bytes += bytes
			r.non2xx += non2xx
			for i := range errs {
				r.errs[i] += errs[i]
			}
			r.full += full
			r.resumed += resumed
			if r.firstErr == nil {
				r.firstErr = firstErr
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	slices.Sort(r.lat)
	return r
}

func (r *result) print(w io.Writer, t *target, conns int, dur time.Duration) {
	fmt.Fprintf(w, "Running %v test @ %s\n", dur, t.url)
	fmt.Fprintf(w, "  %d connections at a time, each request on a new connection with a full TLS handshake\n", conns)
	fmt.Fprintf(w, "  TLS: %s\n", describe(r.state))
	fmt.Fprintf(w, "  Latency Distribution\n")
	for _, p := range []int{50, 75, 90, 99} {
		fmt.Fprintf(w, "     %d%%  %8.3fms\n", p, ms(percentile(r.lat, p)))
	}
	fmt.Fprintf(w, "  %d requests in %.2fs, %d bytes of bodies read\n", len(r.lat), r.elapsed.Seconds(), r.bytes)
	e := r.errs
	if e[errConnect]+e[errRead]+e[errWrite]+e[errTimeout] > 0 {
		fmt.Fprintf(w, "  Socket errors: connect %d, read %d, write %d, timeout %d\n", e[errConnect], e[errRead], e[errWrite], e[errTimeout])
		fmt.Fprintf(w, "  first error: %v\n", r.firstErr)
	}
	if r.non2xx > 0 {
		fmt.Fprintf(w, "  Non-2xx or 3xx responses: %d\n", r.non2xx)
	}
	fmt.Fprintf(w, "Handshakes: full %d, resumed %d\n", r.full, r.resumed)
	fmt.Fprintf(w, "Requests/sec: %.2f\n", float64(len(r.lat))/r.elapsed.Seconds())
}

// percentile of sorted durations, nearest rank; 0 for none.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func describe(s tls.ConnectionState) string {
	if !s.HandshakeComplete {
		return "no handshake completed"
	}
	group := "?"
	if s.CurveID != 0 {
		group = s.CurveID.String()
	}
	alpn := s.NegotiatedProtocol
	if alpn == "" {
		alpn = "none"
	}
	return fmt.Sprintf("%s %s %s, ALPN %s, resumed %t", tls.VersionName(s.Version), tls.CipherSuiteName(s.CipherSuite), group, alpn, s.DidResume)
}

func (t *target) check(w io.Writer, timeout time.Duration) error {
	x, _, err := t.do(bufio.NewReader(nil), make([]byte, 4096), timeout)
	if err != nil {
		return fmt.Errorf("%s: %w", t.url, err)
	}
	fmt.Fprintf(w, "TLS: %s\n", describe(x.state))
	fmt.Fprintf(w, "status %d, body %q\n", x.status, x.body)
	switch {
	case x.state.Version != tls.VersionTLS13:
		return fmt.Errorf("%s: negotiated %s, want TLS 1.3", t.url, tls.VersionName(x.state.Version))
	case x.state.NegotiatedProtocol != "" && x.state.NegotiatedProtocol != "http/1.1":
		return fmt.Errorf("%s: ALPN %q, want http/1.1", t.url, x.state.NegotiatedProtocol)
	case x.status < 200 || x.status > 299:
		return fmt.Errorf("%s: status %d", t.url, x.status)
	}
	return nil
}
