package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Keys of each mapping of the file.
var (
	topKeys        = []string{"admin", "xdp", "l7", "services", "bgp"}
	adminKeys      = []string{"listen", "token_file"}
	xdpKeys        = []string{"interfaces", "mode", "pin_path", "flow_table_size", "flow_insert_limit", "ipip_source_prefix"}
	l7Keys         = []string{"drain_timeout", "max_header_bytes", "read_header_timeout", "idle_timeout"}
	serviceKeys    = []string{"name", "layer", "vip", "port", "protocol", "forwarding", "listen", "tls", "protocols", "backend_protocol", "backend_tls", "scheduler", "hash_key", "sticky", "rate_limit", "retries", "timeouts", "backends", "passive_health", "health_check", "routes", "announce"}
	l4OnlyKeys     = []string{"vip", "port", "protocol", "forwarding", "announce"}
	l7OnlyKeys     = []string{"listen", "tls", "protocols", "backend_protocol", "backend_tls", "hash_key", "sticky", "retries", "timeouts", "passive_health", "routes"}
	backendKeys    = []string{"address", "weight", "max_conns", "slow_start"}
	l7BackendKeys  = []string{"max_conns", "slow_start"}
	checkKeys      = []string{"type", "port", "path", "host", "expect_status", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "via", "service"}
	httpCheckKeys  = []string{"path", "host", "expect_status"}
	rateLimitKeys  = []string{"rate", "burst", "key"}
	tlsKeys        = []string{"cert_file", "key_file", "certificates", "client_ca_file", "min_version"}
	certPairKeys   = []string{"cert_file", "key_file"}
	backendTLSKeys = []string{"ca_file", "server_name", "cert_file", "key_file"}
	protocolNames  = []string{"http1", "h2"}
	tlsVersions    = []string{"1.2", "1.3"}
	stickyKeys     = []string{"cookie", "ttl"}
	retriesKeys    = []string{"attempts", "on"}
	timeoutsKeys   = []string{"connect", "response_header"}
	passiveKeys    = []string{"max_fails", "fail_timeout"}
	routeKeys      = []string{"match", "scheduler", "backends"}
	matchKeys      = []string{"host", "path_prefix", "methods", "headers"}
	l4Schedulers   = []string{"maglev", "ip_hash"}
	l7Schedulers   = []string{"round_robin", "least_conn", "ip_hash", "consistent_hash", "least_time", "random_two"}
	retryOnNames   = []string{"connect_error", "timeout", "grpc_unavailable", "grpc_resource_exhausted"}
	otherLayerHint = map[string]string{
		"vip":              "a layer 7 service takes listen: host:port instead",
		"port":             "a layer 7 service takes listen: host:port instead",
		"protocol":         "a layer 7 service speaks HTTP, or HTTPS with tls",
		"forwarding":       "a layer 7 service proxies connections to its backends",
		"announce":         "bgp announces layer 4 VIPs",
		"listen":           "a layer 4 service takes vip and port instead",
		"tls":              "layer 4 forwards packets untouched; terminate TLS with layer: 7",
		"protocols":        "layer 4 forwards packets whatever they carry; protocol (tcp or udp) names the transport",
		"backend_protocol": "layer 4 backends get the clients' packets as they are",
		"backend_tls":      "layer 4 backends get the clients' packets as they are",
		"hash_key":         "it needs the HTTP tier (layer: 7); layer 4 schedulers are maglev and ip_hash",
		"sticky":           "it needs the HTTP tier (layer: 7); for persistence at layer 4 use scheduler: ip_hash",
		"retries":          "it needs the HTTP tier (layer: 7)",
		"timeouts":         "it needs the HTTP tier (layer: 7)",
		"passive_health":   "it needs the HTTP tier (layer: 7); layer 4 uses health_check",
		"routes":           "routing on host, path or headers needs the HTTP tier (layer: 7)",
	}
)

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") // RFC 9110 token: header and cookie names, methods
)

// defaultConfig is the config of an empty file.
func defaultConfig(file string) *Config {
	return &Config{
		File:  file,
		Admin: Admin{Listen: DefaultAdminListen},
		XDP:   XDP{Mode: DefaultXDPMode, PinPath: DefaultPinPath, FlowTableSize: DefaultFlowTableSize, FlowInsertLimit: DefaultFlowInsertLimit},
		L7: L7{
			DrainTimeout:      DefaultDrainTimeout,
			MaxHeaderBytes:    DefaultMaxHeaderBytes,
			ReadHeaderTimeout: DefaultReadHeaderTimeout,
			IdleTimeout:       DefaultIdleTimeout,
		},
	}
}

func (p *parser) parse() *Config {
	c := defaultConfig(p.file)
	var g globals
	root := p.document()
	c.Blank = root == nil
	if root != nil {
		f, _ := p.fields(root, "", "a mapping with keys admin, xdp, l7 and services", topKeys)
		if e := f.get("admin"); e != nil {
			g.adminListen = p.admin(e.v, &c.Admin)
		}
		if e := f.get("xdp"); e != nil {
			g.interfaces = p.xdp(e.v, &c.XDP)
		}
		if e := f.get("l7"); e != nil {
			p.l7(e.v, &c.L7)
		}
		if e := f.m["services"]; e != nil {
			g.services = e.k
			c.Services = p.services(e.v)
		}
		if e := f.get("bgp"); e != nil {
			g.bgp = e.k
			c.BGP = p.bgp(e.v)
		}
	}
	p.check(c, g)
	if p.host != hostNone {
		p.checkHost(c, g)
	}
	return c
}

// globals are nodes the checks across sections point at.
type globals struct {
	adminListen *yaml.Node   // nil: the default
	services    *yaml.Node   // the services key
	bgp         *yaml.Node   // the bgp key
	interfaces  []*yaml.Node // parallel to XDP.Interfaces
}

func (p *parser) admin(n *yaml.Node, a *Admin) (listen *yaml.Node) {
	f, _ := p.fields(n, "admin", "a mapping with keys listen and token_file", adminKeys)
	if e := f.get("listen"); e != nil {
		if v, ok := p.listenAddr(e.v, "admin.listen"); ok {
			a.Listen, listen = v, e.v
		}
	}
	if e := f.get("token_file"); e != nil {
		if v, ok := p.str(e.v, "admin.token_file"); ok && v != "" {
			a.TokenFile, _ = p.secretFile(e.v, "admin.token_file", v, "the bearer token", maxTokenBytes)
		}
	}
	return listen
}

func (p *parser) xdp(n *yaml.Node, x *XDP) (interfaces []*yaml.Node) {
	f, _ := p.fields(n, "xdp", "a mapping with keys interfaces, mode, pin_path, flow_table_size, flow_insert_limit and ipip_source_prefix", xdpKeys)
	if e := f.get("interfaces"); e != nil {
		items, _ := p.seq(e.v, "xdp.interfaces", "[eth0, eth1]")
		seen := map[string]int{}
		for i, it := range items {
			path := index("xdp.interfaces", i)
			v, ok := p.str(it, path)
			if !ok {
				continue
			}
			if msg := ifnameProblem(v); msg != "" {
				p.errorf(it, path, "%s", msg)
				continue
			}
			if line, dup := seen[v]; dup {
				p.errorf(it, path, "interface %s is listed twice (first on line %d)", v, line)
				continue
			}
			seen[v] = it.Line
			x.Interfaces = append(x.Interfaces, v)
			interfaces = append(interfaces, it)
		}
	}
	if e := f.get("mode"); e != nil {
		if v, ok := p.oneOf(e.v, "xdp.mode", "auto", "native", "generic"); ok {
			x.Mode = v
		}
	}
	if e := f.get("pin_path"); e != nil {
		if v, ok := p.str(e.v, "xdp.pin_path"); ok {
			if !filepath.IsAbs(v) {
				p.errorf(e.v, "xdp.pin_path", "must be an absolute path in a bpffs mount, like %s, got %q", DefaultPinPath, v)
			} else {
				x.PinPath = filepath.Clean(v)
			}
		}
	}
	if e := f.get("flow_table_size"); e != nil {
		if v, ok := p.integer(e.v, "xdp.flow_table_size", MinFlowTableSize, MaxFlowTableSize); ok {
			x.FlowTableSize = uint32(v)
		}
	}
	if e := f.get("flow_insert_limit"); e != nil {
		if v, ok := p.integer(e.v, "xdp.flow_insert_limit", 0, MaxFlowInsertLimit); ok {
			x.FlowInsertLimit = uint64(v)
		}
	}
	if e := f.get("ipip_source_prefix"); e != nil {
		if v, ok := p.str(e.v, "xdp.ipip_source_prefix"); ok && v != "" {
			x.IPIPSourcePrefix, _ = ipipSourcePrefix(p, e.v, v)
		}
	}
	return interfaces
}

// ipipSourcePrefix validates xdp.ipip_source_prefix: an IPv4 CIDR of /8 to
// /31 without host bits.
func ipipSourcePrefix(p *parser, n *yaml.Node, v string) (netip.Prefix, bool) {
	const path = "xdp.ipip_source_prefix"
	pf, err := netip.ParsePrefix(strings.TrimSpace(v))
	switch {
	case err != nil:
		p.errorf(n, path, "expected an IPv4 prefix such as 172.16.0.0/16, got %q", v)
	case !pf.Addr().Is4():
		p.errorf(n, path, "must be an IPv4 prefix (IP6IP6 keeps the balancer's address), got %s", pf)
	case pf.Bits() < 8 || pf.Bits() > 31:
		p.errorf(n, path, "prefix length must be between /8 and /31, got /%d", pf.Bits())
	case pf.Masked() != pf:
		p.errorf(n, path, "%s has host bits set: did you mean %s?", pf, pf.Masked())
	case martianSource(pf) != "":
		p.errorf(n, path, "%s is %s: no packet may come from there (routers and the backends' kernels drop it); give unicast space the backends can route back to, such as 172.16.0.0/16", pf, martianSource(pf))
	default:
		return pf, true
	}
	return netip.Prefix{}, false
}

// martianSource says what kind of space pf overlaps where no packet's
// source may be (RFC 1122 3.2.1.3, RFC 5735), or "".
func martianSource(pf netip.Prefix) string {
	for _, m := range []struct {
		p    netip.Prefix
		what string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (0.0.0.0/8)`},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback (127.0.0.0/8)"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast (224.0.0.0/4)"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4, broadcast included)"},
	} {
		if m.p.Overlaps(pf) {
			return m.what
		}
	}
	return ""
}

// ifnameProblem says what is wrong with a network interface name, or "".
func ifnameProblem(s string) string {
	switch {
	case s == "":
		return "an interface name cannot be empty"
	case len(s) > 15:
		return fmt.Sprintf("interface name %q is longer than 15 characters", s)
	case s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n"):
		return fmt.Sprintf("%q is not a valid interface name", s)
	}
	return ""
}

func (p *parser) l7(n *yaml.Node, l *L7) {
	f, _ := p.fields(n, "l7", "a mapping with keys drain_timeout, max_header_bytes, read_header_timeout and idle_timeout", l7Keys)
	if e := f.get("drain_timeout"); e != nil {
		if v, ok := p.duration(e.v, "l7.drain_timeout", 0); ok {
			l.DrainTimeout = v
		}
	}
	if e := f.get("max_header_bytes"); e != nil {
		if v, ok := p.integer(e.v, "l7.max_header_bytes", 1024, 16<<20); ok {
			l.MaxHeaderBytes = int(v)
		}
	}
	if e := f.get("read_header_timeout"); e != nil {
		if v, ok := p.duration(e.v, "l7.read_header_timeout", 1); ok {
			l.ReadHeaderTimeout = v
		}
	}
	if e := f.get("idle_timeout"); e != nil {
		if v, ok := p.duration(e.v, "l7.idle_timeout", 1); ok {
			l.IdleTimeout = v
		}
	}
}

// ipAddr decodes an IP address usable as a VIP or a layer 4 backend; what
// names it in messages.
func (p *parser) ipAddr(n *yaml.Node, path, what string) (netip.Addr, bool) {
	v, ok := p.str(n, path)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(strings.TrimSpace(v)) // as the other values are
	if err != nil {
		if ap, err := netip.ParseAddrPort(v); err == nil {
			p.errorf(n, path, "expected an IP address without a port, got %q; the port goes under the service's port", ap)
		} else {
			p.errorf(n, path, "expected an IPv4 or IPv6 address, got %s", describe(n))
		}
		return netip.Addr{}, false
	}
	if msg := addrProblem(a, what); msg != "" {
		p.errorf(n, path, "%s", msg)
		return netip.Addr{}, false
	}
	return a, true
}

// addrProblem says why a cannot be a VIP or backend address, or "".
// AddrProblem is addrProblem for the admin API, whose added backends must
// pass what the file's would.
func AddrProblem(a netip.Addr, what string) string { return addrProblem(a, what) }

// HostProblem says why host, which is not an IP address, is no host name
// either, or "": the file's rule, for the admin API.
func HostProblem(host string) string {
	if validHostname(host) {
		return ""
	}
	return notHost(host)
}

func addrProblem(a netip.Addr, what string) string {
	switch {
	case a.Zone() != "":
		return fmt.Sprintf("%s cannot have an IPv6 zone (%s)", what, a)
	case a.Is4In6():
		return fmt.Sprintf("write the IPv4 address %s rather than %s", a.Unmap(), a)
	case a.IsUnspecified():
		return fmt.Sprintf("%s cannot be the unspecified address %s", what, a)
	case a.IsMulticast():
		return fmt.Sprintf("%s cannot be a multicast address (%s)", what, a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Sprintf("%s cannot be the broadcast address", what)
	}
	return ""
}

// listenAddr decodes a host:port to listen on; the host may be empty (every
// address), an IP address or a host name.
func (p *parser) listenAddr(n *yaml.Node, path string) (string, bool) {
	s, ok := p.scalar(n, path, "host:port like 0.0.0.0:8080")
	if !ok {
		return "", false
	}
	v := s.Value
	if s.ShortTag() == "!!int" {
		p.errorf(s, path, "expected host:port like 0.0.0.0:%s, got %s (for every address write \":%s\")", v, v, v)
		return "", false
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		p.errorf(s, path, "expected host:port like 0.0.0.0:8080, got %q", v)
		return "", false
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
			p.errorf(s, path, "%s", notHost(host))
			return "", false
		}
	}
	if !validPort(port) {
		p.errorf(s, path, "port must be between 1 and 65535, got %q", port)
		return "", false
	}
	return v, true
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535 && s[0] != '+' && s[0] != '-'
}

// notHost says why host, which is neither an address nor a name, is
// wrong; digits and dots alone are a mistyped address, not a name.
func notHost(host string) string {
	if len(host) > 253 {
		return fmt.Sprintf("a host name of %d bytes: 253 at most", len(host))
	}
	if strings.Trim(host, "0123456789.") == "" {
		return fmt.Sprintf("%q is not an IPv4 address: four numbers 0-255, like 10.0.0.1", host)
	}
	return fmt.Sprintf("%q is neither an IP address nor a host name", host)
}

// validHostname reports whether s is a DNS name: dot-separated labels of
// letters, digits, '-' and '_', 63 bytes at most each, 253 in all.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	// An all-digit last label would make 300.1.1.1 a "name": it is a
	// mistyped address (RFC 3696 §2: top-level labels are not all-numeric).
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return false
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// maxTokenBytes is what xlbd reads of admin.token_file at most.
const maxTokenBytes = 64 << 10

// secretFile is existingFile for a file holding one secret (what), which
// must be readable and, trimmed of white space, neither empty nor longer
// than max bytes: an empty file would mean no token or no TCP MD5 when the
// key says the operator wants one.
func (p *parser) secretFile(n *yaml.Node, path, name, what string, max int) (string, bool) {
	name, ok := p.existingFile(n, path, name)
	if !ok {
		return "", false
	}
	f, err := os.Open(name)
	if err != nil {
		p.errorf(n, path, "cannot read %s: %v", name, errors.Unwrap(err))
		return "", false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1<<10))
	if err != nil {
		p.errorf(n, path, "cannot read %s: %v", name, err)
		return "", false
	}
	switch v := bytes.TrimSpace(b); {
	case len(v) == 0:
		p.errorf(n, path, "%s is empty; it must hold %s (or drop the key)", name, what)
		return "", false
	case len(v) > max:
		p.errorf(n, path, "%s holds more than %d bytes; %s is at most %d", name, max, what, max)
		return "", false
	}
	return name, true
}

// existingFile resolves a path from the file against the config's folder
// and checks that it is a regular file.
func (p *parser) existingFile(n *yaml.Node, path, name string) (string, bool) {
	if !filepath.IsAbs(name) {
		name = filepath.Join(p.dir, name)
	}
	st, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.errorf(n, path, "file %s does not exist", name)
		return "", false
	case err != nil:
		p.errorf(n, path, "cannot use %s: %v", name, errors.Unwrap(err))
		return "", false
	case st.IsDir():
		p.errorf(n, path, "%s is a folder; name a file", name)
		return "", false
	}
	return name, true
}
