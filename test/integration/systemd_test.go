//go:build linux

package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket listens where a Type=notify unit's NOTIFY_SOCKET points,
// as systemd does, and sets the variable for the xlbd the test starts.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func nextNotification(t *testing.T, c *net.UnixConn, within time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no notification from xlbd within %v: %v", within, err)
	}
	return string(b[:n])
}

// TestSystemdNotify: xlbd run as a Type=notify unit tells systemd READY=1
// once it serves (its /healthz answers 200 by then), RELOADING=1 and
// READY=1 around a reload, SIGHUP's or the API's (with the rejection in
// STATUS when the file is invalid), and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	buildBinaries(t)
	notes := notifySocket(t)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(be.Close)
	listen, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	cfg := fmt.Sprintf("admin: {listen: %q}\nl7: {drain_timeout: 1s}\nservices:\n  - name: web\n    layer: 7\n    listen: %q\n    backends: [{address: %q}]\n",
		admin, listen, hostport(be))
	os.WriteFile(path, []byte(cfg), 0o644)
	cmd := startXlbd(t, path, admin)
	if got := nextNotification(t, notes, 5*time.Second); !strings.HasPrefix(got, "READY=1\nSTATUS=serving; admin API on "+admin) {
		t.Fatalf("first notification %q, want READY=1 with the admin address", got)
	}
	// systemd may send a reload's SIGHUP the moment READY=1 is out: xlbd
	// already handles it then (its default action would end the process).
	cmd.Process.Signal(syscall.SIGHUP)
	if got := nextNotification(t, notes, 5*time.Second); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("after a SIGHUP right after READY=1: %q, want RELOADING=1", got)
	}
	if got := nextNotification(t, notes, 5*time.Second); !strings.HasPrefix(got, "READY=1\nSTATUS=serving; reloaded ") {
		t.Fatalf("after a reload: %q", got)
	}

	os.WriteFile(path, []byte(cfg+"    scheduler: fastest\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	if got := nextNotification(t, notes, 5*time.Second); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("after SIGHUP: %q, want RELOADING=1", got)
	}
	if got := nextNotification(t, notes, 5*time.Second); !strings.HasPrefix(got, "READY=1\nSTATUS=serving the previous config; the reload was rejected: ") ||
		!strings.Contains(got, "scheduler") {
		t.Fatalf("after a rejected reload: %q", got)
	}

	// A reload through the API (xlbctl reload) is told as a SIGHUP's is,
	// so that systemctl status does not keep the rejection above.
	os.WriteFile(path, []byte(cfg), 0o644)
	resp, err := http.Post("http://"+admin+"/api/v1/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("API reload: %s", resp.Status)
	}
	if got := nextNotification(t, notes, 5*time.Second); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("after an API reload: %q, want RELOADING=1", got)
	}
	if got := nextNotification(t, notes, 5*time.Second); !strings.HasPrefix(got, "READY=1\nSTATUS=serving; reloaded ") {
		t.Fatalf("after an API reload: %q", got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if got := nextNotification(t, notes, 5*time.Second); got != "STOPPING=1" {
		t.Fatalf("after SIGTERM: %q, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("xlbd after SIGTERM: %v", err)
	}
}

// TestAccessLogReopenOnUSR1: logrotate's way with xlbd: move the access
// log away, send SIGUSR1 (as to NGINX), and xlbd writes a new file at
// the path; the moved one keeps the requests before.
func TestAccessLogReopenOnUSR1(t *testing.T) {
	buildBinaries(t)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(be.Close)
	listen, admin := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	path, logPath := filepath.Join(dir, "xlb.yaml"), filepath.Join(dir, "access.log")
	os.WriteFile(path, []byte(fmt.Sprintf("admin: {listen: %q}\nservices:\n  - name: web\n    layer: 7\n    listen: %q\n    backends: [{address: %q}]\n",
		admin, listen, hostport(be))), 0o644)
	cmd := startXlbd(t, path, admin, "-access-log", logPath)
	get := func(p string) {
		resp, err := http.Get("http://" + listen + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	lines := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	get("/before")
	waitFor(t, "the first request logged", 5*time.Second, func() bool { return strings.Contains(lines(logPath), `"path":"/before"`) })
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, "a new access log", 5*time.Second, func() bool { _, err := os.Stat(logPath); return err == nil })
	get("/after")
	waitFor(t, "the second request in the new file", 5*time.Second, func() bool { return strings.Contains(lines(logPath), `"path":"/after"`) })
	if old := lines(logPath + ".1"); !strings.Contains(old, `"path":"/before"`) || strings.Contains(old, `"path":"/after"`) {
		t.Errorf("the rotated file: %q", old)
	}
	if exited(cmd.Process.Pid) {
		t.Error("xlbd ended on SIGUSR1")
	}
}
