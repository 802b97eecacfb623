package l7

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
)

// TestStdServersRetireWithTheirConnections: a reload that changes the
// limits gives later hand-offs a new net/http server (one that does not
// change them makes none), and the old one goes once the connection it
// serves closes, so reloads do not pile servers up.
func TestStdServersRetireWithTheirConnections(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(be.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	s, err := New(Options{StickySecret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	apply := func(maxHeader int) {
		t.Helper()
		yaml := fmt.Sprintf("l7:\n  max_header_bytes: %d\nservices:\n  - name: web\n    layer: 7\n    listen: %q\n    backends: [{address: %q}]\n",
			maxHeader, listen, be.Listener.Addr().String())
		cfg, err := config.Parse("test.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
	servers := func() int {
		l := s.listeners[listen]
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.stds)
	}

	apply(8192)
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n") // absolute-form: net/http's
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	apply(8192)
	if n := servers(); n != 1 {
		t.Errorf("after a reload with the same limits: %d net/http servers, want 1", n)
	}
	apply(4096)
	if n := servers(); n != 2 {
		t.Errorf("after a reload that changed the limits, with a connection on the old server: %d net/http servers, want 2", n)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for servers() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := servers(); n != 1 {
		t.Errorf("once the old server's connection closed: %d net/http servers, want 1", n)
	}
}
