package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size offered (the DNS flag day 2020 value):
// larger answers come truncated and are asked again over TCP.
const ednsSize = 1232

// maxSRVWeight scales SRV weights (0..65535) into a backend's 0..1000.
const maxSRVWeight = 1000

var qtypes = map[string]uint16{"a": dns.TypeA, "aaaa": dns.TypeAAAA, "srv": dns.TypeSRV}

// lookup asks the loop's name once.
func (l *loop) lookup(ctx context.Context) answer {
	servers, err := l.servers()
	if err != nil {
		return answer{result: ResultError, err: err}
	}
	qtype := qtypes[l.key.qtype]
	m, res, err := l.ask(ctx, servers, l.key.name, qtype)
	if res != ResultOK {
		return answer{result: res, err: err}
	}
	if qtype == dns.TypeSRV {
		return l.srv(ctx, servers, m)
	}
	rs, ttl := addresses(m.Answer, qtype, "")
	if len(rs) == 0 {
		return answer{result: ResultEmpty, err: fmt.Errorf("no %s records for %s", dns.TypeToString[qtype], l.key.name)}
	}
	return answer{result: ResultOK, records: rs, ttl: ttl}
}

// servers are the resolvers to ask, in order: the target's, or those of
// resolv.conf (read each time, so an edited file is followed).
func (l *loop) servers() ([]string, error) {
	if len(l.resolvers) > 0 {
		return l.resolvers, nil
	}
	cc, err := dns.ClientConfigFromFile(l.opts.ResolvConf)
	if err != nil {
		return nil, fmt.Errorf("read resolvers: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("read resolvers: no nameserver in %s", l.opts.ResolvConf)
	}
	out := make([]string, len(cc.Servers))
	for i, s := range cc.Servers {
		out[i] = net.JoinHostPort(s, cc.Port)
	}
	return out, nil
}

// ask sends one question to the servers in turn until one answers it with
// NOERROR or NXDOMAIN. The result is timeout when no server answered in
// time, error for any other failure.
func (l *loop) ask(ctx context.Context, servers []string, name string, qtype uint16) (*dns.Msg, Result, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(ednsSize, false)
	var errs []error
	allTimeouts := true
	for _, server := range l.addresses(ctx, servers, &errs, &allTimeouts) {
		r, err := l.exchange(ctx, server, q)
		if err != nil {
			allTimeouts = allTimeouts && isTimeout(err)
			errs = append(errs, fmt.Errorf("ask %s: %w", server, err))
			continue
		}
		switch r.Rcode {
		case dns.RcodeSuccess:
			return r, ResultOK, nil
		case dns.RcodeNameError:
			return r, ResultNXDomain, fmt.Errorf("%s: NXDOMAIN from %s", strings.TrimSuffix(name, "."), server)
		}
		allTimeouts = false
		errs = append(errs, fmt.Errorf("ask %s: %s", server, dns.RcodeToString[r.Rcode]))
		if ctx.Err() != nil {
			break
		}
	}
	err := fmt.Errorf("%s %s: %w", strings.TrimSuffix(name, "."), dns.TypeToString[qtype], errors.Join(errs...))
	if allTimeouts {
		return nil, ResultTimeout, err
	}
	return nil, ResultError, err
}

// addresses turns resolvers named by host name into their addresses (each
// asked in turn, as a list of resolvers is), through the system's resolver,
// at every lookup: a resolver that moves is followed. A name that does not
// resolve adds its error to errs.
func (l *loop) addresses(ctx context.Context, servers []string, errs *[]error, allTimeouts *bool) []string {
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("resolver %s: %w", s, err))
			*allTimeouts = false
			continue
		}
		if _, err := netip.ParseAddr(host); err == nil {
			out = append(out, s)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, l.opts.QueryTimeout)
		ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			*errs = append(*errs, fmt.Errorf("resolver %s: %w", s, err))
			*allTimeouts = *allTimeouts && isTimeout(err)
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip.Unmap().String(), port))
		}
	}
	return out
}

// exchange asks one server over UDP, and again over TCP when the UDP
// answer is truncated.
func (l *loop) exchange(ctx context.Context, server string, q *dns.Msg) (*dns.Msg, error) {
	r, err := l.exchangeOver(ctx, "udp", server, q)
	if err != nil {
		return nil, err
	}
	if r.Truncated {
		if r, err = l.exchangeOver(ctx, "tcp", server, q); err != nil {
			return nil, fmt.Errorf("over tcp after a truncated udp answer: %w", err)
		}
	}
	return r, nil
}

func (l *loop) exchangeOver(ctx context.Context, network, server string, q *dns.Msg) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, l.opts.QueryTimeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: l.opts.QueryTimeout}
	co, err := c.DialContext(qctx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// The client's own deadlines do not watch ctx: closing the connection
	// ends a lookup at once when the loop stops.
	stop := context.AfterFunc(qctx, func() { co.Close() })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(qctx, q, co)
	if err != nil && qctx.Err() != nil {
		return nil, fmt.Errorf("no answer within %s: %w", l.opts.QueryTimeout, qctx.Err())
	}
	return r, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// addresses returns the usable A or AAAA records of rrs (those of owner
// only, when owner is set) and their shortest TTL, CNAMEs included.
// Addresses that cannot be a backend (unspecified, multicast, broadcast, an
// IPv4-mapped AAAA) are left out.
func addresses(rrs []dns.RR, qtype uint16, owner string) ([]record, time.Duration) {
	var out []record
	ttl := time.Duration(-1)
	for _, rr := range rrs {
		h := rr.Header()
		if owner != "" && !strings.EqualFold(h.Name, owner) {
			continue
		}
		var a netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			if qtype != dns.TypeA {
				continue
			}
			a, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			if qtype != dns.TypeAAAA {
				continue
			}
			a, _ = netip.AddrFromSlice(v.AAAA.To16())
			if a.Is4In6() {
				continue
			}
		case *dns.CNAME:
			ttl = minTTL(ttl, h.Ttl)
			continue
		default:
			continue
		}
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			continue
		}
		ttl = minTTL(ttl, h.Ttl)
		out = append(out, record{addr: a})
	}
	return out, max(ttl, 0)
}

func minTTL(cur time.Duration, ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	if cur < 0 || d < cur {
		return d
	}
	return cur
}

// srv turns an SRV answer into records: the lowest priority whose targets
// have addresses is used, the others are ignored (they are the backup when
// no target of a lower priority resolves); weights are the records',
// scaled into 0..1000 (all zero: equal shares); ports are the records'.
// Target addresses come from the additional section, else from A (then
// AAAA) lookups of the target on the same servers.
func (l *loop) srv(ctx context.Context, servers []string, m *dns.Msg) answer {
	var srvs []*dns.SRV
	ttl := time.Duration(-1)
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.SRV:
			if v.Target == "." {
				continue // "the service is decidedly not available at this domain"
			}
			srvs = append(srvs, v)
			ttl = minTTL(ttl, v.Hdr.Ttl)
		case *dns.CNAME:
			ttl = minTTL(ttl, v.Hdr.Ttl)
		}
	}
	if len(srvs) == 0 {
		return answer{result: ResultEmpty, err: fmt.Errorf("no SRV records for %s", l.key.name)}
	}
	slices.SortStableFunc(srvs, func(a, b *dns.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	var errs []error
	for start := 0; start < len(srvs); {
		end := start
		for end < len(srvs) && srvs[end].Priority == srvs[start].Priority {
			end++
		}
		group := srvs[start:end]
		start = end
		weights := srvWeights(group)
		var out []record
		gttl := ttl
		for i, s := range group {
			addrs, attl, err := l.target(ctx, servers, m, s.Target)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if len(addrs) > 0 {
				gttl = min(gttl, attl)
			}
			for _, a := range addrs {
				out = append(out, record{addr: a.addr, port: s.Port, weight: weights[i]})
			}
		}
		if len(out) > 0 {
			if len(errs) > 0 {
				l.log.Warn("discovery: some SRV targets have no address", "err", errors.Join(errs...))
			}
			return answer{result: ResultOK, records: out, ttl: max(gttl, 0)}
		}
	}
	// Records that point nowhere are a broken zone or a resolver in
	// trouble, not a statement that the service has no servers.
	return answer{result: ResultError, err: fmt.Errorf("no SRV target of %s has an address: %w", l.key.name, errors.Join(errs...))}
}

// srvWeights scales a priority group's weights into 0..maxSRVWeight,
// keeping their ratios; a group of zeros gets equal weights (RFC 2782:
// weight 0 when there is no selection to make).
func srvWeights(group []*dns.SRV) []int {
	top := 0
	for _, s := range group {
		top = max(top, int(s.Weight))
	}
	out := make([]int, len(group))
	for i, s := range group {
		w := int(s.Weight)
		switch {
		case top == 0:
			w = 1
		case top > maxSRVWeight && w > 0:
			w = max(1, w*maxSRVWeight/top)
		}
		out[i] = w
	}
	return out
}

// target returns the addresses of an SRV target and their shortest TTL.
func (l *loop) target(ctx context.Context, servers []string, m *dns.Msg, name string) ([]record, time.Duration, error) {
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		if rs, ttl := addresses(m.Extra, qt, name); len(rs) > 0 {
			return rs, ttl, nil
		}
	}
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, res, err := l.ask(ctx, servers, name, qt)
		if res != ResultOK {
			errs = append(errs, err)
			continue
		}
		if rs, ttl := addresses(r.Answer, qt, ""); len(rs) > 0 {
			return rs, ttl, nil
		}
	}
	if len(errs) == 0 {
		return nil, 0, fmt.Errorf("SRV target %s has no A or AAAA records", name)
	}
	return nil, 0, fmt.Errorf("SRV target %s: %w", name, errors.Join(errs...))
}
