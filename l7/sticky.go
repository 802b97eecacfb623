package l7

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
)

// stickySecretFile keeps the sticky-cookie key across restarts, so clients
// keep their backend when xlbd is upgraded.
const stickySecretFile = "/var/lib/xlb/sticky.key"

// loadStickySecret reads the key, creating it on first use; when it cannot
// be stored, a random key serves this process only.
func loadStickySecret(path string) []byte {
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b[:32]
	}
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			f.Write(key)
			f.Close()
		} else if errors.Is(err, os.ErrExist) {
			if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
				return b[:32]
			}
		}
	}
	return key
}

// stickyToken names a backend in a cookie without revealing its address:
// an HMAC of service and address, so a client can neither read nor forge a
// pointer to a backend of its choosing.
func stickyToken(secret []byte, service, addr string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(service))
	m.Write([]byte{0})
	m.Write([]byte(addr))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}
