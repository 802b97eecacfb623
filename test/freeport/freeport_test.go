package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddrNeverRepeats: many addresses in a row are distinct, below the
// ephemeral range, and free; and a bind of port 0 never gets one of them.
func TestAddrNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		a := Addr(t)
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
		_, p, _ := net.SplitHostPort(a)
		if n, _ := strconv.Atoi(p); n >= ephemeralLow() {
			t.Fatalf("%s is in the ephemeral range (from %d)", a, ephemeralLow())
		}
	}
	ln, err := net.Listen("tcp", Addr(t))
	if err != nil {
		t.Fatalf("the address is not free: %v", err)
	}
	ln.Close()
	for range 200 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		if seen[a] {
			t.Fatalf("a bind of port 0 got %s, which Addr handed out", a)
		}
	}
}
