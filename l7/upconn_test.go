package l7

import (
	"net"
	"testing"
	"time"
)

// TestOpenProbe: the peek that decides whether a kept-alive backend
// connection idle for over a second may be reused.
func TestOpenProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func() (client, server net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	// waitFor polls the probe: a FIN or data takes a moment to arrive.
	waitFor := func(c net.Conn, want bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); open(c) != want; {
			if time.Now().After(deadline) {
				t.Fatalf("open() = %v, want %v", !want, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	c, _ := dial()
	if !open(c) {
		t.Error("open() = false for a quiet live connection")
	}
	c, s := dial()
	s.Close() // the backend closed it while idle
	waitFor(c, false)
	c, s = dial()
	s.Write([]byte("HTTP/1.1 200 OK\r\n")) // stray bytes: the connection is out of step
	waitFor(c, false)
	c, _ = dial()
	if !open(c) {
		t.Error("probing consumed or broke a live connection")
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Errorf("write after probe: %v", err)
	}
}
