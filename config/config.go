// Package config parses and validates xlb's YAML configuration, reporting every error with file, line and key.
//
// The file format is the one in SPEC.md. Parse walks the YAML node tree
// itself rather than unmarshalling into structs, so that every error (an
// unknown key, a wrong type, a value out of range, a conflict between
// services) carries the line it comes from, and so that all errors are
// reported at once, sorted by line.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults for keys left out of the file.
const (
	DefaultPath = "/etc/xlb/xlb.yaml" // where xlbd looks for the file

	DefaultAdminListen   = "127.0.0.1:9100"
	DefaultXDPMode       = "auto"
	DefaultPinPath       = "/sys/fs/bpf/xlb"
	DefaultFlowTableSize = 1 << 20
	// DefaultFlowInsertLimit is xdp.flow_insert_limit: new flow-table entries
	// per second per CPU.
	DefaultFlowInsertLimit = 100000

	DefaultDrainTimeout      = 30 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second

	DefaultL4Scheduler = "maglev"
	DefaultL7Scheduler = "round_robin"
	DefaultForwarding  = "ipip"
	DefaultProtocol    = "tcp"
	DefaultWeight      = 1

	DefaultCheckType          = "tcp"
	DefaultCheckPath          = "/"
	DefaultExpectStatus       = "200"
	DefaultCheckInterval      = 5 * time.Second
	DefaultCheckTimeout       = 2 * time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
	DefaultCheckVia           = "vip"

	DefaultRetryAttempts   = 1
	DefaultConnectTimeout  = 5 * time.Second
	DefaultResponseTimeout = 60 * time.Second
	DefaultMaxFails        = 1
	DefaultFailTimeout     = 10 * time.Second
	DefaultRateLimitKey    = "source_ip"
	DefaultTLSMinVersion   = "1.2"
	DefaultBackendProtocol = "http1"
	DefaultBurst           = 1
)

// Limits enforced by validation.
const (
	MinFlowTableSize   = 1 << 10
	MaxFlowTableSize   = 1 << 26
	MaxFlowInsertLimit = 1 << 32
	MaxWeight          = 1000
)

// Config is a whole config file.
type Config struct {
	File     string    // the file it was read from, as given to Load or Parse
	Admin    Admin     // the admin API
	XDP      XDP       // the L4 data plane
	L7       L7        // settings shared by every layer 7 service
	Services []Service // in file order; names are unique
	BGP      *BGP      // the BGP speaker; nil: no bgp section

	// Blank says the file holds no YAML at all (nothing, white space or
	// comments): a fresh install's, or a truncated write's.
	Blank bool

	// Warnings are problems that do not stop the config from loading, such
	// as an admin API reachable from the network without a token, each as
	// "file:line: key: message".
	Warnings []string
}

// Admin configures the admin API and /metrics.
type Admin struct {
	// Listen is the host:port of the admin API. Default 127.0.0.1:9100.
	Listen string
	// TokenFile holds the bearer token mutating calls need. Empty (the
	// default): no token. A relative path is relative to the config file's
	// folder; Parse stores the resolved path.
	TokenFile string
}

// XDP configures the XDP program that carries layer 4 services.
type XDP struct {
	// Interfaces are where the program attaches. Empty (the default): the
	// L4 data plane is off.
	Interfaces []string
	// Mode is auto (native, else generic; the default), native or generic.
	Mode string
	// PinPath is the bpffs folder for pinned maps and links. Default
	// /sys/fs/bpf/xlb.
	PinPath string
	// FlowTableSize is the number of L4 connection-table entries (an LRU),
	// 1024..67108864. Default 1048576.
	FlowTableSize uint32
	// FlowInsertLimit caps new flow-table entries per second per CPU: beyond
	// it new flows are still forwarded by Maglev but not remembered, so a SYN
	// flood cannot flush established flows from the table. 0 = no limit.
	// Default 100000.
	FlowInsertLimit uint64
	// IPIPSourcePrefix, when set (an IPv4 prefix shorter than /32), gives
	// each client flow its own IPIP outer source inside it, so backends'
	// NIC RSS spreads flows over receive queues. Unset (the default): the
	// balancer's own address.
	IPIPSourcePrefix netip.Prefix
}

// L7 holds the HTTP tier's server settings, shared by every layer 7 service.
type L7 struct {
	// DrainTimeout bounds how long in-flight requests may finish on
	// shutdown. Default 30s; 0 does not wait.
	DrainTimeout time.Duration
	// MaxHeaderBytes caps a request's header size. Default 65536.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading a request's header. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long, and bounds a
	// peer's silence in the middle of an exchange (l7). Default 120s.
	IdleTimeout time.Duration
}

// Service is one load-balanced service, layer 4 (XDP) or layer 7 (HTTP).
// Keys of the other layer are rejected by Parse, so their fields stay zero.
type Service struct {
	// Name identifies the service in the API, metrics and logs:
	// [a-z0-9][a-z0-9_-]{0,62}, unique. Required.
	Name string
	// Layer is 4 or 7. Required.
	Layer int
	// Line is the service's line in the file, for errors found at run time.
	Line int

	// VIP is the virtual address the XDP program serves (layer 4,
	// required), IPv4 or IPv6.
	VIP netip.Addr
	// Port is the service port, 1..65535 (layer 4, required).
	Port uint16
	// Protocol is tcp (the default) or udp (layer 4).
	Protocol string
	// Forwarding is ipip (the default: IPIP/IP6IP6 encapsulation) or dsr
	// (L2: rewrite the destination MAC) (layer 4).
	Forwarding string
	// Announce says when the bgp speaker announces the VIP (layer 4):
	// healthy (the default: while at least one backend passes its checks),
	// always or never.
	Announce string

	// Listen is the host:port the HTTP tier listens on (layer 7, required).
	Listen string
	// TLS, when set, serves HTTPS (and HTTP/2 via ALPN) (layer 7). Nil: plain
	// HTTP.
	TLS *TLS
	// Protocols are what clients may speak, "http1" and "h2", at least one
	// and each once (layer 7). Over TLS ALPN chooses; in cleartext h2 is h2c
	// with prior knowledge. Default [http1, h2].
	Protocols []string
	// BackendProtocol is what the proxy speaks to backends: http1 (the
	// default), https (HTTP/1.1 over TLS) or h2c (HTTP/2 in cleartext, with
	// prior knowledge) or h2 (HTTP/2 over TLS, ALPN h2) (layer 7).
	BackendProtocol string
	// BackendTLS tunes TLS to the backends; only with an https (or h2)
	// BackendProtocol. Nil: the system's roots, each backend's host as
	// server name, no client certificate.
	BackendTLS *BackendTLS

	// Scheduler picks a backend. Layer 4: maglev (the default) or ip_hash.
	// Layer 7: round_robin (the default), least_conn, ip_hash,
	// consistent_hash, least_time or random_two.
	Scheduler string
	// HashKey is what consistent_hash hashes: header:NAME, cookie:NAME,
	// path or source_ip (layer 7; required by consistent_hash).
	HashKey string
	// Sticky, when set, pins a client to a backend with a cookie (layer 7).
	Sticky *Sticky
	// RateLimit, when set, limits new connections per source address
	// (layer 4, in XDP) or requests per key (layer 7, answering 429).
	RateLimit *RateLimit
	// Retries says when a failed request goes to another backend (layer 7).
	Retries Retries
	// Timeouts bound the proxy's waits on a backend (layer 7).
	Timeouts Timeouts
	// PassiveHealth takes a backend out after failed requests (layer 7).
	PassiveHealth PassiveHealth

	// Backends serve the service. Required for layer 4 unless Discover is
	// set; a layer 7 service may leave it empty when every route has its
	// own, or when Discover is set.
	Backends []Backend
	// HealthCheck, when set, probes every backend. Nil: no active checks,
	// every backend counts as up.
	HealthCheck *HealthCheck
	// Routes are tried in order, first match wins; a request that matches
	// none goes to the service's backends (layer 7).
	Routes []Route
	// Discover, when set, adds the backends a DNS name resolves to (source
	// dns) beside Backends. Nil: none.
	Discover *Discover
}

// IsL4 reports whether s is carried by the XDP program.
func (s *Service) IsL4() bool { return s.Layer == 4 }

// Backend returns the service's own backend (not a route's) whose address is
// addr, or nil. IP addresses are compared in canonical form, so
// "2001:db8::1" finds "2001:DB8:0::1"; host names without case.
func (s *Service) Backend(addr string) *Backend {
	k := backendKey(addr)
	for i := range s.Backends {
		if backendKey(s.Backends[i].Address) == k {
			return &s.Backends[i]
		}
	}
	return nil
}

// HashKeyParts splits HashKey into its kind (header, cookie, path,
// source_ip) and, for header and cookie, the name.
func (s *Service) HashKeyParts() (kind, name string) {
	kind, name, _ = strings.Cut(s.HashKey, ":")
	return kind, name
}

// CheckAddress is the host:port a health check of b connects to: the
// check's port if set, else the backend's own port (layer 7) or the service
// port (layer 4). It is "" when s has no health check.
func (s *Service) CheckAddress(b *Backend) string {
	if s.HealthCheck == nil {
		return ""
	}
	port := s.HealthCheck.Port
	if s.IsL4() {
		if port == 0 {
			port = s.Port
		}
		return netip.AddrPortFrom(b.Addr, port).String()
	}
	if port == 0 {
		return b.Address
	}
	host, _, err := net.SplitHostPort(b.Address)
	if err != nil {
		return b.Address
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// Backend is one server behind a service (or a route).
type Backend struct {
	// Address is the backend as written: an IP for layer 4 (it serves on
	// the VIP's port), host:port for layer 7, where host may be a name.
	Address string
	// Addr is Address parsed (layer 4).
	Addr netip.Addr
	// AddrPort is Address parsed when it is IP:port (layer 7); zero when
	// the host is a name such as localhost.
	AddrPort netip.AddrPort
	// Weight is the backend's share, 0..1000. Default 1. 0 drains it: no
	// new flows or requests, established flows continue.
	Weight int
	// MaxConns caps concurrent requests (layer 7); beyond it requests queue
	// briefly, then get 503. 0 (the default): unlimited.
	MaxConns int
	// SlowStart ramps a new or recovered backend's share up over this time
	// (layer 7). 0 (the default): full share at once.
	SlowStart time.Duration
	// Line is the backend's line in the file.
	Line int
}

// HealthCheck probes every backend of a service.
type HealthCheck struct {
	// Type is tcp (connect; the default, unless path, host or
	// expect_status is written: then http), http (a GET that must answer
	// an expected status), grpc (layer 7: grpc.health.v1.Health/Check over
	// the backend protocol, which must be h2c or h2; up when SERVING) or
	// none (no checks; the other keys are kept but unused). tcp and grpc
	// ignore the http keys.
	Type string
	// Port to probe. Parse sets it to the service port for layer 4 when
	// left out; for layer 7, 0 means each backend's own port.
	Port uint16
	// Path of the http check. Default "/".
	Path string
	// Service is the service name a grpc check asks grpc.health.v1 about;
	// empty (the default): the server's overall health.
	Service string
	// Host is the Host header of the http check. Default: the backend's
	// address.
	Host string
	// ExpectStatus is the accepted status as written, "200" (the default)
	// or a range like "200-399"; ExpectMin and ExpectMax are its bounds.
	ExpectStatus         string
	ExpectMin, ExpectMax int
	// Interval between probes, at least 100ms. Default 5s.
	Interval time.Duration
	// Timeout of one probe, at most Interval. Default 2s, or Interval
	// when that is shorter.
	Timeout time.Duration
	// HealthyThreshold is the consecutive successes that mark a backend up,
	// 1..10. Default 2.
	HealthyThreshold int
	// UnhealthyThreshold is the consecutive failures that mark a backend
	// down, 1..10. Default 3.
	UnhealthyThreshold int
	// Via is, for layer 4, how probes travel: vip (the default: addressed to
	// the VIP and sent the way client packets are, encapsulated for ipip or
	// to the backend's MAC for dsr, so a backend without the VIP on lo, with
	// the wrong ARP/rp_filter settings or without decap fails its check) or
	// address (to the backend's own address). Empty for layer 7.
	Via string
}

// RateLimit allows Rate events per Per, with bursts of Burst: new
// connections per source address for layer 4, requests per Key for layer 7.
type RateLimit struct {
	// Rate is the number of events per Per, written "1000/m" (units s, m,
	// h). Required, at least 1.
	Rate uint64
	// Per is the period of Rate: 1s, 1m or 1h.
	Per time.Duration
	// Burst is how many events may come at once, at least 1. Default 1:
	// events are spaced evenly at the rate.
	Burst uint64
	// Key groups requests: source_ip (the default; the only one for layer
	// 4) or header:NAME (layer 7).
	Key string
}

// TLS configures an HTTPS service. Every file is PEM; a relative path is
// relative to the config file's folder, and Parse stores the resolved path.
type TLS struct {
	// Certificates are the service's certificates, chosen by the client's
	// SNI among the DNS names each one carries; the first is the default.
	// Parse fills it from either form of the file (cert_file and key_file,
	// or certificates), so that readers need only this list. Never empty.
	Certificates []CertPair
	// CertFile and KeyFile are the first of Certificates, the default
	// certificate, whichever form the file used.
	CertFile string
	KeyFile  string
	// ClientCAFile, when set, makes clients present a certificate signed by
	// one of the CAs in it (mTLS). Empty (the default): no client
	// certificate is asked for.
	ClientCAFile string
	// MinVersion is the oldest TLS version accepted: "1.2" (the default) or
	// "1.3".
	MinVersion string
}

// CertPair is one certificate chain and its private key.
type CertPair struct {
	CertFile string
	KeyFile  string
}

// BackendTLS configures TLS to the backends of a service whose
// BackendProtocol is https or h2.
type BackendTLS struct {
	// CAFile holds the CAs that backends' certificates must chain to.
	// Empty (the default): the system's roots.
	CAFile string
	// ServerName is the name a backend's certificate must carry, also sent
	// as SNI. Empty (the default): each backend's own host.
	ServerName string
	// CertFile and KeyFile, both or neither, are the client certificate
	// presented to backends (mTLS to backends).
	CertFile string
	KeyFile  string
}

// Sticky pins a client to the backend that served it, with a cookie.
type Sticky struct {
	// Cookie is the cookie's name. Required.
	Cookie string
	// TTL is the cookie's lifetime. 0 (the default): a session cookie.
	TTL time.Duration
}

// Retries says when a request that failed on one backend is tried on
// another (idempotent requests only).
type Retries struct {
	// Attempts is the number of retries, 0..10. Default 1; 0 turns
	// retries off.
	Attempts int
	// On lists the failures retried: connect_error, timeout,
	// grpc_unavailable and grpc_resource_exhausted (a gRPC call answered
	// with that status and no message: its request body must be whole), or
	// a status code 500..599 such as "502". Default [connect_error].
	On []string
}

// Has reports whether cond (connect_error, timeout, or a status code such
// as "502") is retried.
func (r Retries) Has(cond string) bool {
	for _, c := range r.On {
		if c == cond {
			return true
		}
	}
	return false
}

// Timeouts bound the proxy's waits on a backend.
type Timeouts struct {
	// Connect bounds opening a connection to a backend. Default 5s.
	Connect time.Duration
	// ResponseHeader bounds the wait for a backend's response header after
	// the request was sent. Default 60s.
	ResponseHeader time.Duration
}

// PassiveHealth takes a backend out of the selection after MaxFails failed
// requests within FailTimeout, for FailTimeout (like NGINX's max_fails).
type PassiveHealth struct {
	// MaxFails is the number of failures, 0..100. Default 1; 0 turns
	// passive health off.
	MaxFails int
	// FailTimeout is both the window failures are counted in and how long
	// the backend stays out. Default 10s.
	FailTimeout time.Duration
}

// Route sends matching requests of a layer 7 service to its own backends
// or with its own scheduler.
type Route struct {
	// Match selects requests; an empty match takes every request.
	Match Match
	// Scheduler for this route. Default: the service's.
	Scheduler string
	// Backends of this route. Empty: the service's.
	Backends []Backend
	// Line is the route's line in the file.
	Line int
}

// Match selects requests; every condition given must hold.
type Match struct {
	// Host is the request's host (without port), or *.domain for any
	// subdomain. Compared without case.
	Host string
	// PathPrefix is a prefix of the request path, starting with "/".
	PathPrefix string
	// Methods lists the accepted methods, upper case. Empty: any.
	Methods []string
	// Headers lists header values that must be present exactly.
	Headers map[string]string
}

// DefaultProtocols returns what clients of a layer 7 service may speak when
// the file does not say: HTTP/1.1 and HTTP/2.
func DefaultProtocols() []string { return []string{"http1", "h2"} }

// Service returns the service named name, or nil.
func (c *Config) Service(name string) *Service {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return &c.Services[i]
		}
	}
	return nil
}

// Load reads, parses and validates the file at path, as Parse does, and
// checks it against this host: every xdp.interfaces entry must exist (in
// the calling thread's network namespace) and every listen host that is a
// name must resolve, so that a start or a reload refuses what it would
// fail on half-way (a reload that named a missing interface had detached
// the old ones first). A file that cannot be read gives an error wrapping
// the os error; an invalid file gives an ErrorList.
func Load(path string) (*Config, error) {
	return load(path, hostErrors)
}

// LoadForCheck is Load for xlbd -check: what this host lacks is a
// warning, not an error, since a file is often checked where it will not
// run (a build host, or outside the network namespace of its interfaces).
func LoadForCheck(path string) (*Config, error) {
	return load(path, hostWarnings)
}

func load(path string, host hostMode) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return parse(path, data, host)
}

// hostMode is what the checks against this host make of a miss.
type hostMode int

const (
	hostNone hostMode = iota
	hostErrors
	hostWarnings
)

// Parse parses and validates a config file's contents; filename names the
// file in errors, and relative paths in the file (TLS, token) are resolved
// against its folder. The files the config names are read, but nothing
// else of this host is asked: interfaces and listen names are Load's to
// check. Any error gives a nil Config and an ErrorList holding every error,
// sorted by line.
func Parse(filename string, data []byte) (*Config, error) {
	return parse(filename, data, hostNone)
}

func parse(filename string, data []byte, host hostMode) (*Config, error) {
	p := newParser(filename, data)
	p.host = host
	c := p.parse()
	if len(p.errs) > 0 {
		return nil, p.errorList()
	}
	c.Warnings = p.warnings()
	return c, nil
}
