// Package freeport hands tests ports that nothing listens on, for configs
// that must name a port before the program under test (xlbd, a router,
// dnsmasq) binds it.
//
// A port from a bind to port 0 is the kernel's to give again: Linux hands a
// just-closed one to the next bind of port 0 (here 256 repeats in 2000
// binds), so a service's port and the admin API's, or a port named in a
// config and a test backend started after, could be one and the same, and
// the test fails one run in a few hundred. Addr picks ports below the
// kernel's ephemeral range instead, which binds of port 0 never get, and
// never the same one twice in a process.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is where the ports Addr picks start.
const lowest = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Addr returns "127.0.0.1:PORT" for a TCP port free now, outside the
// ephemeral range, and not returned before in this process.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t, "127.0.0.1", false)))
}

// Port returns a port of host free now for TCP (and for UDP too, with
// udp: a DNS server's), outside the ephemeral range, and not returned
// before in this process.
func Port(t testing.TB, host string, udp bool) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	top := ephemeralLow()
	if top-lowest < 1000 {
		t.Fatalf("freeport: the ephemeral range starts at %d, leaving too few ports below it", top)
	}
	for range 1000 {
		port := lowest + rand.IntN(top-lowest)
		if given[port] {
			continue
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // some other program's
		}
		ln.Close()
		if udp {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				continue
			}
			pc.Close()
		}
		given[port] = true
		return port
	}
	t.Fatal("freeport: no free port in 1000 tries")
	return 0
}

// ephemeralLow is the first port of net.ipv4.ip_local_port_range (Linux's
// default, 32768, without it).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
