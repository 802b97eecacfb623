//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestDetachWithdrawsFirst: xlbd -detach asks the running xlbd (at the
// config's admin.listen, with its token) to withdraw every VIP before it
// removes the program, goes on when no xlbd runs or it has no bgp, and
// refuses to detach when the withdrawal is refused.
func TestDetachWithdrawsFirst(t *testing.T) {
	var (
		mu     sync.Mutex
		got    []string
		status = http.StatusOK
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %s %s %s", r.Method, r.URL.Path, r.Header.Get("Authorization"), body))
		code := status
		mu.Unlock()
		w.WriteHeader(code)
		fmt.Fprint(w, `{"error": "canned"}`)
	}))
	defer srv.Close()

	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(listen string) string {
		p := filepath.Join(dir, "xlb.yaml")
		cfg := fmt.Sprintf("admin: {listen: %q, token_file: %q}\nxdp: {pin_path: %q}\n", listen, token, filepath.Join(dir, "pins"))
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	detach := func(cfg string) (int, string) {
		var out, errb bytes.Buffer
		code := run([]string{"-config", cfg, "-detach", "-withdraw-wait", "10ms"}, &out, &errb)
		return code, out.String() + errb.String()
	}

	cfg := writeConfig(strings.TrimPrefix(srv.URL, "http://"))
	code, out := detach(cfg)
	if code != 0 || !strings.Contains(out, "withdrew every VIP") || !strings.Contains(out, "detached") {
		t.Fatalf("detach: exit %d, %q", code, out)
	}
	mu.Lock()
	if want := `POST /api/v1/bgp/announce Bearer s3cret {"enabled":false}`; len(got) != 1 || got[0] != want {
		t.Errorf("requests %q, want [%q]", got, want)
	}
	mu.Unlock()

	set := func(code int) { mu.Lock(); status = code; mu.Unlock() }
	set(http.StatusConflict) // xlbd without bgp
	if code, out := detach(cfg); code != 0 || !strings.Contains(out, "detached") {
		t.Errorf("xlbd without bgp: exit %d, %q", code, out)
	}
	set(http.StatusUnauthorized)
	if code, out := detach(cfg); code != 1 || !strings.Contains(out, "withdraw the VIPs first") || strings.Contains(out, "detached") {
		t.Errorf("a refused withdrawal: exit %d, %q (want no detach)", code, out)
	}

	// No xlbd listening: nothing announces, detach goes on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	if code, out := detach(writeConfig(free)); code != 0 || !strings.Contains(out, "detached") {
		t.Errorf("no xlbd: exit %d, %q", code, out)
	}

	// An interface that has gone (which -check, the start and a reload
	// refuse) does not stop the detach.
	gone := filepath.Join(dir, "gone.yaml")
	if err := os.WriteFile(gone, []byte(fmt.Sprintf("admin: {listen: %q}\nxdp: {interfaces: [xlb-none0], pin_path: %q}\n", free, filepath.Join(dir, "pins"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := detach(gone); code != 0 || !strings.Contains(out, "detached") {
		t.Errorf("a config naming an interface that has gone: exit %d, %q", code, out)
	}
}
