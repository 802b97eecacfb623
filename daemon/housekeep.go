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
// drain ended and keeps the neighbour entries of unchecked L4 backends warm
// (a checked backend's probes do that already).
type housekeeper struct {
	log  *slog.Logger
	r    *reconciler
	l4On bool
	wake chan struct{}
}

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

func (h *housekeeper) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
		}
		h.pass(time.Now())
	}
}

func (h *housekeeper) pass(now time.Time) {
	if err := h.r.expire(now); err != nil {
		h.log.Error("remove drained backends", "err", err)
	}
	if !h.l4On {
		return
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
