package l7

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/l7/balance"
)

// pool is a set of backends with the scheduler that picks among them: a
// service's own, or a route's.
type pool struct {
	name string
	ups  []*balance.Upstream
	sel  balance.Selector
	// byToken finds the backend a sticky cookie names.
	byToken map[string]*balance.Upstream
	tokenOf map[*balance.Upstream]string
	// cookies are the Set-Cookie values that pin a client to a backend:
	// [0] for cleartext clients, [1] (Secure) for TLS ones.
	cookies map[*balance.Upstream][2]string
}

func newPool(name, scheduler string, ups []*balance.Upstream, c config.Service, secret []byte) (*pool, error) {
	sel, err := balance.New(scheduler)
	if err != nil {
		return nil, err
	}
	p := &pool{name: name, ups: ups, sel: sel, byToken: map[string]*balance.Upstream{},
		tokenOf: map[*balance.Upstream]string{}, cookies: map[*balance.Upstream][2]string{}}
	for _, u := range ups {
		tok := stickyToken(secret, c.Name, u.Addr)
		p.byToken[tok] = u
		p.tokenOf[u] = tok
		if st := c.Sticky; st != nil {
			p.cookies[u] = [2]string{stickyCookie(st, tok, false).String(), stickyCookie(st, tok, true).String()}
		}
	}
	return p, nil
}

// cookieFor is the Set-Cookie value that pins a client to u.
func (p *pool) cookieFor(u *balance.Upstream, tls bool) string {
	if tls {
		return p.cookies[u][1]
	}
	return p.cookies[u][0]
}

// stickyCookie is the cookie that pins a client to the backend tok names.
func stickyCookie(st *config.Sticky, tok string, secure bool) *http.Cookie {
	ck := &http.Cookie{Name: st.Cookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure}
	if st.TTL > 0 {
		ck.MaxAge = int(st.TTL.Seconds())
	}
	return ck
}

// retryBudget caps retries at a fraction of requests (plus a small floor),
// so that retries cannot multiply the load on backends that are failing
// because they are overloaded. Units: thousandths of a retry.
type retryBudget struct{ tokens atomic.Int64 }

const (
	budgetPerRequest = 200    // each request earns 0.2 retries
	budgetCap        = 10_000 // at most 10 retries banked
	budgetCost       = 1000
)

func newRetryBudget() *retryBudget {
	b := &retryBudget{}
	b.tokens.Store(budgetCap)
	return b
}

func (b *retryBudget) earn() {
	for {
		t := b.tokens.Load()
		if t >= budgetCap || b.tokens.CompareAndSwap(t, min(t+budgetPerRequest, budgetCap)) {
			return
		}
	}
}

func (b *retryBudget) spend() bool {
	for {
		t := b.tokens.Load()
		if t < budgetCost {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-budgetCost) {
			return true
		}
	}
}

// queueWait is how long a request waits for a slot when every backend is at
// max_conns, before it gets 503.
const queueWait = time.Second

// anyFull reports whether some backend is available but at its max_conns:
// then a request waits instead of failing at once.
// untried reports whether a retry of a request that failed on u has a
// backend to go to: one available that the request has not tried. Without
// one the request is not retried, and its client gets what u's failure
// means (502, 504, or the backend's own 5xx answer), not a 503 "no
// backend" that hides it, nor a retry counted that was never sent.
func (p *pool) untried(pick *balance.Pick, u *balance.Upstream, now time.Time) bool {
	for _, v := range p.ups {
		if v != u && v.Available(now) && !tried(pick, v) {
			return true
		}
	}
	return false
}

func (p *pool) anyFull(now time.Time) bool {
	for _, u := range p.ups {
		if u.Available(now) && u.Full() {
			return true
		}
	}
	return false
}
