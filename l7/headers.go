package l7

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
)

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
