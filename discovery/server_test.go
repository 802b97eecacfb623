package discovery

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsServer is a real DNS server on loopback, UDP and TCP on one port,
// serving a zone the test changes while it runs.
type dnsServer struct {
	t    *testing.T
	addr string

	mu      sync.Mutex
	udp     *dns.Server
	tcp     *dns.Server
	rrs     map[rrKey][]dns.RR
	extra   map[rrKey][]dns.RR // additional section, by question
	nx      map[string]bool    // names answered NXDOMAIN
	tcOnUDP map[string]bool    // names answered truncated and empty over UDP
	silent  bool               // answer nothing (the client times out)
	queries []query
}

type rrKey struct {
	name  string
	qtype uint16
}

type query struct {
	name  string
	qtype uint16
	net   string // udp or tcp
	at    time.Time
}

// newDNSServer starts a server on a free loopback port; it is stopped in
// t.Cleanup.
func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	s := &dnsServer{t: t, rrs: map[rrKey][]dns.RR{}, extra: map[rrKey][]dns.RR{}, nx: map[string]bool{}, tcOnUDP: map[string]bool{}}
	var err error
	for range 20 { // the UDP port may be taken for TCP
		if err = s.listen("127.0.0.1:0"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start dns server: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *dnsServer) listen(addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return err
	}
	h := dns.HandlerFunc(s.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.t.Logf("dns server: %v", err)
			}
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("dns server did not start")
		}
	}
	s.mu.Lock()
	s.addr, s.udp, s.tcp = pc.LocalAddr().String(), udp, tcp
	s.mu.Unlock()
	return nil
}

// stop shuts the server down: its port then refuses queries.
func (s *dnsServer) stop() {
	s.mu.Lock()
	udp, tcp := s.udp, s.tcp
	s.udp, s.tcp = nil, nil
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range []*dns.Server{udp, tcp} {
		if srv != nil {
			_ = srv.ShutdownContext(ctx)
		}
	}
}

// restart serves again on the same port.
func (s *dnsServer) restart() {
	s.t.Helper()
	if err := s.listen(s.addr); err != nil {
		s.t.Fatalf("restart dns server: %v", err)
	}
}

func (s *dnsServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	network := w.LocalAddr().Network()
	s.mu.Lock()
	s.queries = append(s.queries, query{name: name, qtype: q.Qtype, net: network, at: time.Now()})
	silent, nx, tc := s.silent, s.nx[name], s.tcOnUDP[name] && network == "udp"
	k := rrKey{name, q.Qtype}
	answer := append([]dns.RR(nil), s.rrs[k]...)
	extra := append([]dns.RR(nil), s.extra[k]...)
	s.mu.Unlock()
	if silent {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	switch {
	case tc:
		m.Truncated = true
	case nx:
		m.Rcode = dns.RcodeNameError
	default:
		m.Answer, m.Extra = answer, extra
	}
	if network == "udp" {
		// What real servers do with an answer larger than the client
		// offered: cut it and set TC.
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// set replaces the records of name and type, parsed from zone-file lines
// ("api.test. 2 IN A 10.0.0.1"); NXDOMAIN for the name ends.
func (s *dnsServer) set(name string, qtype uint16, lines ...string) {
	s.t.Helper()
	rrs := parseRRs(s.t, lines)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := strings.ToLower(dns.Fqdn(name))
	s.rrs[rrKey{n, qtype}] = rrs
	delete(s.nx, n)
}

func (s *dnsServer) setExtra(name string, qtype uint16, lines ...string) {
	s.t.Helper()
	rrs := parseRRs(s.t, lines)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra[rrKey{strings.ToLower(dns.Fqdn(name)), qtype}] = rrs
}

func parseRRs(t *testing.T, lines []string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

func (s *dnsServer) setNX(name string, nx bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nx[strings.ToLower(dns.Fqdn(name))] = nx
}

func (s *dnsServer) setTruncateUDP(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tcOnUDP[strings.ToLower(dns.Fqdn(name))] = true
}

func (s *dnsServer) setSilent(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = v
}

// asked returns the queries for name (any type when qtype is 0), in order.
func (s *dnsServer) asked(name string, qtype uint16) []query {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []query
	for _, q := range s.queries {
		if q.name == strings.ToLower(dns.Fqdn(name)) && (qtype == 0 || q.qtype == qtype) {
			out = append(out, q)
		}
	}
	return out
}

// aRecords writes n A records of name, 10.1.0.1 upwards, with ttl.
func aRecords(name string, ttl, n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("%s %d IN A 10.1.%d.%d", dns.Fqdn(name), ttl, (i+1)/256, (i+1)%256)
	}
	return out
}
