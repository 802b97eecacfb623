// Package sdnotify tells systemd how the daemon is doing (sd_notify(3),
// for a Type=notify unit): READY=1 once it serves, so that `systemctl
// start` returns then and units ordered after it start on a working
// balancer; RELOADING=1 and READY=1 around a reload; STOPPING=1 at
// shutdown. Without $NOTIFY_SOCKET (not run by systemd, or not as
// Type=notify) every call does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Send writes one notification (newline-separated VAR=value lines).
func Send(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	// A name that starts with '@' is in the abstract namespace; Go's
	// sockaddr conversion knows that convention.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", path, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", path, err)
	}
	return nil
}

// Ready says the daemon serves; status is what `systemctl status` shows.
func Ready(status string) error {
	return Send("READY=1\nSTATUS=" + status)
}

// Reloading says a reload began; Ready ends it. MONOTONIC_USEC lets a
// Type=notify-reload unit (systemd 253 and later) match the two.
func Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return err
	}
	return Send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000))
}

// Stopping says the daemon is shutting down (draining).
func Stopping() error {
	return Send("STOPPING=1")
}
