package withdraw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBeforeDetach: a withdrawal waits before the detach goes on; no xlbd
// (refused) and one without bgp (409) let it go on at once; anything else
// stops it with an error naming xlbd's address.
func TestBeforeDetach(t *testing.T) {
	refused := fmt.Errorf("dial tcp 127.0.0.1:9: %w", syscall.ECONNREFUSED)
	for _, c := range []struct {
		name   string
		status int
		err    error
		waits  bool
		fails  bool
	}{
		{"withdrawn", http.StatusOK, nil, true, false},
		{"no-bgp", http.StatusConflict, errors.New("409 Conflict"), false, false},
		{"no-xlbd", 0, refused, false, false},
		{"refused-by-token", http.StatusUnauthorized, errors.New("401 Unauthorized"), false, true},
		{"server-error", http.StatusInternalServerError, errors.New("500"), false, true},
		{"timeout", 0, context.DeadlineExceeded, false, true},
		// A 5xx whose error happens to wrap ECONNREFUSED (a proxy's) is an answer: it stops the detach.
		{"answer-not-refusal", http.StatusBadGateway, refused, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			const wait = 50 * time.Millisecond
			start := time.Now()
			err := BeforeDetach(context.Background(), func(context.Context) (int, error) { return c.status, c.err }, "127.0.0.1:9", wait, &out)
			took := time.Since(start)
			if (err != nil) != c.fails {
				t.Fatalf("error %v, want failure %v", err, c.fails)
			}
			if c.fails && (!strings.Contains(err.Error(), "withdraw the VIPs first") || !strings.Contains(err.Error(), "127.0.0.1:9")) {
				t.Errorf("error %q names neither the step nor xlbd's address", err)
			}
			if waited := took >= wait; waited != c.waits {
				t.Errorf("took %s: waited %v, want %v", took, waited, c.waits)
			}
			if c.waits != strings.Contains(out.String(), "withdrew every VIP") {
				t.Errorf("stderr %q", out.String())
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := BeforeDetach(ctx, func(context.Context) (int, error) { return 200, nil }, "x", time.Hour, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled during the wait: %v", err)
	}
}
