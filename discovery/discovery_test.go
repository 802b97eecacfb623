package discovery

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xlbproject/xlb/internal/syncbuf"
)

// watcher keeps every update the Discoverer delivered, per service.
type watcher struct {
	t       *testing.T
	mu      sync.Mutex
	cond    *sync.Cond
	updates map[string][]Update
	times   map[string][]time.Time // when each update arrived
	seen    map[string]int         // per service: updates already consumed by wait
}

// start returns a Discoverer delivering to a watcher, closed in
// t.Cleanup, and its log.
func start(t *testing.T, opts Options) (*Discoverer, *watcher, *syncbuf.Buffer) {
	t.Helper()
	w := &watcher{t: t, updates: map[string][]Update{}, times: map[string][]time.Time{}, seen: map[string]int{}}
	w.cond = sync.NewCond(&w.mu)
	logs := &syncbuf.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.OnUpdate = func(u Update) {
		w.mu.Lock()
		w.updates[u.Service] = append(w.updates[u.Service], u)
		w.times[u.Service] = append(w.times[u.Service], time.Now())
		w.mu.Unlock()
		w.cond.Broadcast()
	}
	if opts.QueryTimeout == 0 {
		opts.QueryTimeout = 500 * time.Millisecond
	}
	d := New(opts)
	t.Cleanup(func() {
		d.Close()
		if t.Failed() {
			t.Logf("discovery log:\n%s", logs.String())
		}
	})
	return d, w, logs
}

// wait returns the first update of service, after those already consumed,
// for which ok holds; it fails the test after timeout.
func (w *watcher) wait(service string, timeout time.Duration, what string, ok func(Update) bool) Update {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, w.cond.Broadcast)
	defer stop.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		us := w.updates[service]
		for i := w.seen[service]; i < len(us); i++ {
			if ok(us[i]) {
				w.seen[service] = i + 1
				return us[i]
			}
		}
		w.seen[service] = len(us)
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: no update of %s within %s (%s); last: %+v", w.t.Name(), service, timeout, what, last(us))
		}
		w.cond.Wait()
	}
}

// lastAt is when the update wait returned last for service arrived.
func (w *watcher) lastAt(service string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.times[service][w.seen[service]-1]
}

// waitSet waits for an update whose set is exactly addrs.
func (w *watcher) waitSet(service string, timeout time.Duration, addrs ...string) Update {
	w.t.Helper()
	return w.wait(service, timeout, fmt.Sprintf("set %v", addrs), func(u Update) bool { return slices.Equal(addrsOf(u), addrs) })
}

// all returns every update of service so far.
func (w *watcher) all(service string) []Update {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.updates[service])
}

func last(us []Update) any {
	if len(us) == 0 {
		return "none"
	}
	return us[len(us)-1]
}

func addrsOf(u Update) []string {
	out := []string{}
	for _, b := range u.Backends {
		out = append(out, b.Address)
	}
	return out
}

func ips(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func TestScaleUpAndDown(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	srv.set("api.test", dns.TypeA, aRecords("api.test", 1, 2)...)
	d, w, _ := start(t, Options{})
	if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "api.test", Type: "a", Weight: 3, Refresh: time.Second, Resolvers: []string{srv.addr}}}); err != nil {
		t.Fatal(err)
	}
	u := w.waitSet("api", 3*time.Second, ips("10.1.0.", 1, 2)...)
	for _, b := range u.Backends {
		if b.Weight != 3 {
			t.Errorf("backend %s weight %d, want the target's 3", b.Address, b.Weight)
		}
	}
	srv.set("api.test", dns.TypeA, aRecords("api.test", 1, 5)...)
	w.waitSet("api", 3*time.Second, ips("10.1.0.", 1, 5)...)
	srv.set("api.test", dns.TypeA, aRecords("api.test", 1, 2)...)
	w.waitSet("api", 3*time.Second, ips("10.1.0.", 1, 2)...)
	for _, u := range w.all("api") {
		if u.Result != ResultOK {
			t.Errorf("lookup result %s (%v), want ok", u.Result, u.Err)
		}
	}
}

func TestAddressFormsPerLayerAndType(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	srv.set("v4.test", dns.TypeA, "v4.test. 5 IN A 10.0.0.7")
	srv.set("v6.test", dns.TypeAAAA, "v6.test. 5 IN AAAA 2001:db8::7", "v6.test. 5 IN AAAA ::ffff:10.0.0.8", "v6.test. 5 IN AAAA ff02::1")
	d, w, _ := start(t, Options{})
	r := []string{srv.addr}
	err := d.Set([]Target{
		{Service: "l4v4", Layer: 4, Name: "v4.test", Type: "a", Resolvers: r},
		{Service: "l7v4", Layer: 7, Name: "V4.test.", Type: "A", Port: 8080, Resolvers: r},
		{Service: "l4v6", Layer: 4, Name: "v6.test", Type: "aaaa", Resolvers: r},
		{Service: "l7v6", Layer: 7, Name: "v6.test", Type: "aaaa", Port: 443, Resolvers: r},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.waitSet("l4v4", 3*time.Second, "10.0.0.7")
	w.waitSet("l7v4", 3*time.Second, "10.0.0.7:8080")
	// The IPv4-mapped and multicast addresses cannot be backends.
	w.waitSet("l4v6", 3*time.Second, "2001:db8::7")
	w.waitSet("l7v6", 3*time.Second, "[2001:db8::7]:443")
	// v4.test is followed by two services and asked by one loop.
	if n := len(srv.asked("v4.test", dns.TypeA)); n != 1 {
		t.Errorf("v4.test asked %d times, want once (one loop for both services)", n)
	}
}

// TestTTLHonoured checks that refresh: ttl asks again when the TTL runs out
// (a 2 s TTL within 3 s), and never more often than once a second.
func TestTTLHonoured(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	srv.set("ttl2.test", dns.TypeA, aRecords("ttl2.test", 2, 1)...)
	srv.set("ttl0.test", dns.TypeA, aRecords("ttl0.test", 0, 1)...)
	d, _, _ := start(t, Options{})
	r := []string{srv.addr}
	if err := d.Set([]Target{
		{Service: "two", Layer: 4, Name: "ttl2.test", Type: "a", Resolvers: r},
		{Service: "zero", Layer: 4, Name: "ttl0.test", Type: "a", Resolvers: r},
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6500 * time.Millisecond)
	gaps := func(name string) []time.Duration {
		qs := srv.asked(name, dns.TypeA)
		var out []time.Duration
		for i := 1; i < len(qs); i++ {
			out = append(out, qs[i].at.Sub(qs[i-1].at))
		}
		return out
	}
	g2 := gaps("ttl2.test")
	if len(g2) < 2 {
		t.Fatalf("ttl2.test asked again %d times in 6.5s, want at least 2: %v", len(g2), g2)
	}
	for _, g := range g2 {
		if g > 3*time.Second || g < 1500*time.Millisecond {
			t.Errorf("a 2s TTL asked again after %s, want within 1.5s..3s (all gaps %v)", g, g2)
		}
	}
	g0 := gaps("ttl0.test")
	if len(g0) < 4 || len(g0) > 8 {
		t.Errorf("a 0s TTL asked again %d times in 6.5s, want about once a second: %v", len(g0), g0)
	}
	for _, g := range g0 {
		if g < 850*time.Millisecond {
			t.Errorf("a 0s TTL asked again after %s, want at least the 1s floor (all gaps %v)", g, g0)
		}
	}
}

// TestResolverStopped checks that a stopped resolver keeps the last good
// set, each failed lookup is delivered as a failure, and the name is asked
// again within 5 s although the refresh interval is longer.
func TestResolverStopped(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	srv.set("api.test", dns.TypeA, aRecords("api.test", 60, 3)...)
	d, w, _ := start(t, Options{})
	if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "api.test", Type: "a", Refresh: 6 * time.Second, Resolvers: []string{srv.addr}}}); err != nil {
		t.Fatal(err)
	}
	want := ips("10.1.0.", 1, 3)
	w.waitSet("api", 3*time.Second, want...)
	srv.stop()
	failed := func(u Update) bool { return u.Result.Failed() }
	f1 := w.wait("api", 8*time.Second, "a failed lookup", failed)
	t1 := w.lastAt("api")
	f2 := w.wait("api", 7*time.Second, "a second failed lookup", failed)
	if gap := w.lastAt("api").Sub(t1); gap > 5*time.Second+100*time.Millisecond {
		t.Errorf("asked again %s after a failure, want within 5s", gap)
	}
	for _, f := range []Update{f1, f2} {
		if f.Err == nil {
			t.Errorf("failed lookup %s without an error", f.Result)
		}
		if got := addrsOf(f); !slices.Equal(got, want) {
			t.Errorf("after a failed lookup (%s: %v) the set is %v, want the last good %v", f.Result, f.Err, got, want)
		}
	}
	srv.restart()
	ok := w.wait("api", 6*time.Second, "a lookup after the restart", func(u Update) bool { return u.Result == ResultOK })
	if got := addrsOf(ok); !slices.Equal(got, want) {
		t.Errorf("after the restart the set is %v, want %v", got, want)
	}
}

// TestResolverSilent checks that a resolver that does not answer gives
// timeouts, the set kept, and that the next resolver is asked.
func TestResolverSilent(t *testing.T) {
	t.Parallel()
	silent, good := newDNSServer(t), newDNSServer(t)
	silent.setSilent(true)
	good.set("api.test", dns.TypeA, aRecords("api.test", 60, 2)...)
	d, w, _ := start(t, Options{QueryTimeout: 300 * time.Millisecond})
	if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "api.test", Type: "a", Refresh: time.Second, Resolvers: []string{silent.addr, good.addr}}}); err != nil {
		t.Fatal(err)
	}
	want := ips("10.1.0.", 1, 2)
	w.waitSet("api", 3*time.Second, want...)
	good.setSilent(true)
	u := w.wait("api", 4*time.Second, "a timeout", func(u Update) bool { return u.Result.Failed() })
	if u.Result != ResultTimeout {
		t.Errorf("result %s (%v), want timeout", u.Result, u.Err)
	}
	if got := addrsOf(u); !slices.Equal(got, want) {
		t.Errorf("after a timeout the set is %v, want the last good %v", got, want)
	}
}

// TestNoBackendsTwiceInARow checks that one NXDOMAIN or empty answer
// changes nothing and two in a row empty the set.
func TestNoBackendsTwiceInARow(t *testing.T) {
	t.Parallel()
	for _, kind := range []Result{ResultNXDomain, ResultEmpty} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := newDNSServer(t)
			srv.set("api.test", dns.TypeA, aRecords("api.test", 60, 2)...)
			d, w, _ := start(t, Options{})
			if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "api.test", Type: "a", Refresh: time.Second, Resolvers: []string{srv.addr}}}); err != nil {
				t.Fatal(err)
			}
			want := ips("10.1.0.", 1, 2)
			w.waitSet("api", 3*time.Second, want...)
			none := func() {
				if kind == ResultNXDomain {
					srv.setNX("api.test", true)
				} else {
					srv.set("api.test", dns.TypeA)
				}
			}
			isKind := func(u Update) bool { return u.Result == kind }

			// Once, then records again: nothing changes.
			none()
			u := w.wait("api", 3*time.Second, "one "+string(kind), isKind)
			srv.set("api.test", dns.TypeA, aRecords("api.test", 60, 2)...)
			if got := addrsOf(u); !slices.Equal(got, want) {
				t.Errorf("after one %s the set is %v, want it kept: %v", kind, got, want)
			}
			u = w.wait("api", 3*time.Second, "records again", func(u Update) bool { return u.Result == ResultOK })
			if got := addrsOf(u); !slices.Equal(got, want) {
				t.Errorf("after records again the set is %v, want %v", got, want)
			}

			// Twice in a row: the set empties.
			none()
			u = w.wait("api", 3*time.Second, "one "+string(kind), isKind)
			if got := addrsOf(u); !slices.Equal(got, want) {
				t.Errorf("after one %s the set is %v, want it kept: %v", kind, got, want)
			}
			u = w.wait("api", 3*time.Second, "a second "+string(kind), isKind)
			if got := addrsOf(u); len(got) != 0 {
				t.Errorf("after two %s in a row the set is %v, want it empty", kind, got)
			}
			srv.set("api.test", dns.TypeA, aRecords("api.test", 60, 1)...)
			w.waitSet("api", 3*time.Second, "10.1.0.1")
		})
	}
}

// TestSettled: an update says whether the name has answered for itself
// since it was first asked (records, or no backends twice in a row): a
// name that does not exist yet is unsettled after one NXDOMAIN and
// settled after two; records are settled.
func TestSettled(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	srv.setNX("api.test", true)
	d, w, _ := start(t, Options{})
	if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "api.test", Type: "a", Refresh: time.Second, Resolvers: []string{srv.addr}}}); err != nil {
		t.Fatal(err)
	}
	isNX := func(u Update) bool { return u.Result == ResultNXDomain }
	if u := w.wait("api", 3*time.Second, "a first NXDOMAIN", isNX); u.Settled {
		t.Errorf("settled after one NXDOMAIN of a name never seen: %+v", u)
	}
	if u := w.wait("api", 7*time.Second, "a second NXDOMAIN", isNX); !u.Settled {
		t.Errorf("not settled after two NXDOMAINs in a row: %+v", u)
	}
	srv.set("api.test", dns.TypeA, aRecords("api.test", 60, 1)...)
	srv.setNX("api.test", false)
	if u := w.wait("api", 7*time.Second, "records", func(u Update) bool { return u.Result == ResultOK }); !u.Settled {
		t.Errorf("records not settled: %+v", u)
	}
}

// TestNXDomainAskedAgainWithin5s checks the retry after an NXDOMAIN when
// the refresh interval is longer.
func TestNXDomainAskedAgainWithin5s(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	srv.setNX("gone.test", true)
	d, _, _ := start(t, Options{})
	if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "gone.test", Type: "a", Refresh: time.Minute, Resolvers: []string{srv.addr}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5500 * time.Millisecond)
	qs := srv.asked("gone.test", dns.TypeA)
	if len(qs) != 2 {
		t.Fatalf("gone.test asked %d times in 5.5s, want twice (at once, then within 5s)", len(qs))
	}
	if gap := qs[1].at.Sub(qs[0].at); gap < 4*time.Second || gap > 5*time.Second+100*time.Millisecond {
		t.Errorf("asked again %s after an NXDOMAIN, want 4.5s..5s (jittered)", gap)
	}
}

func TestSRVWeightsAndPriority(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	const name = "_http._tcp.web.test."
	srv.set(name, dns.TypeSRV,
		name+" 5 IN SRV 10 1 8080 a.web.test.",
		name+" 5 IN SRV 10 3 8081 b.web.test.",
		name+" 5 IN SRV 20 5 9000 c.web.test.",
	)
	// a's address comes in the additional section, b's and c's from
	// lookups of their own.
	srv.setExtra(name, dns.TypeSRV, "a.web.test. 5 IN A 10.2.0.1")
	srv.set("b.web.test", dns.TypeA, "b.web.test. 5 IN A 10.2.0.2")
	srv.set("c.web.test", dns.TypeAAAA, "c.web.test. 5 IN AAAA 2001:db8::3")
	d, w, _ := start(t, Options{})
	if err := d.Set([]Target{{Service: "web", Layer: 7, Name: name, Type: "srv", Refresh: time.Second, Resolvers: []string{srv.addr}}}); err != nil {
		t.Fatal(err)
	}
	u := w.waitSet("web", 3*time.Second, "10.2.0.1:8080", "10.2.0.2:8081")
	if got := []int{u.Backends[0].Weight, u.Backends[1].Weight}; !slices.Equal(got, []int{1, 3}) {
		t.Errorf("weights %v, want the records' [1 3]", got)
	}
	if n := len(srv.asked("a.web.test", 0)); n != 0 {
		t.Errorf("a.web.test asked %d times, want 0: its address was in the additional section", n)
	}

	// No target of priority 10 has an address: priority 20 is the backup.
	srv.setExtra(name, dns.TypeSRV)
	srv.set("b.web.test", dns.TypeA)
	u = w.waitSet("web", 3*time.Second, "[2001:db8::3]:9000")
	if u.Backends[0].Weight != 5 {
		t.Errorf("weight %d, want the record's 5", u.Backends[0].Weight)
	}

	// Weights above 1000 are scaled, keeping their ratios.
	srv.set(name, dns.TypeSRV,
		name+" 5 IN SRV 0 60000 80 c.web.test.",
		name+" 5 IN SRV 0 15000 81 c.web.test.",
	)
	u = w.waitSet("web", 3*time.Second, "[2001:db8::3]:80", "[2001:db8::3]:81")
	if got := []int{u.Backends[0].Weight, u.Backends[1].Weight}; !slices.Equal(got, []int{1000, 250}) {
		t.Errorf("weights %v, want [1000 250]", got)
	}
}

func TestSRVWeights(t *testing.T) {
	tests := []struct {
		in, want []int
	}{
		{[]int{0, 0}, []int{1, 1}},
		{[]int{1, 3, 0}, []int{1, 3, 0}},
		{[]int{65535, 1, 0}, []int{1000, 1, 0}},
		{[]int{2000, 1000}, []int{1000, 500}},
	}
	for _, tt := range tests {
		var group []*dns.SRV
		for _, w := range tt.in {
			group = append(group, &dns.SRV{Weight: uint16(w)})
		}
		if got := srvWeights(group); !slices.Equal(got, tt.want) {
			t.Errorf("srvWeights(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestMaxBackendsTruncation(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	recs := aRecords("big.test", 60, 10)
	rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	srv.set("big.test", dns.TypeA, recs...)
	d, w, logs := start(t, Options{})
	if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "big.test", Type: "a", MaxBackends: 4, Refresh: time.Second, Resolvers: []string{srv.addr}}}); err != nil {
		t.Fatal(err)
	}
	w.waitSet("api", 3*time.Second, ips("10.1.0.", 1, 4)...)
	// The same four after the answer is shuffled again.
	rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	srv.set("big.test", dns.TypeA, recs...)
	time.Sleep(1500 * time.Millisecond)
	for _, u := range w.all("api") {
		if got := addrsOf(u); !slices.Equal(got, ips("10.1.0.", 1, 4)) {
			t.Errorf("set %v, want the four lowest addresses", got)
		}
	}
	if out := logs.String(); strings.Count(out, "more backends than max_backends") != 1 || !strings.Contains(out, "left_out=6") {
		t.Errorf("want the truncation logged once with left_out=6; log:\n%s", out)
	}
}

func TestTCPFallbackOnTruncation(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	// Truncated by the server's choice: an empty answer with TC over UDP.
	srv.set("tc.test", dns.TypeA, aRecords("tc.test", 60, 2)...)
	srv.setTruncateUDP("tc.test")
	// Truncated because it is larger than the 1232 bytes offered.
	srv.set("large.test", dns.TypeA, aRecords("large.test", 60, 300)...)
	d, w, _ := start(t, Options{})
	r := []string{srv.addr}
	if err := d.Set([]Target{
		{Service: "tc", Layer: 4, Name: "tc.test", Type: "a", Refresh: time.Minute, Resolvers: r},
		{Service: "large", Layer: 4, Name: "large.test", Type: "a", MaxBackends: 4096, Refresh: time.Minute, Resolvers: r},
	}); err != nil {
		t.Fatal(err)
	}
	w.waitSet("tc", 3*time.Second, ips("10.1.0.", 1, 2)...)
	w.wait("large", 3*time.Second, "300 backends", func(u Update) bool { return len(u.Backends) == 300 })
	for _, name := range []string{"tc.test", "large.test"} {
		var nets []string
		for _, q := range srv.asked(name, dns.TypeA) {
			nets = append(nets, q.net)
		}
		if !slices.Equal(nets, []string{"udp", "tcp"}) {
			t.Errorf("%s asked over %v, want udp then tcp", name, nets)
		}
	}
}

// TestSetMovesAndStops checks that a service moved to another name gets no
// update of the old one after Set returns, and that a loop nobody follows
// stops asking.
func TestSetMovesAndStops(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	srv.set("old.test", dns.TypeA, "old.test. 1 IN A 10.0.0.1")
	srv.set("new.test", dns.TypeA, "new.test. 1 IN A 10.0.0.2")
	d, w, _ := start(t, Options{})
	r := []string{srv.addr}
	if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "old.test", Type: "a", Refresh: time.Second, Resolvers: r}}); err != nil {
		t.Fatal(err)
	}
	w.waitSet("api", 3*time.Second, "10.0.0.1")
	if err := d.Set([]Target{{Service: "api", Layer: 4, Name: "new.test", Type: "a", Refresh: time.Second, Resolvers: r}}); err != nil {
		t.Fatal(err)
	}
	moved := len(w.all("api"))
	w.waitSet("api", 3*time.Second, "10.0.0.2")
	oldAsked := len(srv.asked("old.test", 0))
	if err := d.Set(nil); err != nil {
		t.Fatal(err)
	}
	stopped := len(w.all("api"))
	time.Sleep(2500 * time.Millisecond)
	for _, u := range w.all("api")[moved:] {
		if u.Name != "new.test." {
			t.Errorf("update of %s after the service moved to new.test", u.Name)
		}
	}
	if n := len(w.all("api")); n != stopped {
		t.Errorf("%d updates after the service stopped following", n-stopped)
	}
	if n := len(srv.asked("old.test", 0)); n != oldAsked {
		t.Errorf("old.test asked %d more times after nobody followed it", n-oldAsked)
	}
	if n := len(srv.asked("new.test", 0)); n > 3 {
		t.Errorf("new.test asked %d times, want at most 3 in its ~2s of being followed", n)
	}
}

// TestSetChangeKeepsTheSet checks that a changed target (a reload edited
// the discover section) keeps the service's set through failed lookups
// and a first NXDOMAIN, as a refresh does: with the same name (a weight
// changed, so the loop goes on) and with a new name (a new loop).
func TestSetChangeKeepsTheSet(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t)
	srv.set("api.test", dns.TypeA, aRecords("api.test", 60, 2)...)
	d, w, _ := start(t, Options{QueryTimeout: 200 * time.Millisecond, Retry: 300 * time.Millisecond})
	r := []string{srv.addr}
	target := Target{Service: "api", Layer: 4, Name: "api.test", Type: "a", Refresh: time.Second, Resolvers: r}
	if err := d.Set([]Target{target}); err != nil {
		t.Fatal(err)
	}
	want := ips("10.1.0.", 1, 2)
	w.waitSet("api", 3*time.Second, want...)

	// The same name with another weight, while the resolver is silent.
	srv.setSilent(true)
	target.Weight = 2
	if err := d.Set([]Target{target}); err != nil {
		t.Fatal(err)
	}
	u := w.wait("api", 3*time.Second, "a timeout after the change", func(u Update) bool { return u.Result.Failed() })
	if got := addrsOf(u); !slices.Equal(got, want) {
		t.Fatalf("a failed lookup after a weight change left %v, want the set kept: %v", got, want)
	}
	if u.Backends[0].Weight != 2 {
		t.Errorf("weight %d after the change, want 2", u.Backends[0].Weight)
	}
	srv.setSilent(false)
	w.wait("api", 3*time.Second, "records again", func(u Update) bool { return u.Result == ResultOK })

	// A new name that does not exist: kept on its first NXDOMAIN, emptied
	// on its second, as for a name that stops existing.
	srv.setNX("typo.test", true)
	target.Name = "typo.test"
	if err := d.Set([]Target{target}); err != nil {
		t.Fatal(err)
	}
	u = w.wait("api", 3*time.Second, "a first NXDOMAIN of the new name", func(u Update) bool { return u.Result == ResultNXDomain })
	if got := addrsOf(u); !slices.Equal(got, want) {
		t.Fatalf("one NXDOMAIN of the new name left %v, want the set kept: %v", got, want)
	}
	u = w.wait("api", 3*time.Second, "a second NXDOMAIN", func(u Update) bool { return u.Result == ResultNXDomain })
	if got := addrsOf(u); len(got) != 0 {
		t.Errorf("two NXDOMAINs of the new name left %v, want it empty", got)
	}
}

// TestRefreshFloorWithJitter checks that a 1s refresh, or a TTL of 0,
// never asks sooner than MinRefresh.
func TestRefreshFloorWithJitter(t *testing.T) {
	l := newLoop(loopKey{name: "a."}, nil, Options{Retry: DefaultRetry, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	l.subs[&sub{target: Target{Refresh: time.Second}}] = struct{}{}
	for range 1000 {
		if d := l.next(answer{result: ResultOK}); d < MinRefresh || d > time.Second {
			t.Fatalf("next lookup in %s with refresh 1s", d)
		}
	}
	l.subs = map[*sub]struct{}{{target: Target{}}: {}}
	l.ttl = MinRefresh // a TTL of 0, held to the floor by apply
	for range 1000 {
		if d := l.next(answer{result: ResultOK}); d < MinRefresh {
			t.Fatalf("next lookup in %s with a TTL of 0", d)
		}
	}
	// A longer interval is still jittered.
	l.subs = map[*sub]struct{}{{target: Target{Refresh: 10 * time.Second}}: {}}
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[l.next(answer{result: ResultOK})] = true
	}
	if len(seen) < 2 {
		t.Errorf("no jitter on a 10s refresh: %v", seen)
	}
}

func TestSetRejects(t *testing.T) {
	d := New(Options{})
	defer d.Close()
	for _, tt := range []Target{
		{Service: "", Layer: 4, Name: "a.test", Type: "a"},
		{Service: "x", Layer: 4, Name: "", Type: "a"},
		{Service: "x", Layer: 5, Name: "a.test", Type: "a"},
		{Service: "x", Layer: 7, Name: "a.test", Type: "a"},
		{Service: "x", Layer: 4, Name: "_a._tcp.test", Type: "srv"},
		{Service: "x", Layer: 4, Name: "a.test", Type: "cname"},
	} {
		if err := d.Set([]Target{tt}); err == nil {
			t.Errorf("Set(%+v) accepted", tt)
		}
	}
	dup := Target{Service: "x", Layer: 4, Name: "a.test", Type: "a"}
	if err := d.Set([]Target{dup, dup}); err == nil {
		t.Errorf("Set accepted a service twice")
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(f, []byte("search example.com\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLoop(loopKey{name: "a.test."}, nil, New(Options{ResolvConf: f}).opts)
	got, err := l.servers()
	if err != nil || !slices.Equal(got, []string{"127.0.0.1:53", "[::1]:53"}) {
		t.Errorf("servers() = %v, %v; want [127.0.0.1:53 [::1]:53]", got, err)
	}
	l = newLoop(loopKey{name: "a.test."}, nil, New(Options{ResolvConf: filepath.Join(dir, "missing")}).opts)
	if _, err := l.servers(); err == nil {
		t.Errorf("servers() of a missing resolv.conf: no error")
	}
}
