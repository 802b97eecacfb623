//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/syncbuf"
)

// startXlbd runs xlbd on the config at path, with its admin API on admin,
// and waits until /healthz answers 200. It is killed at cleanup, and its
// log is printed when the test failed.
func startXlbd(t *testing.T, path, admin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd, _ := startXlbdFrom(t, bins.xlbd, path, admin, args...)
	return cmd
}

// startXlbdFrom is startXlbd with the binary bin, and its log.
func startXlbdFrom(t *testing.T, bin, path, admin string, args ...string) (*exec.Cmd, *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-config", path}, args...)...)
	logs := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("xlbd log:\n%s", logs.String())
		}
	})
	hc := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, "xlbd ready", 10*time.Second, func() bool {
		resp, err := hc.Get("http://" + admin + "/healthz")
		if err != nil {
			if exited(cmd.Process.Pid) {
				t.Fatalf("xlbd exited before it was ready:\n%s", logs.String())
			}
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cmd, logs
}

// exited reports whether the child pid has exited (a zombie: the caller
// has not waited for it yet).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command's closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}
