package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slack is added to every bounded wait: the checks are timed, and a loaded
// CI machine running -race must not turn a correct checker into a failure.
const slack = 2 * time.Second

// within is how long a transition that needs n consecutive results may
// take: n intervals, one more for the jitter and the probe in progress, one
// more for the first probe, plus slack.
func within(n int, interval time.Duration) time.Duration {
	return time.Duration(n+2)*interval + slack
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run starts c.Run and returns a function that stops it and waits for it
// to return; the test's cleanup calls it too.
func run(t *testing.T, c *Checker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	t.Cleanup(stop)
	return stop
}

// change is one Changed call, with the number of Observed calls for the
// same target at that moment.
type change struct {
	key      string
	up       bool
	reason   string
	observed int
}

type recorder struct {
	mu       sync.Mutex
	changes  []change
	observed map[string]int
	failed   map[string]int
}

func newRecorder() *recorder {
	return &recorder{observed: map[string]int{}, failed: map[string]int{}}
}

func (r *recorder) Changed(t Target, up bool, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, change{t.Key, up, reason, r.observed[t.Key]})
}

func (r *recorder) Observed(t Target, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observed[t.Key]++
	if err != nil {
		r.failed[t.Key]++
	}
}

func (r *recorder) changesFor(key string) []change {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cs []change
	for _, c := range r.changes {
		if c.key == key {
			cs = append(cs, c)
		}
	}
	return cs
}

func (r *recorder) failures(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed[key]
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.observed[key]
}

var _ Observer = (*recorder)(nil)

// backend is an HTTP server on 127.0.0.1 that answers request n (from 0)
// with codeFor(n), and counts requests and connections.
type backend struct {
	srv     *httptest.Server
	codeFor func(n int) int
	conns   atomic.Int64

	mu   sync.Mutex
	reqs int
	last *http.Request
}

func newBackend(t *testing.T, codeFor func(n int) int) *backend {
	t.Helper()
	b := &backend{codeFor: codeFor}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		n := b.reqs
		b.reqs++
		b.last = r.Clone(context.Background())
		b.mu.Unlock()
		if code := b.codeFor(n); code >= 300 && code < 400 {
			http.Redirect(w, r, "/elsewhere", code)
		} else {
			w.WriteHeader(code)
		}
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

func (b *backend) requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reqs
}

func (b *backend) lastRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func always(code int) func(int) int { return func(int) int { return code } }

// blackhole accepts TCP connections and never answers them.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func httpSpec(interval time.Duration, healthy, unhealthy int) Spec {
	return Spec{
		Type: TypeHTTP, Path: "/health",
		Interval: interval, Timeout: time.Second,
		HealthyThreshold: healthy, UnhealthyThreshold: unhealthy,
	}
}

func up(c *Checker, key string) func() bool {
	return func() bool { st, _ := c.State(key); return st.Checked && st.Up }
}

func down(c *Checker, key string) func() bool {
	return func() bool { st, _ := c.State(key); return st.Checked && !st.Up }
}

func TestHTTPStatusToggledAtRuntime(t *testing.T) {
	t.Parallel()
	var status atomic.Int64
	status.Store(200)
	b := newBackend(t, func(int) int { return int(status.Load()) })
	rec := newRecorder()
	c := NewChecker(Options{Observer: rec})
	spec := httpSpec(50*time.Millisecond, 3, 2)
	spec.Path = "/health?deep=1"
	spec.Host = "web.example"
	c.Set([]Target{{Key: "web/b", Addr: b.addr(), Spec: spec}}, nil)
	run(t, c)

	// Starts down, never checked: the first success brings it up.
	waitFor(t, within(1, spec.Interval), "fast first pass", up(c, "web/b"))
	r := b.lastRequest()
	if ua := r.Header.Get("User-Agent"); ua != "xlb-health/1" {
		t.Errorf("User-Agent = %q, want xlb-health/1", ua)
	}
	if !r.Close {
		t.Error("request without Connection: close")
	}
	if r.Host != "web.example" || r.URL.Path != "/health" || r.URL.RawQuery != "deep=1" || r.Method != http.MethodGet {
		t.Errorf("request = %s %s%s?%s, want GET web.example/health?deep=1", r.Method, r.Host, r.URL.Path, r.URL.RawQuery)
	}

	status.Store(503)
	waitFor(t, within(spec.UnhealthyThreshold, spec.Interval), "down after 503", down(c, "web/b"))
	st, _ := c.State("web/b")
	if st.LastError != "status 503 not in 200-399" {
		t.Errorf("LastError = %q, want %q", st.LastError, "status 503 not in 200-399")
	}

	status.Store(204)
	waitFor(t, within(spec.HealthyThreshold, spec.Interval), "up after 204", up(c, "web/b"))
	st, _ = c.State("web/b")
	if st.LastError != "" || st.Failures != 0 || st.Successes < spec.HealthyThreshold {
		t.Errorf("state after recovery = %+v", st)
	}

	got := rec.changesFor("web/b")
	want := []string{"up: first check passed", "down: 2 consecutive failures: status 503 not in 200-399", "up: 3 consecutive successes"}
	if len(got) != len(want) {
		t.Fatalf("changes = %+v, want %q", got, want)
	}
	for i, ch := range got {
		s := "down: " + ch.reason
		if ch.up {
			s = "up: " + ch.reason
		}
		if s != want[i] {
			t.Errorf("change %d = %q, want %q", i, s, want[i])
		}
	}
}

func TestHTTPRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	b := newBackend(t, always(http.StatusFound))
	c := NewChecker(Options{})
	spec := httpSpec(50*time.Millisecond, 2, 2)
	spec.ExpectMin, spec.ExpectMax = 200, 299
	c.Set([]Target{{Key: "k", Addr: b.addr(), Spec: spec}}, map[string]bool{"k": true})
	run(t, c)

	waitFor(t, within(spec.UnhealthyThreshold, spec.Interval), "down on 302", down(c, "k"))
	st, _ := c.State("k")
	if st.LastError != "status 302 not in 200-299" {
		t.Errorf("LastError = %q", st.LastError)
	}
	if p := b.lastRequest().URL.Path; p != "/health" {
		t.Errorf("redirect followed to %s", p)
	}
}

func TestHTTPReadsAtMost64KiBOfBody(t *testing.T) {
	t.Parallel()
	// The body never ends: a probe that read it all would time out.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 16<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	c := NewChecker(Options{})
	spec := httpSpec(100*time.Millisecond, 2, 2)
	spec.Timeout = 30 * time.Second
	c.Set([]Target{{Key: "k", Addr: srv.Listener.Addr().String(), Spec: spec}}, nil)
	run(t, c)

	waitFor(t, within(1, spec.Interval), "up with an endless body", up(c, "k"))
}

func TestTCPListenerClosedAndReopened(t *testing.T) {
	t.Parallel()
	listen := func(addr string) net.Listener {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ln
	}
	ln := listen("127.0.0.1:0")
	addr := ln.Addr().String()
	rec := newRecorder()
	c := NewChecker(Options{Observer: rec})
	spec := Spec{Type: TypeTCP, Interval: 50 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3}
	c.Set([]Target{{Key: "l4/a", Addr: addr, Spec: spec}}, map[string]bool{"l4/a": true})
	run(t, c)

	waitFor(t, within(1, spec.Interval), "first tcp check", func() bool { st, _ := c.State("l4/a"); return st.Checked })
	ln.Close()
	waitFor(t, within(spec.UnhealthyThreshold, spec.Interval), "down after close", down(c, "l4/a"))
	if st, _ := c.State("l4/a"); !strings.Contains(st.LastError, "refused") {
		t.Errorf("LastError = %q, want connection refused", st.LastError)
	}
	ln = listen(addr)
	t.Cleanup(func() { ln.Close() })
	waitFor(t, within(spec.HealthyThreshold, spec.Interval), "up after reopen", up(c, "l4/a"))

	got := rec.changesFor("l4/a")
	if len(got) != 2 || got[0].up || !got[1].up || got[1].reason != "2 consecutive successes" {
		t.Errorf("changes = %+v, want down then up after 2 successes", got)
	}
}

// TestThresholdsAreCountedPerProbe drives one target through a fixed
// sequence of answers; probes of one target are sequential, so where the
// transitions happen is exact.
func TestThresholdsAreCountedPerProbe(t *testing.T) {
	t.Parallel()
	script := []int{200, 500, 200, 200, 500, 500, 200, 200, 200}
	b := newBackend(t, func(n int) int {
		if n < len(script) {
			return script[n]
		}
		return 200
	})
	rec := newRecorder()
	c := NewChecker(Options{Observer: rec})
	spec := httpSpec(20*time.Millisecond, 3, 2)
	c.Set([]Target{{Key: "k", Addr: b.addr(), Spec: spec}}, map[string]bool{"k": true})
	run(t, c)

	waitFor(t, within(len(script), spec.Interval), "the script to be played", func() bool { return rec.count("k") >= len(script)+1 })
	got := rec.changesFor("k")
	want := []change{
		{"k", false, "2 consecutive failures: status 500 not in 200-399", 6}, // a single failure (#2) did nothing
		{"k", true, "3 consecutive successes", 9},
	}
	if !slices.Equal(got, want) {
		t.Errorf("changes = %+v, want %+v", got, want)
	}
}

// TestAlternatingResultsDoNotFlap alternates success and failure per
// request: with thresholds 2 (healthy) and 3 (unhealthy) no run is ever
// long enough to change a state, whichever state the target starts in.
func TestAlternatingResultsDoNotFlap(t *testing.T) {
	t.Parallel()
	okFirst := newBackend(t, func(n int) int { return []int{200, 500}[n%2] })
	failFirst := newBackend(t, func(n int) int { return []int{500, 200}[n%2] })
	rec := newRecorder()
	c := NewChecker(Options{Observer: rec})
	spec := httpSpec(20*time.Millisecond, 2, 3)
	c.Set([]Target{
		{Key: "up", Addr: okFirst.addr(), Spec: spec},
		{Key: "down", Addr: failFirst.addr(), Spec: spec},
	}, map[string]bool{"up": true, "down": false})
	run(t, c)

	const probes = 12
	waitFor(t, within(probes, spec.Interval), "alternating probes", func() bool {
		return rec.count("up") >= probes && rec.count("down") >= probes
	})
	if got := rec.changesFor("up"); len(got) != 0 {
		t.Errorf("target starting up changed: %+v", got)
	}
	if got := rec.changesFor("down"); len(got) != 0 {
		t.Errorf("target starting down changed (no fast first pass after a failure): %+v", got)
	}
	if st, _ := c.State("up"); !st.Up {
		t.Errorf("up: %+v", st)
	}
	if st, _ := c.State("down"); st.Up {
		t.Errorf("down: %+v", st)
	}
}

func TestTimeoutOnServerThatNeverAnswers(t *testing.T) {
	t.Parallel()
	addr := blackhole(t)
	c := NewChecker(Options{})
	spec := httpSpec(100*time.Millisecond, 2, 2)
	spec.Timeout = 100 * time.Millisecond
	c.Set([]Target{{Key: "k", Addr: addr, Spec: spec}}, map[string]bool{"k": true})
	run(t, c)

	waitFor(t, within(spec.UnhealthyThreshold, spec.Interval+spec.Timeout), "down on timeout", down(c, "k"))
	if st, _ := c.State("k"); !strings.HasPrefix(st.LastError, "timeout after 100ms") {
		t.Errorf("LastError = %q, want a timeout", st.LastError)
	}
}

func TestSetKeepsUnchangedAndStopsRemoved(t *testing.T) {
	t.Parallel()
	a := newBackend(t, always(200))
	b := newBackend(t, always(200))
	n := newBackend(t, always(200))
	rec := newRecorder()
	c := NewChecker(Options{Observer: rec})
	spec := httpSpec(50*time.Millisecond, 2, 2)
	ta := Target{Key: "a", Addr: a.addr(), Spec: spec}
	tb := Target{Key: "b", Addr: b.addr(), Spec: spec}
	tn := Target{Key: "n", Addr: n.addr(), Spec: spec}
	c.Set([]Target{ta, tb}, map[string]bool{"a": true, "b": true})
	stop := run(t, c)

	waitFor(t, within(3, spec.Interval), "a and b probed", func() bool { return rec.count("a") >= 3 && rec.count("b") >= 3 })
	before, _ := c.State("a")
	c.Set([]Target{ta, tn}, map[string]bool{"a": false, "n": false})
	after, ok := c.State("a")
	if !ok || !after.Up || !after.Checked || !after.LastChange.Equal(before.LastChange) || after.Successes < before.Successes {
		t.Errorf("unchanged target lost its state: before %+v, after %+v", before, after)
	}
	if _, ok := c.State("b"); ok {
		t.Error("removed target still has a state")
	}
	if _, ok := c.States()["b"]; ok {
		t.Error("removed target still in States")
	}

	// A probe of b in flight when Set returned may still land; after that, nothing.
	time.Sleep(200 * time.Millisecond)
	conns, observed := b.conns.Load(), rec.count("b")
	waitFor(t, within(2, spec.Interval), "new target up", up(c, "n"))
	waitFor(t, within(3, spec.Interval), "a probed further", func() bool { return rec.count("a") >= before.Successes+3 })
	time.Sleep(5 * spec.Interval)
	if got := b.conns.Load(); got != conns {
		t.Errorf("removed target's server got %d more connections", got-conns)
	}
	if got := rec.count("b"); got != observed {
		t.Errorf("removed target observed %d more times", got-observed)
	}

	// Same key, new spec: Up is kept, the rest starts over.
	stop()
	ta.Spec.Path = "/ready"
	c.Set([]Target{ta, tn}, nil)
	st, _ := c.State("a")
	if !st.Up || st.Checked || st.Successes != 0 || !st.LastChange.Equal(before.LastChange) {
		t.Errorf("target with a new spec: %+v, want up, unchecked, same LastChange", st)
	}
}

func TestWorkersBoundConcurrentProbes(t *testing.T) {
	t.Parallel()
	addr := blackhole(t)
	var open, maxOpen, dials atomic.Int64
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		n := open.Add(1)
		for {
			m := maxOpen.Load()
			if n <= m || maxOpen.CompareAndSwap(m, n) {
				break
			}
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			open.Add(-1)
			return nil, err
		}
		return &countedConn{Conn: conn, close: func() { open.Add(-1) }}, nil
	}
	spec := httpSpec(200*time.Millisecond, 2, 2)
	spec.Timeout = 100 * time.Millisecond
	var targets []Target
	for i := range 20 {
		targets = append(targets, Target{Key: string(rune('a' + i)), Addr: addr, Spec: spec, Dial: dial})
	}
	c := NewChecker(Options{Workers: 2})
	c.Set(targets, nil)
	run(t, c)

	// 20 targets × 100ms every 200ms need 10 workers: 2 must skip some.
	waitFor(t, 5*time.Second, "probes and skips", func() bool { return dials.Load() >= 10 && c.Skipped() > 0 })
	if m := maxOpen.Load(); m > 2 || m < 1 {
		t.Errorf("max concurrent probes = %d, want 1-2", m)
	}
}

type countedConn struct {
	net.Conn
	once  sync.Once
	close func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.close)
	return c.Conn.Close()
}

func TestObserverSeesEveryProbe(t *testing.T) {
	t.Parallel()
	good := newBackend(t, always(200))
	bad := newBackend(t, always(500))
	rec := newRecorder()
	c := NewChecker(Options{Observer: rec})
	spec := httpSpec(20*time.Millisecond, 2, 2)
	c.Set([]Target{
		{Key: "good", Addr: good.addr(), Spec: spec},
		{Key: "bad", Addr: bad.addr(), Spec: spec},
	}, map[string]bool{"good": false, "bad": true})
	stop := run(t, c)
	waitFor(t, within(5, spec.Interval), "a few probes", func() bool { return rec.count("good") >= 5 && rec.count("bad") >= 5 })
	stop()

	// Stopped: every finished probe was applied and observed, none since.
	gs, _ := c.State("good")
	bs, _ := c.State("bad")
	if n := rec.count("good"); n != gs.Successes {
		t.Errorf("good: %d Observed calls, %d consecutive successes", n, gs.Successes)
	}
	if n := rec.count("bad"); n != bs.Failures || rec.failures("bad") != n {
		t.Errorf("bad: %d Observed calls (%d with an error), %d consecutive failures", n, rec.failures("bad"), bs.Failures)
	}
	want := []change{{"good", true, "first check passed", 1}}
	if got := rec.changesFor("good"); !slices.Equal(got, want) {
		t.Errorf("good changes = %+v, want %+v", got, want)
	}
	want = []change{{"bad", false, "2 consecutive failures: status 500 not in 200-399", 2}}
	if got := rec.changesFor("bad"); !slices.Equal(got, want) {
		t.Errorf("bad changes = %+v, want %+v", got, want)
	}

	// And Run starts again where it stopped.
	n := rec.count("good")
	time.Sleep(3 * spec.Interval)
	if got := rec.count("good"); got != n {
		t.Errorf("%d probes after Run returned", got-n)
	}
	run(t, c)
	waitFor(t, within(2, spec.Interval), "probes after a new Run", func() bool { return rec.count("good") >= n+2 })
}

func TestTypeNoneIsUpAndNeverProbed(t *testing.T) {
	t.Parallel()
	b := newBackend(t, always(500))
	rec := newRecorder()
	c := NewChecker(Options{Observer: rec})
	spec := Spec{Type: TypeNone, Interval: 20 * time.Millisecond}
	c.Set([]Target{
		{Key: "none", Addr: b.addr(), Spec: spec},
		{Key: "zero", Addr: b.addr()}, // a zero Spec means no check
	}, map[string]bool{"none": false, "zero": false})
	run(t, c)
	c.CheckNow("none")

	time.Sleep(10 * spec.Interval)
	for _, key := range []string{"none", "zero"} {
		if st, ok := c.State(key); !ok || !st.Up || st.Checked {
			t.Errorf("%s: %+v, want up and unchecked", key, st)
		}
		if n := rec.count(key); n != 0 {
			t.Errorf("%s observed %d times", key, n)
		}
	}
	if n := b.conns.Load(); n != 0 {
		t.Errorf("server got %d connections", n)
	}
}

func TestFirstProbeIsPromptAndCheckNow(t *testing.T) {
	t.Parallel()
	b := newBackend(t, always(200))
	rec := newRecorder()
	c := NewChecker(Options{Observer: rec})
	spec := httpSpec(time.Hour, 2, 2)
	c.Set([]Target{{Key: "k", Addr: b.addr(), Spec: spec}}, nil)
	run(t, c)

	// Within 100ms plus min(interval/10, 1s) of jitter, not an hour.
	waitFor(t, 100*time.Millisecond+time.Second+slack, "first probe", up(c, "k"))
	for i := 2; i <= 3; i++ {
		c.CheckNow("k")
		waitFor(t, slack, "CheckNow probe", func() bool { return rec.count("k") >= i })
	}
	c.CheckNow("unknown") // ignored
}
