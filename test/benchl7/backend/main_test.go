package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// start serves a raw or std backend on two loopback ports and returns them.
func start(t *testing.T, server string) []*listener {
	t.Helper()
	var lns []*listener
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		lns = append(lns, newListener(ln, 64))
	}
	st := &stats{lns: lns}
	for _, l := range lns {
		if server == "raw" {
			go l.serveRaw(st)
		} else {
			go l.serveStd(st)
		}
	}
	return lns
}

func TestBackendHTTPClient(t *testing.T) {
	for _, server := range []string{"raw", "std"} {
		t.Run(server, func(t *testing.T) {
			lns := start(t, server)
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			get := func(url string) (int, string) {
				t.Helper()
				resp, err := c.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				return resp.StatusCode, string(b)
			}
			base := "http://" + lns[0].addr
			for range 3 {
				code, body := get(base + "/")
				if code != 200 || len(body) != 64 || !strings.HasPrefix(body, "backend "+lns[0].addr+" ") || !strings.HasSuffix(body, "\n") {
					t.Fatalf("GET /: %d %q", code, body)
				}
			}
			if code, body := get(base + "/health"); code != 200 || body != "ok\n" {
				t.Fatalf("GET /health: %d %q", code, body)
			}
			if code, _ := get(base + "/nope"); code != 404 {
				t.Fatalf("GET /nope: %d, want 404", code)
			}
			get("http://" + lns[1].addr + "/")
			code, body := get(base + "/stats")
			// One keep-alive connection per listener (MaxIdleConnsPerHost 1).
			want := lns[0].addr + " 3 1\n" + lns[1].addr + " 1 1\n"
			if code != 200 || body != want {
				t.Fatalf("GET /stats: %d %q, want %q", code, body, want)
			}
		})
	}
}

// TestRawKeepAlivePipelining sends pipelined requests on one connection and
// checks every answer, then Connection: close.
func TestRawKeepAlivePipelining(t *testing.T) {
	lns := start(t, "raw")
	c, err := net.Dial("tcp", lns[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	r := bufio.NewReader(c)
	for i, want := range []struct {
		code   int
		head   bool
		closed bool
	}{{200, false, false}, {200, false, false}, {200, true, false}, {200, false, true}} {
		method := "GET"
		if want.head {
			method = "HEAD"
		}
		req, _ := http.NewRequest(method, "/", nil)
		resp, err := http.ReadResponse(r, req)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want.code || resp.Close != want.closed {
			t.Fatalf("response %d: status %d close %v, want %d %v", i, resp.StatusCode, resp.Close, want.code, want.closed)
		}
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after Connection: close: read %d, %v; want EOF", n, err)
	}
	if got := lns[0].requests.Load(); got != 3 {
		t.Fatalf("requests for / counted: %d, want 3", got)
	}
	if got := lns[0].conns.Load(); got != 1 {
		t.Fatalf("connections counted: %d, want 1", got)
	}
}

func TestRawHTTP10ClosesAndRejectsChunked(t *testing.T) {
	lns := start(t, "raw")
	for _, tc := range []struct{ req, status string }{
		{"GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK"},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 501 Not Implemented"},
		{"GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request"},
	} {
		c, err := net.Dial("tcp", lns[0].addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, tc.req)
		all, err := io.ReadAll(c) // the server must close
		c.Close()
		if err != nil {
			t.Fatalf("%q: %v", tc.req, err)
		}
		if !strings.HasPrefix(string(all), tc.status+"\r\n") || !strings.Contains(string(all), "Connection: close\r\n") {
			t.Fatalf("%q: got %q, want %s and Connection: close", tc.req, all, tc.status)
		}
	}
}
