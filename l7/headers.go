package l7

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
)

// hopHeaders are meaningful for one connection only (RFC 9110 7.6.1); a proxy
// must not forward them.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders strips hop-by-hop headers, including those the
// Connection header names. The upgrade headers of a protocol switch are
// put back by the caller.
func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// upgradeType returns the protocol a request or response asks to switch to.
func upgradeType(h http.Header) string {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if strings.EqualFold(textproto.TrimString(name), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// setForwarded adds the client's address, scheme and host in both the
// X-Forwarded-* headers most backends read and RFC 7239 Forwarded.
func setForwarded(out, in *http.Request, clientIP string) {
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	if prior := out.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		out.Header.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+clientIP)
	} else {
		out.Header.Set("X-Forwarded-For", clientIP)
	}
	out.Header.Set("X-Forwarded-Proto", proto)
	out.Header.Set("X-Forwarded-Host", in.Host)
	node := clientIP
	if strings.Contains(node, ":") {
		node = `"[` + node + `]"`
	}
	fwd := "for=" + node + ";proto=" + proto
	if in.Host != "" {
		fwd += `;host="` + in.Host + `"`
	}
	if prior := out.Header.Values("Forwarded"); len(prior) > 0 {
		fwd = strings.Join(prior, ", ") + ", " + fwd
	}
	out.Header.Set("Forwarded", fwd)
}

// clientIP is the peer address of the request, without port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// requestID keeps the client's X-Request-ID when it sent a sane one, else
// makes one, so a request can be followed across the proxy and backends.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && printable(id) {
		return id
	}
	return string(appendRequestID(make([]byte, 0, 32)))
}

// Request ids are a random per-process prefix and a counter: unique, and
// made without a system call per request (crypto/rand costs one).
var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() [16]byte {
	var b [8]byte
	rand.Read(b[:])
	var h [16]byte
	hex.Encode(h[:], b[:])
	return h
}

// appendRequestID appends a new 32-character hexadecimal request id.
func appendRequestID(dst []byte) []byte {
	const digits = "0123456789abcdef"
	dst = append(dst, idPrefix[:]...)
	n := idCounter.Add(1)
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[n>>uint(shift)&0xf])
	}
	return dst
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
