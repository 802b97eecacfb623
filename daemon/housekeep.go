//go:build linux

package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/xlbproject/xlb/config"
)

// housekeeper does the daemon's periodic work: it removes backends whose
// drain before removal ended or that have nothing left to drain, and keeps
// the neighbour entries of unchecked L4 backends warm (a checked backend's
// probes do that already).
type housekeeper struct {
	log  *slog.Logger
	r    *reconciler
	l4On bool
	wake chan struct{}
	// lastScan is when a pass last read the flow table for draining L4
	// backends.
	lastScan time.Time
	// checkAttachments looks for interfaces that lost the XDP program
	// (Daemon.checkAttachments); nil: nothing to check.
	checkAttachments func()
}

// flowScanEvery spaces the flow-table reads of draining L4 backends: a
// read walks the whole table (tens of MB, some 100 ms at the default
// size), and TCP entries stay until their slot is reused, so a backend that
// had traffic seldom turns idle before its drain ends anyway. L7 backends
// are looked at on every pass (their in-flight count is a counter).
const flowScanEvery = 5 * time.Second

func newHousekeeper(log *slog.Logger, r *reconciler, l4On bool) *housekeeper {
	return &housekeeper{log: log, r: r, l4On: l4On, wake: make(chan struct{}, 1)}
}

// poke asks for a pass soon, without waiting for the next tick.
func (h *housekeeper) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// passEvery spaces the passes while no removal is due sooner.
const passEvery = time.Second

func (h *housekeeper) run(ctx context.Context) {
	t := time.NewTimer(passEvery)
	defer t.Stop()
	periodic := time.Now().Add(passEvery)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
		}
		now := time.Now()
		h.pass(now)
		if !now.Before(periodic) {
			periodic = now.Add(passEvery)
		}
		// A drain before removal ends at removeAt: README has the backend
		// gone then at the latest, not at the next periodic pass. The pass
		// removed every backend due by now, so the next one is later:
		// the timer never fires in a loop.
		next := periodic
		if at, ok := h.r.nextRemoval(); ok && at.Before(next) {
			next = at
		}
		t.Reset(time.Until(next))
	}
}

func (h *housekeeper) pass(now time.Time) {
	scanned, err := h.r.expire(now, h.l4On && now.Sub(h.lastScan) >= flowScanEvery)
	if scanned {
		h.lastScan = now
	}
	if err != nil {
		h.log.Error("remove drained backends", "err", err)
	}
	if !h.l4On {
		return
	}
	if h.checkAttachments != nil {
		h.checkAttachments()
	}
	var addrs []netip.Addr
	h.r.read(func(_ *config.Config, m *model) {
		for _, name := range m.order {
			if s := m.services[name]; s.cfg.IsL4() && !s.checked() {
				for _, b := range s.backends {
					addrs = append(addrs, b.addr)
				}
			}
		}
	})
	for _, a := range addrs {
		nudgeNeighbour(a)
	}
}
