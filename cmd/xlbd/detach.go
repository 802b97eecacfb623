package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
)

// withdrawBeforeDetach asks the xlbd serving admin (the config's admin
// section) to withdraw every VIP from its BGP peers and then waits wait, so
// that the routers stop sending traffic here before the program goes, as
// xlbctl detach does. No xlbd, or one without bgp, is fine; any other
// failure stops the detach.
func withdrawBeforeDetach(ctx context.Context, admin config.Admin, wait time.Duration, stderr io.Writer) error {
	addr, err := dialable(admin.Listen)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+api.PathBGPAnnounce, strings.NewReader(`{"enabled":false}`))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if admin.TokenFile != "" {
		b, err := os.ReadFile(admin.TokenFile)
		if err != nil {
			return fmt.Errorf("withdraw the VIPs first: token file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil // no xlbd: nothing announces
	}
	if err != nil {
		return fmt.Errorf("withdraw the VIPs first: %w (xlbd at %s must withdraw before the program goes, or the routers keep sending traffic here)", err, addr)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusConflict:
		return nil // xlbd runs without bgp
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("withdraw the VIPs first: xlbd at %s answered %s: %s (it must withdraw before the program goes, or the routers keep sending traffic here)",
			addr, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(stderr, "withdrew every VIP from the BGP peers; waiting %s before detaching\n", wait)
	select {
	case <-time.After(wait):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dialable is the admin API's address as a client reaches it: a wildcard
// listen address is reached on loopback.
func dialable(listen string) (string, error) {
	if listen == "" {
		listen = config.DefaultAdminListen
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("admin.listen %q: %w", listen, err)
	}
	if a, err := netip.ParseAddr(host); host == "" || err == nil && a.IsUnspecified() {
		host = "127.0.0.1"
		if err == nil && a.Is6() {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}
