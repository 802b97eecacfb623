package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/xlbproject/xlb/api"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/internal/withdraw"
)

// withdrawBeforeDetach asks the xlbd serving admin (the config's admin
// section) to withdraw every VIP from its BGP peers and then waits wait, as
// xlbctl detach does (package withdraw).
func withdrawBeforeDetach(ctx context.Context, admin config.Admin, wait time.Duration, stderr io.Writer) error {
	addr, err := dialable(admin.Listen)
	if err != nil {
		return err
	}
	var token string
	if admin.TokenFile != "" {
		b, err := os.ReadFile(admin.TokenFile)
		if err != nil {
			return fmt.Errorf("withdraw the VIPs first: token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	call := func(ctx context.Context) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+api.PathBGPAnnounce, strings.NewReader(`{"enabled":false}`))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return resp.StatusCode, fmt.Errorf("xlbd answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		return resp.StatusCode, nil
	}
	return withdraw.BeforeDetach(ctx, call, addr, wait, stderr)
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
