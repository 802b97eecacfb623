// Package withdraw asks a running xlbd to withdraw every VIP from its BGP
// peers before the XDP program goes, so that the routers stop sending
// traffic to a node that is about to stop forwarding it. xlbd -detach and
// xlbctl detach share it, so that both treat a missing xlbd, or one without
// bgp, alike.
package withdraw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"
)

// Call asks xlbd to stop announcing (POST /api/v1/bgp/announce
// {"enabled":false}). It returns the answer's HTTP status when one came
// (0 otherwise) and an error for anything but a 2xx answer.
type Call func(ctx context.Context) (status int, err error)

// BeforeDetach makes the call and, when xlbd withdrew, waits wait before
// returning, so that the routers have dropped this node's routes. No xlbd
// (connection refused) or one without bgp (409) is fine: nothing announces
// here. Any other failure is an error that names where, and stops the
// detach.
func BeforeDetach(ctx context.Context, call Call, where string, wait time.Duration, stderr io.Writer) error {
	status, err := call(ctx)
	switch {
	case err == nil:
		fmt.Fprintf(stderr, "withdrew every VIP from the BGP peers; waiting %s before detaching\n", wait)
		select {
		case <-time.After(wait):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case status == http.StatusConflict:
		return nil // xlbd runs without bgp
	case status == 0 && errors.Is(err, syscall.ECONNREFUSED):
		return nil // no xlbd: nothing announces
	}
	return fmt.Errorf("withdraw the VIPs first: %w (xlbd at %s must withdraw before the program goes, or the routers keep sending traffic here)", err, where)
}
