//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/internal/maintenance"
	"github.com/xlbproject/xlb/loader"
	"github.com/xlbproject/xlb/maps"
)

// dataplane is the XDP program's lifecycle: load or adopt, attach to the
// configured interfaces, follow interface changes on reload, release.
type dataplane struct {
	log    *slog.Logger
	dp     *loader.Dataplane // nil: L4 off
	maps   *maps.Maps
	ids    *ids
	unlock func()
}

// startDataplane loads or adopts the XDP program and maps and attaches it,
// unless no interface is configured (L4 off). On error the caller closes
// what was started.
func startDataplane(log *slog.Logger, cfg *config.Config) (*dataplane, error) {
	p := &dataplane{log: log, ids: newIDs()}
	x := cfg.XDP
	if len(x.Interfaces) == 0 {
		log.Info("no xdp.interfaces: L4 data plane off")
		removeLeftover(log, x.PinPath)
		return p, nil
	}
	unlock, err := maintenance.Lock(x.PinPath)
	if err != nil {
		return p, err
	}
	p.unlock = unlock
	dp, err := loader.Load(loader.Options{PinPath: x.PinPath, FlowTableSize: x.FlowTableSize, Logger: log})
	if err != nil {
		return p, err
	}
	p.dp = dp
	p.maps = maps.FromObjects(&dp.Objs.LbMaps)
	if dp.Adopted {
		if err := p.ids.recover(p.maps); err != nil {
			return p, err
		}
		log.Info("adopted the pinned data plane; flow table kept", "pin_path", x.PinPath)
	}
	if err := p.putSettings(cfg); err != nil {
		return p, err
	}
	mode, err := loader.ParseMode(x.Mode)
	if err != nil {
		return p, err
	}
	for _, ifname := range x.Interfaces {
		if err := enableForwarding(ifname, hasIPv6(cfg)); err != nil {
			return p, err
		}
		a, err := dp.Attach(ifname, mode)
		if err != nil {
			return p, err
		}
		log.Info("xdp attached", "interface", ifname, "mode", a.Mode, "program_id", a.ProgramID, "replaced", a.Replaced)
		if err := dp.AttachHealthProbes(ifname); err != nil {
			log.Warn("health checks with via: vip fall back to the backends' own addresses", "interface", ifname, "err", err)
		}
	}
	return p, nil
}

func hasIPv6(cfg *config.Config) bool {
	for _, s := range cfg.Services {
		if s.IsL4() && s.VIP.Is6() {
			return true
		}
	}
	return false
}

// putSettings sets the outer source addresses from the first interface,
// and the xdp keys a reload may change (flow_insert_limit,
// ipip_source_prefix).
func (p *dataplane) putSettings(cfg *config.Config) error {
	ifname := cfg.XDP.Interfaces[0]
	src4, src6, err := interfaceAddrs(ifname)
	if err != nil {
		return err
	}
	if !src4.IsValid() && !src6.IsValid() {
		return fmt.Errorf("interface %s has no global address to use as the IPIP outer source", ifname)
	}
	p.log.Info("outer source addresses", "ipv4", src4, "ipv6", src6, "ipip_source_prefix", cfg.XDP.IPIPSourcePrefix)
	return p.maps.PutSettings(maps.Settings{Src4: src4, Src6: src6,
		MaxNewFlowsPerCPU: cfg.XDP.FlowInsertLimit, Src4Prefix: cfg.XDP.IPIPSourcePrefix})
}

// reattach follows a change of xdp.interfaces or xdp.mode.
func (p *dataplane) reattach(cfg *config.Config) error {
	if p.dp == nil {
		if len(cfg.XDP.Interfaces) > 0 {
			return errors.New("xdp.interfaces set on a daemon started without them: restart xlbd")
		}
		return nil
	}
	if len(cfg.XDP.Interfaces) == 0 {
		return errors.New("xdp.interfaces emptied: run `xlbctl detach` or restart xlbd to turn L4 off")
	}
	mode, err := loader.ParseMode(cfg.XDP.Mode)
	if err != nil {
		return err
	}
	// New interfaces first, and interfaces whose mode changes one by one:
	// a reload that cannot attach somewhere is rejected with the old
	// interfaces still attached (and those it attached taken off again),
	// so the running config keeps serving as it did.
	was := map[string]loader.Mode{}
	for _, a := range p.dp.Attachments() {
		was[a.Interface] = a.Mode
	}
	var added []string
	changed := map[string]loader.Mode{} // interfaces whose mode changed: their old mode
	undo := func() {
		for _, ifname := range added {
			p.dp.Detach(ifname)
		}
		for ifname, old := range changed {
			p.dp.Detach(ifname)
			p.dp.Attach(ifname, old)
		}
	}
	for _, ifname := range cfg.XDP.Interfaces {
		// As at the start, for interfaces new to this reload and for the
		// first IPv6 service: without forwarding, the FIB lookup from XDP
		// answers nothing, and every packet passes (pass_fib) while health
		// checks, which leave by tc, say the backends are up.
		if err := enableForwarding(ifname, hasIPv6(cfg)); err != nil {
			undo()
			return err
		}
		old, attached := was[ifname]
		if attached && mode != loader.ModeAuto && old != mode {
			if err := p.dp.Detach(ifname); err != nil {
				undo()
				return err
			}
			if _, err := p.dp.Attach(ifname, mode); err != nil {
				// Back as it was: this interface served before the reload.
				p.dp.Attach(ifname, old)
				undo()
				return err
			}
			changed[ifname] = old
			p.log.Info("xdp re-attached", "interface", ifname, "mode", mode, "was", old)
		} else if _, err := p.dp.Attach(ifname, mode); err != nil {
			undo()
			return err
		} else if !attached {
			added = append(added, ifname)
		}
		// A no-op where attached already; interfaces new to this reload
		// get the probe path too.
		if err := p.dp.AttachHealthProbes(ifname); err != nil {
			p.log.Warn("health checks with via: vip fall back to the backends' own addresses", "interface", ifname, "err", err)
		}
	}
	// Keys a reload may change (the outer source comes from the first
	// interface), before any interface is taken off, so that a rejection
	// leaves the old ones attached. A failure writes nothing: the address
	// is looked up first, and the settings are one map entry.
	if err := p.putSettings(cfg); err != nil {
		undo()
		return err
	}
	for ifname := range was {
		if !slices.Contains(cfg.XDP.Interfaces, ifname) {
			if err := p.dp.Detach(ifname); err != nil {
				return err
			}
			p.log.Info("xdp detached", "interface", ifname)
		}
	}
	return nil
}

// close releases file descriptors and the pin-path lock; the program and
// its pins stay.
func (p *dataplane) close() error {
	var err error
	if p.dp != nil {
		err = p.dp.Close()
		p.dp = nil
	}
	if p.unlock != nil {
		p.unlock()
		p.unlock = nil
	}
	return err
}

// removeLeftover takes away the program and pins a previous xlbd left at
// pinPath: a restart with no xdp.interfaces turns the L4 data plane off (as
// the reload that refused the change said), and left in place the program
// would go on forwarding from tables nothing updates any more. A pin path
// another xlbd holds is that one's.
func removeLeftover(log *slog.Logger, pinPath string) {
	if entries, err := os.ReadDir(filepath.Join(pinPath, "links")); err != nil || len(entries) == 0 {
		return
	}
	unlock, err := maintenance.Lock(pinPath)
	if err != nil {
		log.Warn("no xdp.interfaces, but a program is pinned under the pin path; left alone", "pin_path", pinPath, "err", err)
		return
	}
	defer unlock()
	if err := loader.Unpin(pinPath); err != nil {
		log.Error("no xdp.interfaces: removing the XDP program a previous xlbd left", "pin_path", pinPath, "err", err)
		return
	}
	log.Warn("no xdp.interfaces: removed the XDP program and the pins a previous xlbd left (L4 data plane off)", "pin_path", pinPath)
}
