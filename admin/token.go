package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
)

// maxTokenFile bounds what is read from the token file.
const maxTokenFile = 64 << 10

// tokenFile is the bearer token, re-read when its file changes (another
// mtime, size or inode), so an operator rotates it without a restart.
type tokenFile struct {
	path string

	mu   sync.Mutex
	info os.FileInfo // of the file the token was read from
	sum  [sha256.Size]byte
	warn string // the last reload problem logged, to log it once
}

func loadTokenFile(path string) (*tokenFile, error) {
	t := &tokenFile{path: path}
	info, sum, err := readToken(path)
	if err != nil {
		return nil, err
	}
	t.info, t.sum = info, sum
	return t, nil
}

// readToken reads and hashes the token: comparing fixed-size hashes in
// constant time does not leak the token's length either.
func readToken(path string) (os.FileInfo, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return nil, sum, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, sum, fmt.Errorf("token file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, sum, fmt.Errorf("token file %s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, sum, fmt.Errorf("token file %s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return nil, sum, fmt.Errorf("token file %s: larger than %d bytes", path, maxTokenFile)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) == 0 {
		return nil, sum, fmt.Errorf("token file %s: empty", path)
	}
	return info, sha256.Sum256(tok), nil
}

// current returns the token's hash, re-reading the file if it changed. A file
// that became unreadable or empty keeps the last good token (a half-written
// rotation must neither open the API nor lock the operator out); the
// returned warning says so, once per problem.
func (t *tokenFile) current() (sum [sha256.Size]byte, warning string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	info, err := os.Stat(t.path)
	if err == nil && sameFile(t.info, info) {
		return t.sum, ""
	}
	if err == nil {
		var s [sha256.Size]byte
		info, s, err = readToken(t.path)
		if err == nil {
			t.info, t.sum, t.warn = info, s, ""
			return t.sum, ""
		}
	}
	msg := err.Error()
	if msg == t.warn {
		return t.sum, ""
	}
	t.warn = msg
	return t.sum, msg + " (keeping the previous token)"
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// check reports whether r carries the token.
func (t *tokenFile) check(r *http.Request) (ok bool, warning string) {
	want, warning := t.current()
	got, found := bearer(r)
	if !found {
		return false, warning
	}
	have := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(have[:], want[:]) == 1, warning
}

// bearer extracts the token of an "Authorization: Bearer <token>" header
// (the scheme is case-insensitive, RFC 7235).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
