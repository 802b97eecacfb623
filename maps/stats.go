//go:build linux

package maps

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
)

// StatNames labels the data plane's verdicts and events, in the order of
// enum xlb_stat (bpf/include/consts.h); a test keeps them in step. These are
// the reason labels of xlb_l4_dropped_total and friends.
var StatNames = []string{
	"pass_not_vip",
	"pass_no_neigh",
	"pass_fib",
	"pass_frag",
	"tx",
	"redirect",
	"drop_malformed",
	"drop_rate_limit",
	"drop_no_backend",
	"drop_too_big",
	"drop_encap",
	"icmp_too_big_forwarded",
	"icmp_too_big_sent",
	"flow_miss_non_syn",
	"flow_reselect",
	"flow_insert_skipped",
	"flow_udp_expired",
	"drop_icmp_rate_limit",
	"flow_other_cpu",
}

// Stat is a summed counter of one verdict or event.
type Stat struct {
	Name    string
	Packets uint64
	Bytes   uint64
}

// Counters are a service's or backend's traffic, summed over CPUs.
type Counters struct {
	Packets  uint64
	Bytes    uint64
	NewFlows uint64
}

// ReadStats sums the verdict and event counters over CPUs. A stats map of an
// older build, with fewer counters (the bench's baseline), yields those.
func (m *Maps) ReadStats() ([]Stat, error) {
	names := StatNames[:min(len(StatNames), int(m.Stats.MaxEntries()))]
	out := make([]Stat, len(names))
	for i, name := range names {
		var per []bpf.LbStat
		if err := m.Stats.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read stat %s: %w", name, err)
		}
		out[i].Name = name
		for _, c := range per {
			out[i].Packets += c.Packets
			out[i].Bytes += c.Bytes
		}
	}
	return out, nil
}

// StatByName returns one summed counter (zero if unknown).
func (m *Maps) StatByName(name string) (Stat, error) {
	all, err := m.ReadStats()
	if err != nil {
		return Stat{}, err
	}
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
	}
	return Stat{}, fmt.Errorf("no stat named %q", name)
}

func readCounters(mp *ebpf.Map, id uint32) (Counters, error) {
	var per []bpf.LbCounters
	if err := mp.Lookup(id, &per); err != nil {
		return Counters{}, err
	}
	var c Counters
	for _, p := range per {
		c.Packets += p.Packets
		c.Bytes += p.Bytes
		c.NewFlows += p.NewFlows
	}
	return c, nil
}

// ServiceCounters sums one service's counters over CPUs.
func (m *Maps) ServiceCounters(id uint32) (Counters, error) {
	c, err := readCounters(m.SvcStats, id)
	if err != nil {
		return c, fmt.Errorf("read counters of service %d: %w", id, err)
	}
	return c, nil
}

// BackendCounters sums one backend's counters over CPUs.
func (m *Maps) BackendCounters(id uint32) (Counters, error) {
	c, err := readCounters(m.BackendStats, id)
	if err != nil {
		return c, fmt.Errorf("read counters of backend %d: %w", id, err)
	}
	return c, nil
}

// ResetCounters zeroes the counters of one id of mp (SvcStats or
// BackendStats): PutService and PutBackend call it when an id is given to
// another service or backend.
func (m *Maps) ResetCounters(mp *ebpf.Map, id uint32) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	zero := make([]bpf.LbCounters, n)
	return mp.Put(id, zero)
}

// ClearStats zeroes every counter map (program tests run cases back to back).
func (m *Maps) ClearStats() error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	zs := make([]bpf.LbStat, n)
	for i := range StatNames {
		if err := m.Stats.Put(uint32(i), zs); err != nil {
			return fmt.Errorf("clear stats: %w", err)
		}
	}
	zc := make([]bpf.LbCounters, n)
	for _, mp := range []*ebpf.Map{m.SvcStats, m.BackendStats} {
		for id := uint32(0); id < mp.MaxEntries(); id++ {
			if err := mp.Put(id, zc); err != nil {
				return fmt.Errorf("clear counters: %w", err)
			}
		}
	}
	return nil
}
