package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Diff describes what changed from old to new, one line per change, for
// the reload log: global settings first, then services in new's order, then
// removed services. Changes a reload cannot apply (see RestartNeeded) end in
// "(needs restart)". A nil config stands for an empty file.
func Diff(old, new *Config) []string {
	old, new = orDefaults(old), orDefaults(new)
	var d differ
	for _, ch := range restartChanges(old, new) {
		d.add("%s (needs restart)", ch)
	}
	// xlbd re-attaches live when these change.
	d.field("", "xdp.interfaces", old.XDP.Interfaces, new.XDP.Interfaces)
	d.field("", "xdp.mode", old.XDP.Mode, new.XDP.Mode)
	d.field("", "xdp.flow_insert_limit", old.XDP.FlowInsertLimit, new.XDP.FlowInsertLimit)
	d.field("", "xdp.ipip_source_prefix", old.XDP.IPIPSourcePrefix, new.XDP.IPIPSourcePrefix)
	d.field("", "admin.token_file", old.Admin.TokenFile, new.Admin.TokenFile)
	d.field("", "l7.drain_timeout", old.L7.DrainTimeout, new.L7.DrainTimeout)
	d.field("", "l7.max_header_bytes", old.L7.MaxHeaderBytes, new.L7.MaxHeaderBytes)
	d.field("", "l7.read_header_timeout", old.L7.ReadHeaderTimeout, new.L7.ReadHeaderTimeout)
	d.field("", "l7.idle_timeout", old.L7.IdleTimeout, new.L7.IdleTimeout)

	// A layer 4 service is its VIP, port and protocol, whatever its name,
	// as xlbd applies it (its flows and kernel state stay): one that keeps
	// them under another name was renamed, also when two swap names.
	oldByKey := map[l4Key]*Service{}
	for i := range old.Services {
		if o := &old.Services[i]; o.IsL4() {
			oldByKey[o.key()] = o
		}
	}
	renamed := map[string]bool{} // old names that went to another service
	for i := range new.Services {
		if s := &new.Services[i]; s.IsL4() {
			if o := oldByKey[s.key()]; o != nil && o.Name != s.Name {
				renamed[o.Name] = true
			}
		}
	}
	for i := range new.Services {
		s := &new.Services[i]
		if s.IsL4() {
			if o := oldByKey[s.key()]; o != nil && o.Name != s.Name {
				d.add("service %s renamed to %s", o.Name, s.Name)
				d.service(o, s)
				continue
			}
		}
		o := old.Service(s.Name)
		if o == nil || renamed[s.Name] {
			d.add("service %s added", s.Name)
			continue
		}
		d.service(o, s)
	}
	for i := range old.Services {
		if name := old.Services[i].Name; new.Service(name) == nil && !renamed[name] {
			d.add("service %s removed", name)
		}
	}
	return d.out
}

// l4Key is what names a layer 4 service to the data plane.
type l4Key struct {
	vip   netip.Addr
	port  uint16
	proto string
}

func (s *Service) key() l4Key { return l4Key{s.VIP, s.Port, s.Protocol} }

// RestartNeeded lists the changes from old to c that a reload cannot apply
// live, as "key old -> new": the admin listener, and the XDP program's
// attachments and pinned maps, which the daemon sets up at start.
func (c *Config) RestartNeeded(old *Config) []string {
	return restartChanges(orDefaults(old), orDefaults(c))
}

func restartChanges(old, new *Config) []string {
	var d differ
	d.field("", "admin.listen", old.Admin.Listen, new.Admin.Listen)
	d.field("", "xdp.pin_path", old.XDP.PinPath, new.XDP.PinPath)
	d.field("", "xdp.flow_table_size", old.XDP.FlowTableSize, new.XDP.FlowTableSize)
	return d.out
}

func orDefaults(c *Config) *Config {
	if c != nil {
		return c
	}
	return defaultConfig("")
}

// differ collects change lines.
type differ struct{ out []string }

func (d *differ) add(format string, args ...any) {
	d.out = append(d.out, fmt.Sprintf(format, args...))
}

// field adds "prefix name a -> b" when a and b print differently.
func (d *differ) field(prefix, name string, a, b any) {
	sa, sb := show(a), show(b)
	if sa != sb {
		d.add("%s%s %s -> %s", prefix, name, sa, sb)
	}
}

// show prints a value for a change line; the empty string is "".
func show(v any) string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return `""`
		}
		return v
	case []string:
		return "[" + strings.Join(v, ", ") + "]"
	}
	return fmt.Sprint(v)
}

func (d *differ) service(o, s *Service) {
	p := "service " + s.Name + ": "
	if o.Layer != s.Layer {
		d.add("%slayer %d -> %d (the service is replaced)", p, o.Layer, s.Layer)
		return
	}
	if s.Layer == 4 {
		d.field(p, "vip", o.VIP, s.VIP)
		d.field(p, "port", o.Port, s.Port)
		d.field(p, "protocol", o.Protocol, s.Protocol)
		d.field(p, "forwarding", o.Forwarding, s.Forwarding)
		d.field(p, "announce", o.Announce, s.Announce)
	} else {
		d.field(p, "listen", o.Listen, s.Listen)
		d.tls(p, o.TLS, s.TLS)
		d.field(p, "protocols", o.Protocols, s.Protocols)
		d.field(p, "backend_protocol", o.BackendProtocol, s.BackendProtocol)
		d.field(p, "backend_tls", showBackendTLS(o.BackendTLS), showBackendTLS(s.BackendTLS))
		d.field(p, "hash_key", o.HashKey, s.HashKey)
		d.field(p, "sticky", showSticky(o.Sticky), showSticky(s.Sticky))
		d.field(p, "retries.attempts", o.Retries.Attempts, s.Retries.Attempts)
		d.field(p, "retries.on", o.Retries.On, s.Retries.On)
		d.field(p, "timeouts.connect", o.Timeouts.Connect, s.Timeouts.Connect)
		d.field(p, "timeouts.response_header", o.Timeouts.ResponseHeader, s.Timeouts.ResponseHeader)
		d.field(p, "passive_health.max_fails", o.PassiveHealth.MaxFails, s.PassiveHealth.MaxFails)
		d.field(p, "passive_health.fail_timeout", o.PassiveHealth.FailTimeout, s.PassiveHealth.FailTimeout)
	}
	d.field(p, "scheduler", o.Scheduler, s.Scheduler)
	d.field(p, "rate_limit", showRate(o.RateLimit), showRate(s.RateLimit))
	d.healthCheck(p, o.HealthCheck, s.HealthCheck)
	d.backends(p, o.Backends, s.Backends)
	d.routes(p, o.Routes, s.Routes)
	d.discover(p, o.Discover, s.Discover)
}

func (d *differ) healthCheck(p string, o, s *HealthCheck) {
	switch {
	case o == nil && s == nil:
		return
	case o == nil:
		d.add("%shealth_check added (%s)", p, s.Type)
		return
	case s == nil:
		d.add("%shealth_check removed", p)
		return
	}
	d.field(p, "health_check.type", o.Type, s.Type)
	d.field(p, "health_check.port", o.Port, s.Port)
	d.field(p, "health_check.path", o.Path, s.Path)
	d.field(p, "health_check.host", o.Host, s.Host)
	d.field(p, "health_check.expect_status", o.ExpectStatus, s.ExpectStatus)
	d.field(p, "health_check.interval", o.Interval, s.Interval)
	d.field(p, "health_check.timeout", o.Timeout, s.Timeout)
	d.field(p, "health_check.healthy_threshold", o.HealthyThreshold, s.HealthyThreshold)
	d.field(p, "health_check.unhealthy_threshold", o.UnhealthyThreshold, s.UnhealthyThreshold)
}

// backends reports added and removed backends (matched by address) and the
// changed settings of the others.
func (d *differ) backends(p string, old, new []Backend) {
	byKey := func(bs []Backend) map[string]*Backend {
		m := make(map[string]*Backend, len(bs))
		for i := range bs {
			m[backendKey(bs[i].Address)] = &bs[i]
		}
		return m
	}
	om, nm := byKey(old), byKey(new)
	for i := range new {
		b := &new[i]
		o := om[backendKey(b.Address)]
		if o == nil {
			d.add("%sbackend %s added", p, b.Address)
			continue
		}
		d.field(p, "weight of "+b.Address, o.Weight, b.Weight)
		d.field(p, "max_conns of "+b.Address, o.MaxConns, b.MaxConns)
		d.field(p, "slow_start of "+b.Address, o.SlowStart, b.SlowStart)
	}
	for i := range old {
		if nm[backendKey(old[i].Address)] == nil {
			d.add("%sbackend %s removed", p, old[i].Address)
		}
	}
}

// routes compares routes by position: their order is their meaning.
func (d *differ) routes(p string, old, new []Route) {
	for i := range max(len(old), len(new)) {
		rp := fmt.Sprintf("%sroutes[%d]: ", p, i)
		switch {
		case i >= len(old):
			d.add("%sroutes[%d] added (%s)", p, i, showMatch(new[i].Match))
		case i >= len(new):
			d.add("%sroutes[%d] removed (%s)", p, i, showMatch(old[i].Match))
		default:
			d.field(rp, "match", showMatch(old[i].Match), showMatch(new[i].Match))
			d.field(rp, "scheduler", old[i].Scheduler, new[i].Scheduler)
			d.backends(rp, old[i].Backends, new[i].Backends)
		}
	}
}

// tls reports TLS turned on or off, or its changed settings. A certificate
// renewed in place is no change here: a reload reads every file again.
func (d *differ) tls(p string, o, s *TLS) {
	switch {
	case o == nil && s == nil:
		return
	case o == nil:
		d.add("%stls added (%s)", p, showCerts(s.Certificates))
		return
	case s == nil:
		d.add("%stls removed", p)
		return
	}
	d.field(p, "tls.certificates", showCerts(o.Certificates), showCerts(s.Certificates))
	d.field(p, "tls.client_ca_file", o.ClientCAFile, s.ClientCAFile)
	d.field(p, "tls.min_version", o.MinVersion, s.MinVersion)
}

func showCerts(l []CertPair) string {
	parts := make([]string, len(l))
	for i, c := range l {
		parts[i] = c.CertFile + " " + c.KeyFile
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func showBackendTLS(t *BackendTLS) string {
	if t == nil {
		return "default"
	}
	var parts []string
	for _, kv := range [][2]string{{"ca_file", t.CAFile}, {"server_name", t.ServerName}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	return strings.Join(parts, " ")
}

func showSticky(s *Sticky) string {
	if s == nil {
		return "off"
	}
	return fmt.Sprintf("cookie %s ttl %s", s.Cookie, s.TTL)
}

func showRate(r *RateLimit) string {
	if r == nil {
		return "off"
	}
	unit := map[int64]string{int64(1e9): "s", int64(60e9): "m", int64(3600e9): "h"}[int64(r.Per)]
	if unit == "" {
		unit = r.Per.String()
	}
	return fmt.Sprintf("%d/%s burst %d key %s", r.Rate, unit, r.Burst, r.Key)
}

func showMatch(m Match) string {
	var parts []string
	if m.Host != "" {
		parts = append(parts, "host "+m.Host)
	}
	if m.PathPrefix != "" {
		parts = append(parts, "path_prefix "+m.PathPrefix)
	}
	if len(m.Methods) > 0 {
		parts = append(parts, "methods "+strings.Join(m.Methods, ","))
	}
	if len(m.Headers) > 0 {
		names := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			parts = append(parts, fmt.Sprintf("header %s=%s", k, m.Headers[k]))
		}
	}
	if len(parts) == 0 {
		return "any request"
	}
	return strings.Join(parts, " ")
}
