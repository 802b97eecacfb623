package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func next(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

// TestNotifications: each call sends what sd_notify(3) defines, to a
// socket on the file system and to one in the abstract namespace.
func TestNotifications(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@xlb-sdnotify-test"} {
		c := listen(t, name)
		t.Setenv("NOTIFY_SOCKET", name)
		if err := Ready("serving"); err != nil {
			t.Fatal(err)
		}
		if got := next(t, c); got != "READY=1\nSTATUS=serving" {
			t.Errorf("%s: Ready sent %q", name, got)
		}
		if err := Reloading(); err != nil {
			t.Fatal(err)
		}
		if got := next(t, c); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") || len(got) < len("RELOADING=1\nMONOTONIC_USEC=1") {
			t.Errorf("%s: Reloading sent %q", name, got)
		}
		if err := Stopping(); err != nil {
			t.Fatal(err)
		}
		if got := next(t, c); got != "STOPPING=1" {
			t.Errorf("%s: Stopping sent %q", name, got)
		}
	}
}

// TestNoSocket: outside systemd nothing is sent and nothing fails.
func TestNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Ready("x"); err != nil {
		t.Error(err)
	}
}

// TestSocketGone: a socket that is not there is an error the caller logs.
func TestSocketGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "none"))
	if err := Stopping(); err == nil {
		t.Error("no error for a missing socket")
	}
}
