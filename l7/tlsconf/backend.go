package tlsconf

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"

	"github.com/xlbproject/xlb/config"
)

// backendSessions is the session cache size of one backend: every
// connection to it uses the same cache key (the server name), so a few
// entries are plenty.
const backendSessions = 8

// Client makes the TLS configurations for the backends of one service.
type Client struct {
	base *tls.Config // without ServerName and session cache

	mu     sync.Mutex
	byAddr map[string]*tls.Config
}

// Backend reads a service's backend_tls (nil: the defaults) and returns the
// Client that configures TLS to each of its backends: verified against
// bt.CAFile (empty: the system's roots), presenting bt's client
// certificate if any, TLS 1.2 at least. An error names the file that
// failed.
func Backend(bt *config.BackendTLS) (*Client, error) {
	if bt == nil {
		bt = &config.BackendTLS{}
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: bt.ServerName}
	if bt.CAFile != "" {
		pool, err := loadPool(bt.CAFile)
		if err != nil {
			return nil, fmt.Errorf("backend_tls.ca_file: %w", err)
		}
		base.RootCAs = pool
	}
	if bt.CertFile != "" || bt.KeyFile != "" {
		c, err := loadPair(bt.CertFile, bt.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("backend_tls: %w", err)
		}
		base.Certificates = []tls.Certificate{*c}
	}
	return &Client{base: base, byAddr: map[string]*tls.Config{}}, nil
}

// For returns the configuration for the backend at addr (host:port, or a
// host), the same one on every call for the same addr: it carries that
// backend's session cache, so that the proxy's connections and the health
// checks resume each other's sessions. Its ServerName is backend_tls's
// server_name, else addr's host. The caller must not modify it.
//
// Each backend gets its own cache because a cache key is the server name,
// which a shared server_name makes the same for every backend: one cache
// would hand one backend's tickets to the others.
func (c *Client) For(addr string) *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cfg := c.byAddr[addr]; cfg != nil {
		return cfg
	}
	cfg := c.base.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = addr
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(backendSessions)
	c.byAddr[addr] = cfg
	return cfg
}

// Forget drops the configuration of a backend that left the service.
func (c *Client) Forget(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byAddr, addr)
}
