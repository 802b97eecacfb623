//go:build linux

package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// buildInto builds xlbd at path, with version v.
func buildInto(t *testing.T, path, v string) {
	t.Helper()
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", path, "github.com/xlbproject/xlb/cmd/xlbd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// buildInfo is the version xlbd's /metrics reports.
func buildInfo(t *testing.T, admin string) string {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "xlb_build_info{") {
			if _, rest, ok := strings.Cut(line, `version="`); ok {
				v, _, _ := strings.Cut(rest, `"`)
				return v
			}
		}
	}
	return ""
}

// TestBinaryUpgrade: SIGUSR2 runs the binary now at xlbd's path in the
// same process (the PID systemd knows stays), handing it the listening
// sockets: under a steady load of new connections and keep-alive ones,
// HTTP/1.1 and HTTP/2, no request fails, a request in flight finishes on the old image, and the
// new version serves. A new binary that refuses the config is not run:
// the old one serves on and says why; so it does, on the same sockets,
// when the new binary is gone by the time it is to run.
func TestBinaryUpgrade(t *testing.T) {
	buildBinaries(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "xlbd")
	buildInto(t, bin, "v1")
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	listen, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(dir, "xlb.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("admin: {listen: %q}\nl7: {drain_timeout: 5s}\nservices:\n  - name: web\n    layer: 7\n    listen: %q\n    backends: [{address: %q}]\n",
		admin, listen, hostport(be))), 0o644)
	cmd, logs := startXlbdFrom(t, bin, path, admin)
	if v := buildInfo(t, admin); v != "v1" {
		t.Fatalf("serving version %q, want v1", v)
	}

	// The load: HTTP/1.1 clients, two with new connections and two with
	// kept-alive ones, and HTTP/2 (h2c) clients, one with a new connection
	// for every request and one with a kept-alive one.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rt http.RoundTripper = &http.Transport{DisableKeepAlives: i < 2}
			if i >= 4 {
				rt = &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				}}
			}
			c := &http.Client{Timeout: 10 * time.Second, Transport: rt}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if i == 4 {
					rt.(*http2.Transport).CloseIdleConnections()
				}
				resp, err := c.Get("http://" + listen + "/")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	slow := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + listen + "/slow")
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && string(b) != "ok" {
				err = fmt.Errorf("got %q", b)
			}
		}
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond) // the load runs, the slow request is in flight

	// A binary that refuses the config is not run.
	os.Rename(bin, bin+".v1")
	os.WriteFile(bin, []byte("#!/bin/sh\necho 'xlbd broken'; exit 1\n"), 0o755)
	cmd.Process.Signal(syscall.SIGUSR2)
	waitFor(t, "the refusal logged", 5*time.Second, func() bool { return strings.Contains(logs.String(), "upgrade refused; serving on") })
	if v := buildInfo(t, admin); v != "v1" {
		t.Fatalf("after a refused upgrade the version is %q", v)
	}

	// A binary that passes the checks but is gone when it is to run (here
	// the check removes it): the old image serves on, on the same sockets.
	os.WriteFile(bin, []byte("#!/bin/sh\ncase \"$1\" in -version) echo 'xlbd gone';; -check) echo ok; rm -f \"$0\";; esac\n"), 0o755)
	cmd.Process.Signal(syscall.SIGUSR2)
	waitFor(t, "the failed exec logged", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "the new binary did not start; serving on with this one")
	})
	waitFor(t, "v1 serving again", 10*time.Second, func() bool { return buildInfo(t, admin) == "v1" })

	buildInto(t, bin+".v2", "v2")
	os.Rename(bin+".v2", bin)
	before := ok.Load()
	cmd.Process.Signal(syscall.SIGUSR2)
	waitFor(t, "v2 serving", 15*time.Second, func() bool { return buildInfo(t, admin) == "v2" })
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := <-slow; err != nil {
		t.Errorf("the request in flight during the upgrade: %v", err)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed across the upgrade; the first: %v", n, n+ok.Load(), firstErr.Load())
	}
	if ok.Load() == before {
		t.Error("no request was served after the upgrade")
	}
	if exited(cmd.Process.Pid) {
		t.Error("the process ended: the upgrade must keep its PID")
	}
	t.Logf("%d requests, %d during and after the upgrade, none failed", ok.Load(), ok.Load()-before)
}
